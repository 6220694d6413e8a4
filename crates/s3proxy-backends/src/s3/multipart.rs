//! Multipart uploads: create, upload parts (from a body or by copy), complete, abort, and
//! list parts and uploads.
//!
//! A completion is checked against the server's ListParts before it is sent, because
//! not every server checks it itself; upload ids go through [`ids`](super::ids).

use super::S3;
use super::body::sdk_body;
use super::errors::Call;
use super::headers::{copy_source, md5_header, to_system_time};
use super::ids::{decode_upload_id, encode_upload_id, unquote};
use super::keys;
use super::metadata::{check_internal, expires_mutation, join_metadata, with_headers};
use super::quirks::RootFix;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::CompletedMultipartUpload;
use s3proxy_core::{
    Body, BucketName, ByteRange, CompletedPart, Conditions, ETag, Error, GetOptions,
    ListPartsOptions, ListPartsResult, ListUploadsOptions, ListUploadsResult, MultipartOptions,
    ObjectKey, PartInfo, PartOptions, PutResult, Result, UploadId, UploadInfo,
};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// `Backend::create_multipart_upload`.
pub(super) async fn create(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    opts: MultipartOptions,
) -> Result<UploadId> {
    check_internal(&opts.metadata)?;
    let call = Call::object("CreateMultipartUpload", bucket, key.as_str());
    let req = s3
        .client
        .create_multipart_upload()
        .bucket(s3.backend_bucket(bucket))
        .key(keys::wire(key.as_str()))
        .set_metadata(Some(join_metadata(&opts.metadata)));
    let req = with_headers!(req, &opts.metadata.headers);
    let out = req
        .customize()
        .mutate_request(expires_mutation(opts.metadata.headers.expires.clone()))
        .send()
        .await
        .map_err(|e| s3.map_err(call, e, Error::NoSuchBucket))?;
    let id = out
        .upload_id()
        .ok_or_else(|| s3.unavailable("CreateMultipartUpload", "the response has no upload id"))?;
    proxy_upload_id(s3, call, id)
}

