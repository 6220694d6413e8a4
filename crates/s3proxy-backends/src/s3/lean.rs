//! The hot object operations (HeadObject, GetObject, PutObject, DeleteObject) over a
//! pooled hyper client, signed with the `aws-sigv4` crate, without the SDK.
//!
//! Why: a profile of the proxy under 4 KiB HEADs (issue #18, docs/bench/README.md) spent
//! about half of its CPU in the SDK's per-call orchestration (interceptors, the config
//! bag and runtime components merged per call, endpoint resolution, tracing spans).
//! These four operations are most of what small-object traffic asks a backend for; they
//! go out here as one signed request each, over the same kind of keep-alive pool, with
//! the SDK's answers reproduced exactly (headers read the same way, errors mapped by the
//! same [`S3::map_code`]). Everything else stays on the SDK.
//!
//! Used when the backend has an `http://` endpoint, static credentials and path-style
//! addressing (self-hosted servers, another s3proxy); HTTPS, virtual-hosted buckets and
//! the AWS credential chain keep the SDK, which handles them. `sdk_only` in
//! [`S3Options`](super::S3Options) turns it off.
//!
//! Signing is the `aws-sigv4` crate's (the SDK's own signer), with the settings the SDK
//! uses for S3: the path signed as sent (already percent-encoded once), not normalised,
//! `x-amz-content-sha256` set; request bodies are `UNSIGNED-PAYLOAD`, as the SDK sends a
//! streaming body, and their Content-MD5 (when known) is checked before the last byte
//! leaves ([`UploadBody`]).

use super::S3;
use super::body::{BodyFailure, BoxError, UploadBody};
use super::errors::Call;
use super::headers::{md5_header, parse_content_range, range_header};
use super::ids::unquote;
use super::metadata::{join_metadata, split_metadata};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use s3proxy_core::{
    Body, BucketName, ByteStream, Conditions, ContentHeaders, ETag, Error, GetOptions, ObjectInfo,
    ObjectKey, ObjectMetadata, Result,
};
use std::time::{Duration, SystemTime};

/// The request body type of the pool: empty, or an upload.
type ReqBody = BoxBody<Bytes, BoxError>;

/// Characters a key keeps in the request path: unreserved ones and `/`, as the SDK
/// encodes keys.
const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The hash of an empty payload, as `x-amz-content-sha256` of a bodiless request.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The lean client of one backend.
pub(super) struct Lean {
    client: Client<HttpConnector, ReqBody>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    /// The `Host` header: the endpoint's authority.
    host: HeaderValue,
    identity: Identity,
    region: String,
    /// Sending a request until its response headers (the SDK's read and operation
    /// timeouts, whichever is shorter).
    timeout: Option<Duration>,
    /// The longest wait for the next bytes of a response body.
    body_idle: Option<Duration>,
}

impl Lean {
    /// The lean client for `endpoint`, or `None` when it is not a plain `http://` URL
    /// (the SDK handles those).
    pub(super) fn new(
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        region: &str,
        connect_timeout: Duration,
        timeout: Option<Duration>,
        body_idle: Option<Duration>,
    ) -> Option<Lean> {
        let uri: http::Uri = endpoint.trim_end_matches('/').parse().ok()?;
        if uri.scheme_str() != Some("http") || !matches!(uri.path(), "" | "/") {
            return None;
        }
        let authority = uri.authority()?.as_str().to_string();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        // A backend host that vanishes without a reset (power loss, a dropped route) is
        // noticed on pooled connections, not only by the next request's timeout.
        connector.set_keepalive(Some(Duration::from_secs(30)));
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let credentials = aws_credential_types::Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "s3proxy-config",
        );
        Some(Lean {
            client,
            base: format!("http://{authority}"),
            host: HeaderValue::from_str(&authority).ok()?,
            identity: credentials.into(),
            region: region.to_string(),
            timeout,
            body_idle,
        })
    }
}

/// One request being built: method, path and query, headers.
struct Req {
    method: Method,
    uri: String,
    headers: HeaderMap,
}

