//! Any bytes fed to the THEX (DIME + XML) parser: never a panic; a tree it
//! accepts has the root it was asked for, covers the file size it was
//! given, and encodes to a message that parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::thex::{encode_thex, parse_dime, parse_thex, MAX_RECORDS};
use rutella_gnutella::tiger::{self, HashTree};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_dime(data) {
        assert!(!r.is_empty() && r.len() <= MAX_RECORDS);
    }
    // The first 8 bytes choose the file size; the root is that of a
    // matching tree when the message holds one, so both paths are reached.
    let (size, msg) = match data.split_first_chunk::<8>() {
        Some((s, rest)) => (u64::from_le_bytes(*s) % (1 << 24), rest),
        None => return,
    };
    let root = msg
        .get(msg.len().saturating_sub(tiger::HASH_LEN)..)
        .and_then(|r| <[u8; 24]>::try_from(r).ok())
        .unwrap_or([0; 24]);
    for root in [root, HashTree::of_bytes(&[], 0).root()] {
        if let Ok(t) = parse_thex(msg, size, &root) {
            assert_eq!(t.root(), root);
            assert_eq!(t.size(), size);
            assert!(t.depth() <= tiger::full_depth(size).min(tiger::MAX_DEPTH));
            assert_eq!(parse_thex(&encode_thex(&t), size, &root), Ok(t));
        }
    }
});
