//! Route-table update payloads, cut from the input as length-prefixed
//! pieces, applied in order to a QRP receiver: never a panic; a payload
//! that decodes encodes to the same bytes; the table never exceeds its
//! bound, whatever RESETs and PATCHes (deflated or not) arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::qrp::{Receiver, RouteTableMessage, MAX_TABLE_LEN};

fuzz_target!(|data: &[u8]| {
    let mut r = Receiver::new();
    let mut rest = data;
    for _ in 0..64 {
        let Some((&n, tail)) = rest.split_first() else {
            break;
        };
        let n = usize::from(n).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        rest = tail;
        // Small pieces cannot say a big table: let the first bytes of a
        // RESET be read as they are, but cap the length to keep runs fast.
        let Ok(m) = RouteTableMessage::decode(piece) else {
            continue;
        };
        let mut again = Vec::new();
        m.encode(&mut again);
        assert_eq!(again, piece);
        let m = match m {
            RouteTableMessage::Reset {
                table_length,
                infinity,
            } => RouteTableMessage::Reset {
                table_length: table_length % (1 << 17),
                infinity,
            },
            other => other,
        };
        let _ = r.apply(&m);
        assert!(r.len() <= MAX_TABLE_LEN as usize);
        let _ = r.matches_query("some words here");
    }
});
