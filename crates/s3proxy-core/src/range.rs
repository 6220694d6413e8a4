//! HTTP byte ranges (RFC 9110 section 14), in the single-range forms S3 supports.

use crate::{Error, Result};

/// A single byte range as sent in a `Range: bytes=...` header.
///
/// ```
/// use s3proxy_core::ByteRange;
/// let r = ByteRange::parse("bytes=-10").unwrap().unwrap();
/// assert_eq!(r.resolve(100).unwrap(), (90, 99));
/// assert_eq!(ByteRange::parse("bytes=5-").unwrap().unwrap().resolve(8).unwrap(), (5, 7));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last`, inclusive.
    FromTo(u64, u64),
    /// `bytes=first-`.
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parse a Range header value. `Ok(None)` means "ignore the header and serve the whole
    /// object", which is what S3 does for syntactically invalid or multi-range values.
    pub fn parse(value: &str) -> Result<Option<ByteRange>> {
        let Some(spec) = value.trim().strip_prefix("bytes=") else {
            return Ok(None);
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let Some((first, last)) = spec.split_once('-') else {
            return Ok(None);
        };
        let (first, last) = (first.trim(), last.trim());
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        Ok(match (first.is_empty(), last.is_empty()) {
            (true, true) => None,
            (true, false) => num(last).map(ByteRange::Suffix),
            (false, true) => num(first).map(ByteRange::From),
            (false, false) => match (num(first), num(last)) {
                (Some(a), Some(b)) if a <= b => Some(ByteRange::FromTo(a, b)),
                _ => None,
            },
        })
    }

    /// The inclusive `(start, end)` this range selects in an object of `size` bytes, or
    /// [`Error::InvalidRange`] when it selects nothing.
    pub fn resolve(&self, size: u64) -> Result<(u64, u64)> {
        match *self {
            ByteRange::FromTo(a, b) if a < size => Ok((a, b.min(size - 1))),
            ByteRange::From(a) if a < size => Ok((a, size - 1)),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok((size - n.min(size), size - 1)),
            _ => Err(Error::InvalidRange),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        let r = |s| ByteRange::parse(s).unwrap();
        assert_eq!(r("bytes=0-0").unwrap().resolve(10).unwrap(), (0, 0));
        assert_eq!(r("bytes=0-100").unwrap().resolve(10).unwrap(), (0, 9));
        assert_eq!(r("bytes=-100").unwrap().resolve(10).unwrap(), (0, 9));
        assert!(r("bytes=10-").unwrap().resolve(10).is_err());
        assert!(r("bytes=-0").unwrap().resolve(10).is_err());
        assert!(r("bytes=0-0").unwrap().resolve(0).is_err());
        assert_eq!(r("bytes=5-3"), None);
        assert_eq!(r("bytes=a-3"), None);
        assert_eq!(r("items=0-3"), None);
        assert_eq!(r("bytes=0-1,3-4"), None);
        assert_eq!(r("bytes=-"), None);
        assert_eq!(r("bytes=99999999999999999999999-"), None);
    }
}
