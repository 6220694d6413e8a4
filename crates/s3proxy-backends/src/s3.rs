//! The `s3` backend: any S3-compatible service (AWS, MinIO, Ceph, Garage, moto, s3s-fs,
//! another s3proxy) as a storage engine, through the official `aws-sdk-s3`.
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

mod keys;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig, retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, DateTime, SdkBody};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CreateBucketConfiguration, Delete,
    EncodingType, MetadataDirective as SdkDirective, ObjectIdentifier,
};
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use s3proxy_core::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

/// Prefix under which user metadata whose name collides with [`INTERNAL_PREFIX`] is
/// stored, so that it cannot be mistaken for internal metadata when read back.
///
/// ```
/// assert!(s3proxy_backends::USER_ESCAPE.starts_with(s3proxy_backends::RESERVED_PREFIX));
/// ```
pub const USER_ESCAPE: &str = "s3proxy-s3-user-";

/// Metadata names the S3 backend keeps for itself; layers must not use internal names
/// starting with it.
///
/// ```
/// assert!(s3proxy_backends::RESERVED_PREFIX.starts_with(s3proxy_core::INTERNAL_PREFIX));
/// ```
pub const RESERVED_PREFIX: &str = "s3proxy-s3-";

/// Present when the object was written without a Content-Type.
const NO_CONTENT_TYPE: &str = "s3proxy-s3-no-content-type";

/// Marks an upload id that had to be encoded because the backend's own id contains
/// characters an [`UploadId`] may not (`~` followed by base64url of the backend's id).
const ENCODED_ID_MARK: char = '~';

/// Configuration of one S3 backend, as it appears in s3proxy's TOML configuration.
///
/// Every field is optional; an empty table talks to AWS S3 in `us-east-1` with
/// the standard AWS credential chain (environment, profile, web identity, IMDS).
///
/// ```
/// use s3proxy_backends::S3Options;
/// let opts: S3Options = serde_json::from_str(r#"{
///     "endpoint": "http://127.0.0.1:9000",
///     "access_key": "AKIA...", "secret_key": "...",
///     "bucket_prefix": "replica1-",
///     "connect_timeout_secs": 3
/// }"#).unwrap();
/// assert_eq!(opts.region, "us-east-1");
/// assert!(opts.path_style);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000` or `https://s3.example.com`; TLS is used
    /// when the scheme is `https`. `None` means AWS S3's own endpoint for the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Signing region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id; with `secret_key`. When both are absent the standard AWS
    /// credential chain is used.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Secret access key.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) rather than virtual-hosted
    /// (`bucket.endpoint/key`). Most self-hosted servers need path style.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Prepended to every proxy bucket name to form the backend bucket name, so several
    /// replicas (or proxies) can share one account.
    #[serde(default)]
    pub bucket_prefix: Option<String>,
    /// Explicit proxy bucket -> backend bucket names; takes precedence over
    /// `bucket_prefix`.
    #[serde(default)]
    pub buckets: BTreeMap<String, String>,
    /// Time allowed to establish a TCP (and TLS) connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Time allowed from sending a request until the first response byte. For a PUT this
    /// includes sending the body, so it must exceed the time to upload the largest
    /// object; unset by default (the replication layer enforces its own deadlines).
    #[serde(default)]
    pub read_timeout_secs: Option<u64>,
    /// Time allowed for a whole operation, body included; unset by default.
    #[serde(default)]
    pub operation_timeout_secs: Option<u64>,
}

