//! Uploads without a length (`Transfer-Encoding: chunked`, as `curl -T -` sends from a
//! pipe): the body is written to an unnamed temporary file as it arrives, so memory stays
//! at one chunk whatever the size, then handed to the backend with its now known length.
//! The body was already being verified (signed hash, checksums); a mismatch fails the
//! spill, before any backend sees a byte.

use crate::request::{data_length, header};
use futures::StreamExt;
use http::HeaderMap;
use s3proxy_core::{Body, ByteStream, Error, MAX_PUT_SIZE, Result};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Whether the request announced a body without a length.
fn chunked_transfer(headers: &HeaderMap) -> bool {
    !headers.contains_key("content-length")
        && header(headers, "transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
}

/// The request body with its length: declared, or found by spilling it to a temporary
/// file when it came chunked without one.
pub(crate) async fn sized_body(
    headers: &HeaderMap,
    aws_chunked: bool,
    stream: ByteStream,
) -> Result<Body> {
    match data_length(headers, aws_chunked) {
        Ok(length) => Ok(Body { stream, length }),
        Err(Error::MissingContentLength) if !aws_chunked && chunked_transfer(headers) => {
            spill(stream).await
        }
        Err(e) => Err(e),
    }
}

async fn spill(mut stream: ByteStream) -> Result<Body> {
    let io =
        |e: std::io::Error| Error::Internal(format!("spilling an upload of unknown length: {e}"));
    let file = tempfile::tempfile().map_err(io)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut length: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        length = length.saturating_add(chunk.len() as u64);
        if length > MAX_PUT_SIZE {
            return Err(Error::EntityTooLarge);
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.rewind().await.map_err(io)?;
    let reader = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let stream: ByteStream = Box::pin(reader.map(move |r| r.map_err(io)));
    Ok(Body { stream, length })
}
