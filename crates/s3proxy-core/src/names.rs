//! Validated bucket names, object keys and upload ids.

use crate::error::{Error, Result};
use std::fmt;

/// A bucket name that follows S3's naming rules: 3 to 63 characters of lowercase letters,
/// digits, `.` and `-`, starting and ending with a letter or digit, no `..`, not shaped like
/// an IPv4 address, and none of the reserved prefixes and suffixes.
///
/// ```
/// use s3proxy_core::BucketName;
/// assert!(BucketName::new("my-bucket.1").is_ok());
/// assert!(BucketName::new("ab").is_err());
/// assert!(BucketName::new("192.168.1.1").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketName(String);

impl BucketName {
    /// Validate `name` against S3's bucket naming rules.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if let Some(why) = bucket_name_problem(&name) {
            return Err(Error::InvalidBucketName(why.to_string()));
        }
        Ok(BucketName(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Some("bucket names must be between 3 and 63 characters long");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
    {
        return Some("bucket names may contain only lowercase letters, digits, dots and hyphens");
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
        return Some("bucket names must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Some("bucket names must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("bucket names must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return Some("bucket names must not start with a reserved prefix");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return Some("bucket names must not end with a reserved suffix");
    }
    None
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BucketName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An object key: 1 to 1024 bytes of UTF-8, as S3 accepts. Any such string is a valid key,
/// including `a/`, `//`, `..` and keys with spaces, `%` or `+`; backends must store each one
/// distinctly.
///
/// ```
/// use s3proxy_core::ObjectKey;
/// assert!(ObjectKey::new("a//b/../c").is_ok());
/// assert!(ObjectKey::new("").is_err());
/// assert!(ObjectKey::new("x".repeat(1025)).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// The longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

impl ObjectKey {
    /// Validate `key`: non-empty, at most 1024 bytes.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        if key.is_empty() {
            return Err(Error::InvalidArgument(
                "object keys must not be empty".into(),
            ));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(Error::KeyTooLong);
        }
        Ok(ObjectKey(key))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The id of a multipart upload, as handed to the client. Backends choose its content; it is
/// limited to URL-safe printable ASCII so that it can travel in query strings and file names.
///
/// ```
/// use s3proxy_core::UploadId;
/// assert!(UploadId::new("abc-123_x").is_ok());
/// assert!(UploadId::new("../etc").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// Validate `id`: 1 to 1024 characters of `[A-Za-z0-9._~-]`, not starting with `.`.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 1024
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if ok {
            Ok(UploadId(id))
        } else {
            Err(Error::NoSuchUpload)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_rules() {
        for ok in ["abc", "a-b.c", "123", &"a".repeat(63)] {
            assert!(BucketName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "ABC",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "10.0.0.1",
            "xn--abc",
            "abc-s3alias",
            "a b",
            "ab/",
        ] {
            assert!(BucketName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_rules() {
        assert!(ObjectKey::new("é".repeat(512)).is_ok()); // 1024 bytes
        assert!(matches!(
            ObjectKey::new("é".repeat(513)),
            Err(Error::KeyTooLong)
        ));
        for ok in ["a", "a/", "//", "..", ".", "a b%+#"] {
            assert!(ObjectKey::new(ok).is_ok());
        }
    }
}
