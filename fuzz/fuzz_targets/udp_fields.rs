//! UDP messages built field by field (every classic, rutella and scalable
//! field, well-typed most of the time): the parser never panics, and every
//! message it accepts encodes to bytes that parse to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_fuzz::Datagram;
use rutella_proto::Message;

fuzz_target!(|d: Datagram| {
    if let Ok(m) = Message::parse(&d.0) {
        let again = Message::parse(&m.encode()).expect("an encoded message parses");
        assert_eq!(again, m);
    }
});
