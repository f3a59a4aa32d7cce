//! Any bytes as a browse host answer, fed whole and in pieces: never a
//! panic, never more results than the bound, and the same hits whichever
//! way the bytes are cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::browse::{BrowseLimits, BrowseReader};

fn read(data: &[u8], step: usize) -> (Vec<Vec<u8>>, bool) {
    let mut r = BrowseReader::new(BrowseLimits {
        max_results: 50,
        max_body: 1 << 20,
        max_inflated: 4 << 20,
        ..BrowseLimits::default()
    });
    let mut names = Vec::new();
    let mut ok = true;
    for piece in data.chunks(step.max(1)) {
        match r.push(piece) {
            Ok(f) => names.extend(f.hits.into_iter().flat_map(|h| h.results).map(|x| x.name)),
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    assert!(r.results() <= 50);
    (names, ok)
}

fuzz_target!(|data: &[u8]| {
    let (whole, ok) = read(data, usize::MAX);
    let (cut, ok2) = read(data, 7);
    assert!(whole.len() <= 50 && cut.len() <= 50);
    if ok && ok2 {
        assert_eq!(whole, cut);
    }
});
