//! Deflate as Gnutella uses it: zlib streams (RFC 1950 header and
//! checksum around RFC 1951 data) for compressed links
//! (`Content-Encoding: deflate`), GGEP data and QRP patches.
//!
//! [`Deflater`] and [`Inflater`] are the two halves of a compressed link:
//! pure, no I/O, every call bounded by its caller's buffers.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Compresses everything a link sends. Each [`Deflater::compress`] ends in a
/// sync flush, so the peer can inflate all of it at once.
pub struct Deflater {
    z: Compress,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new()
    }
}

impl Deflater {
    /// A new stream, level 6 (the level the compression note found best).
    pub fn new() -> Deflater {
        Deflater {
            z: Compress::new(Compression::new(6), true),
        }
    }

    /// Compresses `input` and appends it, flushed, to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut pos = 0;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.z.total_in();
            // Sync flush: the output ends on a byte boundary with all the
            // input in it.
            if self
                .z
                .compress_vec(&input[pos..], out, FlushCompress::Sync)
                .is_err()
            {
                // Only a bad stream state errs; Compress never gets one here.
                return;
            }
            pos += (self.z.total_in() - before_in) as usize;
            // Done when all input is in and the flush left room to spare.
            if pos >= input.len() && out.len() < out.capacity() {
                return;
            }
        }
    }

    /// Bytes compressed so far (in, out).
    pub fn totals(&self) -> (u64, u64) {
        (self.z.total_in(), self.z.total_out())
    }
}

/// Why an inflater refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The input is not a zlib stream.
    #[error("corrupt deflate stream")]
    Corrupt,
    /// The stream ended (a link's stream never does).
    #[error("deflate stream ended")]
    Ended,
}

/// Inflates what a compressed link receives, a bounded amount at a time.
pub struct Inflater {
    z: Decompress,
    ended: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    /// A new stream.
    pub fn new() -> Inflater {
        Inflater {
            z: Decompress::new(true),
            ended: false,
        }
    }

    /// Inflates from `input` into `out`, appending at most `max_out` bytes.
    /// Returns how many input bytes were used; the caller keeps the rest
    /// for the next call. Using no input and producing nothing means more
    /// input is needed.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, InflateError> {
        if self.ended {
            return if input.is_empty() {
                Ok(0)
            } else {
                Err(InflateError::Ended)
            };
        }
        let before_in = self.z.total_in();
        // `decompress_vec` writes into spare capacity only: a buffer of
        // exactly `max_out` bounds the output.
        let mut bounded = Vec::with_capacity(max_out);
        let res = self
            .z
            .decompress_vec(input, &mut bounded, FlushDecompress::None);
        out.extend_from_slice(&bounded);
        let used = (self.z.total_in() - before_in) as usize;
        match res {
            Ok(Status::StreamEnd) => {
                self.ended = true;
                Ok(used)
            }
            Ok(_) => Ok(used),
            Err(_) => Err(InflateError::Corrupt),
        }
    }

    /// Bytes inflated so far (in, out).
    pub fn totals(&self) -> (u64, u64) {
        (self.z.total_in(), self.z.total_out())
    }
}

/// A whole zlib stream of `data` (GGEP data, QRP patches).
pub fn deflate_all(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(6), true);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut pos = 0;
    loop {
        out.reserve(data.len() / 2 + 64);
        let before = z.total_in();
        match z.compress_vec(&data[pos..], &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return out,
            Ok(_) => pos += (z.total_in() - before) as usize,
            Err(_) => return out,
        }
    }
}

/// Inflates a whole zlib stream, refusing output over `max` bytes, trailing
/// bytes after the stream and a stream that does not end.
pub fn inflate_bounded(data: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut z = Decompress::new(true);
    let mut out = Vec::with_capacity(max.min(4096));
    let mut pos = 0;
    loop {
        let room = (max + 1).saturating_sub(out.len());
        if room == 0 {
            return None;
        }
        let mut chunk = Vec::with_capacity(room.min(16 * 1024));
        let before = z.total_in();
        let st = z.decompress_vec(&data[pos..], &mut chunk, FlushDecompress::None);
        pos += (z.total_in() - before) as usize;
        let produced = chunk.len();
        out.extend_from_slice(&chunk);
        if out.len() > max {
            return None;
        }
        match st {
            Ok(Status::StreamEnd) => return (pos == data.len()).then_some(out),
            Ok(_) if produced == 0 && pos >= data.len() => return None,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn qrp_appendix_zlib_bytes_inflate() {
        // QRP specification, appendix B, example 4: the zlib stream of the
        // 4-byte patch 00 a0 00 00.
        let z = [
            0x78, 0x9c, 0x63, 0x58, 0xc0, 0xc0, 0x00, 0x00, 0x01, 0xe4, 0x00, 0xa1,
        ];
        assert_eq!(inflate_bounded(&z, 4).unwrap(), [0x00, 0xa0, 0x00, 0x00]);
        assert_eq!(inflate_bounded(&z, 3), None, "output bound");
        assert_eq!(inflate_bounded(&z[..11], 4), None, "truncated");
        let mut more = z.to_vec();
        more.push(0);
        assert_eq!(inflate_bounded(&more, 4), None, "trailing bytes");
    }

    #[test]
    fn link_stream_flushes_every_message_and_bounds_output() {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        let mut wire = Vec::new();
        d.compress(b"first message", &mut wire);
        let mut plain = Vec::new();
        // Inflate at most 5 bytes per call.
        let mut pos = 0;
        for _ in 0..100 {
            let before = plain.len();
            let used = i.inflate(&wire[pos..], &mut plain, 5).unwrap();
            assert!(plain.len() - before <= 5);
            pos += used;
            if used == 0 && plain.len() == before {
                break;
            }
        }
        assert_eq!(plain, b"first message");
        assert!(i.inflate(&[0xff, 0xff, 0xff], &mut plain, 10).is_err() || plain.len() == 13);
    }

    proptest! {
        #[test]
        fn link_round_trip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8)) {
            let mut d = Deflater::new();
            let mut i = Inflater::new();
            for m in &msgs {
                let mut wire = Vec::new();
                d.compress(m, &mut wire);
                let mut plain = Vec::new();
                let mut pos = 0;
                for _ in 0..10_000 {
                    let before = plain.len();
                    pos += i.inflate(&wire[pos..], &mut plain, 1000).unwrap();
                    if plain.len() == before && pos == wire.len() { break; }
                }
                prop_assert_eq!(&plain, m);
            }
        }

        #[test]
        fn whole_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), zeros in 0usize..70_000) {
            let mut data = data;
            data.resize(data.len() + zeros, 0);
            prop_assert_eq!(inflate_bounded(&deflate_all(&data), data.len()).unwrap(), data);
        }
    }
}
