//! Any bytes fed to the UDP message parser: never a panic, and every
//! message that parses encodes to something that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_proto::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let again = Message::parse(&m.encode()).expect("an encoded message parses");
        assert_eq!(again, m);
    }
});
