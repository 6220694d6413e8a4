//! Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.

use crate::body::{ResponseBody, read_xml_body, stream_body};
use crate::dispatch::{Ctx, S3Request};
use crate::request::{self, header};
use crate::response::{empty_response, xml_response};
use crate::time;
use crate::xml::{self, elem};
use http::{HeaderValue, Response, StatusCode, response::Builder};
use s3proxy_core::*;

pub(crate) async fn put_object(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    let opts = PutOptions {
        metadata: request::metadata_from_headers(&req.headers)?,
        content_md5: request::content_md5(&req.headers)?,
    };
    let body = crate::spill::sized_body(&req.headers, req.chunked, req.body).await?;
    let put = ctx.backend.put_object(bucket, key, body, opts).await?;
    let mut r = empty_response(StatusCode::OK)?;
    r.headers_mut().insert("etag", quoted(&put.etag)?);
    Ok(r)
}

pub(crate) fn quoted(etag: &ETag) -> Result<HeaderValue> {
    HeaderValue::from_str(&etag.quoted())
        .map_err(|_| Error::Internal(format!("unprintable ETag {etag:?}")))
}

/// Content-Type to serve: the stored one, else one guessed from the key's extension.
pub(crate) fn content_type(info: &ObjectInfo) -> String {
    info.metadata
        .headers
        .content_type
        .clone()
        .or_else(|| {
            mime_guess::from_path(info.key.as_str())
                .first_raw()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "application/octet-stream".into())
}

fn add(builder: Builder, name: &str, value: &str) -> Builder {
    match HeaderValue::from_str(value) {
        Ok(v) => builder.header(name, v),
        // Stored values are kept as bytes; drop what HTTP cannot carry rather than fail.
        Err(_) => match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(v) => builder.header(name, v),
            Err(_) => builder,
        },
    }
}

/// The headers GET and HEAD answer with.
fn object_headers(mut b: Builder, info: &ObjectInfo, query: &request::Query) -> Result<Builder> {
    let h = &info.metadata.headers;
    let pick = |param: &str, stored: Option<&String>| -> Option<String> {
        query
            .get(param)
            .map(str::to_string)
            .or_else(|| stored.cloned())
    };
    let content_type = query
        .get("response-content-type")
        .map(str::to_string)
        .unwrap_or_else(|| content_type(info));
    b = add(b, "content-type", &content_type);
    b = b
        .header("etag", quoted(&info.etag)?)
        .header("last-modified", time::http_date(info.last_modified))
        .header("accept-ranges", "bytes");
    for (name, param, stored) in [
        (
            "content-encoding",
            "response-content-encoding",
            &h.content_encoding,
        ),
        (
            "content-disposition",
            "response-content-disposition",
            &h.content_disposition,
        ),
        (
            "content-language",
            "response-content-language",
            &h.content_language,
        ),
        ("cache-control", "response-cache-control", &h.cache_control),
        ("expires", "response-expires", &h.expires),
    ] {
        if let Some(v) = pick(param, stored.as_ref()) {
            b = add(b, name, &v);
        }
    }
    for (name, value) in &info.metadata.user {
        b = add(
            b,
            &format!("x-amz-meta-{name}"),
            &user_metadata_value(value),
        );
    }
    Ok(b)
}

/// A user metadata value as S3 sends it: as stored when it is printable ASCII, else as an
/// RFC 2047 encoded word (`=?UTF-8?B?...?=`), which SDKs decode, rather than raw UTF-8
/// bytes that clients read as Latin-1.
pub(crate) fn user_metadata_value(value: &str) -> std::borrow::Cow<'_, str> {
    use base64::Engine;
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
    {
        return value.into();
    }
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(value)
    )
    .into()
}

