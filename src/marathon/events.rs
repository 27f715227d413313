//! One `/v2/events` connection as a `Stream` of decoded events, with stall detection.
//!
//! Data flow position: `client::Client::events` wraps the response body in an
//! [`EventStream`]; `watch` consumes it. The bytes go through `sse::SseDecoder`; the
//! wait for each chunk is bounded by the stall timeout, so a silent connection (no
//! bytes at all, keep-alives included) ends the stream with `Error::Stalled`.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};

use super::client::{Error, Result};
use super::sse::{SseDecoder, SseEvent};

/// Decoded Marathon events from one `/v2/events` connection. Yields `Ok` events and
/// ends after the first `Err` (stall, server close, read or decode error).
pub struct EventStream {
    /// The decoding stream.
    inner: BoxStream<'static, Result<SseEvent>>,
    /// The URL it was opened on.
    url: String,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// Decodes a byte stream; `stall` bounds the wait for each chunk. Public so tests
    /// (and other transports) can drive it with any byte stream.
    pub fn decode<S>(bytes: S, stall: Duration, url: String) -> Self
    where
        S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    {
        struct State<S> {
            bytes: Pin<Box<S>>,
            decoder: SseDecoder,
            stall: Duration,
            url: String,
        }
        let state = State {
            bytes: Box::pin(bytes),
            decoder: SseDecoder::new(),
            stall,
            url: url.clone(),
        };
        let inner = futures::stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            loop {
                match st.decoder.next_event() {
                    Ok(Some(event)) => return Some((Ok(event), Some(st))),
                    Ok(None) => {}
                    Err(source) => {
                        let url = st.url;
                        return Some((Err(Error::Decode { url, source }), None));
                    }
                }
                let error = match tokio::time::timeout(st.stall, st.bytes.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        st.decoder.push(&chunk);
                        continue;
                    }
                    Err(_) => Error::Stalled {
                        url: st.url,
                        after: st.stall,
                    },
                    Ok(Some(Err(source))) => Error::StreamRead {
                        url: st.url,
                        source: source.without_url(),
                    },
                    Ok(None) => Error::StreamEnded { url: st.url },
                };
                return Some((Err(error), None));
            }
        });
        Self {
            inner: inner.boxed(),
            url,
        }
    }

    /// The URL this stream was opened on.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Stream for EventStream {
    type Item = Result<SseEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// An event stream fed through a channel, so tests control each chunk's timing.
    fn fed(stall: Duration) -> (mpsc::UnboundedSender<Bytes>, EventStream) {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let bytes = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok(chunk), rx))
        });
        (
            tx,
            EventStream::decode(bytes, stall, "http://m/v2/events".into()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn events_split_across_chunks_are_decoded() {
        let (tx, mut events) = fed(Duration::from_secs(10));
        tx.send(Bytes::from_static(b"event: a\ndata: {\"eventType\":"))
            .unwrap();
        tx.send(Bytes::from_static(b"\"a\"}\n\n:ka\n\ndata: 2\n\n"))
            .unwrap();
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(first.marathon_event_type().as_deref(), Some("a"));
        assert_eq!(events.next().await.unwrap().unwrap().data, "2");
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alives_prevent_a_stall_and_silence_causes_one() {
        let (tx, mut events) = fed(Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(9)).await;
                tx.send(Bytes::from_static(b":\n")).unwrap();
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let err = events.next().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Stalled { .. }), "{err:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(37));
        assert!(events.next().await.is_none(), "ends after the error");
    }

    #[tokio::test(start_paused = true)]
    async fn server_close_ends_with_stream_ended() {
        let (tx, mut events) = fed(Duration::from_secs(10));
        tx.send(Bytes::from_static(b"data: x\n\ndata: incomplete"))
            .unwrap();
        drop(tx);
        assert_eq!(events.next().await.unwrap().unwrap().data, "x");
        let err = events.next().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::StreamEnded { .. }), "{err:?}");
        assert!(events.next().await.is_none());
    }
}
