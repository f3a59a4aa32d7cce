//! Any bytes fed to the GIV parser: never a panic, a GIV never claims more
//! bytes than it was given or than the bound, and a parsed GIV encodes to
//! bytes that parse to the same GIV.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::http::{parse_giv, MAX_GIV_LEN, MAX_NAME_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((g, used))) = parse_giv(data) {
        assert!(used <= data.len() && used <= MAX_GIV_LEN);
        assert!(g.name.len() <= MAX_NAME_LEN);
        match parse_giv(&g.encode()) {
            Ok(Some((again, _))) => assert_eq!(again, g),
            other => panic!("an encoded GIV does not parse: {other:?}"),
        }
    }
});
