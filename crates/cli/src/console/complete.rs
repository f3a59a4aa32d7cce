//! Tab completion: command names at the prompt, folder paths where a
//! folder is asked for.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::Context;
use std::cell::{Cell, RefCell};

/// The line editor of the console.
pub(crate) type Editor = rustyline::Editor<Helper, rustyline::history::DefaultHistory>;

/// What the line being typed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A console command.
    Command,
    /// A folder path (the first-run question).
    Path,
    /// Anything else: no completion.
    Plain,
}

/// What Tab offers after a command word, from the node's state as it was
/// when the prompt was shown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Live {
    /// The shared folders (for `unshare`).
    pub(crate) shares: Vec<String>,
    /// The last search's results, numbered from 1, by name (for `get`).
    pub(crate) results: Vec<String>,
    /// Known and remembered peers, as typed (for `connect`).
    pub(crate) peers: Vec<String>,
}

/// Completes console commands and paths.
pub(crate) struct Helper {
    files: FilenameCompleter,
    mode: Cell<Mode>,
    live: RefCell<Live>,
}

impl Helper {
    pub(crate) fn new() -> Self {
        Helper {
            files: FilenameCompleter::new(),
            mode: Cell::new(Mode::Command),
            live: RefCell::new(Live::default()),
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.set(mode);
    }

    /// What Tab offers after `unshare`, `get` and `connect` from now on.
    pub(crate) fn set_live(&self, live: Live) {
        *self.live.borrow_mut() = live;
    }

    /// Candidates for the argument of `cmd`, typed so far as `arg`.
    fn arguments(&self, cmd: &str, arg: &str) -> Option<Vec<Pair>> {
        let live = self.live.borrow();
        let pairs = match cmd {
            "unshare" => live
                .shares
                .iter()
                .filter(|s| s.starts_with(&unescape(arg)))
                .map(|s| Pair {
                    display: s.clone(),
                    replacement: s.replace(' ', "\\ "),
                })
                .collect(),
            "connect" | "c" => live
                .peers
                .iter()
                .filter(|p| p.starts_with(arg))
                .map(|p| Pair {
                    display: p.clone(),
                    replacement: p.clone(),
                })
                .collect(),
            "get" | "g" => {
                let lower = arg.to_lowercase();
                live.results
                    .iter()
                    .enumerate()
                    .map(|(i, name)| (i + 1, name))
                    .filter(|(n, name)| {
                        n.to_string().starts_with(arg) || name.to_lowercase().contains(&lower)
                    })
                    .map(|(n, name)| Pair {
                        display: format!("{n} {name}"),
                        replacement: n.to_string(),
                    })
                    .collect()
            }
            _ => return None,
        };
        Some(pairs)
    }
}

/// `my\ folder` as typed is `my folder`.
fn unescape(s: &str) -> String {
    s.replace("\\ ", " ")
}

/// Command words offered by Tab.
const COMMANDS: &[&str] = &[
    "search",
    "get",
    "browse",
    "downloads",
    "peers",
    "status",
    "connect",
    "pause",
    "resume",
    "cancel",
    "remove",
    "move",
    "uploads",
    "share",
    "unshare",
    "notices",
    "help",
    "quit",
];

impl Completer for Helper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        match self.mode.get() {
            Mode::Plain => Ok((0, Vec::new())),
            Mode::Path => self.files.complete(line, pos, ctx),
            Mode::Command => {
                let before = &line[..pos];
                if let Some((cmd, arg)) = before.split_once(' ') {
                    // `get` takes several numbers: the last word is completed.
                    let (start, word) = match cmd {
                        "get" | "g" => {
                            let at = arg.rfind(' ').map_or(0, |i| i + 1);
                            (cmd.len() + 1 + at, &arg[at..])
                        }
                        _ => (cmd.len() + 1, arg),
                    };
                    if let Some(pairs) = self.arguments(cmd, word) {
                        return Ok((start, pairs));
                    }
                }
                match before.split_once(' ') {
                    None => Ok((
                        0,
                        COMMANDS
                            .iter()
                            .filter(|c| c.starts_with(before))
                            .map(|c| Pair {
                                display: c.to_string(),
                                replacement: format!("{c} "),
                            })
                            .collect(),
                    )),
                    Some(("share", _)) => self.files.complete(line, pos, ctx),
                    Some(_) => Ok((pos, Vec::new())),
                }
            }
        }
    }
}

impl Hinter for Helper {
    type Hint = String;
}
impl Highlighter for Helper {}
impl Validator for Helper {}
impl rustyline::Helper for Helper {}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::DefaultHistory;

    fn complete(h: &Helper, line: &str) -> (usize, Vec<String>) {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, pairs) = h.complete(line, line.len(), &ctx).unwrap();
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn commands_then_paths() {
        let h = Helper::new();
        assert_eq!(complete(&h, "se"), (0, vec!["search ".to_string()]));
        assert_eq!(complete(&h, "s").1, vec!["search ", "status ", "share "]);
        assert!(complete(&h, "get 1").1.is_empty());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("music")).unwrap();
        let line = format!("share {}/mu", dir.path().display());
        let (_, c) = complete(&h, &line);
        assert!(c.iter().any(|r| r.ends_with("music/")), "{c:?}");
        h.set_mode(Mode::Path);
        let (_, c) = complete(&h, &format!("{}/mu", dir.path().display()));
        assert!(c.iter().any(|r| r.ends_with("music/")), "{c:?}");
        h.set_mode(Mode::Plain);
        assert!(complete(&h, "se").1.is_empty());
    }

    #[test]
    fn arguments_come_from_the_node() {
        let h = Helper::new();
        h.set_live(Live {
            shares: vec!["/srv/my music".into(), "/srv/films".into()],
            results: vec!["music/a.ogg".into(), "photos/b.jpg".into()],
            peers: vec!["192.168.1.100".into(), "127.0.0.1:20002".into()],
        });
        // The shared folders, not the current directory.
        assert_eq!(
            complete(&h, "unshare /srv/m"),
            (8, vec!["/srv/my\\ music".to_string()])
        );
        assert_eq!(complete(&h, "unshare ").1.len(), 2);
        // Results by number or by a part of the name.
        assert_eq!(complete(&h, "get 2"), (4, vec!["2".to_string()]));
        assert_eq!(complete(&h, "get ogg"), (4, vec!["1".to_string()]));
        assert_eq!(complete(&h, "get 1 ph"), (6, vec!["2".to_string()]));
        // Known peers.
        assert_eq!(
            complete(&h, "connect 19"),
            (8, vec!["192.168.1.100".to_string()])
        );
    }
}
