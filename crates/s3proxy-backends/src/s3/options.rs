//! [`S3Options`]: the configuration of one S3 backend, as it appears in s3proxy's
//! configuration file. [`S3::new`](super::S3::new) turns it into an SDK client.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Longest wait, in milliseconds, for the next bytes of an object body being
    /// downloaded (over the lean client or the SDK): a backend that stalls mid-body fails the
    /// read then instead of holding the request forever. 0 waits without limit.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Send every request through `aws-sdk-s3`. By default HeadObject, GetObject,
    /// PutObject and DeleteObject go over a lean client of their own when the endpoint is
    /// `http://` with static credentials and path-style addressing (much less CPU per
    /// request); this keeps them on the SDK, e.g. to compare the two. The environment
    /// variable `S3PROXY_S3_SDK_ONLY=1` does the same for every S3 backend.
    #[serde(default)]
    pub sdk_only: bool,
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
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("sdk_only", &self.sdk_only)
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
fn default_idle_timeout_ms() -> u64 {
    30_000
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
            idle_timeout_ms: default_idle_timeout_ms(),
            sdk_only: false,
        }
    }
}
