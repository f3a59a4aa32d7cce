//! Any bytes as a whole Gnutella descriptor (header and payload), and as a
//! GGEP block and a URN: never a panic; a decoded descriptor encodes to one
//! that decodes, and after that one normalisation encoding is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rutella_gnutella::descriptor::{DecodeError, Descriptor};
use rutella_gnutella::ggep::{self, EncodeOptions};
use rutella_gnutella::huge::Urn;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Descriptor::decode_bytes(data) {
        match Descriptor::decode_bytes(&d.encode()) {
            Ok(d2) => {
                let d3 = Descriptor::decode_bytes(&d2.encode())
                    .expect("a re-encoded descriptor decodes");
                assert_eq!(d3, d2);
            }
            Err(DecodeError::TooLong { .. }) => {}
            Err(e) => panic!("an encoded descriptor does not decode: {e}"),
        }
    }
    if let Ok((exts, used)) = ggep::decode_blocks(data) {
        assert!(used <= data.len());
        let mut out = Vec::new();
        ggep::encode_block(
            &exts,
            EncodeOptions {
                avoid_nul: true,
                compress: false,
            },
            &mut out,
        );
        assert!(!out.contains(&0));
        assert_eq!(
            ggep::decode_blocks(&out)
                .expect("an encoded block decodes")
                .0,
            exts
        );
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(u) = Urn::parse(s) {
            assert_eq!(Urn::parse(&u.to_string()), Some(u));
        }
    }
});
