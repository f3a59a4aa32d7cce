//! Server-Sent Events cut out of a byte stream: a pure decoder, fed the
//! bytes as they come, every line and event bounded. It uses nothing but
//! std, so that the fuzz target `remote_sse` includes this file as it is.

/// The longest line kept; a longer one is an error (the daemon's events are
/// one JSON object of at most a few kilobytes each).
pub(crate) const MAX_LINE: usize = 1 << 20;
/// The most data one event gathers over its lines.
pub(crate) const MAX_DATA: usize = 4 << 20;

/// One event: its type (`message` when none was named) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) event: String,
    pub(crate) data: String,
}

/// Why a stream cannot be read as events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseError {
    LineTooLong,
    EventTooLong,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::LineTooLong => {
                write!(f, "an event stream line is longer than {MAX_LINE} bytes")
            }
            SseError::EventTooLong => write!(f, "an event is longer than {MAX_DATA} bytes"),
        }
    }
}

/// The decoder's state between two pieces of the stream.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    line: Vec<u8>,
    /// The last byte fed was a CR (a LF right after it ends no new line).
    after_cr: bool,
    event: String,
    data: String,
    /// Some `data` line was seen for the event being gathered.
    has_data: bool,
}

impl Decoder {
    /// Feeds the next bytes; returns the events they complete, in order.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(e) = self.line_done(&line)? {
                        out.push(e);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(SseError::LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        if line.is_empty() {
            // A blank line dispatches the event gathered, if it has data.
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            let event = if event.is_empty() {
                "message".to_string()
            } else {
                event
            };
            return Ok(Some(Event { event, data }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                let more = value.len() + usize::from(self.has_data);
                if self.data.len() + more > MAX_DATA {
                    return Err(SseError::EventTooLong);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id`, `retry` and unknown fields mean nothing here.
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> Event {
        Event {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_whole_and_in_pieces() {
        let stream = b": hello\n\nevent: result\ndata: {\"a\":1}\n\nevent:done\r\ndata:x\r\ndata: y\r\n\r\ndata: plain\r\r";
        let mut d = Decoder::default();
        let whole = d.push(stream).unwrap();
        let want = vec![
            ev("result", "{\"a\":1}"),
            ev("done", "x\ny"),
            ev("message", "plain"),
        ];
        assert_eq!(whole, want);
        // Byte by byte, the same events.
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in stream {
            got.extend(d.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_an_unfinished_one_waits() {
        let mut d = Decoder::default();
        assert!(d
            .push(b"event: x\n\nevent: y\ndata: 1\n")
            .unwrap()
            .is_empty());
        assert_eq!(d.push(b"\n").unwrap(), vec![ev("y", "1")]);
    }

    #[test]
    fn lines_and_events_are_bounded() {
        let mut d = Decoder::default();
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(d.push(&long), Err(SseError::LineTooLong));
        let mut d = Decoder::default();
        let line = format!("data: {}\n", "b".repeat(MAX_LINE - 10));
        let mut r = Ok(Vec::new());
        for _ in 0..(MAX_DATA / MAX_LINE + 2) {
            r = d.push(line.as_bytes());
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(SseError::EventTooLong));
    }
}
