//! Structure-aware inputs shared by the fuzz targets: UDP datagrams built
//! from every field of the protocol (classic, rutella and scalable), with
//! well-typed values most of the time and anything else sometimes, so that
//! the fuzzer reaches the code behind each field instead of stopping at the
//! JSON parser.

use arbitrary::{Arbitrary, Result, Unstructured};
use serde_json::{Map, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Every field name of the UDP messages (docs/PROTOCOL.md), after the two
/// every message needs (`Command`, `IP`).
pub const FIELDS: &[&str] = &[
    "TTL",
    "Contents",
    "UdpPort",
    "TcpPort",
    "Id",
    "Sizes",
    "Hashes",
    "More",
    "Scalable",
    "Join",
    "Walk",
    "Accept",
    "Degree",
    "Hosts",
    "Bloom",
    "BloomBits",
    "BloomHashes",
    "BloomOffset",
    "BloomGen",
    "Hops",
    "Step",
    "PushId",
    "Token",
    "Peer",
    "StartIn",
    "Role",
    "Circuit",
    "Relay",
    "Nonce",
    "Echo",
    "Confirm",
    "Seen",
    "Firewalled",
    "Proxies",
    "Transient",
    "Check",
    "Tcp",
];

/// Addresses the generated messages speak of (loopback, a public-looking
/// one, a private one and IPv6 ones); the first is the fuzzed overlay's own.
pub const IPS: [IpAddr; 9] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)),
    IpAddr::V4(Ipv4Addr::new(11, 0, 0, 5)),
    IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
];

/// UDP ports the generated messages speak of; the first is the fuzzed
/// overlay's own, the second the classic one.
pub const PORTS: [u16; 5] = [30000, 20000, 30001, 30002, 30003];

/// The fuzzed overlay's own UDP port.
pub const OWN_PORT: u16 = PORTS[0];

/// A source address among a small set, so that sequences of datagrams
/// come from the same peers again.
pub fn addr(u: &mut Unstructured<'_>) -> Result<SocketAddr> {
    Ok(SocketAddr::new(*u.choose(&IPS)?, *u.choose(&PORTS)?))
}

const NAMES: &[&str] = &[
    "a",
    "song.ogg",
    "music/a.ogg",
    "Cloud - Cloud models.png",
    "a\u{1b}]0;title\u{7}\r\nb",
    "\u{202e}gpj.exe",
    "",
    "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
];

const HEX: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

fn text(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(3, 4)? {
        Ok((*u.choose(NAMES)?).to_owned())
    } else {
        let s: String = u.arbitrary()?;
        Ok(s.chars().take(64).collect())
    }
}

fn small_int(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 => Value::from(u.int_in_range(-2i64..=8)?),
        1 => Value::from(i64::MAX),
        2 => Value::from(i64::MIN),
        3 => Value::from(u64::MAX),
        4 => Value::from(u.arbitrary::<i64>()?),
        _ => Value::from(u.int_in_range(0i64..=40)?),
    })
}

fn port(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => Value::from(0),
        1 => Value::from(65536),
        2 => Value::from(-1),
        _ => Value::from(*u.choose(&PORTS)?),
    })
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Any JSON value, nested at most `depth` levels.
pub fn any_value(u: &mut Unstructured<'_>, depth: u8) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=6)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => small_int(u)?,
        3 => Value::from(u.arbitrary::<f64>()?),
        4 => Value::from(text(u)?),
        5 if depth > 0 => {
            let n = u.int_in_range(0usize..=3)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(any_value(u, depth - 1)?);
            }
            Value::Array(v)
        }
        6 if depth > 0 => {
            let mut m = Map::new();
            for _ in 0..u.int_in_range(0usize..=2)? {
                m.insert(text(u)?, any_value(u, depth - 1)?);
            }
            Value::Object(m)
        }
        _ => Value::Null,
    })
}

