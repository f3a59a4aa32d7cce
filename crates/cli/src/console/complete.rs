//! Tab completion: command names at the prompt, folder paths where a
//! folder is asked for.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::Context;
use std::cell::Cell;

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

/// Completes console commands and paths.
pub(crate) struct Helper {
    files: FilenameCompleter,
    mode: Cell<Mode>,
}

impl Helper {
    pub(crate) fn new() -> Self {
        Helper {
            files: FilenameCompleter::new(),
            mode: Cell::new(Mode::Command),
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.set(mode);
    }
}

/// Command words offered by Tab.
const COMMANDS: &[&str] = &[
    "search",
    "get",
    "downloads",
    "peers",
    "status",
    "connect",
    "share",
    "unshare",
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
                    Some(("share" | "unshare", _)) => self.files.complete(line, pos, ctx),
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
}
