//! The dial-back messages (`"Command"` 6 and 7) with which a node asks a
//! rutella peer to connect back to it, so that it learns whether others can
//! reach it. Pure functions over bytes, like the rest of the codec; the
//! decisions are in [`crate::reach`].
//!
//! ```text
//! {"Command": 6, "TcpPort": 10000, "Token": "00112233aabbccdd", "UdpPort": 20000}
//! {"Check": "udp", "Command": 7, "Token": "00112233aabbccdd"}
//! {"Command": 7, "Seen": "11.0.0.11:10000", "Tcp": true, "Token": "00112233aabbccdd"}
//! ```

use super::{take_port, write_py, ParseError};
use serde_json::{Map, Value};
use std::net::SocketAddr;

/// `"Command"` of a dial-back request.
pub const DIALBACK_REQUEST: u8 = 6;
/// `"Command"` of a dial-back result.
pub const DIALBACK_RESULT: u8 = 7;

/// One dial-back message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialBack {
    /// Command 6: "connect back to me at my address as you see it, on these
    /// ports". The ports are those the sender believes are its external
    /// ones.
    Request {
        /// `"Token"`: 16 lowercase hex digits, echoed in every result.
        token: u64,
        /// `"TcpPort"`: where the prober connects.
        tcp_port: u16,
        /// `"UdpPort"`: where the prober's datagram from a fresh socket goes.
        udp_port: u16,
    },
    /// Command 7 with `"Check": "udp"`: the datagram a prober sends from a
    /// fresh socket. Its arrival is the proof that the UDP port is open.
    UdpCheck {
        /// `"Token"` of the request.
        token: u64,
    },
    /// Command 7 with `"Tcp"`: the prober's report, from its overlay socket.
    Report {
        /// `"Token"` of the request.
        token: u64,
        /// `"Tcp"`: whether it connected and exchanged the rutella hello.
        tcp: bool,
        /// `"Seen"`: the `IP:port` it connected to (the requester's IP as
        /// the prober sees it, and the asked TCP port); optional.
        seen: Option<SocketAddr>,
    },
}

impl DialBack {
    /// The `"Token"` of any of the three.
    pub fn token(&self) -> u64 {
        match *self {
            DialBack::Request { token, .. }
            | DialBack::UdpCheck { token }
            | DialBack::Report { token, .. } => token,
        }
    }

    /// The `"Command"` number.
    pub fn command(&self) -> u8 {
        match self {
            DialBack::Request { .. } => DIALBACK_REQUEST,
            _ => DIALBACK_RESULT,
        }
    }

    /// Parses a Command 6 or 7 datagram. Pure.
    pub fn parse(bytes: &[u8]) -> Result<DialBack, ParseError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(ParseError::NotJson("not an object".into()));
        };
        let command = match obj.remove("Command") {
            Some(v) => v.as_i64().ok_or(ParseError::Invalid("Command"))?,
            None => return Err(ParseError::Missing("Command")),
        };
        let token = match obj.remove("Token") {
            Some(Value::String(s)) => parse_token(&s).ok_or(ParseError::Invalid("Token"))?,
            Some(_) => return Err(ParseError::Invalid("Token")),
            None => return Err(ParseError::Missing("Token")),
        };
        match command {
            6 => Ok(DialBack::Request {
                token,
                tcp_port: take_port(&mut obj, "TcpPort")?.ok_or(ParseError::Missing("TcpPort"))?,
                udp_port: take_port(&mut obj, "UdpPort")?.ok_or(ParseError::Missing("UdpPort"))?,
            }),
            7 => {
                if let Some(check) = obj.remove("Check") {
                    return match check.as_str() {
                        Some("udp") => Ok(DialBack::UdpCheck { token }),
                        _ => Err(ParseError::Invalid("Check")),
                    };
                }
                let tcp = match obj.remove("Tcp") {
                    Some(Value::Bool(b)) => b,
                    Some(_) => return Err(ParseError::Invalid("Tcp")),
                    None => return Err(ParseError::Missing("Tcp")),
                };
                let seen = match obj.remove("Seen") {
                    None => None,
                    Some(Value::String(s)) => {
                        let a: SocketAddr = s.parse().map_err(|_| ParseError::Invalid("Seen"))?;
                        Some(crate::addr::normalize(a))
                    }
                    Some(_) => return Err(ParseError::Invalid("Seen")),
                };
                Ok(DialBack::Report { token, tcp, seen })
            }
            other => Err(ParseError::UnknownCommand(other)),
        }
    }

    /// Encodes as the rest of the codec does (keys sorted, `", "` and `": "`).
    pub fn encode(&self) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("Command".into(), Value::from(self.command()));
        obj.insert("Token".into(), Value::from(token_hex(self.token())));
        match *self {
            DialBack::Request {
                tcp_port, udp_port, ..
            } => {
                obj.insert("TcpPort".into(), Value::from(tcp_port));
                obj.insert("UdpPort".into(), Value::from(udp_port));
            }
            DialBack::UdpCheck { .. } => {
                obj.insert("Check".into(), Value::from("udp"));
            }
            DialBack::Report { tcp, seen, .. } => {
                obj.insert("Tcp".into(), Value::Bool(tcp));
                if let Some(s) = seen {
                    obj.insert("Seen".into(), Value::from(s.to_string()));
                }
            }
        }
        // serde_json's map keeps its keys sorted.
        let mut out = Vec::with_capacity(96);
        write_py(&mut out, &Value::Object(obj));
        out
    }
}

