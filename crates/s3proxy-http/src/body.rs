//! Bodies in both directions: the response body type and its constructors, the request
//! body as it arrives (counted, with an idle timeout), and small XML request bodies read
//! whole.

use crate::dispatch::S3Request;
use crate::request;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use s3proxy_core::{ByteStream, Error, Result};
use std::time::Duration;

/// The body type of every response.
pub type ResponseBody = UnsyncBoxBody<Bytes, Error>;

pub(crate) fn empty_body() -> ResponseBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn full_body(data: impl Into<Bytes>) -> ResponseBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn stream_body(stream: ByteStream) -> ResponseBody {
    StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync()
}

/// Request body size limit for XML documents (a CompleteMultipartUpload of 10,000 parts
/// with checksums fits).
pub const MAX_XML_BODY: usize = 2 << 20;

/// The request body as a stream of data chunks, each counted in `received`; a client
/// that pauses longer than `idle` gets RequestTimeout instead of holding the request open.
pub(crate) fn incoming_stream<B>(body: B, idle: Duration, received: metrics::Counter) -> ByteStream
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    Box::pin(futures::stream::try_unfold(
        (body, received),
        move |(mut body, received)| async move {
            loop {
                match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => return Err(Error::RequestTimeout),
                    Ok(None) => return Ok(None),
                    Ok(Some(Err(e))) => {
                        log::debug!("request body failed: {e}");
                        return Err(Error::IncompleteBody);
                    }
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            received.increment(data.len() as u64);
                            return Ok(Some((data, (body, received))));
                        }
                    }
                }
            }
        },
    ))
}

/// Read a small request body (an XML document) whole, up to [`MAX_XML_BODY`] bytes.
pub(crate) async fn read_xml_body(mut req: S3Request) -> Result<String> {
    let expected = request::content_md5(&req.headers)?;
    let declared = if req.chunked {
        "x-amz-decoded-content-length"
    } else {
        "content-length"
    };
    let declared =
        request::header(&req.headers, declared).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_XML_BODY as u64) {
        return Err(too_big(req.body, declared).await);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = req.body.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_XML_BODY {
            return Err(too_big(req.body, declared).await);
        }
        body.extend_from_slice(&chunk);
    }
    if let Some(want) = expected {
        use md5::Digest;
        if md5::Md5::digest(&body).as_slice() != want {
            return Err(Error::BadDigest);
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| Error::MalformedXml)
}

/// Bodies up to this size are read to their end before a too-big document is refused, so
/// the client, still sending, sees the error instead of a reset connection; bigger ones are
/// refused at once and the connection closed.
const MAX_DRAIN: u64 = 16 << 20;

/// MaxMessageLengthExceeded, after draining what remains of a body of moderate size.
async fn too_big(mut rest: ByteStream, declared: Option<u64>) -> Error {
    if declared.is_some_and(|n| n <= MAX_DRAIN) {
        let mut drained = 0u64;
        while let Some(Ok(chunk)) = rest.next().await {
            drained += chunk.len() as u64;
            if drained > MAX_DRAIN {
                break;
            }
        }
    }
    Error::MaxMessageLengthExceeded
}
