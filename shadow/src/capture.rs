//! Capturing bodies without delaying them: [`TeeBody`] passes every frame through untouched
//! and keeps a reference-counted copy of the data (up to a limit) for the mirror; a
//! [`CapturedBody`] is what it hands over when the body ends.
//!
//! Data frames are `Bytes`, so keeping one is a reference-count increment, not a copy; the
//! chunks are joined on the shadow thread, never on the proxy's.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use hyper::body::{Body, Frame, SizeHint};

pub use ficus_core::Side;

/// A captured body: the data when it fit within the limit, or only the fact that it did not.
#[derive(Debug, Clone, Default)]
pub struct CapturedBody {
    chunks: Vec<Bytes>,
    len: usize,
    truncated: bool,
}

impl CapturedBody {
    /// A body known to be larger than `max_body_bytes` (for example from its
    /// `Content-Length`), so nothing of it was kept. A job carrying one is counted `skipped`.
    pub fn too_large() -> CapturedBody {
        CapturedBody {
            chunks: Vec::new(),
            len: 0,
            truncated: true,
        }
    }

    /// Appends `chunk` unless that would pass `limit`, in which case everything kept is
    /// released and the body is marked truncated.
    pub fn push(&mut self, chunk: &Bytes, limit: usize) {
        if self.truncated || chunk.is_empty() {
            return;
        }
        if self.len + chunk.len() > limit {
            *self = CapturedBody::too_large();
            return;
        }
        self.len += chunk.len();
        self.chunks.push(chunk.clone());
    }

    /// Whether the body was larger than the limit (then nothing of it is kept).
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept bytes as one buffer (copies only when there is more than one chunk).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len);
                for c in many {
                    out.extend_from_slice(c);
                }
                out.freeze()
            }
        }
    }
}

impl From<Bytes> for CapturedBody {
    fn from(b: Bytes) -> CapturedBody {
        CapturedBody {
            len: b.len(),
            chunks: if b.is_empty() { Vec::new() } else { vec![b] },
            truncated: false,
        }
    }
}

/// A response as one side answered it, as far as shadow mode needs it.
#[derive(Debug, Clone)]
pub struct CapturedResponse {
    /// The status code.
    pub status: StatusCode,
    /// The headers as the backend sent them (before the proxy adds its own).
    pub headers: HeaderMap,
    /// The body, up to `max_body_bytes`.
    pub body: CapturedBody,
}

/// A body wrapper that forwards every frame unchanged and, once the body has been read to
/// its end, calls `on_end` with a copy of the data (at most `limit` bytes; beyond that the
/// capture is marked truncated and holds nothing).
///
/// `on_end` runs on the thread polling the body, at most once; it is not called when the body
/// fails or is dropped before its end (an aborted exchange is not mirrored). A body dropped
/// unpolled while already at its end (an empty body hyper never polls) still reports.
pub struct TeeBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(CapturedBody) + Unpin,
{
    inner: B,
    captured: CapturedBody,
    limit: usize,
    on_end: Option<F>,
}

impl<B, F> TeeBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(CapturedBody) + Unpin,
{
    /// Wraps `inner`; `limit` is normally [`Shadow::max_body_bytes`](crate::Shadow::max_body_bytes).
    pub fn new(inner: B, limit: usize, on_end: F) -> TeeBody<B, F> {
        TeeBody {
            inner,
            captured: CapturedBody::default(),
            limit,
            on_end: Some(on_end),
        }
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            f(std::mem::take(&mut self.captured));
        }
    }
}

impl<B, F> Body for TeeBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(CapturedBody) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.on_end.is_some() {
                    if let Some(data) = frame.data_ref() {
                        this.captured.push(data, this.limit);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.on_end = None;
                this.captured = CapturedBody::default();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F> Drop for TeeBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(CapturedBody) + Unpin,
{
    fn drop(&mut self) {
        if self.on_end.is_some() && self.inner.is_end_stream() {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::sync::{Arc, Mutex};

    type Slot = Arc<Mutex<Option<CapturedBody>>>;

    fn slot() -> (Slot, impl FnOnce(CapturedBody) + Unpin) {
        let s: Slot = Arc::default();
        let s2 = s.clone();
        (s, move |c| *s2.lock().unwrap() = Some(c))
    }

    #[tokio::test]
    async fn passes_frames_through_and_captures() {
        let chunks = Chunks([Bytes::from("hello "), Bytes::from("world")].into());
        let (s, f) = slot();
        let body = TeeBody::new(chunks, 100, f);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out, "hello world");
        let c = s.lock().unwrap().take().unwrap();
        assert_eq!(c.to_bytes(), "hello world");
        assert!(!c.is_truncated());
    }

    #[tokio::test]
    async fn past_the_limit_is_truncated_but_still_forwarded() {
        let (s, f) = slot();
        let body = TeeBody::new(Full::new(Bytes::from(vec![b'x'; 50])), 10, f);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 50);
        let c = s.lock().unwrap().take().unwrap();
        assert!(c.is_truncated() && c.is_empty());
    }

    #[test]
    fn empty_body_dropped_unpolled_reports_and_unfinished_does_not() {
        let (s, f) = slot();
        drop(TeeBody::new(http_body_util::Empty::<Bytes>::new(), 10, f));
        assert!(s.lock().unwrap().is_some());
        let (s, f) = slot();
        drop(TeeBody::new(Full::new(Bytes::from("x")), 10, f));
        assert!(s.lock().unwrap().is_none());
    }

    /// A body yielding the given chunks one frame at a time.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }
}