/// The secret key stays out of `{:?}`.
impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("bucket_prefix", &self.bucket_prefix)
            .field("buckets", &self.buckets)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("read_timeout_secs", &self.read_timeout_secs)
            .field("operation_timeout_secs", &self.operation_timeout_secs)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_connect_timeout() -> u64 {
    10
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            region: default_region(),
            access_key: None,
            secret_key: None,
            path_style: true,
            bucket_prefix: None,
            buckets: BTreeMap::new(),
            connect_timeout_secs: default_connect_timeout(),
            read_timeout_secs: None,
            operation_timeout_secs: None,
        }
    }
}

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
    /// Build the client. Fails with [`Error::InvalidArgument`] when only one of
    /// `access_key` and `secret_key` is set or the endpoint is not a URL. No request is
    /// made: an unreachable server shows up as [`Error::ServiceUnavailable`] on use.
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let opts = s3proxy_backends::S3Options::default(); // AWS, credentials from the env
    /// let backend = s3proxy_backends::S3::new("aws", opts).await.unwrap();
    /// # });
    /// ```
    pub async fn new(name: impl Into<String>, options: S3Options) -> Result<S3> {
        let name = name.into();
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let region = Region::new(options.region.clone());
        let credentials = match (&options.access_key, &options.secret_key) {
            (Some(ak), Some(sk)) => Some(Credentials::new(ak, sk, None, None, "s3proxy-config")),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "backend {name}: set both access_key and secret_key, or neither"
                )));
            }
        };
        if let Some(endpoint) = &options.endpoint
            && !endpoint
                .parse::<http::Uri>()
                .is_ok_and(|u| u.scheme().is_some() && u.host().is_some())
        {
            return Err(Error::InvalidArgument(format!(
                "backend {name}: endpoint {endpoint:?} is not a URL like http://host:port"
            )));
        }
        let mut timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(options.connect_timeout_secs.max(1)));
        if let Some(t) = options.read_timeout_secs {
            timeouts = timeouts.read_timeout(Duration::from_secs(t));
        }
        if let Some(t) = options.operation_timeout_secs {
            timeouts = timeouts.operation_timeout(Duration::from_secs(t));
        }
        let mut builder = match credentials {
            Some(creds) => aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(creds),
            None => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(region.clone())
                    .http_client(http_client.clone())
                    .load()
                    .await;
                aws_sdk_s3::config::Builder::from(&shared)
            }
        };
        builder = builder
            .region(region)
            .http_client(http_client)
            .force_path_style(options.path_style)
            // Keys of whitespace only, which the SDK would not send (see keys).
            .interceptor(keys::KeyFix)
            // The replication layer retries and fails over; one policy, not two stacked.
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts.build())
            // Older servers reject or mishandle flexible-checksum headers and trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // A client streaming a PUT through the proxy may pause for longer than the
            // SDK's grace period; that is the client's pace, not a stalled backend.
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .upload_enabled(false)
                    .build(),
            );
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
        }
        Ok(S3 {
            name,
            client: Client::from_conf(builder.build()),
            region: options.region,
            bucket_prefix: options.bucket_prefix.unwrap_or_default(),
            buckets: options.buckets,
            lists_raw: Default::default(),
        })
    }

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

    fn unavailable(&self, op: &str, why: impl std::fmt::Display) -> Error {
        Error::ServiceUnavailable(format!("backend {}: {op}: {why}", self.name))
    }

    /// Map an SDK error onto the core's. `not_found` is what a 404 without an error code
    /// means for this operation (HEAD responses carry no body, hence no code).
    fn map_err<E>(&self, op: &str, err: SdkError<E, HttpResponse>, not_found: Error) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code().map(str::to_string);
                let message = service.err().message().unwrap_or("").to_string();
                self.map_code(op, code.as_deref(), status, &message, not_found)
            }
            SdkError::ResponseError(response) => {
                let status = response.raw().status().as_u16();
                match status {
                    404 => not_found,
                    304 => Error::NotModified,
                    412 => Error::PreconditionFailed,
                    416 => Error::InvalidRange,
                    500 => {
                        Error::Internal(format!("backend {}: {op}: HTTP 500 (no code)", self.name))
                    }
                    _ => self.unavailable(op, DisplayErrorContext(&err)),
                }
            }
            SdkError::TimeoutError(_) => self.unavailable(op, "timed out"),
            SdkError::DispatchFailure(_) => self.unavailable(op, DisplayErrorContext(&err)),
            _ => Error::Internal(format!(
                "backend {}: {op}: {}",
                self.name,
                DisplayErrorContext(&err)
            )),
        }
    }

    fn map_code(
        &self,
        op: &str,
        code: Option<&str>,
        status: u16,
        message: &str,
        not_found: Error,
    ) -> Error {
        let named = |what: &str| format!("backend {}: {op}: {what}", self.name);
        match code {
            Some("NoSuchKey") => Error::NoSuchKey,
            Some("NoSuchBucket") => Error::NoSuchBucket,
            Some("NoSuchUpload") => Error::NoSuchUpload,
            Some("PreconditionFailed") => Error::PreconditionFailed,
            Some("NotModified") => Error::NotModified,
            Some("InvalidRange") => Error::InvalidRange,
            Some("InvalidPart") => Error::InvalidPart,
            Some("InvalidPartOrder") => Error::InvalidPartOrder,
            Some("EntityTooSmall") => Error::EntityTooSmall,
            Some("EntityTooLarge") => Error::EntityTooLarge,
            Some("BadDigest") => Error::BadDigest,
            Some("InvalidDigest") => Error::InvalidDigest,
            Some("IncompleteBody") => Error::IncompleteBody,
            Some("MetadataTooLarge") => Error::MetadataTooLarge,
            Some("KeyTooLongError") => Error::KeyTooLong,
            Some("MalformedXML") => Error::MalformedXml,
            // Our create_bucket looks first, so "exists" after "not found" is a race with
            // another creator of the same name, normally another s3proxy instance.
            Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists") => {
                Error::BucketAlreadyOwnedByYou
            }
            Some("BucketNotEmpty") => Error::BucketNotEmpty,
            Some("InvalidBucketName") => Error::InvalidBucketName(named(message)),
            Some("SlowDown") => Error::SlowDown,
            Some("NotImplemented") => Error::NotImplemented(named(message)),
            Some("InvalidArgument") => Error::InvalidArgument(named(message)),
            Some("InvalidRequest") => Error::InvalidRequest(named(message)),
            // The backend rejecting *our* credentials is a misconfigured or failing
            // replica, not something the client did.
            Some(
                c @ ("AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "RequestTimeTooSkewed"
                | "ExpiredToken"
                | "InvalidToken"),
            ) => self.unavailable(op, format!("{c}: {message}")),
            _ => match status {
                304 => Error::NotModified,
                404 => not_found,
                412 => Error::PreconditionFailed,
                416 => Error::InvalidRange,
                503 => Error::SlowDown,
                // The server is up and answered: this request failed there (s3s-fs answers
                // 500 to keys its file layout cannot hold). Retried, but not a sign the
                // backend is down; 502 and 504 (a gateway without its server) are.
                500 => Error::Internal(format!(
                    "backend {}: {op}: HTTP 500 {}: {message}",
                    self.name,
                    code.unwrap_or("(no code)")
                )),
                s if s >= 500 => self.unavailable(
                    op,
                    format!("HTTP {s} {}: {message}", code.unwrap_or("(no code)")),
                ),
                s => Error::InvalidRequest(named(&format!(
                    "HTTP {s} {}: {message}",
                    code.unwrap_or("(no code)")
                ))),
            },
        }
    }

    /// Run an upload with `body`; when the upload fails because the body itself failed
    /// (short, long, bad digest, stream error), report that rather than the transport's
    /// view of it.
    async fn with_body<T, F>(&self, failure: &BodyFailure, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let result = fut.await;
        match failure.lock().expect("body failure lock").take() {
            Some(body_err) => Err(body_err),
            None => result,
        }
    }

    async fn head_raw(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        conditions: &Conditions,
    ) -> Result<ObjectInfo> {
        let out = self
            .client
            .head_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .set_if_match(conditions.if_match.clone())
            .set_if_none_match(conditions.if_none_match.clone())
            .set_if_modified_since(conditions.if_modified_since.map(DateTime::from))
            .set_if_unmodified_since(conditions.if_unmodified_since.map(DateTime::from))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let err = self.map_err("HeadObject", e, Error::NoSuchKey);
                // A HEAD has no body to say which of bucket or key is missing.
                if matches!(err, Error::NoSuchKey) {
                    self.head_bucket(bucket).await?;
                }
                return Err(err);
            }
        };
        let metadata = split_metadata(
            out.metadata(),
            ContentHeaders {
                content_type: out.content_type().map(str::to_string),
                content_encoding: out.content_encoding().map(str::to_string),
                content_disposition: out.content_disposition().map(str::to_string),
                content_language: out.content_language().map(str::to_string),
                cache_control: out.cache_control().map(str::to_string),
                expires: out.expires_string().map(str::to_string),
            },
        );
        Ok(ObjectInfo {
            key: key.clone(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: unquote(out.e_tag()),
            last_modified: to_system_time(out.last_modified()),
            metadata,
        })
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or("").trim_matches('"').to_string()
}

