//! The classic request (u32 partial size, then the name): never a panic; a
//! request that decodes names a non-empty UTF-8 file, and is never taken
//! for the rutella hello by the protocol detection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_transfer::wire::{decode_classic_request, detect, Detect, CLASSIC_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_classic_request(data) {
        assert!(!r.name.is_empty());
        assert_eq!(r.name.as_bytes(), &data[CLASSIC_HEADER_LEN..]);
        assert_eq!(detect(data), Detect::Classic);
    }
});
