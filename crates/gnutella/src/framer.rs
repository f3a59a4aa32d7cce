//! Cuts the (inflated) byte stream of a link into descriptors. Bounded: it
//! holds at most one header and one payload of at most the limit for its
//! kind ([`crate::descriptor::check_length`]); a header announcing more is
//! an error after which the stream cannot be resynchronised.

use crate::descriptor::{check_length, DecodeError, Header, HEADER_LEN};

/// A complete descriptor as it came off the stream: header and payload.
pub type Frame = (Header, Vec<u8>);

/// Accumulates bytes and hands out whole descriptors (header, payload).
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    header: Option<Header>,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// How many more bytes the current descriptor needs. The driver feeds
    /// at most this many, so the buffer never holds more than one
    /// descriptor.
    pub fn wants(&self) -> usize {
        match &self.header {
            None => HEADER_LEN - self.buf.len(),
            Some(h) => h.length as usize - self.buf.len(),
        }
    }

    /// Takes up to [`Framer::wants`] bytes from `input`; returns how many
    /// it took and, when a descriptor is complete, its header and payload.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), DecodeError> {
        let n = self.wants().min(input.len());
        self.buf.extend_from_slice(&input[..n]);
        if self.header.is_none() && self.buf.len() == HEADER_LEN {
            let mut hb = [0u8; HEADER_LEN];
            hb.copy_from_slice(&self.buf);
            let h = Header::decode(&hb);
            check_length(&h)?;
            self.buf.clear();
            self.header = Some(h);
        }
        match self.header {
            Some(h) if self.buf.len() == h.length as usize => {
                self.header = None;
                Ok((n, Some((h, std::mem::take(&mut self.buf)))))
            }
            _ => Ok((n, None)),
        }
    }

    /// Whether a descriptor is partly received.
    pub fn is_mid_descriptor(&self) -> bool {
        self.header.is_some() || !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::{Descriptor, Payload, Ping};

    #[test]
    fn byte_at_a_time_and_over_limit() {
        let d = Descriptor {
            guid: [1; 16],
            ttl: 1,
            hops: 0,
            payload: Payload::Ping(Ping::default()),
        };
        let mut bytes = d.encode();
        bytes.extend(d.encode());
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in &bytes {
            let (n, out) = f.push(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            got.extend(out);
        }
        assert_eq!(got.len(), 2);
        assert!(!f.is_mid_descriptor());
        let mut big = [0u8; HEADER_LEN];
        big[19..].copy_from_slice(&(1u32 << 20).to_le_bytes());
        assert!(Framer::new().push(&big).is_err());
    }
}
