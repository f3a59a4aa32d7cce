//! Any bytes fed to the Gnutella HTTP response parser: never a panic, a
//! response never claims more bytes than it was given or than the bound,
//! a parsed Content-Range is ordered and inside its total, and a parsed
//! response encodes to bytes that parse to the same response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::http::{parse_response, Headers, HttpError, MAX_ALT_LOCS, MAX_HEAD_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((r, used))) = parse_response(data) {
        assert!(used <= data.len() && used <= MAX_HEAD_LEN);
        if let Ok(Some(cr)) = r.content_range() {
            if let Some((a, b)) = cr.range {
                assert!(a <= b);
                if let Some(t) = cr.total {
                    assert!(b < t);
                }
            }
        }
        let _ = r.content_length();
        let _ = r.retry_after();
        let _ = r.content_sha1();
        assert!(r.alt_locs().len() <= MAX_ALT_LOCS);
        match parse_response(&r.encode()) {
            Ok(Some((again, _))) => assert_eq!(again, r),
            Err(HttpError::TooLong) | Err(HttpError::LineTooLong) => {}
            other => panic!("an encoded response does not parse: {other:?}"),
        }
    }
});
