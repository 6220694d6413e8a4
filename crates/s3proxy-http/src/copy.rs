//! CopyObject and UploadPartCopy.

use crate::body::ResponseBody;
use crate::dispatch::{Ctx, S3Request};
use crate::request::{self, header};
use crate::response::xml_keepalive;
use crate::time;
use crate::xml::{self, elem};
use http::Response;
use percent_encoding::percent_decode_str;
use s3proxy_core::*;
use std::time::SystemTime;

/// Parse `x-amz-copy-source`: `[/]bucket/key[?versionId=...]`, URL-encoded; AccessDenied
/// when the signer may not read the source bucket.
pub(crate) fn copy_source(req: &S3Request) -> Result<(BucketName, ObjectKey)> {
    let raw = header(&req.headers, "x-amz-copy-source")
        .ok_or_else(|| Error::InvalidArgument("missing x-amz-copy-source".into()))?;
    // The signature sees whitespace runs collapsed to one space: a tab or a double
    // space would let a captured request name another key. S3 wants the source
    // URL-encoded, so no client needs either.
    if raw.contains(['\t', '\r', '\n']) || raw.contains("  ") {
        return Err(Error::InvalidArgument(
            "x-amz-copy-source must be URL-encoded".into(),
        ));
    }
    let raw = raw
        .split_once("?versionId=")
        .map_or(raw.as_str(), |(p, _)| p);
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::InvalidArgument("Invalid copy source encoding".into()))?;
    let path = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (bucket, key) = path.split_once('/').ok_or_else(|| {
        Error::InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey".into(),
        )
    })?;
    let (bucket, key) = (BucketName::new(bucket)?, ObjectKey::new(key)?);
    // Copying is reading: the source must be readable by whoever asks for the copy.
    req.grants
        .require(bucket.as_str(), crate::auth::grants::Access::Read)?;
    Ok((bucket, key))
}

fn copy_result(root: &str, etag: &ETag, modified: SystemTime) -> String {
    let mut out = xml::open(root);
    elem(&mut out, "LastModified", &time::iso8601(modified));
    elem(&mut out, "ETag", &etag.quoted());
    out.push_str(&format!("</{root}>"));
    out
}

pub(crate) async fn copy_object(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    let (src_bucket, src_key) = copy_source(&req)?;
    let directive = match header(&req.headers, "x-amz-metadata-directive").as_deref() {
        None | Some("COPY") => MetadataDirective::Copy,
        Some("REPLACE") => {
            MetadataDirective::Replace(request::metadata_from_headers(&req.headers)?)
        }
        Some(other) => {
            return Err(Error::InvalidArgument(format!(
                "Unknown metadata directive {other}"
            )));
        }
    };
    if src_bucket == *bucket && src_key == *key && directive == MetadataDirective::Copy {
        return Err(Error::InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into(),
        ));
    }
    let opts = CopyOptions {
        directive,
        source_conditions: request::conditions(&req.headers, "x-amz-copy-source-"),
    };
    let (backend, bucket, key) = (ctx.backend.clone(), bucket.clone(), key.clone());
    xml_keepalive(ctx, async move {
        let done = backend
            .copy_object(&src_bucket, &src_key, &bucket, &key, opts)
            .await?;
        Ok(copy_result(
            "CopyObjectResult",
            &done.etag,
            done.last_modified,
        ))
    })
    .await
}

pub(crate) async fn upload_part_copy(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    part_number: u32,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    let (src_bucket, src_key) = copy_source(&req)?;
    let range = match header(&req.headers, "x-amz-copy-source-range") {
        Some(v) => match ByteRange::parse(&v)? {
            Some(r @ ByteRange::FromTo(..)) => Some(r),
            _ => {
                return Err(Error::InvalidArgument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last".into(),
                ));
            }
        },
        None => None,
    };
    if let Some(ByteRange::FromTo(first, last)) = range {
        // S3 refuses a copy range that runs past the end rather than clamping it, and
        // says so with InvalidArgument (not the InvalidRange of a GET).
        let info = ctx
            .backend
            .head_object(&src_bucket, &src_key, GetOptions::default())
            .await?;
        if last >= info.size || first > last {
            return Err(Error::InvalidArgument(format!(
                "Range specified is not valid for source object of size: {}",
                info.size
            )));
        }
    }
    let opts = GetOptions {
        range,
        conditions: request::conditions(&req.headers, "x-amz-copy-source-"),
        ..Default::default()
    };
    let (backend, bucket, key, upload_id) = (
        ctx.backend.clone(),
        bucket.clone(),
        key.clone(),
        upload_id.clone(),
    );
    xml_keepalive(ctx, async move {
        let etag = backend
            .upload_part_copy(
                &bucket,
                &key,
                &upload_id,
                part_number,
                &src_bucket,
                &src_key,
                opts,
            )
            .await?;
        Ok(copy_result("CopyPartResult", &etag, SystemTime::now()))
    })
    .await
}
