//! Decoding `aws-chunked` request bodies, with chunk signatures and checksum trailers.
//!
//! ```text
//! <hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n
//! [<trailer name>:<value>\r\n ...][x-amz-trailer-signature:<sig>\r\n]\r\n
//! ```

use super::{ChunkSigning, sigv4};
use crate::checksum::Checksum;
use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use s3proxy_core::{ByteStream, Error, Result};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Longest chunk header or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Largest signed chunk accepted (a signed chunk is held whole until verified).
const MAX_SIGNED_CHUNK: usize = 16 << 20;

enum State {
    Header,
    Data {
        remaining: usize,
        signature: Option<String>,
    },
    DataEnd,
    Trailer,
    Done,
}

/// A stream that decodes an `aws-chunked` body, verifying chunk signatures (when signed)
/// and the checksum trailer (when one is announced). Data fails authentication before it
/// is yielded: a signed chunk is held until its signature checks out.
pub struct ChunkedDecoder {
    inner: ByteStream,
    buf: BytesMut,
    state: State,
    eof: bool,
    signing: Option<ChunkSigning>,
    previous_signature: String,
    checksum: Option<(String, Checksum)>,
    chunk: BytesMut,
    trailer_lines: Vec<(String, String)>,
}

fn bad(why: &str) -> Error {
    Error::InvalidRequest(format!("malformed aws-chunked body: {why}"))
}

impl ChunkedDecoder {
    /// Decode `inner`. `checksum_header` is the value of `x-amz-trailer` (e.g.
    /// `x-amz-checksum-crc32`), if any.
    pub fn new(
        inner: ByteStream,
        signing: Option<ChunkSigning>,
        checksum_header: Option<&str>,
    ) -> Result<Self> {
        let checksum = match checksum_header {
            Some(name) => {
                let name = name.trim().to_ascii_lowercase();
                Some((name.clone(), Checksum::for_header(&name)?))
            }
            None => None,
        };
        let previous_signature = signing
            .as_ref()
            .map(|s| s.seed_signature.clone())
            .unwrap_or_default();
        Ok(ChunkedDecoder {
            inner,
            buf: BytesMut::new(),
            state: State::Header,
            eof: false,
            signing,
            previous_signature,
            checksum,
            chunk: BytesMut::new(),
            trailer_lines: vec![],
        })
    }

    fn take_line(&mut self) -> Result<Option<String>> {
        match self.buf.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                let line = self.buf.split_to(at);
                self.buf.advance(2);
                String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(|_| bad("non-UTF-8 line"))
            }
            None if self.buf.len() > MAX_LINE => Err(bad("line too long")),
            None => Ok(None),
        }
    }

    fn verify_chunk(&mut self, signature: Option<&str>, data: &[u8]) -> Result<()> {
        let Some(signing) = &self.signing else {
            return Ok(());
        };
        let signature = signature.ok_or_else(|| bad("missing chunk-signature"))?;
        let expected = sigv4::sign(
            &signing.key,
            &sigv4::chunk_string_to_sign(
                &signing.amz_date,
                &signing.scope,
                &self.previous_signature,
                data,
            ),
        );
        if !super::constant_time_eq(&expected, signature) {
            return Err(Error::SignatureDoesNotMatch);
        }
        self.previous_signature = expected;
        Ok(())
    }

    fn finish_trailer(&mut self) -> Result<()> {
        let mut canonical = String::new();
        let mut trailer_signature = None;
        for (name, value) in &self.trailer_lines {
            if name == "x-amz-trailer-signature" {
                trailer_signature = Some(value.clone());
            } else {
                canonical.push_str(&format!("{name}:{value}\n"));
            }
        }
        if let Some(signing) = &self.signing
            && !self.trailer_lines.is_empty()
        {
            let signature = trailer_signature.ok_or_else(|| bad("missing trailer signature"))?;
            let expected = sigv4::sign(
                &signing.key,
                &sigv4::trailer_string_to_sign(
                    &signing.amz_date,
                    &signing.scope,
                    &self.previous_signature,
                    &canonical,
                ),
            );
            if !super::constant_time_eq(&expected, &signature) {
                return Err(Error::SignatureDoesNotMatch);
            }
        }
        if let Some((name, checksum)) = self.checksum.take() {
            let sent = self
                .trailer_lines
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| bad(&format!("announced trailer {name} is missing")))?;
            if checksum.finish_base64() != sent {
                return Err(Error::BadDigest);
            }
        }
        Ok(())
    }

    /// Make progress on buffered input: `Ok(Some(bytes))` to yield, `Ok(None)` when more
    /// input is needed or the body is done.
    fn step(&mut self) -> Result<Option<Bytes>> {
        loop {
            match &mut self.state {
                State::Header => {
                    let Some(line) = self.take_line()? else {
                        return Ok(None);
                    };
                    let (size, ext) = line.split_once(';').unwrap_or((&line, ""));
                    let size = usize::from_str_radix(size.trim(), 16)
                        .map_err(|_| bad("bad chunk size"))?;
                    let signature = ext
                        .trim()
                        .strip_prefix("chunk-signature=")
                        .map(str::to_string);
                    if self.signing.is_some() && size > MAX_SIGNED_CHUNK {
                        return Err(bad("signed chunk too large"));
                    }
                    if size == 0 {
                        self.verify_chunk(signature.as_deref(), b"")?;
                        self.state = State::Trailer;
                    } else {
                        self.state = State::Data {
                            remaining: size,
                            signature,
                        };
                    }
                }
                State::Data {
                    remaining,
                    signature,
                } => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (*remaining).min(self.buf.len());
                    let data = self.buf.split_to(n);
                    *remaining = remaining.saturating_sub(n);
                    let done = *remaining == 0;
                    if let Some((_, checksum)) = &mut self.checksum {
                        checksum.update(&data);
                    }
                    if self.signing.is_none() {
                        if done {
                            self.state = State::DataEnd;
                        }
                        return Ok(Some(data.freeze()));
                    }
                    self.chunk.extend_from_slice(&data);
                    if done {
                        let signature = signature.take();
                        let chunk = std::mem::take(&mut self.chunk).freeze();
                        self.verify_chunk(signature.as_deref(), &chunk)?;
                        self.state = State::DataEnd;
                        return Ok(Some(chunk));
                    }
                }
                State::DataEnd => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if self.buf.get(..2) != Some(b"\r\n".as_slice()) {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    self.state = State::Header;
                }
                State::Trailer => {
                    let Some(line) = self.take_line()? else {
                        if self.eof && self.buf.is_empty() {
                            self.finish_trailer()?;
                            self.state = State::Done;
                        }
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.finish_trailer()?;
                        self.state = State::Done;
                        return Ok(None);
                    }
                    let (name, value) = line
                        .split_once(':')
                        .ok_or_else(|| bad("bad trailer line"))?;
                    if self.trailer_lines.len() >= 16 {
                        return Err(bad("too many trailer lines"));
                    }
                    self.trailer_lines
                        .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
                State::Done => return Ok(None),
            }
        }
    }
}

