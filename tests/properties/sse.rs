//! The SSE decoder and Marathon's event classification, against byte streams of any shape.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use marathon_lb::marathon::client::Error as ClientError;
use marathon_lb::marathon::events::EventStream;
use marathon_lb::marathon::sse::{
    marathon_event_type, Error, SseDecoder, SseEvent, DEFAULT_MAX_EVENT_BYTES,
};
use proptest::prelude::*;
use serde_json::Value;

use crate::property;

/// What a decoder made of a whole stream: its events, the error that ended it (if any) and the
/// last `retry:` it accepted.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<SseEvent>,
    error: Option<Error>,
    retry: Option<Duration>,
}

/// Feeds `chunks` to a fresh decoder, draining events after each chunk as `EventStream` does.
fn decode(chunks: &[&[u8]], limit: usize) -> Outcome {
    let mut decoder = SseDecoder::with_limit(limit);
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => {
                    let retry = decoder.retry();
                    return Outcome {
                        events,
                        error: Some(error),
                        retry,
                    };
                }
            }
        }
    }
    Outcome {
        events,
        error: None,
        retry: decoder.retry(),
    }
}

/// `bytes` cut at `cuts` (offsets taken modulo the length, in any order, repeats allowed).
fn split<'b>(bytes: &'b [u8], cuts: &[usize]) -> Vec<&'b [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in at {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// An independent reading of the WHATWG event-stream rules over the whole input at once:
/// split into lines first, then interpret them in order.
fn reference(input: &[u8], limit: usize) -> Outcome {
    let mut lines: Vec<&[u8]> = Vec::new();
    let (mut i, mut start) = (0, 0);
    while i < input.len() {
        if input[i] == b'\r' || input[i] == b'\n' {
            lines.push(&input[start..i]);
            if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    let trailing = &input[start..];
    let mut state = Reference::default();
    for (n, line) in lines.iter().enumerate() {
        let line = if n == 0 {
            line.strip_prefix(b"\xef\xbb\xbf".as_slice())
                .unwrap_or(line)
        } else {
            line
        };
        // The decoder measures the line before it strips a BOM.
        let raw_len = lines[n].len();
        if raw_len > limit || state.line(line, limit).is_err() {
            return state.outcome(Some(Error::TooLarge { limit }));
        }
    }
    let error = (trailing.len() > limit).then_some(Error::TooLarge { limit });
    state.outcome(error)
}

/// The interpretation state of [`reference`].
#[derive(Default)]
struct Reference {
    events: Vec<SseEvent>,
    event: String,
    data: Option<String>,
    id: Option<String>,
    retry: Option<Duration>,
}

impl Reference {
    fn line(&mut self, line: &[u8], limit: usize) -> Result<(), ()> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if let Some(mut data) = self.data.take() {
                data.pop();
                let event = if event.is_empty() {
                    "message".into()
                } else {
                    event
                };
                let id = self.id.clone();
                self.events.push(SseEvent { event, data, id });
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(at) => {
                let value = &text[at + 1..];
                (&text[..at], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = value.into(),
            "data" => {
                let data = self.data.get_or_insert_with(String::new);
                if data.len() + value.len() + 1 > limit {
                    return Err(());
                }
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.into()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn outcome(self, error: Option<Error>) -> Outcome {
        Outcome {
            events: self.events,
            error,
            retry: self.retry,
        }
    }
}

/// Byte streams made of SSE's building blocks (field names, line ends in all three forms, a
/// BOM, comments, JSON, split UTF-8, NUL) and arbitrary bytes.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"retry: ".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\xef\xbb\xbf".to_vec()),
        Just(b"\xe2\x82".to_vec()),
        Just("\u{e9}\u{1F680}".as_bytes().to_vec()),
        Just(b"\0".to_vec()),
        Just(br#"{"eventType":"status_update_event"}"#.to_vec()),
        "[0-9]{1,22}".prop_map(String::into_bytes),
        "[a-z ]{1,8}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    proptest::collection::vec(token, 0..32).prop_map(|tokens| tokens.concat())
}

/// A limit small enough to be hit by the generated streams, or the real default.
fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..80, Just(DEFAULT_MAX_EVENT_BYTES)]
}

type Split = (Vec<u8>, usize, Vec<usize>, Vec<usize>);

fn split_stream() -> impl Strategy<Value = Split> {
    let cuts = || proptest::collection::vec(any::<usize>(), 0..12);
    (stream(), limit(), cuts(), cuts())
}

fn same_events_however_split((bytes, limit, cuts_a, cuts_b): Split) -> Result<(), TestCaseError> {
    let whole = decode(&[&bytes], limit);
    prop_assert_eq!(
        &whole,
        &reference(&bytes, limit),
        "whole stream vs reference"
    );
    prop_assert_eq!(&whole, &decode(&split(&bytes, &cuts_a), limit), "split a");
    prop_assert_eq!(&whole, &decode(&split(&bytes, &cuts_b), limit), "split b");
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    prop_assert_eq!(&whole, &decode(&bytewise, limit), "byte by byte");
    Ok(())
}

property!(same_events_however_split, split_stream());

fn arbitrary_bytes_never_panic((bytes, cuts): (Vec<u8>, Vec<usize>)) -> Result<(), TestCaseError> {
    let out = decode(&split(&bytes, &cuts), DEFAULT_MAX_EVENT_BYTES);
    prop_assert!(out.error.is_none(), "{:?}", out.error);
    for event in &out.events {
        let _ = event.marathon_event_type();
    }
    Ok(())
}

property!(
    arbitrary_bytes_never_panic,
    (
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::vec(any::<usize>(), 0..8)
    )
);

/// JSON values where `eventType` is a likely key, of any type.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,6}".prop_map(Value::String),
        Just(Value::String("status_update_event".into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![Just("eventType".to_owned()), ".{0,4}"];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event_type_of_any_json((value, event): (Value, String)) -> Result<(), TestCaseError> {
    let data = value.to_string();
    let expected = value
        .get("eventType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    prop_assert_eq!(marathon_event_type(&data), expected.clone());
    let sse = SseEvent {
        event: event.clone(),
        data,
        id: None,
    };
    let fallback = (event != "message" && !event.is_empty()).then_some(event);
    prop_assert_eq!(sse.marathon_event_type(), expected.or(fallback));
    Ok(())
}

property!(
    event_type_of_any_json,
    (json(), prop_oneof![Just("message".to_owned()), ".{0,6}"])
);

fn event_type_of_any_text(text: String) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_str::<Value>(&text).ok();
    let expected = parsed
        .as_ref()
        .and_then(|v| v.get("eventType"))
        .and_then(Value::as_str);
    // Duplicate keys: serde_json's Value keeps the last, the envelope refuses the object.
    if text.matches("eventType").count() <= 1 {
        let found = marathon_event_type(&text);
        prop_assert_eq!(found.as_deref(), expected);
    }
    Ok(())
}

property!(
    event_type_of_any_text,
    prop_oneof![
        ".{0,40}",
        r#"\{"eventType": ?("[a-z_]{0,12}"|[0-9]+|null|\[\]|\{\})(, ?"[a-z]{1,3}": ?[0-9])?\}"#,
        "[\\[\\]{}\":,a-zA-Z0-9 ]{0,40}",
    ]
);

/// Chunks fed through the real `EventStream`: the events of the decoder, then exactly one
/// error (a decode error or the end of the stream), then nothing.
fn event_stream_yields_decoder_events(
    (bytes, cuts): (Vec<u8>, Vec<usize>),
) -> Result<(), TestCaseError> {
    let expected = decode(&split(&bytes, &cuts), DEFAULT_MAX_EVENT_BYTES);
    let chunks: Vec<Result<Bytes, reqwest::Error>> = split(&bytes, &cuts)
        .into_iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let items = runtime.block_on(async {
        let stream = futures::stream::iter(chunks);
        EventStream::decode(stream, Duration::from_secs(5), "http://m/v2/events".into())
            .collect::<Vec<_>>()
            .await
    });
    let (last, events) = items.split_last().expect("at least the end of the stream");
    let events: Vec<SseEvent> = events
        .iter()
        .filter_map(|e| e.as_ref().ok().cloned())
        .collect();
    prop_assert_eq!(events, expected.events);
    prop_assert!(
        matches!(last, Err(ClientError::StreamEnded { .. })),
        "{:?}",
        last
    );
    Ok(())
}

property!(
    event_stream_yields_decoder_events,
    (stream(), proptest::collection::vec(any::<usize>(), 0..8))
);

/// A 20 MB line with no line end, in 64 KiB network chunks: refused as soon as it passes the
/// 16 MiB cap, having buffered at most the cap plus one chunk.
#[test]
fn a_20_mb_line_without_a_line_end_is_refused_at_the_cap() {
    const CHUNK: usize = 64 * 1024;
    let chunk = vec![b'x'; CHUNK];
    let mut decoder = SseDecoder::new();
    decoder.push(b"data: ");
    let mut pushed = 6;
    let error = loop {
        assert!(pushed <= 20 * 1024 * 1024, "20 MB taken without an error");
        decoder.push(&chunk);
        pushed += CHUNK;
        match decoder.next_event() {
            Ok(None) => {}
            Ok(Some(event)) => panic!("an event from an unterminated line: {}", event.event),
            Err(error) => break error,
        }
    };
    assert_eq!(
        error,
        Error::TooLarge {
            limit: DEFAULT_MAX_EVENT_BYTES
        }
    );
    assert!(pushed > DEFAULT_MAX_EVENT_BYTES && pushed <= DEFAULT_MAX_EVENT_BYTES + CHUNK);
    assert_eq!(decoder.next_event(), Err(error), "the decoder stays failed");
}

/// 20 MB of short `data:` lines in one event: refused at the cap on the event's data.
#[test]
fn a_20_mb_event_of_short_lines_is_refused_at_the_cap() {
    let line = format!("data: {}\n", "y".repeat(1000));
    let chunk = line.repeat(64);
    let mut decoder = SseDecoder::new();
    let mut pushed = 0;
    let error = loop {
        assert!(pushed <= 20 * 1024 * 1024, "20 MB taken without an error");
        decoder.push(chunk.as_bytes());
        pushed += chunk.len();
        match decoder.next_event() {
            Ok(None) => {}
            Ok(Some(_)) => panic!("an event without a blank line"),
            Err(error) => break error,
        }
    };
    assert!(matches!(error, Error::TooLarge { .. }));
    // The cap counts data bytes (1,001 a line), the stream also carries `data: ` (6).
    assert!(
        pushed > DEFAULT_MAX_EVENT_BYTES
            && pushed <= DEFAULT_MAX_EVENT_BYTES / 1001 * 1007 + chunk.len()
    );
}

/// Deeply nested JSON in an event does not overflow the stack.
#[test]
fn deeply_nested_event_data_does_not_overflow() {
    for depth in [200, 100_000, 1_000_000] {
        let data = format!(
            "{{\"eventType\":\"x\",\"a\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let found = marathon_event_type(&data);
        assert!(
            found.is_none() || found.as_deref() == Some("x"),
            "depth {depth}"
        );
        let unclosed = "[".repeat(depth);
        assert_eq!(marathon_event_type(&unclosed), None, "depth {depth}");
    }
}
