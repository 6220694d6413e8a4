//! Reading S3 requests: addressing, query parameters, headers and the verified body.

use crate::auth::chunked::ChunkedDecoder;
use crate::auth::{Authenticated, Payload};
use crate::checksum::Checksum;
use base64::Engine;
use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use percent_encoding::percent_decode_str;
use s3proxy_core::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

/// Decoded query parameters.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parse a raw query string, as [`crate::query::pairs`] reads it (`+` is a space).
    pub fn parse(raw: &str) -> Query {
        Query(crate::query::pairs(raw).collect())
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether a parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The first parameter (in name order, so the answer does not depend on hashing)
    /// that names a sub-resource or an option, leaving out those that only carry a
    /// presigned request's signature (`X-Amz-*`, SigV2's `AWSAccessKeyId`, `Signature`,
    /// `Expires`) and the SDKs' operation hint `x-id`.
    pub fn first_subresource(&self) -> Option<&str> {
        self.first_other_than(&[])
    }

    /// [`Query::first_subresource`], also leaving out the parameters in `known`.
    pub fn first_other_than(&self, known: &[&str]) -> Option<&str> {
        let signing = |k: &str| {
            k.len() >= 6 && k[..6].eq_ignore_ascii_case("x-amz-")
                || matches!(k, "AWSAccessKeyId" | "Signature" | "Expires" | "x-id")
        };
        self.0
            .keys()
            .map(String::as_str)
            .filter(|k| !signing(k) && !known.contains(k))
            .min()
    }
}

/// The bucket a virtual-hosted-style request names in its Host header (`bucket.<domain>`).
pub fn vhost_bucket<'a>(host: Option<&'a str>, domains: &[String]) -> Option<&'a str> {
    let host = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))?;
    domains.iter().find_map(|d| {
        host.strip_suffix(d.as_str())
            .and_then(|b| b.strip_suffix('.'))
            .filter(|b| !b.is_empty())
    })
}

/// Split a request into bucket and key, path-style or virtual-hosted-style.
pub fn address(
    raw_path: &str,
    host: Option<&str>,
    domains: &[String],
) -> Result<(Option<String>, Option<String>)> {
    let decode = |s: &str| -> Result<String> {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| Error::InvalidArgument("The URI is not valid UTF-8".into()))
    };
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    if let Some(bucket) = vhost_bucket(host, domains) {
        let key = if path.is_empty() {
            None
        } else {
            Some(decode(path)?)
        };
        return Ok((Some(bucket.to_string()), key));
    }
    if path.is_empty() {
        return Ok((None, None));
    }
    match path.split_once('/') {
        Some((bucket, "")) => Ok((Some(decode(bucket)?), None)),
        Some((bucket, key)) => Ok((Some(decode(bucket)?), Some(decode(key)?))),
        None => Ok((Some(decode(path)?), None)),
    }
}

/// A header's value as text (non-UTF-8 bytes replaced).
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Add the signed `x-amz-*` query parameters of a presigned URL to the headers, as S3
/// reads them. Like a repeated `x-amz-*` header (see `auth`), one given twice, in the
/// query or as a header too, is refused: no two readers may pick different copies.
pub fn add_query_headers(headers: &mut HeaderMap, auth: &Authenticated) -> Result<()> {
    for (name, value) in &auth.query_headers {
        let bad = || Error::InvalidArgument(format!("invalid value for query parameter {name}"));
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        if headers.contains_key(&name) {
            return Err(Error::InvalidArgument(format!(
                "{name} may be given only once, in the query or as a header"
            )));
        }
        let value = http::HeaderValue::from_bytes(value.as_bytes()).map_err(|_| bad())?;
        headers.insert(name, value);
    }
    Ok(())
}

/// Headers and user metadata of a PUT, CopyObject REPLACE or CreateMultipartUpload.
pub fn metadata_from_headers(headers: &HeaderMap) -> Result<ObjectMetadata> {
    let mut meta = ObjectMetadata::default();
    let h = &mut meta.headers;
    h.content_type = header(headers, "content-type");
    h.content_disposition = header(headers, "content-disposition");
    h.content_language = header(headers, "content-language");
    h.cache_control = header(headers, "cache-control");
    h.expires = header(headers, "expires");
    // `aws-chunked` describes the transfer, not the object.
    // Stored as sent (`deflate, gzip` stays so), only an `aws-chunked` token taken out.
    h.content_encoding = header(headers, "content-encoding").and_then(|v| {
        let tokens: Vec<&str> = v.split(',').map(str::trim).collect();
        if !tokens.iter().any(|e| e.eq_ignore_ascii_case("aws-chunked")) {
            return Some(v);
        }
        let kept: Vec<&str> = tokens
            .into_iter()
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
            .collect();
        (!kept.is_empty()).then(|| kept.join(", "))
    });
    for (name, value) in headers {
        if let Some(user) = name.as_str().strip_prefix("x-amz-meta-") {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            meta.user
                .entry(user.to_string())
                .and_modify(|v: &mut String| {
                    v.push(',');
                    v.push_str(&value)
                })
                .or_insert(value);
        }
    }
    if meta.user_size() > MAX_USER_METADATA {
        return Err(Error::MetadataTooLarge);
    }
    Ok(meta)
}

/// `Content-MD5`, decoded.
pub fn content_md5(headers: &HeaderMap) -> Result<Option<[u8; 16]>> {
    let Some(value) = header(headers, "content-md5") else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(Some)
        .ok_or(Error::InvalidDigest)
}

fn http_time(headers: &HeaderMap, name: &str) -> Option<SystemTime> {
    // An unparsable date is ignored, as S3 does.
    header(headers, name).and_then(|v| httpdate::parse_http_date(v.trim()).ok())
}