/// `Backend::upload_part`.
pub(super) async fn upload_part(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    part_number: u32,
    body: Body,
    opts: PartOptions,
) -> Result<ETag> {
    let (stream, length, failure) = sdk_body(body, opts.content_md5);
    let call = Call::object("UploadPart", bucket, key.as_str()).upload(upload_id);
    let req = s3
        .client
        .upload_part()
        .bucket(s3.backend_bucket(bucket))
        .key(keys::wire(key.as_str()))
        .upload_id(decode_upload_id(upload_id)?)
        .part_number(part_number as i32)
        .content_length(length)
        .set_content_md5(md5_header(opts.content_md5))
        .body(stream);
    let result = s3
        .with_body(&failure, async {
            req.send()
                .await
                .map_err(|e| s3.map_err(call, e, Error::NoSuchUpload))
        })
        .await;
    match result {
        Ok(out) => Ok(unquote(out.e_tag())),
        // moto answers a part for an aborted or completed upload with a bare 500
        // (an unhandled KeyError) instead of NoSuchUpload. Ask whether the upload
        // still exists before calling it a server failure; only on this error path.
        Err(err @ (Error::Backend { .. } | Error::ServiceUnavailable(_) | Error::Internal(_))) => {
            let probe = ListPartsOptions {
                max_parts: 1,
                ..Default::default()
            };
            match list_parts(s3, bucket, key, upload_id, probe).await {
                Err(Error::NoSuchUpload) => Err(Error::NoSuchUpload),
                _ => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

/// `Backend::upload_part_copy`: UploadPartCopy, with any range resolved to first-last.
// The arguments of the trait method it implements.
#[allow(clippy::too_many_arguments)]
pub(super) async fn upload_part_copy(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    part_number: u32,
    src_bucket: &BucketName,
    src_key: &ObjectKey,
    src: GetOptions,
) -> Result<ETag> {
    let c = &src.conditions;
    // x-amz-copy-source-range only has the first-last form: resolve the others
    // against the source's size.
    let range = match src.range {
        None => None,
        Some(ByteRange::FromTo(a, b)) => Some((a, b)),
        Some(r) => {
            let info = s3
                .head_raw(src_bucket, src_key, &Conditions::default())
                .await?;
            Some(r.resolve(info.size)?)
        }
    };
    let out = s3
        .client
        .upload_part_copy()
        .bucket(s3.backend_bucket(bucket))
        .key(keys::wire(key.as_str()))
        .upload_id(decode_upload_id(upload_id)?)
        .part_number(part_number as i32)
        .copy_source(copy_source(&s3.backend_bucket(src_bucket), src_key))
        .set_copy_source_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
        .set_copy_source_if_match(c.if_match.clone())
        .set_copy_source_if_none_match(c.if_none_match.clone())
        .set_copy_source_if_modified_since(c.if_modified_since.map(DateTime::from))
        .set_copy_source_if_unmodified_since(c.if_unmodified_since.map(DateTime::from))
        .send()
        .await
        .map_err(|e| {
            let call = Call::object("UploadPartCopy", bucket, key.as_str())
                .upload(upload_id)
                .source(src_bucket, src_key.as_str());
            s3.map_err(call, e, Error::NoSuchKey)
        })?;
    Ok(unquote(out.copy_part_result().and_then(|r| r.e_tag())))
}

/// `Backend::complete_multipart_upload`, once the part list checks out against
/// ListParts.
pub(super) async fn complete(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    parts: Vec<CompletedPart>,
) -> Result<PutResult> {
    // S3 refuses part lists out of order, naming a missing part or a wrong ETag, or
    // with a non-last part under 5 MiB. Some servers do not check (moto completes an
    // out-of-order list, s3s-fs ignores ETags and sizes), which would assemble the
    // wrong object; so the list is checked against ListParts here, for every server,
    // at the cost of one listing per 1000 parts.
    if parts.is_empty() {
        return Err(Error::MalformedXml);
    }
    if parts
        .windows(2)
        .any(|w| w[1].part_number <= w[0].part_number)
    {
        return Err(Error::InvalidPartOrder);
    }
    let mut uploaded = BTreeMap::new();
    let mut marker = 0;
    loop {
        let page = list_parts(
            s3,
            bucket,
            key,
            upload_id,
            ListPartsOptions {
                part_number_marker: marker,
                max_parts: 1000,
            },
        )
        .await?;
        for p in page.parts {
            uploaded.insert(p.part_number, p);
        }
        match page.next_part_number_marker {
            Some(next) if page.is_truncated && next > marker => marker = next,
            _ => break,
        }
    }
    // A server that lists parts without ETags (s3s-fs) leaves only presence, order
    // and sizes to check here.
    for want in &parts {
        if let Some(have) = uploaded.get_mut(&want.part_number)
            && have.etag.is_empty()
        {
            have.etag = want.etag.clone();
        }
    }
    if let Err(e) = crate::common::select_parts(&parts, &uploaded) {
        log::debug!(
            "backend {}: refusing completion: {e}; uploaded {uploaded:?}",
            s3.name
        );
        return Err(e);
    }
    let parts = parts
        .iter()
        .map(|p| {
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(p.part_number as i32)
                .e_tag(p.etag.quoted())
                .build()
        })
        .collect();
    let out = s3
        .client
        .complete_multipart_upload()
        .bucket(s3.backend_bucket(bucket))
        .key(keys::wire(key.as_str()))
        .upload_id(decode_upload_id(upload_id)?)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .customize()
        .interceptor(RootFix {
            operation: "CompleteMultipartUpload",
        })
        .send()
        .await
        .map_err(|e| {
            let call = Call::object("CompleteMultipartUpload", bucket, key.as_str());
            s3.map_err(call.upload(upload_id), e, Error::NoSuchUpload)
        })?;
    Ok(PutResult {
        etag: unquote(out.e_tag()),
        last_modified: SystemTime::now(),
    })
}

/// `Backend::abort_multipart_upload`.
pub(super) async fn abort(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
) -> Result<()> {
    s3.client
        .abort_multipart_upload()
        .bucket(s3.backend_bucket(bucket))
        .key(keys::wire(key.as_str()))
        .upload_id(decode_upload_id(upload_id)?)
        .send()
        .await
        .map_err(|e| {
            let call = Call::object("AbortMultipartUpload", bucket, key.as_str());
            s3.map_err(call.upload(upload_id), e, Error::NoSuchUpload)
        })?;
    Ok(())
}

/// `Backend::list_parts`, in ascending part order whatever the server's.
pub(super) async fn list_parts(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &UploadId,
    opts: ListPartsOptions,
) -> Result<ListPartsResult> {
    let max = if opts.max_parts == 0 {
        1000
    } else {
        opts.max_parts.min(1000)
    };
    let out = s3
        .client
        .list_parts()
        .bucket(s3.backend_bucket(bucket))
        .key(keys::wire(key.as_str()))
        .upload_id(decode_upload_id(upload_id)?)
        .max_parts(max as i32)
        .set_part_number_marker(
            (opts.part_number_marker > 0).then(|| opts.part_number_marker.to_string()),
        )
        .customize()
        .interceptor(RootFix {
            operation: "ListParts",
        })
        .send()
        .await
        .map_err(|e| {
            let call = Call::object("ListParts", bucket, key.as_str());
            s3.map_err(call.upload(upload_id), e, Error::NoSuchUpload)
        })?;
    let parts = out
        .parts()
        .iter()
        .map(|p| PartInfo {
            part_number: p.part_number().unwrap_or(0).max(0) as u32,
            etag: unquote(p.e_tag()),
            size: p.size().unwrap_or(0).max(0) as u64,
            last_modified: to_system_time(p.last_modified()),
        })
        .collect::<Vec<_>>();
    // S3 lists parts in ascending order; s3s-fs lists them in directory order.
    let mut parts = parts;
    parts.sort_by_key(|p| p.part_number);
    let is_truncated = out.is_truncated().unwrap_or(false);
    Ok(ListPartsResult {
        is_truncated,
        next_part_number_marker: if is_truncated {
            out.next_part_number_marker()
                .and_then(|m| m.parse().ok())
                .or_else(|| parts.last().map(|p| p.part_number))
        } else {
            None
        },
        parts,
    })
}

/// `Backend::list_multipart_uploads`, held to S3's order and paging.
pub(super) async fn list_uploads(
    s3: &S3,
    bucket: &BucketName,
    opts: ListUploadsOptions,
) -> Result<ListUploadsResult> {
    let max = if opts.max_uploads == 0 {
        1000
    } else {
        opts.max_uploads.min(1000)
    };
    let call = Call::bucket("ListMultipartUploads", bucket);
    let out = s3
        .client
        .list_multipart_uploads()
        .bucket(s3.backend_bucket(bucket))
        .prefix(opts.prefix.clone())
        .set_key_marker((!opts.key_marker.is_empty()).then(|| opts.key_marker.clone()))
        .max_uploads(max as i32)
        .send()
        .await
        .map_err(|e| s3.map_err(call, e, Error::NoSuchBucket))?;
    let mut uploads = Vec::new();
    for u in out.uploads() {
        let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
            continue;
        };
        uploads.push(UploadInfo {
            key: key.to_string(),
            upload_id: proxy_upload_id(s3, call, id)?,
            initiated: to_system_time(u.initiated()),
        });
    }
    // Some servers (moto) ignore key-marker and max-uploads, and list in creation
    // order: hold them to S3's order and both parameters.
    uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.cmp(&b.initiated)));
    uploads.retain(|u| u.key > opts.key_marker);
    let mut is_truncated = out.is_truncated().unwrap_or(false);
    if uploads.len() > max {
        uploads.truncate(max);
        is_truncated = true;
    }
    Ok(ListUploadsResult {
        uploads,
        is_truncated,
    })
}

/// The proxy's id for the server's upload id `backend_id`, from the response to `call`.
fn proxy_upload_id(s3: &S3, call: Call<'_>, backend_id: &str) -> Result<UploadId> {
    encode_upload_id(backend_id).map_err(|e| {
        // An answer the proxy cannot use: the request failed at the backend.
        let e = s3.failed(call.op(), e);
        s3.internal_context(call, e, None)
    })
}
