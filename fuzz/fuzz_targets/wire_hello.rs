//! The rutella hello and the protocol detection on the first bytes of a
//! connection: never a panic; a hello that decodes is detected as rutella
//! and encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_transfer::wire::{decode_hello, detect, encode_hello, Detect, HELLO_LEN};

fuzz_target!(|data: &[u8]| {
    let d = detect(data);
    if let Ok(v) = decode_hello(data) {
        assert_eq!(d, Detect::Rutella);
        assert_eq!(&encode_hello(v)[..], &data[..HELLO_LEN]);
    }
    if data.len() >= 5 {
        assert_ne!(d, Detect::NeedMore);
    }
});