/// Conditional headers; `prefix` is `""` for GET/HEAD or `"x-amz-copy-source-"` for copies.
pub fn conditions(headers: &HeaderMap, prefix: &str) -> Conditions {
    Conditions {
        if_match: header(headers, &format!("{prefix}if-match")),
        if_none_match: header(headers, &format!("{prefix}if-none-match")),
        if_modified_since: http_time(headers, &format!("{prefix}if-modified-since")),
        if_unmodified_since: http_time(headers, &format!("{prefix}if-unmodified-since")),
    }
}

/// Whether the body is `aws-chunked`: only when the signature says so (a `STREAMING-*`
/// payload). A `Content-Encoding: aws-chunked` header alone changes nothing: were it enough,
/// a request signed over one body's SHA-256 could carry another body in chunked framing
/// and have that stored, the signed hash never checked.
pub fn is_chunked(auth: &Authenticated) -> bool {
    matches!(auth.payload, Payload::Chunked { .. })
}

/// The length of the object data the body carries.
pub fn data_length(headers: &HeaderMap, chunked: bool) -> Result<u64> {
    let name = if chunked {
        "x-amz-decoded-content-length"
    } else {
        "content-length"
    };
    let length = header(headers, name)
        .ok_or(Error::MissingContentLength)?
        .trim()
        .parse::<u64>()
        .map_err(|_| Error::InvalidArgument(format!("{name} is not a number")))?;
    if length > MAX_PUT_SIZE {
        return Err(Error::EntityTooLarge);
    }
    Ok(length)
}

/// The request body as object data: aws-chunked decoded, and checked against the signed
/// SHA-256 or the `x-amz-checksum-*` header as it streams. A mismatch surfaces as an error
/// at the end of the stream, before a backend commits the write.
pub fn verified_body(
    raw: ByteStream,
    headers: &HeaderMap,
    auth: &Authenticated,
) -> Result<ByteStream> {
    if is_chunked(auth) {
        let signing = match &auth.payload {
            Payload::Chunked { signing, .. } => signing.clone(),
            _ => None,
        };
        let trailer = header(headers, "x-amz-trailer");
        return Ok(Box::pin(ChunkedDecoder::new(
            raw,
            signing,
            trailer.as_deref(),
        )?));
    }
    let sha256 = match &auth.payload {
        Payload::Sha256(hash) => Some((Sha256::new(), hash.clone())),
        _ => None,
    };
    let checksum = crate::checksum::CHECKSUM_HEADERS
        .iter()
        .copied()
        .find(|n| headers.contains_key(*n))
        .map(|name| -> Result<_> {
            Ok((
                Checksum::for_header(name)?,
                header(headers, name).unwrap_or_default(),
            ))
        })
        .transpose()?;
    if sha256.is_none() && checksum.is_none() {
        return Ok(raw);
    }
    Ok(Box::pin(VerifiedStream {
        inner: raw,
        sha256,
        checksum,
    }))
}

struct VerifiedStream {
    inner: ByteStream,
    sha256: Option<(Sha256, String)>,
    checksum: Option<(Checksum, String)>,
}

impl Stream for VerifiedStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(data))) => {
                if let Some((h, _)) = &mut this.sha256 {
                    h.update(&data);
                }
                if let Some((c, _)) = &mut this.checksum {
                    c.update(&data);
                }
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Ready(None) => {
                if let Some((h, want)) = this.sha256.take()
                    && hex::encode(h.finalize()) != *want
                {
                    return Poll::Ready(Some(Err(Error::ContentSha256Mismatch)));
                }
                if let Some((c, want)) = this.checksum.take()
                    && c.finish_base64() != want.trim()
                {
                    return Poll::Ready(Some(Err(Error::BadDigest)));
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing() {
        let none: &[String] = &[];
        let dom = ["s3.local".to_string()];
        assert_eq!(address("/", None, none).unwrap(), (None, None));
        assert_eq!(address("/b", None, none).unwrap(), (Some("b".into()), None));
        assert_eq!(
            address("/b/", None, none).unwrap(),
            (Some("b".into()), None)
        );
        assert_eq!(
            address("/b//a%2Fb%20c+", None, none).unwrap(),
            (Some("b".into()), Some("/a/b c+".into()))
        );
        assert_eq!(
            address("/k/x", Some("bkt.s3.local:9000"), &dom).unwrap(),
            (Some("bkt".into()), Some("k/x".into()))
        );
        assert_eq!(
            address("/", Some("bkt.s3.local"), &dom).unwrap(),
            (Some("bkt".into()), None)
        );
        assert_eq!(
            address("/b/k", Some("s3.local"), &dom).unwrap(),
            (Some("b".into()), Some("k".into()))
        );
        assert!(address("/b/%ff", None, none).is_err());
    }

    #[test]
    fn query_and_metadata() {
        let q = Query::parse("prefix=a+b%2Bc&delimiter=%2F&uploads");
        assert_eq!(q.get("prefix"), Some("a b+c"));
        assert_eq!(q.get("delimiter"), Some("/"));
        assert!(q.has("uploads"));
        let mut h = HeaderMap::new();
        h.insert("content-encoding", "aws-chunked".parse().unwrap());
        h.insert("x-amz-meta-Mode", "33188".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        let m = metadata_from_headers(&h).unwrap();
        assert_eq!(m.headers.content_encoding, None);
        assert_eq!(m.user.get("mode").map(String::as_str), Some("33188"));
        h.insert("x-amz-meta-big", "x".repeat(2100).parse().unwrap());
        assert!(matches!(
            metadata_from_headers(&h),
            Err(Error::MetadataTooLarge)
        ));
        h.insert("content-md5", "not base64!".parse().unwrap());
        assert!(matches!(content_md5(&h), Err(Error::InvalidDigest)));
    }
}
