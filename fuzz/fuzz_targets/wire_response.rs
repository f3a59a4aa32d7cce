//! The 24-byte response header: never a panic; a header that decodes
//! encodes back to the same bytes, an error carries at most
//! MAX_MESSAGE_LEN bytes, and a group size is 0 or within the protocol's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_transfer::wire::{
    ResponseHeader, Status, MAX_GROUP_LOG, MAX_MESSAGE_LEN, MIN_GROUP_LOG, RESPONSE_LEN,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ResponseHeader::decode(data) {
        assert_eq!(&h.encode()[..], &data[..RESPONSE_LEN]);
        assert!(h.status == Status::Ok || h.len <= MAX_MESSAGE_LEN);
        assert!(h.group_log == 0 || (MIN_GROUP_LOG..=MAX_GROUP_LOG).contains(&h.group_log));
    }
});
