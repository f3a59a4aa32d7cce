//! What `get` was asked for: result numbers and ranges (`get 1 3`,
//! `get 1-3`), or a peer address and a file name (`get IP NAME`), read with
//! shell-like quoting (`get 10.0.0.5 "my file.txt"`: the quotes are not part
//! of the name). A pure function of the typed text.

use rutella_node::PeerAddr;

/// The flag that downloads a file again although it is already here.
pub(crate) const AGAIN: &str = "--again";

/// The most result numbers one `get` may name (a range included).
pub(crate) const MAX_PICKS: usize = super::results::MAX_RESULTS;

/// One `get` command, understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GetCmd {
    /// Results of the last search, by number, in the order typed, each once.
    Results { picks: Vec<usize>, again: bool },
    /// A file by name from a peer; `typed` is the address as typed.
    ByName {
        addr: PeerAddr,
        typed: String,
        name: String,
    },
}

/// A result number (`7`) or range (`2-5`), as typed.
fn numbers(word: &str) -> Option<Result<(usize, usize), String>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (a, b) = match word.split_once('-') {
        Some((a, b)) if digits(a) && digits(b) => (a, b),
        None if digits(word) => (word, word),
        _ => return None,
    };
    let too_big = || {
        format!(
            "{word:?} is not a result number: the results are numbered 1 to at most {MAX_PICKS}."
        )
    };
    let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else {
        return Some(Err(too_big()));
    };
    if a > b {
        return Some(Err(format!(
            "{word:?} is not a range: type the smaller number first (e.g. get {b}-{a})."
        )));
    }
    if b - a >= MAX_PICKS {
        return Some(Err(too_big()));
    }
    Some(Ok((a, b)))
}

const USAGE: &str = "type get N after a search (get 1 3 or get 1-3 for several), or get IP NAME (e.g. get 192.168.1.100 \"my song.ogg\")";

/// Reads the text typed after `get`.
pub(crate) fn parse(rest: &str) -> Result<GetCmd, String> {
    let Some(words) = shlex::split(rest) else {
        return Err(format!(
            "A quote is not closed in get {rest}: put the name between two quotes, e.g. get 192.168.1.100 \"my song.ogg\"."
        ));
    };
    let again = words.iter().any(|w| w == AGAIN);
    let words: Vec<String> = words.into_iter().filter(|w| w != AGAIN).collect();
    let Some(first) = words.first() else {
        return Err(format!("Get what? {}.", capitalize_not(USAGE)));
    };
    if numbers(first).is_some() {
        let mut picks = Vec::new();
        for w in &words {
            match numbers(w) {
                Some(Ok((a, b))) => {
                    for n in a..=b {
                        if !picks.contains(&n) {
                            picks.push(n);
                        }
                    }
                    if picks.len() > MAX_PICKS {
                        return Err(format!(
                            "get {rest} names more than {MAX_PICKS} results: name fewer."
                        ));
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(format!(
                    "{w:?} is not a result number: type get N, get 1 3 or get 1-3 after a search."
                ))
                }
            }
        }
        return Ok(GetCmd::Results { picks, again });
    }
    let Ok(addr) = first.parse::<PeerAddr>() else {
        return Err(format!(
            "{first:?} is neither a result number nor a peer address: {USAGE}."
        ));
    };
    if words.len() < 2 {
        return Err(format!(
            "get {first} needs the name of a file: get {first} NAME (quote a name with spaces: get {first} \"my song.ogg\")."
        ));
    }
    Ok(GetCmd::ByName {
        addr,
        typed: first.clone(),
        name: words[1..].join(" "),
    })
}

/// The usage sentence with a capital first letter.
fn capitalize_not(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(rest: &str) -> Vec<usize> {
        match parse(rest) {
            Ok(GetCmd::Results { picks, .. }) => picks,
            other => panic!("{rest}: {other:?}"),
        }
    }

    #[test]
    fn numbers_and_ranges() {
        assert_eq!(picks("1"), vec![1]);
        assert_eq!(picks("1 2"), vec![1, 2]);
        assert_eq!(picks("1-3"), vec![1, 2, 3]);
        assert_eq!(picks(" 5 1-3  2 "), vec![5, 1, 2, 3]);
        assert_eq!(picks("4-4"), vec![4]);
        assert!(matches!(
            parse("2 --again"),
            Ok(GetCmd::Results { again: true, .. })
        ));
        assert!(matches!(
            parse("2"),
            Ok(GetCmd::Results { again: false, .. })
        ));
        let e = parse("3-1").unwrap_err();
        assert!(e.contains("\"3-1\" is not a range"), "{e}");
        let e = parse("1 x").unwrap_err();
        assert!(e.starts_with("\"x\" is not a result number"), "{e}");
        let e = parse("1-99999999999999999999999").unwrap_err();
        assert!(e.contains("is not a result number"), "{e}");
        let e = parse("1-100000").unwrap_err();
        assert!(e.contains("is not a result number"), "{e}");
    }

    #[test]
    fn names_with_quotes_and_errors_that_name_what_was_typed() {
        let want = |addr: &str, name: &str| GetCmd::ByName {
            addr: addr.parse().unwrap(),
            typed: addr.to_string(),
            name: name.to_string(),
        };
        assert_eq!(
            parse("127.0.0.1 \"my file.txt\""),
            Ok(want("127.0.0.1", "my file.txt"))
        );
        assert_eq!(
            parse("127.0.0.1:7000 'it''s.ogg'"),
            Ok(want("127.0.0.1:7000", "its.ogg"))
        );
        assert_eq!(
            parse("127.0.0.1 song.ogg"),
            Ok(want("127.0.0.1", "song.ogg"))
        );
        assert_eq!(
            parse("127.0.0.1 my song.ogg"),
            Ok(want("127.0.0.1", "my song.ogg"))
        );
        let e = parse("nowhere x.ogg").unwrap_err();
        assert!(
            e.starts_with("\"nowhere\" is neither a result number nor a peer address"),
            "{e}"
        );
        let e = parse("127.0.0.1").unwrap_err();
        assert!(
            e.starts_with("get 127.0.0.1 needs the name of a file"),
            "{e}"
        );
        let e = parse("127.0.0.1 \"open").unwrap_err();
        assert!(
            e.contains("A quote is not closed in get 127.0.0.1 \"open"),
            "{e}"
        );
        let e = parse("").unwrap_err();
        assert!(e.starts_with("Get what? Type get N"), "{e}");
    }
}
