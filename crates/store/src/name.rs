//! Rules for shared file names: which names are valid, which files are
//! never offered. The same rules serve the folder walk (what is listed) and
//! `resolve` (what may be served), so the two never disagree.

use crate::error::ResolveError;
use std::path::{Component, Path};

/// Longest name (relative path, in bytes) that is listed or resolved.
pub const MAX_NAME_LEN: usize = 4096;

/// True for a path component that is hidden (starts with `.`).
pub(crate) fn is_hidden(component: &str) -> bool {
    component.starts_with('.')
}

/// True for the name of a partial download (`NAME.part`) or of the files
/// kept beside one (`NAME.part.tree`, `NAME.part.state`, and their `.tmp`
/// while being rewritten).
pub(crate) fn is_partial(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    let lower = lower.strip_suffix(".tmp").unwrap_or(&lower);
    [".part", ".part.tree", ".part.state"]
        .iter()
        .any(|suffix| lower.ends_with(suffix))
}

/// Checks one component of a name (a file or folder name) for characters
/// that are never accepted. Does not check hidden or `.part`.
fn check_chars(component: &str) -> Result<(), ResolveError> {
    for c in component.chars() {
        match c {
            '\0' => return Err(ResolveError::NulByte),
            '\\' => return Err(ResolveError::Backslash),
            ':' => return Err(ResolveError::Colon),
            c if c.is_control() => return Err(ResolveError::ControlChar),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a file or folder name met while walking a share: `Ok` if files
/// under it (or it, for a file) may be offered.
pub(crate) fn check_walk_component(component: &str, is_file: bool) -> Result<(), ResolveError> {
    if component.is_empty() || component == "." || component == ".." {
        return Err(ResolveError::DotComponent);
    }
    check_chars(component)?;
    if is_hidden(component) {
        return Err(ResolveError::Hidden);
    }
    if is_file && is_partial(component) {
        return Err(ResolveError::Partial);
    }
    Ok(())
}

/// Validates a requested name syntactically, without touching the disk.
///
/// A valid name is a non-empty relative path of at most [`MAX_NAME_LEN`]
/// bytes, `/`-separated, with no empty, `.` or `..` component, no NUL,
/// control character, backslash or `:`, no hidden component and not ending
/// in `.part`.
pub fn validate_name(name: &str) -> Result<(), ResolveError> {
    if name.is_empty() {
        return Err(ResolveError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ResolveError::TooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    // Whole-name checks first so that the most telling reason is reported.
    if name.contains('\0') {
        return Err(ResolveError::NulByte);
    }
    if name.contains('\\') {
        return Err(ResolveError::Backslash);
    }
    if name.starts_with('/') {
        return Err(ResolveError::Absolute);
    }
    if name.contains(':') {
        return Err(ResolveError::Colon);
    }
    let mut components = name.split('/').peekable();
    while let Some(c) = components.next() {
        if c.is_empty() {
            return Err(ResolveError::EmptyComponent);
        }
        if c == "." || c == ".." {
            return Err(ResolveError::DotComponent);
        }
        check_chars(c)?;
        if is_hidden(c) {
            return Err(ResolveError::Hidden);
        }
        if components.peek().is_none() && is_partial(c) {
            return Err(ResolveError::Partial);
        }
    }
    // Belt and braces: the platform's own view of the path must agree that
    // it is a plain relative path.
    if !Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(ResolveError::DotComponent);
    }
    Ok(())
}

/// Checks the path a shared name really leads to (after following symbolic
/// links), relative to the canonical share root: no hidden component and not
/// a partial download.
pub(crate) fn check_target(rel: &Path) -> Result<(), ResolveError> {
    let mut last = None;
    for c in rel.components() {
        match c {
            Component::Normal(os) => {
                let Some(s) = os.to_str() else {
                    return Err(ResolveError::NotFound);
                };
                if is_hidden(s) {
                    return Err(ResolveError::Hidden);
                }
                last = Some(s);
            }
            _ => return Err(ResolveError::OutsideShare),
        }
    }
    if last.is_some_and(is_partial) {
        return Err(ResolveError::Partial);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_names() {
        for ok in [
            "a.txt",
            "music/despacito.mp3",
            "a b/ü é/Ω.flac",
            "x.part.mp3",
            "dir.part/file",
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_each_bad_shape_with_its_reason() {
        let cases: &[(&str, ResolveError)] = &[
            ("", ResolveError::Empty),
            ("/etc/passwd", ResolveError::Absolute),
            ("../secret", ResolveError::DotComponent),
            ("a/../../b", ResolveError::DotComponent),
            ("a/./b", ResolveError::DotComponent),
            ("..", ResolveError::DotComponent),
            ("a//b", ResolveError::EmptyComponent),
            ("a/", ResolveError::EmptyComponent),
            ("C:\\x", ResolveError::Backslash),
            ("C:x", ResolveError::Colon),
            ("c:/windows/win.ini", ResolveError::Colon),
            ("a\\..\\b", ResolveError::Backslash),
            ("a\0b", ResolveError::NulByte),
            ("a\nb", ResolveError::ControlChar),
            (".hidden", ResolveError::Hidden),
            ("dir/.git/config", ResolveError::Hidden),
            ("movie.mkv.part", ResolveError::Partial),
            (
                "movie.mkv.0123456789abcdef.part.tree",
                ResolveError::Partial,
            ),
            (
                "movie.mkv.0123456789abcdef.part.state",
                ResolveError::Partial,
            ),
            (
                "movie.mkv.0123456789abcdef.part.state.tmp",
                ResolveError::Partial,
            ),
            ("movie.PART", ResolveError::Partial),
            ("movie.mkv.PART", ResolveError::Partial),
        ];
        for (name, want) in cases {
            assert_eq!(validate_name(name).as_ref(), Err(want), "{name:?}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            validate_name(&long),
            Err(ResolveError::TooLong { .. })
        ));
        assert_eq!(validate_name(&"a".repeat(MAX_NAME_LEN)), Ok(()));
    }
}
