//! Server-sent events: an incremental parser for upstream streams (bytes may
//! split anywhere, even inside a UTF-8 character or a CRLF), and the encoder
//! for the client's stream.

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Feeds on byte chunks, yields complete events. A line or an event larger
/// than the parser's limit stops it: an upstream that trickles bytes with no
/// newline cannot grow a buffer without bound.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, incomplete line.
    line: Vec<u8>,
    /// The last byte seen was a CR (a following LF belongs to it).
    after_cr: bool,
    event: Option<String>,
    data: String,
    /// The current event has a `data` line already (later ones join with `\n`).
    has_data: bool,
    has_field: bool,
    limit: usize,
    overflowed: bool,
}

/// A line or event went over the parser's limit; the parser reads no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// The limit of a parser made with [`SseParser::new`].
pub const DEFAULT_LIMIT: usize = 1 << 20;

impl Default for SseParser {
    fn default() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser that refuses lines and events longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
            has_field: false,
            limit: limit.max(64),
            overflowed: false,
        }
    }

    /// Parses `bytes` and appends every event they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), Overflow> {
        if self.overflowed {
            return Err(Overflow);
        }
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes.first() == Some(&b'\n') {
                    bytes = bytes.get(1..).unwrap_or_default();
                    continue;
                }
            }
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    let (head, rest) = bytes.split_at(i);
                    self.line.extend_from_slice(head);
                    self.after_cr = rest.first() == Some(&b'\r');
                    bytes = rest.get(1..).unwrap_or_default();
                    self.end_line(out);
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
            if self.line.len() > self.limit || self.data.len() > self.limit {
                self.overflowed = true;
                self.line = Vec::new();
                self.data = String::new();
                return Err(Overflow);
            }
        }
        Ok(())
    }

    /// The stream ended: an event not followed by a blank line still counts
    /// (some providers omit the final blank line).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if self.overflowed {
            return;
        }
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line.first() == Some(&b':') {
            self.line = line;
            self.line.clear();
            return; // a comment (keep-alive)
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = text.get(i + 1..).unwrap_or_default();
                (text.get(..i).unwrap_or_default(), v.strip_prefix(' ').unwrap_or(v))
            }
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => {
                self.event = Some(value.to_owned());
                self.has_field = true;
            }
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                self.has_field = true;
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
        drop(text);
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if !self.has_field {
            return;
        }
        let data = std::mem::take(&mut self.data);
        let event = self.event.take();
        self.has_field = false;
        self.has_data = false;
        out.push(SseEvent { event, data });
    }
}

/// `data: <payload>` and the blank line that ends the event.
pub fn data_event(payload: &str) -> String {
    let mut s = String::with_capacity(payload.len() + 8);
    s.push_str("data: ");
    s.push_str(payload);
    s.push_str("\n\n");
    s
}

pub const DONE: &str = "data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn parses_named_and_unnamed_events() {
        let ev = parse_all(&[b"event: ping\ndata: {\"type\":\"ping\"}\n\ndata: {\"a\":1}\n\n"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event.as_deref(), Some("ping"));
        assert_eq!(ev[0].data, "{\"type\":\"ping\"}");
        assert_eq!(ev[1].event, None);
    }

    #[test]
    fn events_split_at_every_byte_parse_the_same() {
        let text = "event: a\r\ndata: one\r\ndata: two\r\n\r\n: comment\n\ndata:x\n\n";
        let whole = parse_all(&[text.as_bytes()]);
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].data, "one\ntwo");
        assert_eq!(whole[1].data, "x");
    }

    #[test]
    fn a_multibyte_character_split_across_chunks_survives() {
        let text = "data: {\"t\":\"héllo ✓\"}\n\n".as_bytes();
        let (a, b) = text.split_at(15);
        let ev = parse_all(&[a, b]);
        assert_eq!(ev[0].data, "{\"t\":\"héllo ✓\"}");
    }

    #[test]
    fn a_last_event_without_a_blank_line_is_kept() {
        let ev = parse_all(&[b"event: message_stop\ndata: {\"type\":\"message_stop\"}"]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event.as_deref(), Some("message_stop"));
    }

    #[test]
    fn parses_every_recorded_stream_fixture() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        for (file, min_events) in [
            ("openai/chat_stream_text_usage.sse", 5),
            ("openai/chat_stream_tool_calls.sse", 5),
            ("anthropic/stream_text.sse", 6),
            ("anthropic/stream_sdk_tool_use.sse", 6),
            ("cohere/chat_stream_text.sse", 5),
        ] {
            let text = std::fs::read(format!("{dir}/{file}")).unwrap();
            let ev = parse_all(&[&text]);
            assert!(ev.len() >= min_events, "{file}: {}", ev.len());
            for e in &ev {
                assert!(
                    e.data == "[DONE]" || serde_json::from_str::<serde_json::Value>(&e.data).is_ok(),
                    "{file}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn a_line_without_end_stops_the_parser_at_its_limit() {
        let mut p = SseParser::with_limit(1024);
        let mut out = Vec::new();
        let trickle = [b'a'; 100];
        let mut fed = Ok(());
        let mut total = 0;
        p.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"", &mut out).unwrap();
        while fed.is_ok() && total < 1_000_000 {
            fed = p.feed(&trickle, &mut out);
            total += trickle.len();
        }
        assert_eq!(fed, Err(Overflow));
        assert!(total <= 1100, "stopped after {total} bytes");
        assert!(out.is_empty());
        assert_eq!(p.feed(b"\n\n", &mut out), Err(Overflow), "it stays stopped");
        // An event of many short data lines is bounded too.
        let mut p = SseParser::with_limit(1024);
        let mut fed = Ok(());
        for _ in 0..1000 {
            fed = fed.and(p.feed(b"data: xxxxxxxxxxxxxxxx\n", &mut out));
        }
        assert_eq!(fed, Err(Overflow));
    }

    #[test]
    fn events_at_the_limit_pass() {
        let mut p = SseParser::with_limit(1024);
        let mut out = Vec::new();
        let data = "x".repeat(1000);
        for _ in 0..50 {
            p.feed(format!("data: {data}\n\n").as_bytes(), &mut out).unwrap();
        }
        assert_eq!(out.len(), 50);
    }

    #[test]
    fn encodes_data_events() {
        assert_eq!(data_event("{}"), "data: {}\n\n");
    }
}
