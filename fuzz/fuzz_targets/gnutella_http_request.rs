//! Any bytes fed to the Gnutella HTTP request parser: never a panic, a
//! request never claims more bytes than it was given or than the bound, a
//! `/get/` name is always a plain name, its range resolves inside any file,
//! and a parsed request encodes to bytes that parse to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::http::{
    is_safe_name, parse_request, Headers, HttpError, Target, MAX_ALT_LOCS, MAX_HEADERS,
    MAX_HEAD_LEN,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((r, used))) = parse_request(data) {
        assert!(used <= data.len() && used <= MAX_HEAD_LEN);
        assert!(r.headers.len() <= MAX_HEADERS);
        if let Target::Index { name, .. } = &r.target {
            assert!(is_safe_name(name));
        }
        if let Ok(Some(range)) = r.range() {
            for size in [0u64, 1, 1000, u64::MAX] {
                if let Some((s, e)) = range.resolve(size) {
                    assert!(s < e && e <= size);
                }
            }
        }
        assert!(r.alt_locs().len() <= MAX_ALT_LOCS);
        let _ = r.keep_alive();
        let _ = r.content_sha1();
        match parse_request(&r.encode()) {
            Ok(Some((again, _))) => assert_eq!(again, r),
            Err(HttpError::TooLong) | Err(HttpError::LineTooLong) => {}
            other => panic!("an encoded request does not parse: {other:?}"),
        }
    }
});
