//! The `rutella` binary: flags in, a node and a console or one-shot command out.

mod args;
mod config_file;
mod console;
mod demo;
mod escape;
mod oneshot;
mod reach;

use args::{Cli, Command, ConfigCommand};
use clap::Parser;
use std::process::ExitCode;

/// Exit codes scripts can rely on.
pub(crate) mod exit {
    /// Something failed that is neither of the below.
    pub(crate) const FAILURE: u8 = 1;
    /// The command line was wrong (clap uses 2 too).
    pub(crate) const USAGE: u8 = 2;
    /// A peer could not be reached, or a transfer broke off.
    pub(crate) const NETWORK: u8 = 3;
    /// Nothing matched, or the peer does not offer the file.
    pub(crate) const NOT_FOUND: u8 = 4;
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
            _ => exit::FAILURE,
        };
        Failure::new(code, e.to_string())
    }
}

/// A full disk gets the advice it needs, whatever reported it.
fn friendly(message: &str) -> String {
    if message.contains("os error 28") || message.contains("No space left") {
        format!("{message}. The disk is full: free some space, then run the same command again to resume")
    } else {
        message.to_string()
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
            console::setup::console(&runtime, cli.console)
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
            clap_complete::generate(shell, &mut cmd, "rutella", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Serve(a)) => {
            init_logging("info");
            runtime.block_on(oneshot::serve(a))
        }
        Some(Command::Search(a)) => {
            // Failures end in one sentence; logs would only repeat it.
            init_logging("error");
            runtime.block_on(oneshot::search(a))
        }
        Some(Command::Get(a)) => {
            init_logging("error");
            runtime.block_on(oneshot::get(a))
        }
    };
    // Blocking library threads must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("rutella: {}", escape::escape(&friendly(&f.message)));
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn full_disk_says_what_to_do() {
        let m = super::friendly("writing /x/a.part failed: No space left on device (os error 28)");
        assert!(m.contains("free some space"), "{m}");
        assert_eq!(super::friendly("peer down"), "peer down");
    }
}
