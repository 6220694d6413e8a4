//! ListObjects (v1) and ListObjectsV2.

use crate::body::ResponseBody;
use crate::dispatch::Ctx;
use crate::request::Query;
use crate::response::{owner_xml, xml_response};
use crate::time;
use crate::xml::{self, elem};
use base64::Engine;
use http::Response;
use s3proxy_core::{BucketName, Error, ListOptions, Result, list::MAX_KEYS};

pub(crate) fn max_keys(query: &Query) -> Result<usize> {
    match query.get("max-keys") {
        None => Ok(MAX_KEYS),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| (n as usize).min(MAX_KEYS))
            .ok_or_else(|| {
                Error::InvalidArgument("max-keys must be a non-negative integer".into())
            }),
    }
}

/// How a listing writes keys and prefixes: as they are, or URI-encoded when the request
/// says `encoding-type=url` (clients ask so for keys XML 1.0 cannot carry).
pub(crate) fn key_encoding(query: &Query) -> Result<impl Fn(&str) -> String + use<>> {
    let url = match query.get("encoding-type") {
        None => false,
        Some("url") => true,
        Some(_) => {
            return Err(Error::InvalidArgument(
                "Invalid Encoding Method specified in Request".into(),
            ));
        }
    };
    Ok(move |s: &str| {
        if url {
            crate::auth::sigv4::uri_encode(s, true)
        } else {
            s.to_string()
        }
    })
}

pub(crate) async fn list_objects(
    ctx: &Ctx,
    bucket: &BucketName,
    query: &Query,
    v2: bool,
) -> Result<Response<ResponseBody>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let enc = key_encoding(query)?;
    let url = query.get("encoding-type").is_some();
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let delimiter = query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let max_keys = max_keys(query)?;
    let token = match query.get("continuation-token").filter(|_| v2) {
        Some(t) => Some(
            b64.decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Error::InvalidArgument("The continuation token provided is incorrect".into())
                })?,
        ),
        None => None,
    };
    let marker = if v2 {
        query.get("start-after")
    } else {
        query.get("marker")
    };
    // A continuation token continues a listing and start-after only places its first
    // page: S3 ignores start-after beside a token. Clients send both (minio-py sets
    // start-after to the token itself), so the token alone decides where the page starts.
    let start_after = token.or(marker.map(str::to_string));
    let page = ctx
        .backend
        .list_objects(
            bucket,
            ListOptions {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                start_after,
                max_keys,
            },
        )
        .await?;
    let fetch_owner = !v2 || query.get("fetch-owner") == Some("true");
    let mut out = xml::open("ListBucketResult");
    elem(&mut out, "Name", bucket.as_str());
    elem(&mut out, "Prefix", &enc(&prefix));
    if let Some(d) = &delimiter {
        elem(&mut out, "Delimiter", &enc(d));
    }
    elem(&mut out, "MaxKeys", &max_keys.to_string());
    if url {
        elem(&mut out, "EncodingType", "url");
    }
    // max-keys=0 asks for nothing and gets nothing, which is not a truncated page.
    let truncated = page.is_truncated && max_keys > 0;
    elem(
        &mut out,
        "IsTruncated",
        if truncated { "true" } else { "false" },
    );
    if v2 {
        elem(
            &mut out,
            "KeyCount",
            &(page.objects.len() + page.common_prefixes.len()).to_string(),
        );
        if let Some(t) = query.get("continuation-token") {
            elem(&mut out, "ContinuationToken", t);
        }
        if let Some(s) = query.get("start-after") {
            elem(&mut out, "StartAfter", &enc(s));
        }
        if let Some(next) = &page.next_marker {
            elem(&mut out, "NextContinuationToken", &b64.encode(next));
        }
    } else {
        elem(&mut out, "Marker", &enc(query.get("marker").unwrap_or("")));
        if let Some(next) = &page.next_marker {
            elem(&mut out, "NextMarker", &enc(next));
        }
    }
    for o in &page.objects {
        out.push_str("<Contents>");
        elem(&mut out, "Key", &enc(&o.key));
        elem(&mut out, "LastModified", &time::iso8601(o.last_modified));
        elem(&mut out, "ETag", &o.etag.quoted());
        elem(&mut out, "Size", &o.size.to_string());
        if fetch_owner {
            owner_xml(&mut out);
        }
        elem(&mut out, "StorageClass", "STANDARD");
        out.push_str("</Contents>");
    }
    for p in &page.common_prefixes {
        out.push_str("<CommonPrefixes>");
        elem(&mut out, "Prefix", &enc(p));
        out.push_str("</CommonPrefixes>");
    }
    out.push_str("</ListBucketResult>");
    xml_response(out)
}
