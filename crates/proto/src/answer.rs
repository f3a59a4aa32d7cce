//! Answers to queries, built wherever the driver likes.
//!
//! The overlay decides *whether* and *how* a query is answered (the
//! destination, the fields of the answer, how many files, whether an empty
//! answer is sent) in [`crate::Overlay::plan_answer`], which is cheap. Turning the
//! files into datagrams ([`AnswerPlan::encode`]) is a pure function that
//! costs time linear in the files, so a driver can run it off its event
//! loop (next to the library lookup) and only send the ready datagrams.

use crate::message::{split_hit_indices, split_hits, HitFile, Message, QueryHit, MAX_DATAGRAM};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Room left in a datagram for the longest own address the driver may
/// write instead of `0.0.0.0`.
pub(crate) const ANSWER_LIMIT: usize = MAX_DATAGRAM - ("255.255.255.255".len() - "0.0.0.0".len());

/// How to answer one query: made by [`crate::Overlay::plan_answer`], carried out
/// by [`AnswerPlan::encode`] (anywhere, e.g. on a blocking thread).
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerPlan {
    dest: SocketAddr,
    /// Every field of the answer but its files; `"IP"` unspecified.
    template: QueryHit,
    /// Most bytes per datagram with `0.0.0.0` as the address.
    limit: usize,
    max_files: usize,
    /// Whether an answer naming no file is still sent.
    send_empty: bool,
}

impl AnswerPlan {
    /// The plan of an answer to `dest` with these fields, at most
    /// `max_files` files and `limit` bytes per datagram (with `0.0.0.0`
    /// as the address); `send_empty` when an answer naming no file is
    /// still sent.
    pub(crate) fn new(
        dest: SocketAddr,
        template: QueryHit,
        limit: usize,
        max_files: usize,
        send_empty: bool,
    ) -> Self {
        AnswerPlan {
            dest,
            template,
            limit,
            max_files,
            send_empty,
        }
    }

    /// Where the answer goes.
    pub fn dest(&self) -> SocketAddr {
        self.dest
    }

    /// The answer's messages (several when the files do not fit in one
    /// datagram; none when nothing matched and the querier does not wait
    /// for an empty answer).
    pub fn hits(&self, files: &[HitFile]) -> Vec<QueryHit> {
        let files = &files[..files.len().min(self.max_files)];
        if files.is_empty() && !self.send_empty {
            return Vec::new();
        }
        split_hits(&self.template, files, self.room())
    }

    /// Most bytes per datagram with `0.0.0.0` as the address, leaving room
    /// for the longest own address of the destination's family: `limit`
    /// has room for an IPv4 one, an IPv6 one takes up to 24 bytes more.
    fn room(&self) -> usize {
        let widest = crate::addr::widest_ip(self.dest).to_string().len();
        let v4 = Ipv4Addr::BROADCAST.to_string().len();
        self.limit.saturating_sub(widest.saturating_sub(v4))
    }