/// A value that fits `field` (command `command`) most of the time.
fn field_value(u: &mut Unstructured<'_>, field: &str, command: i64) -> Result<Value> {
    if u.ratio(1, 8)? {
        return any_value(u, 2);
    }
    Ok(match field {
        "UdpPort" | "TcpPort" => port(u)?,
        "Id" => match u.int_in_range(0u8..=2)? {
            0 => Value::from(u.arbitrary::<u64>()?),
            _ => Value::from(u.int_in_range(0u64..=3)?),
        },
        "Contents" if command == 4 => {
            let n = u.int_in_range(0usize..=4)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(Value::from(text(u)?));
            }
            Value::Array(v)
        }
        "Contents" => Value::from(text(u)?),
        "Sizes" => {
            let n = u.int_in_range(0usize..=4)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(Value::from(u.arbitrary::<u64>()?));
            }
            Value::Array(v)
        }
        "Hashes" => {
            let n = u.int_in_range(0usize..=4)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(match u.int_in_range(0u8..=2)? {
                    0 => Value::Null,
                    1 => Value::from(HEX),
                    _ => Value::from(text(u)?),
                });
            }
            Value::Array(v)
        }
        "More" | "Join" | "Accept" | "Confirm" | "Firewalled" | "Transient" | "Tcp" => {
            Value::Bool(u.arbitrary()?)
        }
        "Nonce" | "Echo" => match u.int_in_range(0u8..=2)? {
            0 => small_int(u)?,
            _ => Value::from(u.arbitrary::<u64>()?),
        },
        "Check" => Value::from(*u.choose(&["udp", "tcp", ""])?),
        "Seen" => match u.int_in_range(0u8..=3)? {
            0 => Value::from(text(u)?),
            1 => Value::from("[::1]"),
            _ => Value::from(addr(u)?.to_string()),
        },
        "Proxies" => {
            let n = u.int_in_range(0usize..=5)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(if u.ratio(7, 8)? {
                    Value::from(addr(u)?.to_string())
                } else {
                    any_value(u, 0)?
                });
            }
            Value::Array(v)
        }
        "Step" => Value::from(*u.choose(&["Ask", "Go", "ask", ""])?),
        "Role" => Value::from(*u.choose(&["Client", "Server", "client"])?),
        "PushId" | "Token" => match u.int_in_range(0u8..=3)? {
            0 => Value::from(text(u)?),
            1 => Value::from(&HEX[..15]),
            _ => Value::from(format!("{:016x}", u.arbitrary::<u64>()?)),
        },
        "Circuit" => match u.int_in_range(0u8..=3)? {
            0 => Value::from(text(u)?),
            1 => Value::from(&HEX[..31]),
            _ => Value::from(&HEX[..32]),
        },
        "Peer" | "Relay" => match u.int_in_range(0u8..=3)? {
            0 => Value::from(text(u)?),
            1 => Value::from("127.0.0.2:0"),
            _ => Value::from(addr(u)?.to_string()),
        },
        "StartIn" => match u.int_in_range(0u8..=2)? {
            0 => small_int(u)?,
            _ => Value::from(u.int_in_range(0u64..=5000)?),
        },
        "Hosts" => {
            let n = u.int_in_range(0usize..=9)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(if u.ratio(7, 8)? {
                    Value::from(addr(u)?.to_string())
                } else {
                    Value::from(text(u)?)
                });
            }
            Value::Array(v)
        }
        "Bloom" => {
            let len = match u.int_in_range(0u8..=3)? {
                0 => 32,
                1 => 4096,
                2 => 128,
                _ => u.int_in_range(0usize..=300)?,
            };
            let mut data = vec![0u8; len];
            for b in data.iter_mut().take(64) {
                *b = u.arbitrary()?;
            }
            Value::from(b64(&data))
        }
        "BloomBits" => match u.int_in_range(0u8..=3)? {
            0 => small_int(u)?,
            _ => Value::from(1u64 << u.int_in_range(6u32..=21)?),
        },
        "BloomOffset" => match u.int_in_range(0u8..=3)? {
            0 => small_int(u)?,
            _ => Value::from(4096 * u.int_in_range(0u64..=3)?),
        },
        "Scalable" => match u.int_in_range(0u8..=3)? {
            0 => small_int(u)?,
            _ => Value::from(1),
        },
        _ => small_int(u)?,
    })
}

/// A UDP datagram built field by field.
#[derive(Debug, Clone)]
pub struct Datagram(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Datagram {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let command = match u.int_in_range(0u8..=14)? {
            0 => small_int(u)?.as_i64().unwrap_or(0),
            c @ 9..=13 => i64::from(c - 4),
            c => i64::from(1 + (c - 1) % 4),
        };
        let mut m = Map::new();
        m.insert("Command".into(), Value::from(command));
        if u.ratio(15, 16)? {
            let ip = if u.ratio(15, 16)? {
                Value::from(u.choose(&IPS)?.to_string())
            } else {
                any_value(u, 1)?
            };
            m.insert("IP".into(), ip);
        }
        // Fields that make a message of this command a typical one are
        // likelier; every field can appear in every message.
        for &f in FIELDS {
            let typical = matches!(
                (command, f),
                (1, "TTL" | "Join" | "Walk" | "Degree")
                    | (2, "Accept" | "Hosts" | "Degree" | "Bloom" | "BloomBits")
                    | (2, "BloomHashes" | "BloomOffset" | "BloomGen")
                    | (3, "Contents" | "Id" | "TTL" | "Hops" | "Degree")
                    | (4, "Contents" | "Id" | "Sizes" | "Hashes" | "More" | "Hops")
                    | (1, "Nonce" | "Transient")
                    | (
                        2,
                        "Seen" | "Echo" | "Confirm" | "Nonce" | "PushId" | "Proxies"
                    )
                    | (2, "Firewalled")
                    | (4, "PushId" | "Proxies" | "Firewalled")
                    | (5, "PushId" | "Token")
                    | (6, "Token")
                    | (7, "Token" | "Check" | "Tcp" | "Seen")
                    | (8, "Step" | "PushId" | "Token" | "Peer" | "StartIn" | "Role")
                    | (9, "PushId" | "Circuit" | "Relay")
                    | (_, "UdpPort" | "TcpPort" | "Scalable")
            );
            let take = if typical {
                u.ratio(3, 4)?
            } else {
                u.ratio(1, 16)?
            };
            if take {
                let v = field_value(u, f, command)?;
                m.insert(f.to_owned(), v);
            }
        }
        if u.ratio(1, 8)? {
            let k = text(u)?;
            let v = any_value(u, 2)?;
            m.insert(k, v);
        }
        let bytes = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
        Ok(Datagram(bytes))
    }
}

/// A file name for an answer: short, often with control characters.
pub fn name(u: &mut Unstructured<'_>) -> Result<String> {
    text(u)
}