impl Req {
    fn object(s3: &S3, lean: &Lean, method: Method, bucket: &BucketName, key: &str) -> Req {
        let bucket = s3.backend_bucket(bucket);
        let mut uri = String::with_capacity(lean.base.len() + bucket.len() + key.len() + 8);
        uri.push_str(&lean.base);
        uri.push('/');
        uri.extend(percent_encoding::utf8_percent_encode(&bucket, KEY_SET));
        uri.push('/');
        uri.extend(percent_encoding::utf8_percent_encode(key, KEY_SET));
        Req {
            method,
            uri,
            headers: HeaderMap::new(),
        }
    }

    /// Set a header; a value HTTP cannot carry is refused as the SDK's builders refuse it.
    fn header(&mut self, name: impl TryInto<HeaderName>, value: &str) -> Result<()> {
        let name = name
            .try_into()
            .map_err(|_| Error::InvalidArgument("invalid header name".into()))?;
        // Bytes, not str: a raw UTF-8 metadata value (which the front door accepts and
        // S3 stores) is sent as it came, as the SDK sends it.
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| Error::InvalidArgument(format!("invalid value of header {name}")))?;
        self.headers.append(name, value);
        Ok(())
    }

    fn conditions(&mut self, c: &Conditions) -> Result<()> {
        if let Some(v) = &c.if_match {
            self.header(http::header::IF_MATCH, v)?;
        }
        if let Some(v) = &c.if_none_match {
            self.header(http::header::IF_NONE_MATCH, v)?;
        }
        if let Some(t) = c.if_modified_since {
            self.header(http::header::IF_MODIFIED_SINCE, &httpdate::fmt_http_date(t))?;
        }
        if let Some(t) = c.if_unmodified_since {
            self.header(
                http::header::IF_UNMODIFIED_SINCE,
                &httpdate::fmt_http_date(t),
            )?;
        }
        Ok(())
    }

    fn content_headers(&mut self, h: &ContentHeaders) -> Result<()> {
        use http::header::*;
        for (name, value) in [
            (CONTENT_TYPE, &h.content_type),
            (CONTENT_ENCODING, &h.content_encoding),
            (CONTENT_DISPOSITION, &h.content_disposition),
            (CONTENT_LANGUAGE, &h.content_language),
            (CACHE_CONTROL, &h.cache_control),
            (EXPIRES, &h.expires),
        ] {
            if let Some(v) = value {
                self.header(name, v)?;
            }
        }
        Ok(())
    }
}

/// Why a request got no response.
enum SendError {
    /// The request could not be built or signed: a bug here, or a value S3 cannot carry.
    Build(String),
    TimedOut,
    Transport(hyper_util::client::legacy::Error),
}

impl S3 {
    /// Sign and send `req` with `body`; the response, whatever its status.
    async fn lean_send(
        &self,
        lean: &Lean,
        req: Req,
        body: ReqBody,
        unsigned_payload: bool,
    ) -> std::result::Result<Response<Incoming>, SendError> {
        let Req {
            method,
            uri,
            mut headers,
        } = req;
        headers.insert(http::header::HOST, lean.host.clone());
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&lean.identity)
            .region(&lean.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| SendError::Build(e.to_string()))?
            .into();
        let payload = if unsigned_payload {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Precomputed(EMPTY_SHA256.to_string())
        };
        let signable = SignableRequest::new(
            method.as_str(),
            uri.as_str(),
            headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
            payload,
        )
        .map_err(|e| SendError::Build(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| SendError::Build(e.to_string()))?
            .into_parts();
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .map_err(|e| SendError::Build(e.to_string()))?;
        *request.headers_mut() = headers;
        instructions.apply_to_request_http1x(&mut request);
        let sent = lean.client.request(request);
        match lean.timeout {
            None => sent.await.map_err(SendError::Transport),
            Some(t) => match tokio::time::timeout(t, sent).await {
                Ok(r) => r.map_err(SendError::Transport),
                Err(_) => Err(SendError::TimedOut),
            },
        }
    }