/// A token as written on the wire: 16 lowercase hex digits.
pub fn token_hex(token: u64) -> String {
    format!("{token:016x}")
}

/// Parses exactly 16 hex digits.
pub fn parse_token(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_messages_round_trip_byte_for_byte() {
        let cases = [
            (
                DialBack::Request {
                    token: 0x0011_2233_aabb_ccdd,
                    tcp_port: 10000,
                    udp_port: 20000,
                },
                r#"{"Command": 6, "TcpPort": 10000, "Token": "00112233aabbccdd", "UdpPort": 20000}"#,
            ),
            (
                DialBack::UdpCheck { token: 1 },
                r#"{"Check": "udp", "Command": 7, "Token": "0000000000000001"}"#,
            ),
            (
                DialBack::Report {
                    token: u64::MAX,
                    tcp: true,
                    seen: Some("11.0.0.11:10000".parse().unwrap()),
                },
                r#"{"Command": 7, "Seen": "11.0.0.11:10000", "Tcp": true, "Token": "ffffffffffffffff"}"#,
            ),
            (
                DialBack::Report {
                    token: 7,
                    tcp: false,
                    seen: None,
                },
                r#"{"Command": 7, "Tcp": false, "Token": "0000000000000007"}"#,
            ),
        ];
        for (m, wire) in cases {
            assert_eq!(String::from_utf8(m.encode()).unwrap(), wire);
            assert_eq!(DialBack::parse(wire.as_bytes()), Ok(m));
        }
    }

    #[test]
    fn malformed_ones_are_refused() {
        for bad in [
            r#"{"Command": 6, "Token": "0011", "TcpPort": 1, "UdpPort": 1}"#,
            r#"{"Command": 6, "Token": "00112233aabbccdg", "TcpPort": 1, "UdpPort": 1}"#,
            r#"{"Command": 6, "Token": "00112233aabbccdd", "TcpPort": 0, "UdpPort": 1}"#,
            r#"{"Command": 6, "Token": "00112233aabbccdd", "UdpPort": 1}"#,
            r#"{"Command": 6, "Token": 5, "TcpPort": 1, "UdpPort": 1}"#,
            r#"{"Command": 7, "Token": "00112233aabbccdd"}"#,
            r#"{"Command": 7, "Token": "00112233aabbccdd", "Check": "tcp"}"#,
            r#"{"Command": 7, "Token": "00112233aabbccdd", "Tcp": 1}"#,
            r#"{"Command": 7, "Token": "00112233aabbccdd", "Tcp": true, "Seen": "x"}"#,
            r#"{"Command": 8, "Token": "00112233aabbccdd"}"#,
            r#"[6]"#,
            "",
        ] {
            assert!(DialBack::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
