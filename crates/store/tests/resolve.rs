//! The sharing rules and the resolution boundary, on a real folder tree.

use proptest::prelude::*;
use rutella_store::{Library, LibraryConfig, ResolveError};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

struct Tree {
    _tmp: TempDir,
    root: PathBuf,
    share: PathBuf,
    share2: PathBuf,
}

fn write(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, content).unwrap();
}

/// root/
///   secret.txt, outside_dir/x.txt          (outside any share)
///   share/  a.txt, music/Despacito.mp3, music/deep/Inner.ogg,
///           .hidden.txt, .git/config, movie.mkv.part, state/db.sqlite (excluded),
///           link_out -> ../secret.txt, link_dir_out -> ../outside_dir,
///           link_in -> a.txt, link_hidden -> .hidden.txt, loop -> ., sub/up -> ..,
///           sub/root -> ../..,
///           emptydir/, dangling -> nowhere
///   share2/ a.txt (other content), only2.txt
fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    let share = root.join("share");
    let share2 = root.join("share2");
    write(&root.join("secret.txt"), "top secret");
    write(&root.join("outside_dir/x.txt"), "outside");
    write(&share.join("a.txt"), "share one a");
    write(&share.join("music/Despacito.mp3"), "la la la");
    write(&share.join("music/deep/Inner.ogg"), "deep");
    write(&share.join(".hidden.txt"), "hidden");
    write(&share.join(".git/config"), "[core]");
    write(&share.join("movie.mkv.part"), "partial");
    write(&share.join("state/db.sqlite"), "state");
    write(&share.join("sub/file.txt"), "sub");
    fs::create_dir_all(share.join("emptydir")).unwrap();
    symlink("../secret.txt", share.join("link_out")).unwrap();
    symlink("../outside_dir", share.join("link_dir_out")).unwrap();
    symlink("a.txt", share.join("link_in")).unwrap();
    symlink(".hidden.txt", share.join("link_hidden")).unwrap();
    symlink(".", share.join("loop")).unwrap();
    symlink("..", share.join("sub/up")).unwrap();
    symlink("../..", share.join("sub/root")).unwrap();
    symlink("nowhere", share.join("dangling")).unwrap();
    write(&share2.join("a.txt"), "share two a, longer");
    write(&share2.join("only2.txt"), "two");
    Tree {
        _tmp: tmp,
        root,
        share,
        share2,
    }
}

fn open(t: &Tree) -> Library {
    let mut cfg = LibraryConfig::new(vec![t.share.clone(), t.share2.clone()]);
    cfg.exclude = vec![t.share.join("state")];
    cfg.watch = false;
    Library::open(cfg).unwrap()
}

fn listed(lib: &Library) -> Vec<String> {
    let mut v: Vec<String> = lib.list().into_iter().map(|f| f.name).collect();
    v.sort();
    v
}

#[test]
fn lists_exactly_the_offered_files() {
    let t = tree();
    let lib = open(&t);
    assert_eq!(
        listed(&lib),
        vec![
            "a.txt",
            "link_in",
            "music/Despacito.mp3",
            "music/deep/Inner.ogg",
            "only2.txt",
            "sub/file.txt",
        ]
    );
    // First share wins: a.txt has share one's size.
    let a = lib.search("a.txt", 10);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].size, "share one a".len() as u64);
}

#[test]
fn search_matches_every_word_case_insensitive_in_the_path() {
    let t = tree();
    let lib = open(&t);
    let names = |q: &str| -> Vec<String> {
        let mut v: Vec<String> = lib.search(q, 100).into_iter().map(|f| f.name).collect();
        v.sort();
        v
    };
    assert_eq!(names("ESP"), vec!["music/Despacito.mp3"]);
    assert_eq!(names("inner"), vec!["music/deep/Inner.ogg"]);
    assert_eq!(
        names("music"),
        vec!["music/Despacito.mp3", "music/deep/Inner.ogg"],
        "folders are matched"
    );
    assert_eq!(names("ogg DEEP"), vec!["music/deep/Inner.ogg"]);
    assert_eq!(names("deep despacito"), Vec::<String>::new());
    assert_eq!(names(""), Vec::<String>::new());
    assert_eq!(names("secret"), Vec::<String>::new());
    assert_eq!(names("hidden"), Vec::<String>::new());
    assert_eq!(names("part"), Vec::<String>::new());
    assert_eq!(names("db"), Vec::<String>::new());
    assert_eq!(names("x.txt"), Vec::<String>::new());
    assert_eq!(lib.search(".", 2).len(), 2, "limit is applied");
}

