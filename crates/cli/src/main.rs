//! The `rutella` binary: flags in, a node and a console or one-shot command out.

mod args;
mod browse;
mod config_file;
mod console;
mod daemon;
mod demo;
mod escape;
mod lan;
mod oneshot;
mod reach;
mod remote;

use args::{Cli, Command, ConfigCommand};
use clap::Parser;
use std::process::ExitCode;

/// Exit codes scripts can rely on, chosen from an error's type and
/// variant, never from its text. (What the message advises, e.g. for a
/// full disk, comes from the kind of the I/O error the error keeps.)
pub(crate) mod exit {
    use rutella_transfer::{DownloadError, ExhaustedError, LocalError, SourceError};

    /// Something failed that is neither of the below.
    pub(crate) const FAILURE: u8 = 1;
    /// The command line was wrong (clap uses 2 too).
    pub(crate) const USAGE: u8 = 2;
    /// A peer could not be reached, or a transfer broke off.
    pub(crate) const NETWORK: u8 = 3;
    /// Nothing matched, or the peer does not offer the file.
    pub(crate) const NOT_FOUND: u8 = 4;
    /// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    pub(crate) const INTERRUPTED: u8 = 130;

    /// The exit code of a failed download.
    pub(crate) fn of_download(e: &DownloadError) -> u8 {
        match e {
            DownloadError::Source(SourceError::NotFound { .. }) => NOT_FOUND,
            DownloadError::Source(_) | DownloadError::Verify(_) => NETWORK,
            DownloadError::Exhausted(x) if x.nobody_has_it() => NOT_FOUND,
            DownloadError::Exhausted(ExhaustedError::NoSources { .. }) => NOT_FOUND,
            DownloadError::Exhausted(ExhaustedError::SourcesExhausted { .. }) => NETWORK,
            DownloadError::Local(LocalError::InvalidName { .. }) => USAGE,
            // A full disk or a folder that cannot be written is "any other
            // failure": the message, chosen from the kind of the I/O error,
            // says what to do.
            DownloadError::Local(LocalError::Io { .. } | LocalError::PartialTooLarge { .. }) => {
                FAILURE
            }
            DownloadError::Cancelled => FAILURE,
        }
    }
}

