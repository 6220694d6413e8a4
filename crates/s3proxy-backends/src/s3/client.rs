//! Building the SDK client from [`S3Options`]: TLS, credentials, timeouts, and the
//! client-wide choices the module documentation explains (no SDK retries, checksums only
//! when required, no stalled-stream protection on uploads, the whitespace-key fix).

use super::{S3, S3Options, keys, lean};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig, retry::RetryConfig, timeout::TimeoutConfig,
};
use s3proxy_core::{Error, Result};
use std::time::Duration;

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
        let sdk_only =
            options.sdk_only || std::env::var("S3PROXY_S3_SDK_ONLY").is_ok_and(|v| v == "1");
        // The SDK's read and operation timeouts both bound the wait for an answer.
        let answer_timeout = [options.read_timeout_secs, options.operation_timeout_secs]
            .into_iter()
            .flatten()
            .min()
            .map(Duration::from_secs);
        let body_idle =
            (options.idle_timeout_ms > 0).then(|| Duration::from_millis(options.idle_timeout_ms));
        let lean = match (&options.endpoint, &options.access_key, &options.secret_key) {
            (Some(endpoint), Some(ak), Some(sk)) if options.path_style && !sdk_only => {
                lean::Lean::new(
                    endpoint,
                    ak,
                    sk,
                    &options.region,
                    Duration::from_secs(options.connect_timeout_secs.max(1)),
                    answer_timeout,
                    body_idle,
                )
            }
            _ => None,
        };
        Ok(S3 {
            name,
            client: Client::from_conf(builder.build()),
            region: options.region,
            bucket_prefix: options.bucket_prefix.unwrap_or_default(),
            buckets: options.buckets,
            lists_raw: Default::default(),
            lean,
            body_idle,
        })
    }
}
