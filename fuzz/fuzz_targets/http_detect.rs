//! Any first bytes of a connection to the transfer port that start like
//! `GET ` or `HEAD`: the HTTP/classic detection never panics, decides
//! within its bound, and never changes its mind once decided (more bytes
//! after a decision give the same decision).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_transfer::wire::{detect_http, HttpDetect, HTTP_LINE_MAX};

fuzz_target!(|data: &[u8]| {
    let whole = detect_http(data);
    if data.len() > HTTP_LINE_MAX + 2 {
        assert_ne!(whole, HttpDetect::NeedMore);
    }
    let mut first = None;
    for cut in 0..=data.len() {
        let d = detect_http(&data[..cut]);
        match first {
            None if d != HttpDetect::NeedMore => first = Some(d),
            Some(f) => assert_eq!(d, f, "changed its mind at {cut}"),
            None => {}
        }
    }
    if let Some(f) = first {
        assert_eq!(whole, f);
    }
});