    /// The answer's datagrams with `own_ip` as our address: the same bytes
    /// as [`AnswerPlan::hits`] encoded with [`crate::Transmit::encode`],
    /// each datagram encoded once (time linear in the files). Pure.
    pub fn encode(&self, own_ip: IpAddr, files: &[HitFile]) -> Vec<Vec<u8>> {
        let files = &files[..files.len().min(self.max_files)];
        if files.is_empty() && !self.send_empty {
            return Vec::new();
        }
        let template = QueryHit {
            ip: own_ip,
            ..self.template.clone()
        };
        // The split is made for `0.0.0.0`; every length differs from that
        // by the same number of bytes with our own address in.
        let own_len = own_ip.to_string().len();
        let limit = self.room() + own_len - Ipv4Addr::UNSPECIFIED.to_string().len();
        let parts = split_hit_indices(&template, files, limit);
        let n = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(i, idx)| {
                Message::QueryHit(QueryHit {
                    files: idx.into_iter().map(|j| files[j].clone()).collect(),
                    more: i + 1 < n,
                    ..template.clone()
                })
                .encode()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Ports;
    use crate::overlay::{Config, IncomingQuery, Overlay, Peer, Transmit};
    use std::time::Instant;

    fn query(id: Option<u64>) -> IncomingQuery {
        let reply_to: SocketAddr = "127.0.0.7:40000".parse().unwrap();
        IncomingQuery {
            reply_to,
            from: Peer {
                udp: reply_to,
                tcp_port: 1,
                rutella: true,
            },
            text: "a".into(),
            id,
        }
    }

    fn query6(id: Option<u64>) -> IncomingQuery {
        let reply_to: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        IncomingQuery {
            reply_to,
            from: Peer {
                udp: reply_to,
                tcp_port: 1,
                rutella: true,
            },
            ..query(id)
        }
    }

    fn arb_file() -> impl proptest::strategy::Strategy<Value = HitFile> {
        use proptest::prelude::*;
        (
            prop_oneof!["[a-z0-9 ./]{0,60}", "\\PC{0,30}", "x{0,400}"],
            proptest::option::of(proptest::num::u64::ANY),
            proptest::option::of(proptest::array::uniform32(proptest::num::u8::ANY)),
        )
            .prop_map(|(name, size, hash)| HitFile { name, size, hash })
    }

    proptest::proptest! {
        /// The datagrams built off the loop are byte for byte those
        /// `answer_query` queues, and each fits in a datagram.
        #[test]
        fn encoded_answers_equal_queued_ones(
            files in proptest::collection::vec(arb_file(), 0..700),
            own in proptest::num::u128::ANY,
            id in proptest::option::of(proptest::num::u64::ANY),
            v6 in proptest::bool::ANY,
        ) {
            let now = Instant::now();
            // Our address is of the querier's family, as the driver picks it.
            let own = if v6 {
                IpAddr::V6(std::net::Ipv6Addr::from(own))
            } else {
                IpAddr::V4(Ipv4Addr::from(own as u32))
            };
            let mut o = Overlay::new(Config::default(), now);
            let q = if v6 { query6(id) } else { query(id) };
            // Queries come only from addresses we may answer: here, one
            // the user gave.
            o.connect(now, q.reply_to, 1);
            while o.poll_transmit().is_some() {}
            o.answer_query(&q, &files);
            let queued: Vec<Vec<u8>> = std::iter::from_fn(|| o.poll_transmit())
                .map(|t: Transmit| t.encode(own))
                .collect();
            let plan = o.plan_answer(&q);
            let ready = plan.encode(own, &files);
            proptest::prop_assert_eq!(&ready, &queued);
            proptest::prop_assert!(!ready.is_empty());
            for d in &ready {
                proptest::prop_assert!(d.len() <= MAX_DATAGRAM);
            }
        }
    }

    #[test]
    fn a_plan_caps_the_files_and_sends_empty_classic_answers() {
        let now = Instant::now();
        let mut o = Overlay::new(
            Config {
                max_hits_per_answer: 3,
                udp_port: 5,
                tcp_port: 6,
                ..Config::default()
            },
            now,
        );
        let plan = o.plan_answer(&query(Some(4)));
        assert_eq!(plan.dest(), "127.0.0.7:40000".parse().unwrap());
        let files: Vec<HitFile> = (0..10).map(|i| HitFile::named(format!("f{i}"))).collect();
        let hits = plan.hits(&files);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].files.len(), 3);
        assert_eq!(hits[0].ports, Ports::rutella(5, 6));
        let empty = plan.encode(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
        assert_eq!(
            empty,
            vec![br#"{"Command": 4, "Contents": [], "IP": "127.0.0.1", "Id": 4, "TcpPort": 6, "UdpPort": 5}"#.to_vec()]
        );
    }
}
