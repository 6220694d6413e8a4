//! Values of S3 request and response headers in the syntax servers use:
//! `x-amz-copy-source`, `Range` and `Content-Range`, `Content-MD5`, and times.

use aws_sdk_s3::primitives::DateTime;
use base64::Engine;
use s3proxy_core::{ByteRange, ObjectKey};
use std::time::SystemTime;

/// A time from the SDK; the epoch when absent or out of range.
pub(super) fn to_system_time(t: Option<&DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `x-amz-copy-source`: the bucket, then the key URL-encoded (slashes kept).
pub(super) fn copy_source(bucket: &str, key: &ObjectKey) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    format!(
        "{bucket}/{}",
        percent_encoding::utf8_percent_encode(key.as_str(), SET)
    )
}

/// `Content-Range: bytes first-last/total`.
pub(super) fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let spec = value.trim().strip_prefix("bytes")?.trim();
    let (range, total) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total): (u64, u64, u64) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    // A backend's header is not trusted: a range that is not inside the object is no range.
    (first <= last && last < total).then_some((first, last, total))
}

/// `Range: bytes=...` for a core byte range.
pub(super) fn range_header(range: ByteRange) -> String {
    match range {
        ByteRange::FromTo(a, b) => format!("bytes={a}-{b}"),
        ByteRange::From(a) => format!("bytes={a}-"),
        ByteRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// `Content-MD5`: the digest in base64.
pub(super) fn md5_header(md5: Option<[u8; 16]>) -> Option<String> {
    md5.map(|d| base64::engine::general_purpose::STANDARD.encode(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_only_inside_the_object() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        for bad in [
            "bytes 9-0/100",
            "bytes 0-100/100",
            "bytes 0-9/x",
            "bytes -1-9/100",
            "0-9",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn copy_source_keeps_slashes() {
        let key = ObjectKey::new("a/b c+d?").unwrap();
        assert_eq!(copy_source("bkt", &key), "bkt/a/b%20c%2Bd%3F");
    }
}
