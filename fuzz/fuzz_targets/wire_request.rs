//! The 49-byte rutella request: never a panic; a request that decodes
//! encodes back to the same bytes, and a range never ends past 2^64.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_transfer::wire::{Request, RequestKind, REQUEST_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(&r.encode()[..], &data[..REQUEST_LEN]);
        if let RequestKind::Range { offset, len } = r.kind {
            assert!(offset.checked_add(len).is_some());
        }
    }
});