    /// The error a request that got no answer, or an error answer, stands for.
    async fn lean_error(
        &self,
        call: Call<'_>,
        result: std::result::Result<Response<Incoming>, SendError>,
        not_found: Error,
    ) -> Error {
        let op = call.op();
        let response = match result {
            Ok(r) => r,
            Err(SendError::Build(why)) => {
                let err = Error::Internal(format!(
                    "backend {}: {op}: the request could not be built",
                    self.name
                ));
                return self.internal_context(call, err, Some(&std::io::Error::other(why)));
            }
            Err(SendError::TimedOut) => return self.unavailable(op, "timed out"),
            Err(SendError::Transport(e)) => {
                return self.unavailable(op, source_chain(&e));
            }
        };
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-amz-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // Error documents are small; a server sending more is cut at 64 KiB.
        let body = match http_body_util::Limited::new(response.into_body(), 64 << 10)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let text = String::from_utf8_lossy(&body);
        let code = element(&text, "Code");
        let message = element(&text, "Message").unwrap_or_default();
        let mapped = match code {
            // As the SDK's reading of an answer it cannot parse.
            None if status == 500 => self.failed(op, "HTTP 500 (no code)"),
            _ => self.map_code(op, code.as_deref(), status, &message, not_found),
        };
        let cause = std::io::Error::other(format!(
            "service error: HTTP {status} {}: {message} (request id {request_id})",
            code.as_deref().unwrap_or("(no code)")
        ));
        self.internal_context(call, mapped, Some(&cause))
    }

    /// HeadObject over the lean client (see [`S3::head_raw`]).
    pub(super) async fn lean_head(
        &self,
        lean: &Lean,
        bucket: &BucketName,
        key: &ObjectKey,
        conditions: &Conditions,
    ) -> Result<ObjectInfo> {
        let mut req = Req::object(self, lean, Method::HEAD, bucket, key.as_str());
        req.conditions(conditions)?;
        let result = self.lean_send(lean, req, empty(), false).await;
        match result {
            Ok(r) if r.status().is_success() => Ok(info_of(key, r.headers(), None)),
            other => {
                let call = Call::object("HeadObject", bucket, key.as_str());
                Err(self.lean_error(call, other, Error::NoSuchKey).await)
            }
        }
    }

    /// GetObject over the lean client (see the SDK path in `backend`): the response's
    /// information, its `Content-Range` and its body.
    pub(super) async fn lean_get(
        &self,
        lean: &Lean,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: &GetOptions,
    ) -> Result<(ObjectInfo, Option<(u64, u64)>, ByteStream)> {
        let mut req = Req::object(self, lean, Method::GET, bucket, key.as_str());
        if let Some(n) = opts.part_number {
            req.uri.push_str(&format!("?partNumber={n}"));
        }
        if let Some(range) = opts.range {
            req.header(http::header::RANGE, &range_header(range))?;
        }
        req.conditions(&opts.conditions)?;
        let result = self.lean_send(lean, req, empty(), false).await;
        let response = match result {
            Ok(r) if r.status().is_success() => r,
            other => {
                let call = Call::object("GetObject", bucket, key.as_str());
                return Err(self.lean_error(call, other, Error::NoSuchKey).await);
            }
        };
        let headers = response.headers();
        let mut info = info_of(key, headers, opts.part_number);
        // A part is served like a range (some servers answer a one-part object's part 1
        // whole, without Content-Range).
        let ranged = opts.range.is_some() || opts.part_number.is_some();
        let content_range = headers
            .get(http::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range);
        let range = match content_range {
            Some((first, last, total)) if ranged => {
                info.size = total;
                Some((first, last))
            }
            _ => None,
        };
        let body = response_stream(self.name.clone(), response, lean.body_idle);
        Ok((info, range, body))
    }

