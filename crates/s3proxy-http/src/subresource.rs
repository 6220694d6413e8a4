//! The sub-resources tools ask for on any bucket or object, answered as an S3 bucket
//! that has never had them configured: ACLs (the owner with FULL_CONTROL, and only the
//! private ACL accepted), object tags (none), and object versions of an unversioned
//! bucket (every object as version `null`).

use crate::body::{ResponseBody, read_xml_body};
use crate::dispatch::{Ctx, S3Request};
use crate::request::{Query, header};
use crate::response::{empty_response, owner_xml, xml_response};
use crate::time;
use crate::xml::{self, elem};
use http::{HeaderMap, Response, StatusCode};
use s3proxy_core::{BucketName, Error, GetOptions, ListOptions, ObjectKey, Result};

/// Canned ACLs that mean what s3proxy does anyway: only the owner has access.
const PRIVATE_ACLS: &[&str] = &["private", "bucket-owner-full-control", "bucket-owner-read"];

/// Refuse an ACL s3proxy cannot honour: every object is private, so a canned ACL that
/// would open one (`public-read`...) or an explicit grant is NotImplemented rather than
/// silently ignored.
pub(crate) fn check_acl_headers(headers: &HeaderMap) -> Result<()> {
    if let Some(acl) = header(headers, "x-amz-acl")
        && !PRIVATE_ACLS.contains(&acl.trim())
    {
        return Err(Error::NotImplemented(format!(
            "the canned ACL {acl:?}: s3proxy keeps every bucket and object private"
        )));
    }
    if let Some(name) = headers
        .keys()
        .map(|n| n.as_str())
        .find(|n| n.starts_with("x-amz-grant-"))
    {
        return Err(Error::NotImplemented(format!(
            "the {name} header: s3proxy keeps every bucket and object private"
        )));
    }
    Ok(())
}

fn acl_document() -> String {
    let mut out = xml::open("AccessControlPolicy");
    owner_xml(&mut out);
    out.push_str(
        "<AccessControlList><Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>s3proxy</ID><DisplayName>s3proxy</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList>",
    );
    out.push_str("</AccessControlPolicy>");
    out
}

/// The bucket, or the object when `key` is given, exists (else NoSuchBucket, NoSuchKey).
async fn exists(ctx: &Ctx, bucket: &BucketName, key: Option<&ObjectKey>) -> Result<()> {
    match key {
        None => ctx.backend.head_bucket(bucket).await,
        Some(key) => ctx
            .backend
            .head_object(bucket, key, GetOptions::default())
            .await
            .map(|_| ()),
    }
}

/// GetBucketAcl and GetObjectAcl: the owner with FULL_CONTROL.
pub(crate) async fn get_acl(
    ctx: &Ctx,
    bucket: &BucketName,
    key: Option<&ObjectKey>,
) -> Result<Response<ResponseBody>> {
    exists(ctx, bucket, key).await?;
    xml_response(acl_document())
}

/// PutBucketAcl and PutObjectAcl: accepted when they ask for what is already so (the
/// private canned ACL, or a policy granting only the owner FULL_CONTROL).
pub(crate) async fn put_acl(
    ctx: &Ctx,
    bucket: &BucketName,
    key: Option<&ObjectKey>,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    check_acl_headers(&req.headers)?;
    let body = read_xml_body(req).await?;
    if !body.trim().is_empty() {
        let policy = xml::parse_acl(&body)?;
        let only_owner = policy.grants().iter().all(|g| {
            g.permission == "FULL_CONTROL" && g.grantee.uri.is_none() && g.grantee.email.is_none()
        });
        if !only_owner {
            return Err(Error::NotImplemented(
                "an ACL granting others access: s3proxy keeps every bucket and object private"
                    .into(),
            ));
        }
    }
    exists(ctx, bucket, key).await?;
    empty_response(StatusCode::OK)
}

/// GetObjectTagging: an object without tags.
pub(crate) async fn get_object_tagging(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>> {
    ctx.backend
        .head_object(bucket, key, GetOptions::default())
        .await?;
    let mut out = xml::open("Tagging");
    out.push_str("<TagSet></TagSet></Tagging>");
    xml_response(out)
}

/// ListObjectVersions of an unversioned bucket: each object once, as version `null`,
/// the latest; paged by `key-marker` like ListObjects by `marker`.
pub(crate) async fn list_object_versions(
    ctx: &Ctx,
    bucket: &BucketName,
    query: &Query,
) -> Result<Response<ResponseBody>> {
    let enc = crate::list::key_encoding(query)?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let delimiter = query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let max_keys = crate::list::max_keys(query)?;
    let key_marker = query.get("key-marker").filter(|m| !m.is_empty());
    // Every object has the one version `null`: a version marker on a key means that
    // key's version was listed already.
    let page = ctx
        .backend
        .list_objects(
            bucket,
            ListOptions {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                start_after: key_marker.map(str::to_string),
                max_keys,
            },
        )
        .await?;
    let truncated = page.is_truncated && max_keys > 0;
    let mut out = xml::open("ListVersionsResult");
    elem(&mut out, "Name", bucket.as_str());
    elem(&mut out, "Prefix", &enc(&prefix));
    elem(&mut out, "KeyMarker", &enc(key_marker.unwrap_or("")));
    elem(
        &mut out,
        "VersionIdMarker",
        query.get("version-id-marker").unwrap_or(""),
    );
    if let Some(d) = &delimiter {
        elem(&mut out, "Delimiter", &enc(d));
    }
    elem(&mut out, "MaxKeys", &max_keys.to_string());
    if query.get("encoding-type").is_some() {
        elem(&mut out, "EncodingType", "url");
    }
    elem(
        &mut out,
        "IsTruncated",
        if truncated { "true" } else { "false" },
    );
    if truncated && let Some(next) = &page.next_marker {
        elem(&mut out, "NextKeyMarker", &enc(next));
        elem(&mut out, "NextVersionIdMarker", "null");
    }
    for o in &page.objects {
        out.push_str("<Version>");
        elem(&mut out, "Key", &enc(&o.key));
        elem(&mut out, "VersionId", "null");
        elem(&mut out, "IsLatest", "true");
        elem(&mut out, "LastModified", &time::iso8601(o.last_modified));
        elem(&mut out, "ETag", &o.etag.quoted());
        elem(&mut out, "Size", &o.size.to_string());
        owner_xml(&mut out);
        elem(&mut out, "StorageClass", "STANDARD");
        out.push_str("</Version>");
    }
    for p in &page.common_prefixes {
        out.push_str("<CommonPrefixes>");
        elem(&mut out, "Prefix", &enc(p));
        out.push_str("</CommonPrefixes>");
    }
    out.push_str("</ListVersionsResult>");
    xml_response(out)
}
