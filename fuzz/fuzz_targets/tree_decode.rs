//! Tree decoding: first any bytes as (hash, size, group size, payload),
//! which must never panic; then group hashes whose root is computed here,
//! so that the accepting path is reached too: the tree decodes, encodes to
//! the same payload, and its group ranges tile the file.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rutella_transfer::tree::{group_count, root_from_groups, Tree};

#[derive(Arbitrary, Debug)]
struct Input {
    hash: [u8; 32],
    size: u64,
    group_log: u8,
    payload: Vec<u8>,
    /// Groups for the second part; the size is derived from their count.
    groups: Vec<[u8; 32]>,
    last_group_fill: u32,
    group_log2: u8,
    probe: u64,
}

fuzz_target!(|i: Input| {
    if let Ok(t) = Tree::decode(i.hash, i.size, i.group_log, &i.payload) {
        assert_eq!(t.encode(), i.payload);
        assert_eq!(t.hash(), &i.hash);
    }

    let group_log = 14 + i.group_log2 % 12; // 14..=25: one past the largest
    let g = 1u64 << group_log;
    let n = i.groups.len().min(64) as u64;
    let size = match n {
        0 => 0,
        n => (n - 1) * g + 1 + u64::from(i.last_group_fill) % g,
    };
    let cvs = &i.groups[..n as usize];
    let Some(root) = root_from_groups(cvs, size, group_log) else {
        assert_ne!(group_count(size, group_log), n);
        return;
    };
    let payload = cvs.concat();
    match Tree::decode(root, size, group_log, &payload) {
        Ok(t) => {
            assert!(group_log <= 24);
            assert_eq!(t.encode(), payload);
            assert_eq!(t.groups(), n);
            let mut end = 0;
            for k in 0..t.groups() {
                let r = t.group_range(k);
                assert_eq!(r.start, end);
                assert!(r.end > r.start && r.end <= size);
                end = r.end;
            }
            assert_eq!(end, size);
            // A group's own bytes are needed to verify it; random ones fail
            // unless the fuzzer found a BLAKE3 preimage.
            if n > 0 {
                let k = i.probe % n;
                let r = t.group_range(k);
                let len = (r.end - r.start) as usize;
                let data = vec![0u8; len.min(1 << 16)];
                let ok = t.verify_group(k, &data);
                assert!(!ok || data.len() == len);
            }
        }
        Err(_) => assert!(group_log > 24),
    }
});