    /// PutObject over the lean client; the ETag the server gave.
    pub(super) async fn lean_put(
        &self,
        lean: &Lean,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        content_md5: Option<[u8; 16]>,
        metadata: &ObjectMetadata,
    ) -> Result<ETag> {
        let mut req = Req::object(self, lean, Method::PUT, bucket, key.as_str());
        req.header(http::header::CONTENT_LENGTH, &body.length.to_string())?;
        if let Some(md5) = md5_header(content_md5) {
            req.header("content-md5", &md5)?;
        }
        req.content_headers(&metadata.headers)?;
        for (k, v) in join_metadata(metadata) {
            req.header(format!("x-amz-meta-{k}").as_str(), &v)?;
        }
        let (upload, failure): (UploadBody, BodyFailure) = UploadBody::new(body, content_md5);
        let call = Call::object("PutObject", bucket, key.as_str());
        self.with_body(&failure, async {
            let result = self.lean_send(lean, req, BoxBody::new(upload), true).await;
            match result {
                Ok(r) if r.status().is_success() => {
                    let etag = r
                        .headers()
                        .get(http::header::ETAG)
                        .and_then(|v| v.to_str().ok());
                    Ok(unquote(etag))
                }
                other => Err(self.lean_error(call, other, Error::NoSuchBucket).await),
            }
        })
        .await
    }

