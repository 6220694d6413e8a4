//! Request bodies of any size without holding them: slices of one shared pseudo-random
//! pattern, repeated. Object byte `o` is always `pattern[o % pattern.len()]`, so a GET can
//! be verified without keeping what was PUT.

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes in the repeated pattern (prime-ish, so it does not line up with segment or
/// chunk sizes and a misplaced block is caught by verification).
pub const PATTERN_LEN: usize = (1 << 20) + 4099;
/// Largest frame a body yields.
const FRAME: usize = 256 << 10;

/// The shared pattern, from a fixed seed: incompressible, the same in every run.
pub fn pattern() -> Bytes {
    let mut buf = vec![0u8; PATTERN_LEN];
    rand::rngs::StdRng::seed_from_u64(0x0053_3370_726f_7879).fill_bytes(&mut buf);
    Bytes::from(buf)
}

/// The bytes of the object `[offset, offset + len)`, as zero-copy slices of the pattern.
pub struct PatternBody {
    pattern: Bytes,
    offset: u64,
    remaining: u64,
}

impl PatternBody {
    pub fn new(pattern: Bytes, len: u64) -> Self {
        Self::at(pattern, 0, len)
    }

    /// The object's bytes from `offset` on (a multipart part).
    pub fn at(pattern: Bytes, offset: u64, len: u64) -> Self {
        PatternBody {
            pattern,
            offset,
            remaining: len,
        }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let at = (this.offset % this.pattern.len() as u64) as usize;
        let n = (this.pattern.len() - at)
            .min(FRAME)
            .min(this.remaining as usize);
        this.offset += n as u64;
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(this.pattern.slice(at..at + n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Hex SHA-256 of the object of `len` bytes (for signed payloads).
pub fn sha256_hex(pattern: &[u8], len: u64) -> String {
    let mut h = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = (pattern.len() as u64).min(left) as usize;
        h.update(&pattern[..n]);
        left -= n as u64;
    }
    hex::encode(h.finalize())
}

/// Whether `chunk`, found at object offset `offset`, is what was written there.
pub fn matches(pattern: &[u8], mut offset: u64, mut chunk: &[u8]) -> bool {
    while !chunk.is_empty() {
        let at = (offset % pattern.len() as u64) as usize;
        let n = (pattern.len() - at).min(chunk.len());
        if chunk[..n] != pattern[at..at + n] {
            return false;
        }
        chunk = &chunk[n..];
        offset += n as u64;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_is_the_pattern_repeated() {
        let p = pattern();
        let len = 3 * PATTERN_LEN as u64 + 17;
        let data = PatternBody::new(p.clone(), len)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(data.len() as u64, len);
        assert!(matches(&p, 0, &data));
        assert!(matches(&p, 5000, &data[5000..]));
        assert!(!matches(&p, 5001, &data[5000..]));
        assert_eq!(sha256_hex(&p, len), hex::encode(Sha256::digest(&data)));
    }
}
