//! Bucket operations: ListBuckets, CreateBucket, DeleteBucket, HeadBucket,
//! GetBucketLocation, GetBucketVersioning.

use crate::auth::grants::{Access, Grants};
use crate::body::{ResponseBody, read_xml_body};
use crate::dispatch::{Ctx, S3Request};
use crate::response::{empty_response, owner_xml, xml_response};
use crate::time;
use crate::xml::{self, elem};
use http::{Response, StatusCode};
use s3proxy_core::{BucketName, Error, Result};

pub(crate) async fn list_buckets(ctx: &Ctx, grants: &Grants) -> Result<Response<ResponseBody>> {
    let mut buckets = ctx.backend.list_buckets().await?;
    // A credential sees only the buckets it may reach.
    buckets.retain(|b| grants.access(&b.name).is_some());
    let mut out = xml::open("ListAllMyBucketsResult");
    owner_xml(&mut out);
    out.push_str("<Buckets>");
    for b in buckets {
        out.push_str("<Bucket>");
        elem(&mut out, "Name", &b.name);
        elem(&mut out, "CreationDate", &time::iso8601(b.created));
        out.push_str("</Bucket>");
    }
    out.push_str("</Buckets></ListAllMyBucketsResult>");
    xml_response(out)
}

pub(crate) async fn create_bucket(
    ctx: &Ctx,
    bucket: &BucketName,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    if req.grants.require(bucket.as_str(), Access::Owner).is_err() {
        // S3 tells anyone but the owner that a taken name is taken; a free name this
        // credential may not own is simply refused.
        return Err(match ctx.backend.head_bucket(bucket).await {
            Ok(_) => Error::BucketAlreadyExists,
            Err(_) => Error::AccessDenied("Access Denied".into()),
        });
    }
    let body = read_xml_body(req).await?;
    if !body.trim().is_empty() {
        // Any region is accepted: where data lives is decided by the configured backends.
        xml::parse_create_bucket(&body)?;
    }
    match ctx.backend.create_bucket(bucket).await {
        // S3's legacy us-east-1 answers an owner re-creating its bucket with 200, and
        // clients (s3cmd mb, scripts run twice) rely on it; other regions say 409.
        Err(Error::BucketAlreadyOwnedByYou) if ctx.config.region == "us-east-1" => {}
        other => other?,
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("location", format!("/{bucket}"))
        .header("content-length", 0)
        .body(crate::body::empty_body())
        .map_err(|e| s3proxy_core::Error::Internal(e.to_string()))
}

pub(crate) async fn delete_bucket(
    ctx: &Ctx,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>> {
    ctx.backend.delete_bucket(bucket).await?;
    empty_response(StatusCode::NO_CONTENT)
}

pub(crate) async fn head_bucket(ctx: &Ctx, bucket: &BucketName) -> Result<Response<ResponseBody>> {
    ctx.backend.head_bucket(bucket).await?;
    let mut r = empty_response(StatusCode::OK)?;
    if let Ok(region) = ctx.config.region.parse() {
        r.headers_mut().insert("x-amz-bucket-region", region);
    }
    Ok(r)
}

pub(crate) async fn get_location(ctx: &Ctx, bucket: &BucketName) -> Result<Response<ResponseBody>> {
    ctx.backend.head_bucket(bucket).await?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // us-east-1 is reported as an empty constraint, as S3 does.
    if ctx.config.region == "us-east-1" {
        out.push_str(&format!("<LocationConstraint xmlns=\"{}\"/>", xml::S3_NS));
    } else {
        out.push_str(&format!(
            "<LocationConstraint xmlns=\"{}\">{}</LocationConstraint>",
            xml::S3_NS,
            xml::escape(&ctx.config.region)
        ));
    }
    xml_response(out)
}

pub(crate) async fn get_versioning(
    ctx: &Ctx,
    bucket: &BucketName,
) -> Result<Response<ResponseBody>> {
    ctx.backend.head_bucket(bucket).await?;
    // Versioning has never been enabled: S3 answers with an empty configuration.
    let mut out = xml::open("VersioningConfiguration");
    out.push_str("</VersioningConfiguration>");
    xml_response(out)
}
