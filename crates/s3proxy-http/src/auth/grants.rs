//! Which buckets a credential may reach, and how far: the permission model.
//!
//! A credential either reaches every bucket as their owner ([`Grants::All`], what a
//! credential without a `buckets` list gets: one tenant, as before grants existed) or only
//! the buckets its grants name, each by an exact name or a prefix ending in `*`:
//!
//! ```
//! use s3proxy_http::auth::grants::{Access, Grants};
//! let grants = Grants::only([("photos", Access::Owner), ("shared-*", Access::Read)]).unwrap();
//! assert_eq!(grants.access("photos"), Some(Access::Owner));
//! assert_eq!(grants.access("shared-docs"), Some(Access::Read));
//! assert_eq!(grants.access("secrets"), None);
//! assert!(Grants::All.access("anything").is_some_and(|a| a >= Access::Write));
//! ```
//!
//! An exact name wins over a prefix, and a longer prefix over a shorter one, so
//! `{ "logs-*" = "read", "logs-mine" = "owner" }` means what it reads as.

use crate::router::Endpoint;
use s3proxy_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// How far a credential may go with a bucket; each level includes the ones below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// List the bucket, read objects and their metadata.
    Read,
    /// Also write and delete objects, run multipart uploads and list them.
    Write,
    /// Also create and delete the bucket itself.
    Owner,
}

/// One grant of [`Grants::Only`]: a bucket name, or a prefix when it ended in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    prefix: String,
    exact: bool,
    access: Access,
}

/// The buckets one credential may reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Grants {
    /// Every bucket, as owner.
    #[default]
    All,
    /// Only the buckets named, most specific grant first.
    Only(Vec<Grant>),
}

impl Grants {
    /// Grants for these `(pattern, access)` pairs. A pattern is a bucket name or a prefix
    /// followed by `*` (`*` alone is every bucket); a `*` anywhere else is refused.
    pub fn only<P: AsRef<str>>(
        patterns: impl IntoIterator<Item = (P, Access)>,
    ) -> std::result::Result<Grants, String> {
        let mut grants = vec![];
        for (pattern, access) in patterns {
            let pattern = pattern.as_ref();
            let (prefix, exact) = match pattern.strip_suffix('*') {
                Some(prefix) => (prefix, false),
                None => (pattern, true),
            };
            if prefix.contains('*') {
                return Err(format!(
                    "bucket pattern {pattern:?}: `*` may only end a pattern"
                ));
            }
            if exact && prefix.is_empty() {
                return Err("an empty bucket pattern names no bucket".into());
            }
            grants.push(Grant {
                prefix: prefix.to_string(),
                exact,
                access,
            });
        }
        // Exact names first, then longer prefixes before shorter ones.
        grants.sort_by(|a, b| {
            b.exact
                .cmp(&a.exact)
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Ok(Grants::Only(grants))
    }

    /// What these grants allow on `bucket`; `None` when they do not reach it.
    pub fn access(&self, bucket: &str) -> Option<Access> {
        match self {
            Grants::All => Some(Access::Owner),
            Grants::Only(grants) => grants
                .iter()
                .find(|g| {
                    if g.exact {
                        g.prefix == bucket
                    } else {
                        bucket.starts_with(&g.prefix)
                    }
                })
                .map(|g| g.access),
        }
    }

    /// Refuse with AccessDenied unless these grants give at least `needed` on `bucket`.
    pub fn require(&self, bucket: &str, needed: Access) -> Result<()> {
        match self.access(bucket) {
            Some(access) if access >= needed => Ok(()),
            _ => Err(Error::AccessDenied("Access Denied".into())),
        }
    }
}

/// The bucket an operation acts on and the access it needs there, checked before the
/// handler runs. Copies also need [`Access::Read`] on their source, which only the handler
/// knows once it has parsed `x-amz-copy-source`.
pub fn needed(endpoint: &Endpoint) -> Option<(&str, Access)> {
    use Endpoint::*;
    let (bucket, access) = match endpoint {
        // ListBuckets is filtered instead; CreateBucket decides in its handler, since
        // another credential's existing bucket is BucketAlreadyExists, not AccessDenied.
        ListBuckets | CreateBucket { .. } => return None,
        DeleteBucket { bucket } => (bucket, Access::Owner),
        HeadBucket { bucket }
        | GetBucketLocation { bucket }
        | GetBucketVersioning { bucket }
        | ListObjects { bucket }
        | ListObjectsV2 { bucket }
        | GetObject { bucket, .. }
        | HeadObject { bucket, .. }
        | GetBucketAcl { bucket }
        | ListObjectVersions { bucket }
        | GetObjectAcl { bucket, .. }
        | GetObjectTagging { bucket, .. } => (bucket, Access::Read),
        PutBucketAcl { bucket } => (bucket, Access::Owner),
        ListMultipartUploads { bucket }
        | DeleteObjects { bucket }
        | PutObject { bucket, .. }
        | CopyObject { bucket, .. }
        | DeleteObject { bucket, .. }
        | CreateMultipartUpload { bucket, .. }
        | UploadPart { bucket, .. }
        | UploadPartCopy { bucket, .. }
        | CompleteMultipartUpload { bucket, .. }
        | AbortMultipartUpload { bucket, .. }
        | ListParts { bucket, .. }
        | PutObjectAcl { bucket, .. } => (bucket, Access::Write),
    };
    Some((bucket.as_str(), access))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_grant_wins() {
        let g = Grants::only([
            ("logs-*", Access::Read),
            ("logs-mine", Access::Owner),
            ("logs-team-*", Access::Write),
            ("*", Access::Read),
        ])
        .unwrap();
        assert_eq!(g.access("logs-mine"), Some(Access::Owner));
        assert_eq!(g.access("logs-team-a"), Some(Access::Write));
        assert_eq!(g.access("logs-other"), Some(Access::Read));
        assert_eq!(g.access("zzz"), Some(Access::Read));
        let g = Grants::only([("photos", Access::Write)]).unwrap();
        assert_eq!(g.access("photos2"), None);
        assert_eq!(g.access("photo"), None);
        assert!(g.require("photos", Access::Read).is_ok());
        assert!(matches!(
            g.require("photos", Access::Owner),
            Err(Error::AccessDenied(_))
        ));
        assert!(Grants::only([("a*b", Access::Read)]).is_err());
        assert!(Grants::only([("", Access::Read)]).is_err());
        assert!(
            Grants::only(Vec::<(&str, Access)>::new())
                .unwrap()
                .access("a")
                .is_none()
        );
    }
}