#[test]
fn resolves_shared_files_inside_their_share() {
    let t = tree();
    let lib = open(&t);
    let f = lib.resolve("music/Despacito.mp3").unwrap();
    assert_eq!(f.path, t.share.join("music/Despacito.mp3"));
    assert_eq!(f.size, 8);
    assert_eq!(f.name, "music/Despacito.mp3");
    // First share wins; the second share serves what only it has.
    assert_eq!(lib.resolve("a.txt").unwrap().path, t.share.join("a.txt"));
    assert_eq!(
        lib.resolve("only2.txt").unwrap().path,
        t.share2.join("only2.txt")
    );
    // A link inside the share resolves to its target, inside the share.
    assert_eq!(lib.resolve("link_in").unwrap().path, t.share.join("a.txt"));
}

#[test]
fn refuses_every_escape_and_unshared_file() {
    let t = tree();
    let lib = open(&t);
    let secret = t.root.join("secret.txt");
    let secret_abs = secret.to_str().unwrap().to_string();
    let cases: Vec<(&str, ResolveError)> = vec![
        ("", ResolveError::Empty),
        ("/etc/passwd", ResolveError::Absolute),
        (&secret_abs, ResolveError::Absolute),
        ("../secret.txt", ResolveError::DotComponent),
        ("music/../../secret.txt", ResolveError::DotComponent),
        ("./a.txt", ResolveError::DotComponent),
        ("C:\\x", ResolveError::Backslash),
        ("..\\secret.txt", ResolveError::Backslash),
        ("C:secret.txt", ResolveError::Colon),
        ("a\0b", ResolveError::NulByte),
        ("a.txt\0", ResolveError::NulByte),
        ("music//Despacito.mp3", ResolveError::EmptyComponent),
        ("link_out", ResolveError::OutsideShare),
        ("link_dir_out/x.txt", ResolveError::OutsideShare),
        ("sub/root/secret.txt", ResolveError::OutsideShare),
        (".hidden.txt", ResolveError::Hidden),
        (".git/config", ResolveError::Hidden),
        ("link_hidden", ResolveError::Hidden),
        ("movie.mkv.part", ResolveError::Partial),
        ("state/db.sqlite", ResolveError::Excluded),
        ("music", ResolveError::NotAFile),
        ("emptydir", ResolveError::NotAFile),
        ("nope.txt", ResolveError::NotFound),
        ("dangling", ResolveError::NotFound),
    ];
    for (name, want) in &cases {
        assert_eq!(lib.resolve(name).as_ref(), Err(want), "{name:?}");
    }
    // A detour through a link that leaves the share is judged by where it
    // ends: back inside the share, it is a shared file like any other.
    assert_eq!(
        lib.resolve("sub/root/share/a.txt").unwrap().path,
        t.share.join("a.txt")
    );
    let long = format!("{}/a.txt", "d".repeat(5000));
    assert!(matches!(
        lib.resolve(&long),
        Err(ResolveError::TooLong { .. })
    ));
}

#[test]
fn symlink_loops_do_not_hang_the_walk_or_duplicate_files() {
    let t = tree();
    symlink("../..", t.share.join("music/deep/back")).unwrap();
    let lib = open(&t);
    let names = listed(&lib);
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(names, dedup);
    assert!(names.len() < 20, "{names:?}");
}

#[test]
fn links_to_folders_inside_the_share_are_followed() {
    let t = tree();
    fs::create_dir_all(t.share.join("real")).unwrap();
    write(&t.share.join("real/song.flac"), "song");
    // real is reachable both directly and through the link: listed once.
    symlink("real", t.share.join("alias")).unwrap();
    let lib = open(&t);
    let hits: Vec<String> = lib.search("song", 10).into_iter().map(|f| f.name).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        lib.resolve("alias/song.flac").unwrap().path,
        t.share.join("real/song.flac")
    );
}