fn quote(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

fn to_system_time(t: Option<&DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// User and internal metadata as the backend's `x-amz-meta-*` map.
fn join_metadata(meta: &ObjectMetadata) -> HashMap<String, String> {
    let mut out = HashMap::with_capacity(meta.user.len() + meta.internal.len() + 1);
    for (k, v) in &meta.user {
        let k = k.to_ascii_lowercase();
        if k.starts_with(INTERNAL_PREFIX) {
            out.insert(format!("{USER_ESCAPE}{k}"), v.clone());
        } else {
            out.insert(k, v.clone());
        }
    }
    for (k, v) in &meta.internal {
        out.insert(k.to_ascii_lowercase(), v.clone());
    }
    if meta.headers.content_type.is_none() {
        // S3 servers store a default type when none is given; remember there was none.
        out.insert(NO_CONTENT_TYPE.into(), "1".into());
    }
    out
}

/// The inverse of [`join_metadata`].
fn split_metadata(
    map: Option<&HashMap<String, String>>,
    mut headers: ContentHeaders,
) -> ObjectMetadata {
    let map = map.cloned().unwrap_or_default();
    if map.contains_key(NO_CONTENT_TYPE) {
        headers.content_type = None;
    }
    let mut meta = ObjectMetadata {
        headers,
        ..Default::default()
    };
    for (k, v) in map {
        let k = k.to_ascii_lowercase();
        if let Some(user) = k.strip_prefix(USER_ESCAPE) {
            meta.user.insert(user.to_string(), v);
        } else if k.starts_with(RESERVED_PREFIX) {
            // The backend's own bookkeeping, handled above.
        } else if k.starts_with(INTERNAL_PREFIX) {
            meta.internal.insert(k, v);
        } else {
            meta.user.insert(k, v);
        }
    }
    meta
}

/// Reject internal names that would read back as the backend's own.
fn check_internal(meta: &ObjectMetadata) -> Result<()> {
    match meta
        .internal
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with(RESERVED_PREFIX))
    {
        Some(k) => Err(Error::Internal(format!(
            "internal metadata name {k:?} uses the S3 backend's reserved prefix {RESERVED_PREFIX}"
        ))),
        None => Ok(()),
    }
}

/// The proxy's id for a backend upload id.
fn encode_upload_id(backend_id: &str) -> Result<UploadId> {
    if !backend_id.starts_with(ENCODED_ID_MARK)
        && let Ok(id) = UploadId::new(backend_id)
    {
        return Ok(id);
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(backend_id);
    UploadId::new(format!("{ENCODED_ID_MARK}{b64}"))
        .map_err(|_| Error::Internal(format!("upload id {backend_id:?} is too long")))
}

/// The backend's upload id for a proxy's id.
fn decode_upload_id(id: &UploadId) -> Result<String> {
    match id.as_str().strip_prefix(ENCODED_ID_MARK) {
        None => Ok(id.as_str().to_string()),
        Some(b64) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or(Error::NoSuchUpload),
    }
}

/// `x-amz-copy-source`: the bucket, then the key URL-encoded (slashes kept).
fn copy_source(bucket: &str, key: &ObjectKey) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    format!(
        "{bucket}/{}",
        percent_encoding::utf8_percent_encode(key.as_str(), SET)
    )
}

/// Whether a name can be one a server encoded for `encoding-type=url`: encoding leaves
/// only ASCII letters, digits, `-_.~*'()!/`, `+` (a space) and `%` escapes. A name with
/// anything else (a space, non-ASCII, a quote...) was sent raw.
fn could_be_url_encoded(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~*'()!/+%".contains(&b))
}

/// Decode a name from a listing requested with `encoding-type=url`: S3 encodes a space as
/// `+` and a `+` as `%2B`.
fn url_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// `Content-Range: bytes first-last/total`.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let spec = value.trim().strip_prefix("bytes")?.trim();
    let (range, total) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total): (u64, u64, u64) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    // A backend's header is not trusted: a range that is not inside the object is no range.
    (first <= last && last < total).then_some((first, last, total))
}

