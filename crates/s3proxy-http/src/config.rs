//! The settings of the S3 server.

use crate::auth::Credential;
use std::time::Duration;

/// S3's limit on the request header section.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;

/// Settings of the S3 server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Accepted credentials.
    pub credentials: Vec<Credential>,
    /// Domains for virtual-hosted-style addressing (`bucket.<domain>`).
    pub virtual_host_domains: Vec<String>,
    /// The region GetBucketLocation reports.
    pub region: String,
    /// Largest accepted difference between a request's signing time and ours.
    pub max_clock_skew: Duration,
    /// How long a request may take to send its headers, and how long an idle keep-alive
    /// connection stays open. A client that stalls within its headers gets RequestTimeout.
    pub header_timeout: Duration,
    /// How long a request body may pause between bytes (the client then gets
    /// RequestTimeout), and how long a response may wait for the client to read before the
    /// connection is dropped.
    pub body_idle_timeout: Duration,
    /// Largest accepted header section (the sum of `name: value` lines), as S3's 8 KB.
    /// Larger requests get RequestHeaderSectionTooLarge.
    pub max_header_bytes: usize,
    /// How long a copy or a multipart completion may work before the 200 response starts
    /// and keeps the connection alive with whitespace (see `xml_keepalive`).
    pub keepalive_after: Duration,
    /// How often whitespace is sent while such a request works.
    pub keepalive_every: Duration,
    /// Most requests served at once; one more is answered `503 SlowDown` at once rather
    /// than queued. `None`: no limit.
    pub max_requests: Option<usize>,
}

impl ServerConfig {
    /// Defaults (15 minutes clock skew, region us-east-1) with these credentials.
    pub fn new(credentials: Vec<Credential>) -> Self {
        ServerConfig {
            credentials,
            virtual_host_domains: vec![],
            region: "us-east-1".into(),
            max_clock_skew: Duration::from_secs(15 * 60),
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            keepalive_after: Duration::from_secs(10),
            keepalive_every: Duration::from_secs(10),
            max_requests: None,
        }
    }
}
