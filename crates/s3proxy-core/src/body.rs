//! Streaming bodies.

use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A stream of byte chunks, the body type of every [`crate::Backend`] call. No layer collects
/// a whole object: memory per request stays bounded by a few chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Wraps a [`ByteStream`], computes the MD5 of what passes through and enforces an exact
/// length: the stream yields [`Error::IncompleteBody`] if it ends short, and
/// [`Error::InvalidRequest`] if it runs long, so a consumer never commits a truncated or
/// overlong body as whole.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use futures::StreamExt;
/// use s3proxy_core::{Md5Stream, ByteStream};
/// let src: ByteStream = Box::pin(futures::stream::iter(vec![Ok(bytes::Bytes::from("abc"))]));
/// let mut s = Md5Stream::new(src, 3);
/// while let Some(chunk) = s.next().await { chunk.unwrap(); }
/// assert_eq!(hex::encode(s.digest()), "900150983cd24fb0d6963f7d28e17f72");
/// # });
/// ```
pub struct Md5Stream {
    inner: ByteStream,
    hasher: Md5,
    expected: u64,
    seen: u64,
    done: bool,
}

impl Md5Stream {
    /// Wrap `inner`, which must yield exactly `expected` bytes.
    pub fn new(inner: ByteStream, expected: u64) -> Self {
        Md5Stream {
            inner,
            hasher: Md5::new(),
            expected,
            seen: 0,
            done: false,
        }
    }

    /// The MD5 of all bytes seen so far (call after the stream ended).
    pub fn digest(&self) -> [u8; 16] {
        self.hasher.clone().finalize().into()
    }

    /// Bytes seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

impl Stream for Md5Stream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected {
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::InvalidRequest(
                        "the body is longer than its declared Content-Length".into(),
                    ))));
                }
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.seen != self.expected {
                    Poll::Ready(Some(Err(Error::IncompleteBody)))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Collect a stream into one buffer of at most `limit` bytes. For small bodies only (XML
/// requests, tests); object data is never collected.
pub async fn collect_body(mut stream: ByteStream, limit: usize) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::InvalidRequest(format!(
                "the request body exceeds the limit of {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A body from one in-memory buffer.
impl From<Bytes> for crate::Body {
    fn from(data: Bytes) -> Self {
        let length = data.len() as u64;
        crate::Body {
            stream: Box::pin(futures::stream::once(async move { Ok(data) })),
            length,
        }
    }
}
