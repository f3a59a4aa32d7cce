//! The command line's Server-Sent Events decoder (the daemon's event
//! streams, `crates/cli/src/remote/sse.rs`, included as it is): never a
//! panic; the same events whether the bytes come at once or cut where the
//! first byte says; every event's data within the bound.
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/cli/src/remote/sse.rs"]
mod sse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = sse::Decoder::default().push(bytes);
    let mut d = sse::Decoder::default();
    let step = usize::from(cut).max(1);
    let mut pieces = Ok(Vec::new());
    for chunk in bytes.chunks(step) {
        match d.push(chunk) {
            Ok(events) => {
                if let Ok(all) = pieces.as_mut() {
                    all.extend(events);
                }
            }
            Err(e) => {
                pieces = Err(e);
                break;
            }
        }
    }
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            for e in a {
                assert!(e.data.len() <= sse::MAX_DATA);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("whole {whole:?} and in pieces {pieces:?} differ"),
    }
});
