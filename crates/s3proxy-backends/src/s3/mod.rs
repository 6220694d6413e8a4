//! The `s3` backend: any S3-compatible service (AWS, MinIO, Ceph, Garage, moto, s3s-fs,
//! another s3proxy) as a storage engine, through the official `aws-sdk-s3`, with the hot
//! object operations over a lean client of their own where the endpoint allows ([`lean`]).
//!
//! Design decisions, and why:
//! - **No SDK retries.** The replication layer above owns the one retry and failover
//!   policy; stacking the SDK's retries under it would multiply attempts and latency.
//! - **Checksums only when an operation requires them**, so servers that predate the
//!   flexible-checksum headers keep working. Content-MD5, when the caller has one, is sent
//!   and also verified locally before the last byte leaves (see [`UploadBody`]).
//! - **Streaming both ways.** A PUT body is handed to the SDK as an `http-body` of known
//!   length; a GET body is handed up chunk by chunk. Nothing holds a whole object.
//! - **Internal metadata** (`s3proxy-*`) is stored as user metadata under the same names
//!   and split back out on HEAD and GET. User metadata whose name starts with the internal
//!   prefix is escaped under [`USER_ESCAPE`] so both maps round-trip exactly, and a
//!   missing Content-Type is remembered so the server's default type is not reported.
//!
//! Where things are:
//! - [`options`]: [`S3Options`], the configuration; [`client`]: building the SDK client
//!   from it (TLS, credentials, timeouts, retries, checksums).
//! - this file: the [`S3`] type and the proxy bucket to backend bucket names.
//! - [`backend`]: the [`Backend`] impl: buckets and single objects, with [`listing`]
//!   (ListObjectsV2 and its name decoding) and [`multipart`] (uploads, parts, and the
//!   check of a completion's part list) beside it.
//! - [`errors`]: SDK errors and S3 error codes as the core's [`Error`].
//! - [`metadata`]: user and internal metadata as `x-amz-meta-*`, and the standard
//!   content headers of requests and responses.
//! - [`body`]: object data to the SDK ([`UploadBody`]: exact length, Content-MD5 checked
//!   before the last byte leaves) and from it.
//! - [`ids`]: upload ids handed out (encoded when the server's own would not do) and
//!   ETags as servers quote them; [`headers`]: other header values (copy source, ranges,
//!   Content-MD5, dates).
//! - [`lean`]: HeadObject, GetObject, PutObject and DeleteObject without the SDK, over
//!   a pooled hyper client signed by `aws-sigv4`, for `http://` endpoints with static
//!   credentials (the SDK's per-call machinery dominated small requests).
//! - [`keys`]: keys the SDK will not send as they are (whitespace only).
//! - [`part_number`]: GET `?partNumber` on servers that answer it with the whole object.
//! - [`quirks`]: a server's response fixed up before the SDK reads it (moto's root
//!   element names). Server quirks that only change what an operation checks or asks for
//!   sit in that operation, each with a comment naming the server.
//!
//! [`UploadBody`]: body::UploadBody
//! [`Backend`]: s3proxy_core::Backend
//! [`Error`]: s3proxy_core::Error

mod backend;
mod body;
mod client;
mod errors;
mod headers;
mod ids;
mod keys;
mod lean;
mod listing;
mod metadata;
mod multipart;
mod options;
mod part_number;
mod quirks;

pub use metadata::{RESERVED_PREFIX, USER_ESCAPE};
pub use options::S3Options;

use aws_sdk_s3::Client;
use s3proxy_core::BucketName;
use std::collections::BTreeMap;

/// A backend that stores objects in an S3-compatible service.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use s3proxy_backends::{S3, S3Options};
/// use s3proxy_core::Backend;
/// let backend = S3::new("replica-1", S3Options {
///     endpoint: Some("http://127.0.0.1:9000".into()),
///     access_key: Some("key".into()),
///     secret_key: Some("secret".into()),
///     ..Default::default()
/// }).await.unwrap();
/// let buckets = backend.list_buckets().await.unwrap();
/// # });
/// ```
pub struct S3 {
    name: String,
    client: Client,
    region: String,
    bucket_prefix: String,
    buckets: BTreeMap<String, String>,
    /// Set once the server was seen listing raw names although it was asked for
    /// `encoding-type=url` (s3s-fs 0.14 does): its names are then taken as they come.
    lists_raw: std::sync::atomic::AtomicBool,
    /// The hot object operations' own client, when the endpoint allows it ([`lean`]).
    lean: Option<lean::Lean>,
    /// How long a GET body may go without bytes before it fails ([`S3Options::idle_timeout_ms`]).
    body_idle: Option<std::time::Duration>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("bucket_prefix", &self.bucket_prefix)
            .finish_non_exhaustive()
    }
}

impl S3 {
    /// The backend bucket that holds proxy bucket `bucket`.
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use s3proxy_backends::{S3, S3Options};
    /// let opts = S3Options { bucket_prefix: Some("r1-".into()), ..Default::default() };
    /// let s3 = S3::new("r1", opts).await.unwrap();
    /// let bucket = s3proxy_core::BucketName::new("photos").unwrap();
    /// assert_eq!(s3.backend_bucket(&bucket), "r1-photos");
    /// # });
    /// ```
    pub fn backend_bucket(&self, bucket: &BucketName) -> String {
        match self.buckets.get(bucket.as_str()) {
            Some(mapped) => mapped.clone(),
            None => format!("{}{}", self.bucket_prefix, bucket.as_str()),
        }
    }

    /// The proxy bucket a backend bucket holds, if it belongs to this proxy.
    fn proxy_bucket(&self, backend: &str) -> Option<String> {
        if let Some((proxy, _)) = self.buckets.iter().find(|(_, b)| *b == backend) {
            return Some(proxy.clone());
        }
        let proxy = backend.strip_prefix(self.bucket_prefix.as_str())?;
        let name = BucketName::new(proxy).ok()?;
        (self.backend_bucket(&name) == backend).then(|| proxy.to_string())
    }
}
