//! A pure, incremental Server-Sent-Events decoder (no I/O, no clock).
//!
//! Data flow position: between the bytes of `GET /v2/events` (read by `client`) and
//! the watch state machine (`watch`). Bytes go in with [`SseDecoder::push`] in whatever
//! chunks the network delivers; complete events come out of [`SseDecoder::next_event`],
//! which returns `Ok(None)` when it needs more bytes (the mini-redis `parse_frame` contract).
//!
//! It follows the WHATWG "event stream interpretation" rules: lines end in CRLF, LF or CR
//! (a CR at the end of one chunk and an LF at the start of the next are one line end),
//! lines starting with `:` are comments (keep-alives), a blank line dispatches the event,
//! an event with no `data:` line is dropped, `id:` persists across events, and a leading
//! UTF-8 BOM is skipped. Lines are decoded as UTF-8 only once complete, so a multi-byte
//! character split across chunks decodes correctly.

use std::time::Duration;

/// Decoding failures. Incomplete input is not an error: it is `Ok(None)`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A single line or event grew past the configured limit, which means the peer is
    /// not speaking SSE (or is hostile); the stream should be dropped.
    #[error("server-sent event exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `"message"` when the event had none.
    pub event: String,
    /// The `data:` lines joined with `\n` (without the final newline).
    pub data: String,
    /// The last event id seen on the stream so far (`id:` persists across events).
    pub id: Option<String>,
}

impl SseEvent {
    /// Marathon's event type: the `eventType` member of the JSON data if there is one,
    /// otherwise the SSE `event:` field unless it is the default `"message"`.
    pub fn marathon_event_type(&self) -> Option<String> {
        marathon_event_type(&self.data).or_else(|| {
            (self.event != "message" && !self.event.is_empty()).then(|| self.event.clone())
        })
    }
}

/// Extracts Marathon's `eventType` from an event's JSON data, e.g.
/// `{"eventType":"status_update_event",...}` -> `status_update_event`.
/// Returns `None` when the data is not a JSON object with a string `eventType`.
pub fn marathon_event_type(data: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "eventType")]
        event_type: String,
    }
    // A derived struct also reads from a JSON array (`["status_update_event"]`): only an
    // object is an envelope. These are the four whitespace bytes JSON allows.
    let text = data.trim_start_matches([' ', '\t', '\n', '\r']);
    if !text.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Envelope>(text)
        .ok()
        .map(|e| e.event_type)
}