fn range_header(range: ByteRange) -> String {
    match range {
        ByteRange::FromTo(a, b) => format!("bytes={a}-{b}"),
        ByteRange::From(a) => format!("bytes={a}-"),
        ByteRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// Where an upload body's own failure is recorded, so the caller reports it instead of
/// the transport error it causes.
type BodyFailure = Arc<Mutex<Option<Error>>>;

/// A request body for the SDK from a core [`Body`]: exact length, optional Content-MD5.
///
/// The chunk that completes the declared length is held back until the source stream has
/// ended and the digest is checked, so a body that runs long or does not match its
/// Content-MD5 aborts the request before the server has all the bytes, and the server
/// stores nothing.
struct UploadBody {
    // A Mutex only to make the body Sync, as the SDK requires; it is never contended
    // (polling takes `&mut self`).
    stream: Mutex<ByteStream>,
    remaining: u64,
    held: Option<Bytes>,
    hasher: Md5,
    content_md5: Option<[u8; 16]>,
    failure: BodyFailure,
    finished: bool,
}

impl UploadBody {
    fn new(body: Body, content_md5: Option<[u8; 16]>) -> (Self, BodyFailure) {
        let failure = BodyFailure::default();
        (
            UploadBody {
                stream: Mutex::new(body.stream),
                remaining: body.length,
                held: None,
                hasher: Md5::new(),
                content_md5,
                failure: failure.clone(),
                finished: false,
            },
            failure,
        )
    }

    fn fail(&mut self, err: Error) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let msg = err.to_string();
        *self.failure.lock().expect("body failure lock") = Some(err);
        self.finished = true;
        Poll::Ready(Some(Err(msg.into())))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            let stream = this.stream.get_mut().expect("upload stream lock");
            match stream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    if chunk.len() as u64 > this.remaining {
                        return this.fail(Error::InvalidRequest(
                            "the body is longer than its declared Content-Length".into(),
                        ));
                    }
                    this.remaining -= chunk.len() as u64;
                    // Hashing costs more CPU than the rest of the proxy's data path: only
                    // when there is a Content-MD5 to check.
                    if this.content_md5.is_some() {
                        this.hasher.update(&chunk);
                    }
                    if this.remaining > 0 {
                        return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
                    }
                    // The last bytes: hold them until the stream proves it has ended.
                    this.held = Some(chunk);
                }
                Poll::Ready(None) => {
                    if this.remaining > 0 {
                        return this.fail(Error::IncompleteBody);
                    }
                    if let Some(want) = this.content_md5 {
                        let got: [u8; 16] = this.hasher.clone().finalize().into();
                        if got != want {
                            return this.fail(Error::BadDigest);
                        }
                    }
                    this.finished = true;
                    return Poll::Ready(this.held.take().map(|c| Ok(http_body::Frame::data(c))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let left = self.remaining + self.held.as_ref().map_or(0, |h| h.len() as u64);
        http_body::SizeHint::with_exact(if self.finished { 0 } else { left })
    }
}

fn sdk_body(body: Body, content_md5: Option<[u8; 16]>) -> (SdkByteStream, i64, BodyFailure) {
    let length = body.length as i64;
    let (upload, failure) = UploadBody::new(body, content_md5);
    (
        SdkByteStream::new(SdkBody::from_body_1_x(upload)),
        length,
        failure,
    )
}

fn md5_header(md5: Option<[u8; 16]>) -> Option<String> {
    md5.map(|d| base64::engine::general_purpose::STANDARD.encode(d))
}

/// Renames the root element of a response document (`<XResponse>` to `<XResult>`)
/// before the SDK parses it.
///
/// moto answers ListParts and CompleteMultipartUpload with `ListPartsResponse` and
/// `CompleteMultipartUploadResponse` roots where S3 sends `...Result`; boto3 does not look
/// at the root, but the Rust SDK refuses the document. Installed only on those two
/// operations, whose responses are small (ListParts: at most 1000 parts), so the body is
/// read whole before renaming; a correctly named root passes through unchanged.
#[derive(Debug)]
struct RootFix {
    operation: &'static str,
}

impl aws_sdk_s3::config::Intercept for RootFix {
    fn name(&self) -> &'static str {
        "RootFix"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut<
            '_,
        >,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let body = std::mem::replace(context.response_mut().body_mut(), SdkBody::taken());
        *context.response_mut().body_mut() = SdkBody::from_body_1_x(RenameRoot {
            inner: body,
            operation: self.operation,
            buf: Vec::new(),
            done: false,
        });
        Ok(())
    }
}

struct RenameRoot {
    inner: SdkBody,
    operation: &'static str,
    buf: Vec<u8>,
    done: bool,
}

impl http_body::Body for RenameRoot {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let text = String::from_utf8_lossy(&this.buf);
                    let op = this.operation;
                    let fixed = if text.contains(&format!("<{op}Response")) {
                        text.replacen(&format!("<{op}Response"), &format!("<{op}Result"), 1)
                            .replacen(&format!("</{op}Response>"), &format!("</{op}Result>"), 1)
                            .into_bytes()
                    } else {
                        std::mem::take(&mut this.buf)
                    };
                    return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(fixed)))));
                }
            }
        }
    }
}

