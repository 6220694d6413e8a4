//! Multipart uploads: create, upload part, complete, abort, list parts, list uploads.

use crate::body::{ResponseBody, read_xml_body};
use crate::dispatch::{Ctx, S3Request};
use crate::object::quoted;
use crate::request::{self, Query};
use crate::response::{empty_response, owner_xml, xml_keepalive, xml_response};
use crate::time;
use crate::xml::{self, elem};
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
    let opts = PartOptions {
        content_md5: request::content_md5(&req.headers)?,
    };
    let body = crate::spill::sized_body(&req.headers, req.chunked, req.body).await?;
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
            etag: ETag::new(p.etag.trim()),
        })
        .collect();
    let (backend, bucket, key, upload_id) = (
        ctx.backend.clone(),
        bucket.clone(),
        key.clone(),
        upload_id.clone(),
    );
    xml_keepalive(ctx, async move {
        let done = backend
            .complete_multipart_upload(&bucket, &key, &upload_id, parts)
            .await?;
        let mut out = xml::open("CompleteMultipartUploadResult");
        elem(&mut out, "Location", &format!("/{bucket}/{key}"));
        elem(&mut out, "Bucket", bucket.as_str());
        elem(&mut out, "Key", key.as_str());
        elem(&mut out, "ETag", &done.etag.quoted());
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
        elem(&mut out, "ETag", &p.etag.quoted());
        elem(&mut out, "Size", &p.size.to_string());
        out.push_str("</Part>");
    }
    out.push_str("</ListPartsResult>");
    xml_response(out)
}

/// ListMultipartUploads: uploads in key order, paged by `key-marker` and
/// `upload-id-marker`, rolled up into CommonPrefixes by `delimiter`.
pub(crate) async fn list_uploads(
    ctx: &Ctx,
    bucket: &BucketName,
    query: &Query,
) -> Result<Response<ResponseBody>> {
    let max_uploads = number(query, "max-uploads", 1000, 1000)?;
    let url = query.get("encoding-type").is_some();
    let enc = crate::list::key_encoding(query)?;
    let prefix = query.get("prefix").unwrap_or("");
    let delimiter = query.get("delimiter").filter(|d| !d.is_empty());
    let key_marker = query.get("key-marker").unwrap_or("");
    // As on S3, an upload-id marker counts only with a key marker.
    let id_marker = query
        .get("upload-id-marker")
        .filter(|m| !m.is_empty() && !key_marker.is_empty());
    let list = |prefix: &str, key_marker: &str, max_uploads: usize| {
        ctx.backend.list_multipart_uploads(
            bucket,
            ListUploadsOptions {
                prefix: prefix.to_string(),
                max_uploads,
                key_marker: key_marker.to_string(),
            },
        )
    };
    // With an upload-id marker, the page starts with the marker key's own uploads after
    // that id (in initiation order, as listed); an id no longer listed (completed or
    // aborted since) restarts that key's uploads rather than skip any. Backends page by
    // key only, so one key's uploads are listed whole, up to the 1000 a page may hold;
    // beyond that the listing moves on to the next keys.
    let mut candidates = vec![];
    // The marker key has more uploads than this page holds: this page is only theirs.
    let mut marker_key_continues = false;
    if let Some(id_marker) = id_marker
        && key_marker.starts_with(prefix)
    {
        let same = list(key_marker, "", 1000).await?;
        let own: Vec<UploadInfo> = same
            .uploads
            .into_iter()
            .filter(|u| u.key == key_marker)
            .collect();
        let after = own
            .iter()
            .position(|u| u.upload_id.as_str() == id_marker)
            .map_or(0, |at| at + 1);
        candidates.extend(own.into_iter().skip(after));
        marker_key_continues = candidates.len() > max_uploads;
    }
    let rest = if marker_key_continues {
        ListUploadsResult {
            uploads: vec![],
            is_truncated: true,
        }
    } else {
        list(prefix, key_marker, max_uploads).await?
    };
    let truncated = rest.is_truncated;
    let mut uploads = vec![];
    let mut common_prefixes: Vec<&str> = vec![];
    let mut next: Option<(String, Option<String>)> = None;
    let mut full = false;
    let all: Vec<UploadInfo> = candidates
        .into_iter()
        .chain(rest.uploads)
        .filter(|u| u.key.starts_with(prefix))
        .collect();
    for u in &all {
        // A backend may list a key outside the prefix asked for: it rolls up to nothing
        // instead of being sliced at a byte that may not be a character boundary.
        let rolled = s3proxy_core::list::common_prefix(&u.key, prefix, delimiter);
        if let Some(cp) = rolled {
            // Continuing after a common prefix: its keys were rolled up already.
            if cp == key_marker || common_prefixes.last() == Some(&cp) {
                next = Some((u.key.clone(), Some(u.upload_id.to_string())));
                continue;
            }
        }
        if uploads.len() + common_prefixes.len() == max_uploads {
            full = true;
            break;
        }
        match rolled {
            Some(cp) => {
                common_prefixes.push(cp);
                next = Some((cp.to_string(), None));
            }
            None => {
                uploads.push(u);
                next = Some((u.key.clone(), Some(u.upload_id.to_string())));
            }
        }
    }
    let truncated = full || truncated;
    let mut out = xml::open("ListMultipartUploadsResult");
    elem(&mut out, "Bucket", bucket.as_str());
    elem(&mut out, "KeyMarker", &enc(key_marker));
    elem(&mut out, "UploadIdMarker", id_marker.unwrap_or(""));
    if truncated && let Some((key, id)) = &next {
        elem(&mut out, "NextKeyMarker", &enc(key));
        elem(&mut out, "NextUploadIdMarker", id.as_deref().unwrap_or(""));
    }
    if let Some(d) = delimiter {
        elem(&mut out, "Delimiter", &enc(d));
    }
    elem(&mut out, "Prefix", &enc(prefix));
    elem(&mut out, "MaxUploads", &max_uploads.to_string());
    if url {
        elem(&mut out, "EncodingType", "url");
    }
    elem(
        &mut out,
        "IsTruncated",
        if truncated { "true" } else { "false" },
    );
    for u in uploads {
        out.push_str("<Upload>");
        elem(&mut out, "Key", &enc(&u.key));
        elem(&mut out, "UploadId", u.upload_id.as_str());
        out.push_str("<Initiator><ID>s3proxy</ID><DisplayName>s3proxy</DisplayName></Initiator>");
        owner_xml(&mut out);
        elem(&mut out, "StorageClass", "STANDARD");
        elem(&mut out, "Initiated", &time::iso8601(u.initiated));
        out.push_str("</Upload>");
    }
    for cp in common_prefixes {
        out.push_str("<CommonPrefixes>");
        elem(&mut out, "Prefix", &enc(cp));
        out.push_str("</CommonPrefixes>");
    }
    out.push_str("</ListMultipartUploadsResult>");
    xml_response(out)
}