    /// DeleteObject over the lean client; a missing key is no error.
    pub(super) async fn lean_delete(
        &self,
        lean: &Lean,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<()> {
        let req = Req::object(self, lean, Method::DELETE, bucket, key.as_str());
        let result = self.lean_send(lean, req, empty(), false).await;
        match result {
            Ok(r) if r.status().is_success() => Ok(()),
            other => {
                let call = Call::object("DeleteObject", bucket, key.as_str());
                match self.lean_error(call, other, Error::NoSuchKey).await {
                    Error::NoSuchKey => Ok(()),
                    err => Err(err),
                }
            }
        }
    }
}

fn empty() -> ReqBody {
    BoxBody::new(Empty::new().map_err(|never| match never {}))
}

/// A header as text: lossy for bytes that are not UTF-8 (servers send them raw).
fn text(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// What a HeadObject or GetObject response says of the object, as the SDK reads it.
fn info_of(key: &ObjectKey, headers: &HeaderMap, part_number: Option<u32>) -> ObjectInfo {
    use http::header::*;
    let mut user = std::collections::HashMap::new();
    for (name, value) in headers {
        if let Some(meta) = name.as_str().strip_prefix("x-amz-meta-") {
            user.insert(
                meta.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
    }
    let content = ContentHeaders {
        content_type: text(headers, CONTENT_TYPE),
        content_encoding: text(headers, CONTENT_ENCODING),
        content_disposition: text(headers, CONTENT_DISPOSITION),
        content_language: text(headers, CONTENT_LANGUAGE),
        cache_control: text(headers, CACHE_CONTROL),
        expires: text(headers, EXPIRES),
    };
    let number = |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.parse().ok() };
    ObjectInfo {
        key: key.clone(),
        size: number("content-length").unwrap_or(0).max(0) as u64,
        etag: unquote(headers.get(ETAG).and_then(|v| v.to_str().ok())),
        last_modified: headers
            .get(LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        metadata: split_metadata(Some(&user), content),
        parts_count: part_number
            .and(number("x-amz-mp-parts-count"))
            .and_then(|n| u32::try_from(n).ok()),
    }
}

/// A response body as a core [`ByteStream`]; a failure reading it is the backend's, and
/// so is a wait of more than `idle` for its next bytes (a backend that stalls mid-body
/// would otherwise hold the request, and the client, until the connection dies).
fn response_stream(
    name: String,
    response: Response<Incoming>,
    idle: Option<Duration>,
) -> ByteStream {
    let body = response.into_body();
    Box::pin(futures::stream::unfold(Some(body), move |state| {
        let name = name.clone();
        async move {
            let mut body = state?;
            let failed = |why: String| {
                Some((
                    Err(Error::backend(
                        &name,
                        "reading object data",
                        s3proxy_core::BackendErrorKind::Unavailable,
                        why,
                    )),
                    None,
                ))
            };
            loop {
                // The timer is only armed when the next frame is not already buffered.
                let frame = match idle {
                    None => body.frame().await,
                    Some(idle) => match tokio::time::timeout(idle, body.frame()).await {
                        Ok(frame) => frame,
                        Err(_) => return failed(format!("no data for {idle:?} (stalled)")),
                    },
                };
                match frame {
                    None => return None,
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(chunk) if chunk.is_empty() => continue,
                        Ok(chunk) => return Some((Ok(chunk), Some(body))),
                        // Trailers: nothing the object's bytes need.
                        Err(_) => continue,
                    },
                    Some(Err(e)) => return failed(source_chain(&e)),
                }
            }
        }
    }))
}

/// The text of the first `<name>` element of an error document, unescaped.
fn element(doc: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&format!("</{name}>"))?;
    let raw = &doc[start..end];
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `err` and its sources, joined by `: `.
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_give_code_and_message() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
                   <Message>a &amp; b &lt;c&gt;</Message></Error>";
        assert_eq!(element(doc, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(element(doc, "Message").as_deref(), Some("a & b <c>"));
        assert_eq!(element(doc, "RequestId"), None);
        assert_eq!(element("", "Code"), None);
    }

    /// Raw UTF-8 metadata (the front door accepts it, S3 stores it) goes out as sent;
    /// a value HTTP cannot carry (a line break would split the request) is refused.
    #[test]
    fn header_values_go_out_as_bytes_but_never_break_the_request() {
        let mut req = Req {
            method: Method::PUT,
            uri: String::new(),
            headers: HeaderMap::new(),
        };
        req.header("x-amz-meta-greeting", "Grüße 東京").unwrap();
        assert_eq!(
            req.headers["x-amz-meta-greeting"].as_bytes(),
            "Grüße 東京".as_bytes()
        );
        for broken in ["a\r\nx-amz-acl: public-read", "a\nb", "a\0b"] {
            assert!(
                matches!(
                    req.header("x-amz-meta-x", broken),
                    Err(Error::InvalidArgument(_))
                ),
                "{broken:?}"
            );
        }
        assert!(matches!(
            req.header("bad name", "v"),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(req.headers.len(), 1);
    }

    #[test]
    fn only_plain_http_endpoints_are_lean() {
        let t = Duration::from_secs(1);
        assert!(
            Lean::new(
                "http://127.0.0.1:9000/",
                "a",
                "b",
                "us-east-1",
                t,
                None,
                None
            )
            .is_some()
        );
        assert!(
            Lean::new(
                "https://s3.example.com",
                "a",
                "b",
                "us-east-1",
                t,
                None,
                None
            )
            .is_none()
        );
        assert!(Lean::new("http://h:1/prefix", "a", "b", "us-east-1", t, None, None).is_none());
    }

    #[test]
    fn response_headers_read_as_the_sdk_reads_them() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "42".parse().unwrap());
        h.insert("etag", "\"abc\"".parse().unwrap());
        h.insert(
            "last-modified",
            "Tue, 01 Dec 2026 10:00:00 GMT".parse().unwrap(),
        );
        h.insert("x-amz-meta-mode", "644".parse().unwrap());
        h.insert("x-amz-meta-s3proxy-v", "1".parse().unwrap());
        h.insert("x-amz-mp-parts-count", "3".parse().unwrap());
        h.insert("expires", "not a date".parse().unwrap());
        let key = ObjectKey::new("k").unwrap();
        let info = info_of(&key, &h, Some(1));
        assert_eq!(info.size, 42);
        assert_eq!(info.etag, "abc");
        assert_eq!(
            info.metadata.user.get("mode").map(String::as_str),
            Some("644")
        );
        assert_eq!(
            info.metadata.internal.get("s3proxy-v").map(String::as_str),
            Some("1")
        );
        assert_eq!(info.metadata.headers.expires.as_deref(), Some("not a date"));
        assert_eq!(info.parts_count, Some(3));
        assert_eq!(info_of(&key, &h, None).parts_count, None);
        assert_ne!(info.last_modified, SystemTime::UNIX_EPOCH);
    }
}
