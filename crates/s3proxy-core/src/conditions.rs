//! Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.

use crate::{ETag, Error, ObjectInfo, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The conditional headers of a GET, HEAD or copy source, evaluated in the order S3 (and
/// RFC 9110 section 13.2.2) prescribes.
///
/// ```
/// use s3proxy_core::Conditions;
/// let c = Conditions { if_match: Some("\"abc\"".into()), ..Default::default() };
/// assert!(c.matches_etag(&"abc".into()));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `If-Match`: a list of ETags, or `*`.
    pub if_match: Option<String>,
    /// `If-None-Match`: a list of ETags, or `*`.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<SystemTime>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<SystemTime>,
}

/// HTTP dates have one-second resolution: compare at that resolution.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl Conditions {
    /// Whether `If-Match` (if present) lists `etag`.
    pub fn matches_etag(&self, etag: &ETag) -> bool {
        self.if_match
            .as_deref()
            .is_none_or(|list| etag.listed_in(list))
    }

    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    /// Evaluate against an object: `Err(PreconditionFailed)` or `Err(NotModified)` when the
    /// request must not be served. `for_copy` makes the If-None-Match/If-Modified-Since
    /// failures 412 as S3 does for `x-amz-copy-source-if-*`.
    pub fn check(&self, info: &ObjectInfo, for_copy: bool) -> Result<()> {
        let not_modified = || {
            if for_copy {
                Error::PreconditionFailed
            } else {
                Error::NotModified
            }
        };
        if let Some(list) = &self.if_match {
            if !info.etag.listed_in(list) {
                return Err(Error::PreconditionFailed);
            }
        } else if let Some(t) = self.if_unmodified_since
            && secs(info.last_modified) > secs(t)
        {
            return Err(Error::PreconditionFailed);
        }
        if let Some(list) = &self.if_none_match {
            if info.etag.listed_in(list) {
                return Err(not_modified());
            }
        } else if let Some(t) = self.if_modified_since
            && secs(info.last_modified) <= secs(t)
        {
            return Err(not_modified());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ObjectKey, ObjectMetadata};

    fn info() -> ObjectInfo {
        ObjectInfo {
            key: ObjectKey::new("k").unwrap(),
            size: 1,
            etag: "abc".into(),
            last_modified: UNIX_EPOCH + Duration::from_secs(1000),
            metadata: ObjectMetadata::default(),
            parts_count: None,
        }
    }

    #[test]
    fn rfc_order() {
        let at = |s| Some(UNIX_EPOCH + Duration::from_secs(s));
        let c = |f: &dyn Fn(&mut Conditions)| {
            let mut c = Conditions::default();
            f(&mut c);
            c.check(&info(), false)
        };
        assert!(c(&|_| {}).is_ok());
        assert!(c(&|c| c.if_match = Some("\"abc\"".into())).is_ok());
        assert!(matches!(
            c(&|c| c.if_match = Some("\"x\"".into())),
            Err(Error::PreconditionFailed)
        ));
        assert!(matches!(
            c(&|c| c.if_none_match = Some("*".into())),
            Err(Error::NotModified)
        ));
        assert!(matches!(
            c(&|c| c.if_modified_since = at(1000)),
            Err(Error::NotModified)
        ));
        assert!(c(&|c| c.if_modified_since = at(999)).is_ok());
        assert!(matches!(
            c(&|c| c.if_unmodified_since = at(999)),
            Err(Error::PreconditionFailed)
        ));
        // If-Match true wins over a failing If-Unmodified-Since (RFC 9110 13.2.2).
        let mut both = Conditions {
            if_match: Some("abc".into()),
            if_unmodified_since: at(1),
            ..Default::default()
        };
        assert!(both.check(&info(), false).is_ok());
        both.if_none_match = Some("abc".into());
        assert!(matches!(
            both.check(&info(), true),
            Err(Error::PreconditionFailed)
        ));
    }
}