impl Stream for ChunkedDecoder {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.step() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) => {}
                Err(e) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if matches!(this.state, State::Done) {
                return Poll::Ready(None);
            }
            if this.eof {
                this.state = State::Done;
                return Poll::Ready(Some(Err(Error::IncompleteBody)));
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.buf.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(e))) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn split_input(input: Vec<u8>, piece: usize) -> ByteStream {
        let chunks: Vec<Result<Bytes>> = input
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    async fn decode(dec: ChunkedDecoder) -> Result<Vec<u8>> {
        let mut out = vec![];
        let mut dec = Box::pin(dec);
        while let Some(c) = dec.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    fn aws_example_signing() -> ChunkSigning {
        ChunkSigning {
            key: sigv4::signing_key(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524",
                "us-east-1",
                "s3",
            ),
            amz_date: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            seed_signature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
                .into(),
        }
    }

    fn aws_example_body() -> Vec<u8> {
        let mut body = vec![];
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend_from_slice(&[b'a'; 65536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        body
    }

    #[tokio::test]
    async fn aws_signed_example_decodes_in_any_split() {
        let body = aws_example_body();
        assert_eq!(body.len(), 66824, "the example's Content-Length");
        for piece in [1, 7, 100, 65536, 1 << 20] {
            let dec = ChunkedDecoder::new(
                split_input(body.clone(), piece),
                Some(aws_example_signing()),
                None,
            )
            .unwrap();
            assert_eq!(
                decode(dec).await.unwrap(),
                vec![b'a'; 66560],
                "piece {piece}"
            );
        }
    }

    #[tokio::test]
    async fn tampered_signed_chunk_is_refused_before_it_is_yielded() {
        let mut body = aws_example_body();
        body[200] = b'b';
        let dec = ChunkedDecoder::new(split_input(body, 4096), Some(aws_example_signing()), None)
            .unwrap();
        let mut dec = Box::pin(dec);
        let first = dec.next().await.unwrap();
        assert!(matches!(first, Err(Error::SignatureDoesNotMatch)));
    }

    #[tokio::test]
    async fn unsigned_with_crc32_trailer() {
        let data = b"hello world".repeat(1000);
        let crc = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(&data).to_be_bytes())
        };
        let mut body = format!("{:x}\r\n", data.len()).into_bytes();
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n").as_bytes());
        let dec = ChunkedDecoder::new(
            split_input(body.clone(), 333),
            None,
            Some("x-amz-checksum-crc32"),
        )
        .unwrap();
        assert_eq!(decode(dec).await.unwrap(), data);
        let wrong = String::from_utf8_lossy(&body)
            .replace(&crc, "AAAAAA==")
            .into_bytes();
        let dec = ChunkedDecoder::new(split_input(wrong, 333), None, Some("x-amz-checksum-crc32"))
            .unwrap();
        assert!(matches!(decode(dec).await, Err(Error::BadDigest)));
    }

    #[tokio::test]
    async fn truncated_and_garbage_bodies_fail_cleanly() {
        for body in [
            &b"5\r\nhel"[..],
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"",
            &[b'1'; 5000],
        ] {
            let dec = ChunkedDecoder::new(split_input(body.to_vec(), 3), None, None).unwrap();
            let r = decode(dec).await;
            assert!(r.is_err(), "{:?}", String::from_utf8_lossy(body));
            assert!(r.unwrap_err().status() < 500);
        }
    }
}