/// An error for the user: one sentence and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<rutella_node::NodeError> for Failure {
    fn from(e: rutella_node::NodeError) -> Self {
        use rutella_node::NodeError as E;
        let code = match &e {
            E::PortInUse { .. } | E::Bind { .. } => exit::NETWORK,
            E::Download(d) => exit::of_download(d),
            _ => exit::FAILURE,
        };
        let mut message = e.to_string();
        if let E::Downloads { source, .. } = &e {
            if rutella_transfer::is_disk_full(source) {
                message.push_str(
                    "; the disk is full: free some space, then run the same command again",
                );
            }
        }
        Failure::new(code, message)
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rutella: cannot start: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = match cli.command {
        None => {
            init_logging("error");
            remote::attach::console_or_attach(&runtime, cli.console)
        }
        Some(Command::Demo(a)) => {
            init_logging("error");
            demo::run(&runtime, a)
        }
        Some(Command::Config {
            what: ConfigCommand::Path,
        }) => config_file::path().map(|p| println!("{}", p.display())),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "rutella", &mut script);
            // A closed pipe (`| head -1`) ends it quietly.
            oneshot::print_line(String::from_utf8_lossy(&script).trim_end_matches('\n')).map(|_| ())
        }
        Some(Command::Serve(a)) => {
            init_logging("info");
            runtime.block_on(oneshot::serve(a))
        }
        Some(Command::Daemon(a)) => {
            init_logging("info");
            runtime.block_on(daemon::run(a))
        }
        Some(Command::Search(a)) => {
            // Failures end in one sentence; logs would only repeat it.
            init_logging("error");
            runtime.block_on(async {
                match remote::Daemon::unless(a.standalone).await {
                    Some(d) => remote::commands::search(d, a).await,
                    None => oneshot::search(a).await,
                }
            })
        }
        Some(Command::Browse(a)) => {
            init_logging("error");
            runtime.block_on(browse::oneshot(a))
        }
        Some(Command::Get(a)) => {
            init_logging("error");
            runtime.block_on(async {
                // A folder of its own is a download of its own; so is one
                // by name from a peer whose download port is not known
                // (IP:UDPPORT off the classic ports: the node asks it).
                let own =
                    a.standalone || a.out.is_some() || a.from.is_some_and(|f| f.tcp_port.is_none());
                match remote::Daemon::unless(own).await {
                    Some(d) => remote::commands::get(d, a).await,
                    None => oneshot::get(a).await,
                }
            })
        }
        Some(Command::Downloads { json }) => {
            init_logging("error");
            runtime.block_on(async {
                remote::commands::downloads(
                    remote::Daemon::needed("rutella downloads").await?,
                    json,
                )
                .await
            })
        }
        Some(Command::Status) => {
            init_logging("error");
            runtime.block_on(async {
                remote::commands::status(remote::Daemon::needed("rutella status").await?).await
            })
        }
        Some(Command::Share { dir }) => {
            init_logging("error");
            runtime.block_on(remote::commands::share_or_remember(&dir, true))
        }
        Some(Command::Unshare { dir }) => {
            init_logging("error");
            runtime.block_on(remote::commands::share_or_remember(&dir, false))
        }
    };
    // Blocking library threads must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("rutella: {}", escape::escape(&f.message));
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exit;
    use rutella_transfer::{
        Broken, DownloadError, ExhaustedError, LocalError, SourceError, SourceOutcome,
        SourceReport, VerifyError,
    };
    use std::io;
    use std::net::SocketAddr;
    use std::path::PathBuf;

    fn peer() -> SocketAddr {
        ([127, 0, 0, 1], 10000).into()
    }

    fn local(source: io::Error) -> DownloadError {
        LocalError::Io {
            what: "writing to",
            path: PathBuf::from("/x/a.part"),
            source,
        }
        .into()
    }

    fn failure(e: DownloadError) -> super::Failure {
        rutella_node::NodeError::Download(e).into()
    }

    fn exhausted(outcomes: &[SourceOutcome]) -> DownloadError {
        ExhaustedError::SourcesExhausted {
            hash: "00".into(),
            missing: 1,
            size: 1,
            sources: outcomes
                .iter()
                .map(|o| SourceReport {
                    peer: peer(),
                    bytes_received: 0,
                    bytes_verified: 0,
                    outcome: o.clone(),
                })
                .collect(),
        }
        .into()
    }

    #[test]
    fn a_full_disk_is_a_failure_that_says_what_to_do() {
        for e in [
            io::Error::from_raw_os_error(libc::ENOSPC),
            io::Error::from(io::ErrorKind::StorageFull),
        ] {
            let f = failure(local(e));
            assert_eq!(f.code, exit::FAILURE);
            assert!(f.message.contains("free some space"), "{}", f.message);
        }
        // Only the kind counts: the same words in another error do not.
        let f = failure(local(io::Error::other(
            "No space left on device (os error 28)",
        )));
        assert!(!f.message.contains("free some space"), "{}", f.message);
    }

    #[test]
    fn a_downloads_folder_on_a_full_disk_says_what_to_do() {
        let e = |source| rutella_node::NodeError::Downloads {
            path: PathBuf::from("/x/downloads"),
            source,
        };
        let f = super::Failure::from(e(io::Error::from_raw_os_error(libc::ENOSPC)));
        assert_eq!(f.code, exit::FAILURE);
        assert!(f.message.contains("free some space"), "{}", f.message);
        let f = super::Failure::from(e(io::Error::from(io::ErrorKind::NotFound)));
        assert!(!f.message.contains("free some space"), "{}", f.message);
    }

    #[test]
    fn a_refused_permission_is_a_failure_that_says_what_to_do() {
        let f = failure(local(io::Error::from(io::ErrorKind::PermissionDenied)));
        assert_eq!(f.code, exit::FAILURE);
        assert!(f.message.contains("cannot be written"), "{}", f.message);
    }

    #[test]
    fn a_file_the_peer_does_not_offer_is_not_found() {
        let e = SourceError::NotFound {
            peer: peer(),
            name: "a.mp3".into(),
            partial: 0,
            part: PathBuf::from("/x/a.mp3.part"),
        };
        assert_eq!(failure(e.into()).code, exit::NOT_FOUND);
        let none = ExhaustedError::NoSources { hash: "00".into() };
        assert_eq!(failure(none.into()).code, exit::NOT_FOUND);
        let code = failure(exhausted(&[
            SourceOutcome::NotFound,
            SourceOutcome::NotFound,
        ]))
        .code;
        assert_eq!(code, exit::NOT_FOUND);
    }

    #[test]
    fn a_broken_transfer_is_a_network_failure() {
        let reset = SourceError::Connection {
            peer: peer(),
            cause: Broken::Io {
                during: "receiving data",
                source: io::ErrorKind::ConnectionReset.into(),
            },
        };
        assert_eq!(failure(reset.into()).code, exit::NETWORK);
        assert_eq!(
            failure(SourceError::Refused { peer: peer() }.into()).code,
            exit::NETWORK
        );
        let bad = VerifyError::BadData {
            peer: peer(),
            offset: 0,
        };
        assert_eq!(failure(bad.into()).code, exit::NETWORK);
        let mixed = exhausted(&[SourceOutcome::NotFound, SourceOutcome::Busy]);
        assert_eq!(failure(mixed).code, exit::NETWORK);
    }

    #[test]
    fn a_name_that_cannot_be_stored_is_a_usage_error() {
        let e =
            rutella_transfer::sanitize_basename("..").map_err(|source| LocalError::InvalidName {
                name: "..".into(),
                source,
            });
        let Err(e) = e else {
            panic!("\"..\" was accepted as a file name");
        };
        assert_eq!(failure(e.into()).code, exit::USAGE);
    }

    #[test]
    fn a_cancelled_download_is_a_failure() {
        assert_eq!(failure(DownloadError::Cancelled).code, exit::FAILURE);
    }
}
