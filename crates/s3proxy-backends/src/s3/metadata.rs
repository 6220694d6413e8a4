//! Metadata as S3 stores it: user and internal metadata together in the `x-amz-meta-*`
//! map, and the standard content headers (Content-Type, Expires...) of requests and
//! responses.
//!
//! Internal metadata (`s3proxy-*`) is stored under its own names. User metadata whose
//! name starts with the internal prefix is stored under [`USER_ESCAPE`], so both maps
//! round-trip exactly; names under [`RESERVED_PREFIX`] are the backend's own (a missing
//! Content-Type is remembered there, so the server's default type is not reported).

use s3proxy_core::{ContentHeaders, Error, INTERNAL_PREFIX, ObjectMetadata, Result};
use std::collections::HashMap;

/// Prefix under which user metadata whose name collides with [`INTERNAL_PREFIX`] is
/// stored, so that it cannot be mistaken for internal metadata when read back.
///
/// ```
/// assert!(s3proxy_backends::USER_ESCAPE.starts_with(s3proxy_backends::RESERVED_PREFIX));
/// ```
pub const USER_ESCAPE: &str = "s3proxy-s3-user-";

/// Metadata names the S3 backend keeps for itself; layers must not use internal names
/// starting with it.
///
/// ```
/// assert!(s3proxy_backends::RESERVED_PREFIX.starts_with(s3proxy_core::INTERNAL_PREFIX));
/// ```
pub const RESERVED_PREFIX: &str = "s3proxy-s3-";

/// Present when the object was written without a Content-Type.
const NO_CONTENT_TYPE: &str = "s3proxy-s3-no-content-type";

/// User and internal metadata as the backend's `x-amz-meta-*` map.
pub(super) fn join_metadata(meta: &ObjectMetadata) -> HashMap<String, String> {
    let mut out = HashMap::with_capacity(meta.user.len() + meta.internal.len() + 1);
    for (k, v) in &meta.user {
        let k = k.to_ascii_lowercase();
        if k.starts_with(INTERNAL_PREFIX) {
            out.insert(format!("{USER_ESCAPE}{k}"), v.clone());
        } else {
            out.insert(k, v.clone());
        }
    }
    for (k, v) in &meta.internal {
        out.insert(k.to_ascii_lowercase(), v.clone());
    }
    if meta.headers.content_type.is_none() {
        // S3 servers store a default type when none is given; remember there was none.
        out.insert(NO_CONTENT_TYPE.into(), "1".into());
    }
    out
}

/// The inverse of [`join_metadata`].
pub(super) fn split_metadata(
    map: Option<&HashMap<String, String>>,
    mut headers: ContentHeaders,
) -> ObjectMetadata {
    let map = map.cloned().unwrap_or_default();
    if map.contains_key(NO_CONTENT_TYPE) {
        headers.content_type = None;
    }
    let mut meta = ObjectMetadata {
        headers,
        ..Default::default()
    };
    for (k, v) in map {
        let k = k.to_ascii_lowercase();
        if let Some(user) = k.strip_prefix(USER_ESCAPE) {
            meta.user.insert(user.to_string(), v);
        } else if k.starts_with(RESERVED_PREFIX) {
            // The backend's own bookkeeping, handled above.
        } else if k.starts_with(INTERNAL_PREFIX) {
            meta.internal.insert(k, v);
        } else {
            meta.user.insert(k, v);
        }
    }
    meta
}

/// Reject internal names that would read back as the backend's own.
pub(super) fn check_internal(meta: &ObjectMetadata) -> Result<()> {
    match meta
        .internal
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with(RESERVED_PREFIX))
    {
        Some(k) => Err(Error::Internal(format!(
            "internal metadata name {k:?} uses the S3 backend's reserved prefix {RESERVED_PREFIX}"
        ))),
        None => Ok(()),
    }
}

/// Set the standard headers of a write request. `Expires` goes in verbatim as a header
/// because the SDK's field is a parsed date and the core keeps the client's string.
macro_rules! with_headers {
    ($req:expr, $headers:expr) => {{
        let h: &s3proxy_core::ContentHeaders = $headers;
        $req.set_content_type(h.content_type.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_cache_control(h.cache_control.clone())
    }};
}
pub(super) use with_headers;

/// The metadata of a HeadObject or GetObject response: the standard headers and the
/// `x-amz-meta-*` map split back into user and internal metadata. A macro because the
/// SDK gives each operation its own output type (with the same accessors).
macro_rules! response_metadata {
    ($out:expr) => {{
        let out = &$out;
        $crate::s3::metadata::split_metadata(
            out.metadata(),
            s3proxy_core::ContentHeaders {
                content_type: out.content_type().map(str::to_string),
                content_encoding: out.content_encoding().map(str::to_string),
                content_disposition: out.content_disposition().map(str::to_string),
                content_language: out.content_language().map(str::to_string),
                cache_control: out.cache_control().map(str::to_string),
                expires: out.expires_string().map(str::to_string),
            },
        )
    }};
}
pub(super) use response_metadata;

/// A request mutation that sets `Expires` verbatim, when there is one.
pub(super) fn expires_mutation(
    expires: Option<String>,
) -> impl Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static {
    move |req| {
        if let Some(v) = &expires {
            req.headers_mut().insert("expires", v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_with_colliding_user_names() {
        let mut meta = ObjectMetadata::default();
        meta.user.insert("mode".into(), "1".into());
        meta.user.insert("s3proxy-x".into(), "user".into());
        meta.internal.insert("s3proxy-x".into(), "internal".into());
        let joined = join_metadata(&meta);
        // What servers answer when no type was given.
        let stored = ContentHeaders {
            content_type: Some("binary/octet-stream".into()),
            ..Default::default()
        };
        let back = split_metadata(Some(&joined), stored);
        assert_eq!(back, meta);
        meta.internal
            .insert("s3proxy-s3-x".into(), "reserved".into());
        assert!(check_internal(&meta).is_err());
    }
}
