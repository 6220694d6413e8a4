//! Object data between the core's streams and the SDK's bodies, in both directions.
//! Nothing here holds more than one chunk of an object.

use super::S3;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, SdkBody};
use bytes::Bytes;
use md5::{Digest, Md5};
use s3proxy_core::{BackendErrorKind, Body, ByteStream, Error, Result};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Where an upload body's own failure is recorded, so the caller reports it instead of
/// the transport error it causes.
pub(super) type BodyFailure = Arc<Mutex<Option<Error>>>;

/// A request body for the SDK from a core [`Body`]: exact length, optional Content-MD5.
///
/// The chunk that completes the declared length is held back until the source stream has
/// ended and the digest is checked, so a body that runs long or does not match its
/// Content-MD5 aborts the request before the server has all the bytes, and the server
/// stores nothing.
pub(super) struct UploadBody {
    // A Mutex only to make the body Sync, as the SDK requires; it is never contended
    // (polling takes `&mut self`).
    stream: Mutex<ByteStream>,
    remaining: u64,
    held: Option<Bytes>,
    hasher: Md5,
    content_md5: Option<[u8; 16]>,
    failure: BodyFailure,
    finished: bool,
}

impl UploadBody {
    pub(super) fn new(body: Body, content_md5: Option<[u8; 16]>) -> (Self, BodyFailure) {
        let failure = BodyFailure::default();
        (
            UploadBody {
                stream: Mutex::new(body.stream),
                remaining: body.length,
                held: None,
                hasher: Md5::new(),
                content_md5,
                failure: failure.clone(),
                finished: false,
            },
            failure,
        )
    }

    fn fail(&mut self, err: Error) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let msg = err.to_string();
        *self.failure.lock().expect("body failure lock") = Some(err);
        self.finished = true;
        Poll::Ready(Some(Err(msg.into())))
    }
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            let stream = this.stream.get_mut().expect("upload stream lock");
            match stream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    if chunk.len() as u64 > this.remaining {
                        return this.fail(Error::InvalidRequest(
                            "the body is longer than its declared Content-Length".into(),
                        ));
                    }
                    this.remaining -= chunk.len() as u64;
                    // Hashing costs more CPU than the rest of the proxy's data path: only
                    // when there is a Content-MD5 to check.
                    if this.content_md5.is_some() {
                        this.hasher.update(&chunk);
                    }
                    if this.remaining > 0 {
                        return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
                    }
                    // The last bytes: hold them until the stream proves it has ended.
                    this.held = Some(chunk);
                }
                Poll::Ready(None) => {
                    if this.remaining > 0 {
                        return this.fail(Error::IncompleteBody);
                    }
                    if let Some(want) = this.content_md5 {
                        let got: [u8; 16] = this.hasher.clone().finalize().into();
                        if got != want {
                            return this.fail(Error::BadDigest);
                        }
                    }
                    this.finished = true;
                    return Poll::Ready(this.held.take().map(|c| Ok(http_body::Frame::data(c))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let left = self.remaining + self.held.as_ref().map_or(0, |h| h.len() as u64);
        http_body::SizeHint::with_exact(if self.finished { 0 } else { left })
    }
}

/// The SDK's body for `body`, its length, and where its own failure will be recorded.
pub(super) fn sdk_body(
    body: Body,
    content_md5: Option<[u8; 16]>,
) -> (SdkByteStream, i64, BodyFailure) {
    let length = body.length as i64;
    let (upload, failure) = UploadBody::new(body, content_md5);
    (
        SdkByteStream::new(SdkBody::from_body_1_x(upload)),
        length,
        failure,
    )
}

impl S3 {
    /// Run an upload with `body`; when the upload fails because the body itself failed
    /// (short, long, bad digest, stream error), report that rather than the transport's
    /// view of it.
    pub(super) async fn with_body<T, F>(&self, failure: &BodyFailure, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let result = fut.await;
        match failure.lock().expect("body failure lock").take() {
            Some(body_err) => Err(body_err),
            None => result,
        }
    }
}

/// The SDK's response body as a core [`ByteStream`]. A wait of more than `idle` for the
/// next bytes fails the stream (a backend that stalls mid-body, as the lean client's
/// bodies do): the SDK's own timeouts end with the response's headers.
pub(super) fn download_stream(
    name: String,
    body: SdkByteStream,
    idle: Option<std::time::Duration>,
) -> ByteStream {
    Box::pin(futures::stream::unfold(Some(body), move |state| {
        let name = name.clone();
        async move {
            let mut body = state?;
            let next = match idle {
                None => body.next().await,
                Some(idle) => match tokio::time::timeout(idle, body.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Some((
                            Err(Error::backend(
                                &name,
                                "reading object data",
                                BackendErrorKind::Unavailable,
                                format!("no data for {idle:?} (stalled)"),
                            )),
                            None,
                        ));
                    }
                },
            };
            match next {
                None => None,
                Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                Some(Err(e)) => Some((
                    Err(Error::backend(
                        &name,
                        "reading object data",
                        BackendErrorKind::Unavailable,
                        DisplayErrorContext(&e).to_string(),
                    )
                    .with_source(e)),
                    None,
                )),
            }
        }
    }))
}
