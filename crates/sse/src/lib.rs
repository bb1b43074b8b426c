//! Reads a Server-Sent Events stream as it arrives, in chunks cut anywhere (inside a line, inside a
//! multi-byte character, between `\r` and `\n`). Bytes are kept until an event is complete, and only
//! then decoded, so a character split across two chunks arrives whole. Follows the WHATWG event
//! stream rules that edgefleet's server uses: `event:`, `data:` (several joined by `\n`), `id:`,
//! comments (`:`), blank line ends an event; `\n`, `\r\n` and `\r` end lines.

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:`, or `message` when absent.
    pub name: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// The last `id:` seen on the stream so far (what `Last-Event-ID` should carry on reconnect).
    pub id: Option<String>,
}

/// Feed it chunks; it answers the events they completed.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    /// After a `\r`, a following `\n` belongs to the same line end.
    after_cr: bool,
    name: Option<String>,
    data: Option<String>,
    last_id: Option<String>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// The last event id seen, for `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    pub fn feed(&mut self, mut chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        // A `\r` that ended the last chunk pairs with a `\n` that starts the next non-empty one.
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        // Whole lines are handled straight from the chunk; only a line cut by the chunk's end is
        // copied, to be completed by the next chunk.
        while let Some(end) = chunk.iter().position(|byte| matches!(byte, b'\n' | b'\r')) {
            let event = if self.pending.is_empty() {
                self.line(&chunk[..end])
            } else {
                self.pending.extend_from_slice(&chunk[..end]);
                let line = std::mem::take(&mut self.pending);
                self.line(&line)
            };
            events.extend(event);
            let crlf = chunk[end] == b'\r' && chunk.get(end + 1) == Some(&b'\n');
            self.after_cr = chunk[end] == b'\r' && end + 1 == chunk.len();
            chunk = &chunk[end + if crlf { 2 } else { 1 }..];
        }
        self.pending.extend_from_slice(chunk);
        events
    }

    /// Handles one complete line; a blank line dispatches the event gathered so far.
    fn line(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take()?;
            let name = self.name.take().unwrap_or_else(|| "message".to_owned());
            return Some(Event { name, data, id: self.last_id.clone() });
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with(':') {
            return None;
        }
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "id: 7\nevent: target\ndata: {\"name\":\"网关-1\",\"reason\":\"edge said 1000 \\\"流不存在\\\"\"}\n\n: keep-alive\n\nevent: counts\r\ndata: {\"total\":2}\r\ndata: second line\r\n\r\nid: 9\revent: final\rdata: ✓\r\r";

    fn expected() -> Vec<Event> {
        vec![
            Event {
                name: "target".into(),
                data: "{\"name\":\"网关-1\",\"reason\":\"edge said 1000 \\\"流不存在\\\"\"}".into(),
                id: Some("7".into()),
            },
            Event { name: "counts".into(), data: "{\"total\":2}\nsecond line".into(), id: Some("7".into()) },
            Event { name: "final".into(), data: "✓".into(), id: Some("9".into()) },
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(Parser::new().feed(STREAM.as_bytes()), expected());
    }

    /// Cut at every byte, including inside multi-byte characters and between `\r` and `\n`, with an
    /// empty chunk in the cut.
    #[test]
    fn any_split_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let mut parser = Parser::new();
            let mut events = parser.feed(&bytes[..cut]);
            // A body may also yield an empty chunk; it must not forget a `\r` just read.
            events.extend(parser.feed(&[]));
            events.extend(parser.feed(&bytes[cut..]));
            assert_eq!(events, expected(), "cut at byte {cut}");
        }
        let mut parser = Parser::new();
        let events: Vec<Event> = bytes.iter().flat_map(|b| parser.feed(std::slice::from_ref(b))).collect();
        assert_eq!(events, expected(), "one byte at a time");
        assert_eq!(parser.last_event_id(), Some("9"));
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(Parser::new().feed(b"event: nothing\n\n"), Vec::new());
    }
}