pub(crate) async fn get_object(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
    req: S3Request,
    with_body: bool,
) -> Result<Response<ResponseBody>> {
    let range_header = match header(&req.headers, "range") {
        Some(v) => ByteRange::parse(&v)?,
        None => None,
    };
    let part_number = match req.query.has("partNumber") {
        true => Some(crate::router::part_number(&req.query)?),
        false => None,
    };
    if part_number.is_some() && req.headers.contains_key("range") {
        // The header's presence is what counts here: one that does not parse as a range
        // (and so is not in the options) is refused with the part too, as S3 does.
        return Err(Error::part_with_range());
    }
    let opts = GetOptions {
        range: range_header,
        conditions: request::conditions(&req.headers, ""),
        part_number,
        ..Default::default()
    };
    // Only a read locates a part's bytes: a HEAD of a part reads it and sends no body.
    let got = if with_body || part_number.is_some() {
        ctx.backend
            .get_object(bucket, key, opts)
            .await
            .map(|got| (got.info, Some(got.range), with_body.then_some(got.body)))
    } else {
        ctx.backend
            .head_object(bucket, key, opts)
            .await
            .map(|info| (info, None, None))
    };
    let (info, range, body) = match got {
        Err(Error::NotModified) => return not_modified(ctx, bucket, key).await,
        other => other?,
    };
    let range = match range {
        Some(resolved) => resolved,
        None => range_header.map(|r| r.resolve(info.size)).transpose()?,
    };
    let mut b = Response::builder();
    b = object_headers(b, &info, &req.query)?;
    if let Some(count) = info.parts_count {
        b = b.header("x-amz-mp-parts-count", count);
    }
    b = match range {
        Some((start, end)) => b
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                "content-range",
                format!("bytes {start}-{end}/{}", info.size),
            )
            .header(
                "content-length",
                end.saturating_sub(start).saturating_add(1),
            ),
        None => b.status(StatusCode::OK).header("content-length", info.size),
    };
    let body = match body {
        Some(stream) => stream_body(stream),
        None => crate::body::empty_body(),
    };
    b.body(body)
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

/// 304 Not Modified with the validators of the current object, as S3 and RFC 9110 send
/// them, so a cache can refresh what it holds.
async fn not_modified(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>> {
    let info = ctx
        .backend
        .head_object(bucket, key, GetOptions::default())
        .await
        .map_err(|_| Error::NotModified)?;
    Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .header("etag", quoted(&info.etag)?)
        .header("last-modified", time::http_date(info.last_modified))
        .body(crate::body::empty_body())
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

pub(crate) async fn delete_object(
    ctx: &Ctx,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<Response<ResponseBody>> {
    ctx.backend.delete_object(bucket, key).await?;
    empty_response(StatusCode::NO_CONTENT)
}

/// S3's limit of keys per DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

pub(crate) async fn delete_objects(
    ctx: &Ctx,
    bucket: &BucketName,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    let doc = xml::parse_delete(&read_xml_body(req).await?)?;
    if doc.objects.is_empty() || doc.objects.len() > MAX_DELETE_KEYS {
        return Err(Error::MalformedXml);
    }
    let mut invalid = vec![];
    let mut keys = vec![];
    for o in doc.objects {
        match ObjectKey::new(o.key.clone()) {
            Ok(k) => keys.push(k),
            Err(e) => invalid.push((o.key, e)),
        }
    }
    let outcomes = ctx.backend.delete_objects(bucket, keys).await?;
    let mut out = xml::open("DeleteResult");
    for o in &outcomes {
        match &o.result {
            Ok(()) if doc.quiet => {}
            Ok(()) => {
                out.push_str("<Deleted>");
                elem(&mut out, "Key", o.key.as_str());
                out.push_str("</Deleted>");
            }
            Err(e) => error_entry(&mut out, o.key.as_str(), e),
        }
    }
    for (key, e) in &invalid {
        error_entry(&mut out, key, e);
    }
    out.push_str("</DeleteResult>");
    xml_response(out)
}

fn error_entry(out: &mut String, key: &str, e: &Error) {
    out.push_str("<Error>");
    elem(out, "Key", key);
    elem(out, "Code", e.code());
    elem(out, "Message", &crate::error::client_message(e));
    out.push_str("</Error>");
}