/// The SDK's response body as a core [`ByteStream`].
fn download_stream(name: String, body: SdkByteStream) -> ByteStream {
    Box::pin(futures::stream::unfold(Some(body), move |state| {
        let name = name.clone();
        async move {
            let mut body = state?;
            match body.next().await {
                None => None,
                Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                Some(Err(e)) => Some((
                    Err(Error::ServiceUnavailable(format!(
                        "backend {name}: reading object data: {}",
                        DisplayErrorContext(&e)
                    ))),
                    None,
                )),
            }
        }
    }))
}

/// Set the standard headers of a write request. `Expires` goes in verbatim as a header
/// because the SDK's field is a parsed date and the core keeps the client's string.
macro_rules! with_headers {
    ($req:expr, $headers:expr) => {{
        let h: &ContentHeaders = $headers;
        $req.set_content_type(h.content_type.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_cache_control(h.cache_control.clone())
    }};
}

/// A request mutation that sets `Expires` verbatim, when there is one.
fn expires_mutation(
    expires: Option<String>,
) -> impl Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static {
    move |req| {
        if let Some(v) = &expires {
            req.headers_mut().insert("expires", v.clone());
        }
    }
}

#[async_trait]
impl Backend for S3 {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_buckets()
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| self.map_err("ListBuckets", e, Error::NoSuchBucket))?;
            for b in page.buckets() {
                if let Some(proxy) = b.name().and_then(|n| self.proxy_bucket(n)) {
                    out.push(BucketInfo {
                        name: proxy,
                        created: to_system_time(b.creation_date()),
                    });
                }
            }
            token = page.continuation_token().map(str::to_string);
            if token.as_deref().is_none_or(str::is_empty) {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        // AWS answers 200 to a repeated create in us-east-1; look first so every server
        // gives the same answer.
        match self.head_bucket(bucket).await {
            Ok(()) => return Err(Error::BucketAlreadyOwnedByYou),
            Err(Error::NoSuchBucket) => {}
            Err(e) => return Err(e),
        }
        let mut req = self
            .client
            .create_bucket()
            .bucket(self.backend_bucket(bucket));
        if self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| self.map_err("CreateBucket", e, Error::NoSuchBucket))?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        // Some servers (s3s-fs) delete a bucket with everything in it. Refuse here first
        // so a DeleteBucket can never destroy objects; the server's own check still
        // covers an object written in between.
        let probe = ListOptions {
            max_keys: 1,
            ..Default::default()
        };
        if !self.list_objects(bucket, probe).await?.objects.is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        self.client
            .delete_bucket()
            .bucket(self.backend_bucket(bucket))
            .send()
            .await
            .map_err(|e| self.map_err("DeleteBucket", e, Error::NoSuchBucket))?;
        Ok(())
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(self.backend_bucket(bucket))
            .send()
            .await
            .map_err(|e| self.map_err("HeadBucket", e, Error::NoSuchBucket))?;
        Ok(())
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        check_internal(&opts.metadata)?;
        if body.length > MAX_PUT_SIZE {
            return Err(Error::EntityTooLarge);
        }
        let (stream, length, failure) = sdk_body(body, opts.content_md5);
        let req = self
            .client
            .put_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .content_length(length)
            .set_content_md5(md5_header(opts.content_md5))
            .set_metadata(Some(join_metadata(&opts.metadata)))
            .body(stream);
        let req = with_headers!(req, &opts.metadata.headers);
        let out = self
            .with_body(&failure, async {
                req.customize()
                    .mutate_request(expires_mutation(opts.metadata.headers.expires.clone()))
                    .send()
                    .await
                    .map_err(|e| self.map_err("PutObject", e, Error::NoSuchBucket))
            })
            .await?;
        Ok(PutResult {
            etag: unquote(out.e_tag()),
            // PutObject does not return the time; this is when the server answered.
            last_modified: SystemTime::now(),
        })
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let c = &opts.conditions;
        let out = self
            .client
            .get_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .set_range(opts.range.map(range_header))
            .set_if_match(c.if_match.clone())
            .set_if_none_match(c.if_none_match.clone())
            .set_if_modified_since(c.if_modified_since.map(DateTime::from))
            .set_if_unmodified_since(c.if_unmodified_since.map(DateTime::from))
            .send()
            .await
            .map_err(|e| self.map_err("GetObject", e, Error::NoSuchKey))?;
        let body_len = out.content_length().unwrap_or(0).max(0) as u64;
        let (range, size) = match out.content_range().and_then(parse_content_range) {
            Some((first, last, total)) if opts.range.is_some() => (Some((first, last)), total),
            _ => (None, body_len),
        };
        let metadata = split_metadata(
            out.metadata(),
            ContentHeaders {
                content_type: out.content_type().map(str::to_string),
                content_encoding: out.content_encoding().map(str::to_string),
                content_disposition: out.content_disposition().map(str::to_string),
                content_language: out.content_language().map(str::to_string),
                cache_control: out.cache_control().map(str::to_string),
                expires: out.expires_string().map(str::to_string),
            },
        );
        let info = ObjectInfo {
            key: key.clone(),
            size,
            etag: unquote(out.e_tag()),
            last_modified: to_system_time(out.last_modified()),
            metadata,
        };
        // Servers that ignore some conditional header still get S3's answer.
        c.check(&info, false)?;
        Ok(GetResult {
            info,
            range,
            body: download_stream(self.name.clone(), out.body),
            served_by: Some(self.name.clone()),
        })
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let info = self.head_raw(bucket, key, &opts.conditions).await?;
        opts.conditions.check(&info, false)?;
        Ok(info)
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        let result = self
            .client
            .delete_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match self.map_err("DeleteObject", e, Error::NoSuchKey) {
                Error::NoSuchKey => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        let mut outcomes = Vec::with_capacity(keys.len());
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(k.as_str())
                        .build()
                        .map_err(|e| Error::Internal(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(false)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(self.backend_bucket(bucket))
                .delete(delete)
                .customize()
                // DeleteObjects requires an integrity header; servers that predate the
                // flexible checksums only know Content-MD5.
                .mutate_request(|req| {
                    if let Some(body) = req.body().bytes() {
                        let md5 = Md5::digest(body);
                        let value = base64::engine::general_purpose::STANDARD.encode(md5);
                        req.headers_mut().insert("content-md5", value);
                    }
                })
                .send()
                .await
                .map_err(|e| self.map_err("DeleteObjects", e, Error::NoSuchBucket))?;
            let mut failed: HashMap<&str, Error> = HashMap::new();
            for e in out.errors() {
                let Some(key) = e.key() else { continue };
                let err = self.map_code(
                    "DeleteObjects",
                    e.code(),
                    500,
                    e.message().unwrap_or(""),
                    Error::NoSuchKey,
                );
                if !matches!(err, Error::NoSuchKey) {
                    failed.insert(key, err);
                }
            }
            for key in batch {
                let result = match failed.remove(key.as_str()) {
                    Some(err) => Err(err),
                    None => Ok(()),
                };
                outcomes.push(DeleteOutcome {
                    key: key.clone(),
                    result,
                });
            }
        }
        Ok(outcomes)
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        let c = &opts.source_conditions;
        if !c.is_empty() {
            // Evaluated here too, for servers that ignore x-amz-copy-source-if-*; the
            // server's own check (sent below) closes the race.
            let src = self
                .head_raw(src_bucket, src_key, &Conditions::default())
                .await?;
            c.check(&src, true)?;
        }
        let mut req = self
            .client
            .copy_object()
            .bucket(self.backend_bucket(dst_bucket))
            .key(keys::wire(dst_key.as_str()))
            .copy_source(copy_source(&self.backend_bucket(src_bucket), src_key))
            .set_copy_source_if_match(c.if_match.clone())
            .set_copy_source_if_none_match(c.if_none_match.clone())
            .set_copy_source_if_modified_since(c.if_modified_since.map(DateTime::from))
            .set_copy_source_if_unmodified_since(c.if_unmodified_since.map(DateTime::from));
        let mut expires = None;
        match &opts.directive {
            MetadataDirective::Copy => {
                req = req.metadata_directive(SdkDirective::Copy);
            }
            MetadataDirective::Replace(meta) => {
                check_internal(meta)?;
                req = req
                    .metadata_directive(SdkDirective::Replace)
                    .set_metadata(Some(join_metadata(meta)));
                req = with_headers!(req, &meta.headers);
                expires = meta.headers.expires.clone();
            }
        }
        let out = req
            .customize()
            .mutate_request(expires_mutation(expires))
            .send()
            .await
            .map_err(|e| self.map_err("CopyObject", e, Error::NoSuchKey))?;
        let result = out.copy_object_result();
        Ok(PutResult {
            etag: unquote(result.and_then(|r| r.e_tag())),
            last_modified: result
                .and_then(|r| r.last_modified())
                .map(|t| to_system_time(Some(t)))
                .unwrap_or_else(SystemTime::now),
        })
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        let max_keys = opts.max_keys.min(list::MAX_KEYS);
        // A start-after that is itself a common prefix makes S3 roll the keys under it
        // up into that prefix again; ask for one more entry to fill the page after
        // dropping the repeat.
        let ask = if max_keys == 0 {
            0
        } else {
            (max_keys + 1).min(list::MAX_KEYS)
        };
        let out = self
            .client
            .list_objects_v2()
            .bucket(self.backend_bucket(bucket))
            .prefix(opts.prefix.clone())
            .set_delimiter(opts.delimiter.clone().filter(|d| !d.is_empty()))
            .set_start_after(opts.start_after.clone())
            .max_keys(ask as i32)
            // Keys may hold characters XML 1.0 cannot carry (control characters, CR).
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| self.map_err("ListObjectsV2", e, Error::NoSuchBucket))?;
        enum Entry {
            Object(ObjectSummary),
            Prefix(String),
        }
        let names = out
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .chain(out.common_prefixes().iter().filter_map(|p| p.prefix()));
        if !self.lists_raw.load(std::sync::atomic::Ordering::Relaxed)
            && names.clone().any(|n| !could_be_url_encoded(n))
        {
            log::warn!(
                "backend {}: lists names raw although asked to URL-encode them; \
                 taking its names as they come from now on",
                self.name
            );
            self.lists_raw
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let raw = self.lists_raw.load(std::sync::atomic::Ordering::Relaxed);
        let decode = |s: &str| if raw { s.to_string() } else { url_decode(s) };
        let start_after = opts.start_after.as_deref().unwrap_or("");
        let mut entries: Vec<(String, Entry)> = Vec::new();
        for o in out.contents() {
            let key = decode(o.key().unwrap_or(""));
            if key.as_str() <= start_after {
                continue;
            }
            entries.push((
                key.clone(),
                Entry::Object(ObjectSummary {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: unquote(o.e_tag()),
                    last_modified: to_system_time(o.last_modified()),
                    internal: None,
                }),
            ));
        }
        for p in out.common_prefixes() {
            let prefix = decode(p.prefix().unwrap_or(""));
            if prefix == start_after {
                continue;
            }
            entries.push((prefix.clone(), Entry::Prefix(prefix)));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut is_truncated = out.is_truncated().unwrap_or(false);
        if entries.len() > max_keys {
            entries.truncate(max_keys);
            is_truncated = true;
        }
        let mut result = ListResult {
            is_truncated,
            next_marker: if is_truncated {
                entries.last().map(|e| e.0.clone())
            } else {
                None
            },
            ..Default::default()
        };
        if is_truncated && result.next_marker.is_none() {
            // Only possible with max-keys 0 (or a server that pages emptily): the next
            // page starts where this one was asked to.
            result.next_marker = opts.start_after.clone();
        }
        for (_, e) in entries {
            match e {
                Entry::Object(o) => result.objects.push(o),
                Entry::Prefix(p) => result.common_prefixes.push(p),
            }
        }
        Ok(result)
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        check_internal(&opts.metadata)?;
        let req = self
            .client
            .create_multipart_upload()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .set_metadata(Some(join_metadata(&opts.metadata)));
        let req = with_headers!(req, &opts.metadata.headers);
        let out = req
            .customize()
            .mutate_request(expires_mutation(opts.metadata.headers.expires.clone()))
            .send()
            .await
            .map_err(|e| self.map_err("CreateMultipartUpload", e, Error::NoSuchBucket))?;
        let id = out.upload_id().ok_or_else(|| {
            self.unavailable("CreateMultipartUpload", "the response has no upload id")
        })?;
        encode_upload_id(id)
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<String> {
        let (stream, length, failure) = sdk_body(body, opts.content_md5);
        let req = self
            .client
            .upload_part()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .upload_id(decode_upload_id(upload_id)?)
            .part_number(part_number as i32)
            .content_length(length)
            .set_content_md5(md5_header(opts.content_md5))
            .body(stream);
        let result = self
            .with_body(&failure, async {
                req.send()
                    .await
                    .map_err(|e| self.map_err("UploadPart", e, Error::NoSuchUpload))
            })
            .await;
        match result {
            Ok(out) => Ok(unquote(out.e_tag())),
            // moto answers a part for an aborted or completed upload with a bare 500
            // (an unhandled KeyError) instead of NoSuchUpload. Ask whether the upload
            // still exists before calling it a server failure; only on this error path.
            Err(err @ (Error::ServiceUnavailable(_) | Error::Internal(_))) => {
                let probe = ListPartsOptions {
                    max_parts: 1,
                    ..Default::default()
                };
                match self.list_parts(bucket, key, upload_id, probe).await {
                    Err(Error::NoSuchUpload) => Err(Error::NoSuchUpload),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    async fn upload_part_copy(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        src: GetOptions,
    ) -> Result<String> {
        let c = &src.conditions;
        // x-amz-copy-source-range only has the first-last form: resolve the others
        // against the source's size.
        let range = match src.range {
            None => None,
            Some(ByteRange::FromTo(a, b)) => Some((a, b)),
            Some(r) => {
                let info = self
                    .head_raw(src_bucket, src_key, &Conditions::default())
                    .await?;
                Some(r.resolve(info.size)?)
            }
        };
        let out = self
            .client
            .upload_part_copy()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .upload_id(decode_upload_id(upload_id)?)
            .part_number(part_number as i32)
            .copy_source(copy_source(&self.backend_bucket(src_bucket), src_key))
            .set_copy_source_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
            .set_copy_source_if_match(c.if_match.clone())
            .set_copy_source_if_none_match(c.if_none_match.clone())
            .set_copy_source_if_modified_since(c.if_modified_since.map(DateTime::from))
            .set_copy_source_if_unmodified_since(c.if_unmodified_since.map(DateTime::from))
            .send()
            .await
            .map_err(|e| self.map_err("UploadPartCopy", e, Error::NoSuchKey))?;
        Ok(unquote(out.copy_part_result().and_then(|r| r.e_tag())))
    }

    async fn complete_multipart_upload(
        &self,
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
            let page = self
                .list_parts(
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
                have.etag = want.etag.trim_matches('"').to_string();
            }
        }
        if let Err(e) = crate::common::select_parts(&parts, &uploaded) {
            log::debug!(
                "backend {}: refusing completion: {e}; uploaded {uploaded:?}",
                self.name
            );
            return Err(e);
        }
        let parts = parts
            .iter()
            .map(|p| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(p.part_number as i32)
                    .e_tag(quote(&p.etag))
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(self.backend_bucket(bucket))
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
            .map_err(|e| self.map_err("CompleteMultipartUpload", e, Error::NoSuchUpload))?;
        Ok(PutResult {
            etag: unquote(out.e_tag()),
            last_modified: SystemTime::now(),
        })
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .upload_id(decode_upload_id(upload_id)?)
            .send()
            .await
            .map_err(|e| self.map_err("AbortMultipartUpload", e, Error::NoSuchUpload))?;
        Ok(())
    }

    async fn list_parts(
        &self,
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
        let out = self
            .client
            .list_parts()
            .bucket(self.backend_bucket(bucket))
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
            .map_err(|e| self.map_err("ListParts", e, Error::NoSuchUpload))?;
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

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        let max = if opts.max_uploads == 0 {
            1000
        } else {
            opts.max_uploads.min(1000)
        };
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(self.backend_bucket(bucket))
            .prefix(opts.prefix.clone())
            .set_key_marker((!opts.key_marker.is_empty()).then(|| opts.key_marker.clone()))
            .max_uploads(max as i32)
            .send()
            .await
            .map_err(|e| self.map_err("ListMultipartUploads", e, Error::NoSuchBucket))?;
        let mut uploads = Vec::new();
        for u in out.uploads() {
            let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                continue;
            };
            uploads.push(UploadInfo {
                key: key.to_string(),
                upload_id: encode_upload_id(id)?,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_round_trip() {
        for raw in ["abc-123", "a+b/c==", "~tilde", ".dot", "x y"] {
            let id = encode_upload_id(raw).unwrap();
            assert_eq!(decode_upload_id(&id).unwrap(), raw);
        }
        assert_eq!(
            encode_upload_id("plain_id.1").unwrap().as_str(),
            "plain_id.1"
        );
    }

    #[test]
    fn metadata_round_trips_with_colliding_user_names() {
        let mut meta = ObjectMetadata::default();
        meta.user.insert("mode".into(), "1".into());
        meta.user.insert("s3proxy-x".into(), "user".into());
        meta.internal.insert("s3proxy-x".into(), "internal".into());
        let joined = join_metadata(&meta);
        // What servers answer when no type was given.
        let stored = ContentHeaders {
            content_type: Some("binary/octet-stream".into()),
            ..Default::default()
        };
        let back = split_metadata(Some(&joined), stored);
        assert_eq!(back, meta);
        meta.internal
            .insert("s3proxy-s3-x".into(), "reserved".into());
        assert!(check_internal(&meta).is_err());
    }

    #[test]
    fn listing_names_decode() {
        assert_eq!(url_decode("a+b%2Bc%0A%C3%A9"), "a b+c\né");
        assert!(could_be_url_encoded("a+b%2Bc%0A%C3%A9/x.y~z"));
        assert!(!could_be_url_encoded("a b"));
        assert!(!could_be_url_encoded("ünïcödé"));
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        for bad in [
            "bytes 9-0/100",
            "bytes 0-100/100",
            "bytes 0-9/x",
            "bytes -1-9/100",
            "0-9",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn copy_source_keeps_slashes() {
        let key = ObjectKey::new("a/b c+d?").unwrap();
        assert_eq!(copy_source("bkt", &key), "bkt/a/b%20c%2Bd%3F");
    }
}
