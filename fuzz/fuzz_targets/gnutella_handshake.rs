//! Any bytes fed to the Gnutella 0.6 handshake parser: never a panic, a
//! message never claims more bytes than it was given or than the limit,
//! and a parsed message encodes to bytes that parse to the same message
//! (or hit the same size limits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::handshake::{parse, HandshakeError, MAX_HANDSHAKE_LEN, MAX_HEADERS};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, used))) = parse(data) {
        assert!(used <= data.len() && used <= MAX_HANDSHAKE_LEN);
        assert!(h.headers.len() <= MAX_HEADERS);
        match parse(&h.encode()) {
            Ok(Some((again, _))) => assert_eq!(again, h),
            Err(HandshakeError::TooLong) | Err(HandshakeError::LineTooLong) => {}
            other => panic!("an encoded handshake does not parse: {other:?}"),
        }
    }
});