/// Default upper bound on one line and on one event's data (Marathon's `api_post_event`
/// carries a whole app definition, so this is generous).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Incremental SSE decoder. Feed bytes with [`push`](Self::push), drain with
/// [`next_event`](Self::next_event).
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// Pushed bytes; those before `pos` are already consumed.
    input: Vec<u8>,
    /// Read position in `input`.
    pos: usize,
    /// The previous line ended in CR, so an LF that follows belongs to that line end.
    skip_lf: bool,
    /// Whether the start of the stream (and so a possible BOM) is still ahead.
    at_start: bool,
    /// The `event:` field of the event being assembled.
    event: String,
    /// The `data:` lines of the event being assembled, each followed by `\n`.
    data: String,
    /// Whether any `data:` line was seen for the event being assembled.
    has_data: bool,
    /// The last event id (persists across events, per the spec).
    last_id: Option<String>,
    /// The last valid `retry:` value.
    retry: Option<Duration>,
    /// Upper bound on a line and on an event's data.
    max_bytes: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the [`DEFAULT_MAX_EVENT_BYTES`] limit.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that fails with [`Error::TooLarge`] once a line or an event's data
    /// exceeds `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            input: Vec::new(),
            pos: 0,
            skip_lf: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
            max_bytes,
        }
    }

    /// Appends bytes read from the stream; they may end anywhere, even mid-character.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The reconnection time most recently announced by the server with `retry:`.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The next complete event, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when a line or an event exceeds the limit; the decoder should
    /// then be discarded with its stream.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, Error> {
        loop {
            let rest = &self.input[self.pos..];
            let Some(&first) = rest.first() else {
                self.input.clear();
                self.pos = 0;
                return Ok(None);
            };
            if std::mem::take(&mut self.skip_lf) && first == b'\n' {
                self.pos += 1;
                continue;
            }
            let end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
            let take = end.unwrap_or(rest.len());
            if self.line.len() + take > self.max_bytes {
                return Err(Error::TooLarge {
                    limit: self.max_bytes,
                });
            }
            self.line.extend_from_slice(&rest[..take]);
            let Some(end) = end else {
                self.input.clear();
                self.pos = 0;
                return Ok(None);
            };
            self.skip_lf = rest[end] == b'\r';
            self.pos += end + 1;
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process_line(&line)? {
                return Ok(Some(event));
            }
        }
    }

    /// Interprets one complete line; returns an event when the line is blank and an
    /// event with data was being assembled.
    fn process_line(&mut self, raw: &[u8]) -> Result<Option<SseEvent>, Error> {
        let mut raw = raw;
        if std::mem::take(&mut self.at_start) {
            raw = raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw);
        }
        if raw.is_empty() {
            return Ok(self.dispatch());
        }
        if raw[0] == b':' {
            return Ok(None); // comment, typically a keep-alive
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_bytes {
                    return Err(Error::TooLarge {
                        limit: self.max_bytes,
                    });
                }
                self.has_data = true;
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {} // unknown fields are ignored, per the spec
        }
        Ok(None)
    }

    /// Ends the event being assembled at a blank line.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        data.pop(); // the spec drops the final "\n"
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while let Some(event) = decoder.next_event().unwrap() {
                events.push(event);
            }
        }
        events
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    const STREAM: &str = "\u{feff}: hello\r\n\r\nevent: status_update_event\r\n\
        data: {\"eventType\":\"status_update_event\",\"appId\":\"/caf\u{e9}\"}\r\n\r\n\
        :keep-alive\n\n\n\
        id: 7\ndata:first\ndata: second\n\n\
        retry: 2500\revent:api_post_event\rdata: \u{1F680}\r\r\
        data\n\nid\nevent: no-data-is-dropped\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev(
                "status_update_event",
                "{\"eventType\":\"status_update_event\",\"appId\":\"/caf\u{e9}\"}",
                None,
            ),
            ev("message", "first\nsecond", Some("7")),
            ev("api_post_event", "\u{1F680}", Some("7")),
            ev("message", "", Some("7")),
        ]
    }

    #[test]
    fn decodes_a_whole_stream() {
        assert_eq!(decode_chunks(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn same_events_when_split_at_every_offset() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(decode_chunks(&[a, b]), expected(), "split at {cut}");
        }
    }

    #[test]
    fn same_events_when_fed_byte_by_byte() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(decode_chunks(&chunks), expected());
    }

    #[test]
    fn cr_then_lf_in_next_chunk_is_one_line_end() {
        let events = decode_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\n\n"]);
        assert_eq!(
            events,
            vec![ev("message", "a", None), ev("message", "b", None)]
        );
    }

    #[test]
    fn incomplete_event_waits_for_more_bytes() {
        let mut decoder = SseDecoder::new();
        decoder.push(b"event: x\ndata: y\n");
        assert_eq!(decoder.next_event(), Ok(None));
        decoder.push(b"\n");
        assert_eq!(decoder.next_event(), Ok(Some(ev("x", "y", None))));
        assert_eq!(decoder.next_event(), Ok(None));
    }

    #[test]
    fn retry_field_is_exposed_and_invalid_values_ignored() {
        let mut decoder = SseDecoder::new();
        decoder.push(b"retry: 1500\n\nretry: 1x\n\n");
        assert_eq!(decoder.next_event(), Ok(None));
        assert_eq!(decoder.retry(), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn field_without_colon_and_value_without_space() {
        let events = decode_chunks(&[b"data:no-space\ndata\ndata:  two\n\n"]);
        assert_eq!(events, vec![ev("message", "no-space\n\n two", None)]);
    }

    #[test]
    fn oversized_line_is_an_error() {
        let mut decoder = SseDecoder::with_limit(8);
        decoder.push(b"data: 0123456789\n\n");
        assert_eq!(decoder.next_event(), Err(Error::TooLarge { limit: 8 }));
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut decoder = SseDecoder::with_limit(10);
        decoder.push(b"data:12345\ndata:12345\n\n");
        assert_eq!(decoder.next_event(), Err(Error::TooLarge { limit: 10 }));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let events = decode_chunks(&[b"data: \xff\n\n"]);
        assert_eq!(events, vec![ev("message", "\u{fffd}", None)]);
    }

    #[test]
    fn marathon_event_type_from_json_or_event_field() {
        assert_eq!(
            marathon_event_type(r#"{"eventType":"health_status_changed_event","alive":true}"#),
            Some("health_status_changed_event".into())
        );
        assert_eq!(marathon_event_type("not json"), None);
        assert_eq!(marathon_event_type(r#"{"eventType":3}"#), None);
        assert_eq!(
            ev("event_stream_attached", "{}", None).marathon_event_type(),
            Some("event_stream_attached".into())
        );
        assert_eq!(ev("message", "{}", None).marathon_event_type(), None);
    }

    /// Found by the `event_type_of_any_json` property: a JSON array is not an envelope.
    #[test]
    fn a_json_array_has_no_event_type() {
        assert_eq!(marathon_event_type(r#"[""]"#), None);
        assert_eq!(marathon_event_type(r#" ["status_update_event", 1]"#), None);
        assert_eq!(
            ev("api_post_event", r#"["x"]"#, None).marathon_event_type(),
            Some("api_post_event".into())
        );
    }
}
