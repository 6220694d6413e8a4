//! Multipart uploads: create, upload part, complete, abort, list parts, list uploads.

use crate::object::quoted;
use crate::request::{self, Query};
use crate::xml::{self, elem};
use crate::{
    Ctx, ResponseBody, S3Request, empty_response, owner_xml, read_xml_body, time, xml_response,
};
use http::{Response, StatusCode};
use s3proxy_core::*;

pub(crate) async fn create(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    let metadata = request::metadata_from_headers(&req.headers)?;
    let id = ctx
        .backend
        .create_multipart_upload(bucket, key, MultipartOptions { metadata })
        .await?;
    let mut out = xml::open("InitiateMultipartUploadResult");
    elem(&mut out, "Bucket", bucket.as_str());
    elem(&mut out, "Key", key.as_str());
    elem(&mut out, "UploadId", id.as_str());
    out.push_str("</InitiateMultipartUploadResult>");
    xml_response(out)
}

pub(crate) async fn upload_part(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    part_number: u32,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    let length = request::data_length(&req.headers, req.chunked)?;
    let opts = PartOptions {
        content_md5: request::content_md5(&req.headers)?,
    };
    let body = Body {
        stream: req.body,
        length,
    };
    let etag = ctx
        .backend
        .upload_part(bucket, key, upload_id, part_number, body, opts)
        .await?;
    let mut r = empty_response(StatusCode::OK)?;
    r.headers_mut().insert("etag", quoted(&etag)?);
    Ok(r)
}

pub(crate) async fn complete(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    let doc = xml::parse_complete(&read_xml_body(req).await?)?;
    if doc.parts.is_empty() || doc.parts.len() > MAX_PART_NUMBER as usize {
        return Err(Error::MalformedXml);
    }
    let parts = doc
        .parts
        .into_iter()
        .map(|p| CompletedPart {
            part_number: p.part_number,
            etag: p.etag.trim().trim_matches('"').to_string(),
        })
        .collect();
    let (backend, bucket, key, upload_id) = (
        ctx.backend.clone(),
        bucket.clone(),
        key.clone(),
        upload_id.clone(),
    );
    crate::xml_keepalive(ctx, async move {
        let done = backend
            .complete_multipart_upload(&bucket, &key, &upload_id, parts)
            .await?;
        let mut out = xml::open("CompleteMultipartUploadResult");
        elem(&mut out, "Location", &format!("/{bucket}/{key}"));
        elem(&mut out, "Bucket", bucket.as_str());
        elem(&mut out, "Key", key.as_str());
        elem(&mut out, "ETag", &format!("\"{}\"", done.etag));
        out.push_str("</CompleteMultipartUploadResult>");
        Ok(out)
    })
    .await
}

pub(crate) async fn abort(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
) -> Result<Response<ResponseBody>> {
    ctx.backend
        .abort_multipart_upload(bucket, key, upload_id)
        .await?;
    empty_response(StatusCode::NO_CONTENT)
}

fn number(query: &Query, name: &str, default: usize, max: usize) -> Result<usize> {
    match query.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| Error::InvalidArgument(format!("{name} must be a non-negative integer"))),
    }
}

pub(crate) async fn list_parts(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    query: &Query,
) -> Result<Response<ResponseBody>> {
    let max_parts = number(query, "max-parts", 1000, 1000)?;
    let marker = number(query, "part-number-marker", 0, MAX_PART_NUMBER as usize)? as u32;
    let page = ctx
        .backend
        .list_parts(
            bucket,
            key,
            upload_id,
            ListPartsOptions {
                part_number_marker: marker,
                max_parts,
            },
        )
        .await?;
    let mut out = xml::open("ListPartsResult");
    elem(&mut out, "Bucket", bucket.as_str());
    elem(&mut out, "Key", key.as_str());
    elem(&mut out, "UploadId", upload_id.as_str());
    owner_xml(&mut out);
    out.push_str("<Initiator><ID>s3proxy</ID><DisplayName>s3proxy</DisplayName></Initiator>");
    elem(&mut out, "StorageClass", "STANDARD");
    elem(&mut out, "PartNumberMarker", &marker.to_string());
    if let Some(next) = page.next_part_number_marker {
        elem(&mut out, "NextPartNumberMarker", &next.to_string());
    }
    elem(&mut out, "MaxParts", &max_parts.to_string());
    elem(
        &mut out,
        "IsTruncated",
        if page.is_truncated { "true" } else { "false" },
    );
    for p in &page.parts {
        out.push_str("<Part>");
        elem(&mut out, "PartNumber", &p.part_number.to_string());
        elem(&mut out, "LastModified", &time::iso8601(p.last_modified));
        elem(&mut out, "ETag", &format!("\"{}\"", p.etag));
        elem(&mut out, "Size", &p.size.to_string());
        out.push_str("</Part>");
    }
    out.push_str("</ListPartsResult>");
    xml_response(out)
}

pub(crate) async fn list_uploads(
    ctx: &Ctx,
    bucket: &BucketName,
    query: &Query,
) -> Result<Response<ResponseBody>> {
    let max_uploads = number(query, "max-uploads", 1000, 1000)?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let page = ctx
        .backend
        .list_multipart_uploads(
            bucket,
            ListUploadsOptions {
                prefix: prefix.clone(),
                max_uploads,
            },
        )
        .await?;
    let mut out = xml::open("ListMultipartUploadsResult");
    elem(&mut out, "Bucket", bucket.as_str());
    elem(&mut out, "KeyMarker", "");
    elem(&mut out, "UploadIdMarker", "");
    elem(&mut out, "Prefix", &prefix);
    elem(&mut out, "MaxUploads", &max_uploads.to_string());
    elem(
        &mut out,
        "IsTruncated",
        if page.is_truncated { "true" } else { "false" },
    );
    for u in &page.uploads {
        out.push_str("<Upload>");
        elem(&mut out, "Key", &u.key);
        elem(&mut out, "UploadId", u.upload_id.as_str());
        out.push_str("<Initiator><ID>s3proxy</ID><DisplayName>s3proxy</DisplayName></Initiator>");
        owner_xml(&mut out);
        elem(&mut out, "StorageClass", "STANDARD");
        elem(&mut out, "Initiated", &time::iso8601(u.initiated));
        out.push_str("</Upload>");
    }
    out.push_str("</ListMultipartUploadsResult>");
    xml_response(out)
}