#[test]
fn exclude_created_after_open_is_honoured() {
    let t = tree();
    let mut cfg = LibraryConfig::new(vec![t.share.clone()]);
    cfg.exclude = vec![t.share.join("later")];
    cfg.watch = false;
    let lib = Library::open(cfg).unwrap();
    write(&t.share.join("later/x.bin"), "x");
    assert_eq!(lib.resolve("later/x.bin"), Err(ResolveError::Excluded));
    lib.rescan().unwrap();
    assert!(lib.search("x.bin", 10).is_empty());
}

#[test]
fn shares_can_be_added_and_removed() {
    let t = tree();
    let lib = Library::open(LibraryConfig::new(vec![t.share.clone()])).unwrap();
    assert!(lib.search("only2", 10).is_empty());
    assert!(lib.add_share(&t.root.join("missing")).is_err());
    assert!(lib.add_share(&t.share.join("a.txt")).is_err());
    lib.add_share(&t.share2).unwrap();
    assert_eq!(lib.shares(), vec![t.share.clone(), t.share2.clone()]);
    assert_eq!(lib.search("only2", 10).len(), 1);
    assert!(lib.resolve("only2.txt").is_ok());
    assert!(lib.remove_share(&t.share));
    assert!(!lib.remove_share(&t.share));
    assert_eq!(lib.resolve("a.txt").unwrap().path, t.share2.join("a.txt"));
    assert_eq!(lib.search("a.txt", 10)[0].size, 19);
    assert!(lib.search("despacito", 10).is_empty());
    assert_eq!(
        lib.resolve("music/Despacito.mp3"),
        Err(ResolveError::NotFound)
    );
}

#[test]
fn rescan_sees_added_changed_and_removed_files() {
    let t = tree();
    let lib = open(&t);
    write(&t.share.join("new/fresh.txt"), "fresh");
    fs::remove_file(t.share.join("music/Despacito.mp3")).unwrap();
    write(&t.share.join("a.txt"), "changed content");
    lib.rescan().unwrap();
    assert_eq!(lib.search("fresh", 10).len(), 1);
    assert!(lib.search("despacito", 10).is_empty());
    assert_eq!(lib.search("a.txt", 10)[0].size, 15);
}

/// One path segment, chosen to include every dangerous shape.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("secret.txt".to_string()),
        Just("a.txt".to_string()),
        Just("share".to_string()),
        Just("music".to_string()),
        Just("link_dir_out".to_string()),
        Just("x.txt".to_string()),
        Just("C:".to_string()),
        Just("etc".to_string()),
        Just("passwd".to_string()),
        "[a-z.]{1,4}",
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("/"), Just("\\"), Just("//")]
}

fn name() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(""), Just("/"), Just("\\"), Just("C:\\"), Just("c:/")],
        prop::collection::vec((segment(), separator()), 1..6),
    )
        .prop_map(|(prefix, parts)| {
            let mut s = prefix.to_string();
            for (i, (seg, sep)) in parts.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(seg);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_escaping_name_ever_resolves(name in name()) {
        thread_local! {
            static T: (Tree, Library) = {
                let t = tree();
                let lib = open(&t);
                (t, lib)
            };
        }
        T.with(|(t, lib)| {
            let escaping = name.split('/').any(|c| c == "..")
                || name.starts_with('/')
                || name.contains('\\');
            let r = lib.resolve(&name);
            if escaping {
                prop_assert!(r.is_err(), "{name:?} resolved to {r:?}");
            }
            if let Ok(f) = r {
                // Whatever resolves is a regular file inside a share.
                prop_assert!(f.path.starts_with(&t.share) || f.path.starts_with(&t.share2));
                prop_assert!(f.path.is_file());
                prop_assert!(!f.path.starts_with(t.share.join("state")));
            }
            Ok(())
        })?;
    }
}
