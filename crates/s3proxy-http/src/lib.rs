//! # s3proxy-http
//!
//! The S3 REST protocol over hyper, serving any [`s3proxy_core::Backend`]: addressing
//! (path-style and virtual-hosted), SigV4 authentication (header, presigned, aws-chunked
//! with signed chunks or checksum trailers) and SigV2 (header and presigned), the S3 XML
//! documents and error responses.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use s3proxy_http::{S3Server, ServerConfig, auth::Credential};
//! let backend = std::sync::Arc::new(s3proxy_backends::Memory::new("mem"));
//! let config = ServerConfig::new(vec![Credential::new("AKEXAMPLE", "secretexample")]);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! S3Server::new(backend, config).serve(listener).await
//! # }
//! ```

// Request-path parsers: no indexing or arithmetic that can panic on input.
#[cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]
pub mod auth;
mod bucket;
pub mod checksum;
mod conn;
mod copy;
mod error;
#[cfg(test)]
mod fuzz;
mod list;
mod multipart;
mod object;
// Request-path parsers: no indexing or arithmetic that can panic on input.
#[cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]
pub mod query;
pub mod request;
pub mod router;
pub mod server;
mod spill;
mod subresource;
pub mod time;
pub mod tls;
pub mod xml;

use auth::grants::{self, Grants};
use auth::{AuthConfig, Credential, Keyring, RequestParts};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use request::Query;
use router::Endpoint;
use s3proxy_core::{BucketName, ByteStream, DynBackend, Error, ObjectKey, Result};
use server::ServeOptions;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id (`x-amz-request-id`) of the request the calling task is serving, if any: a
/// logger adds it to every line written while a request is served, whichever layer
/// writes it. Work a request spawns onto other tasks does not carry it.
///
/// ```
/// assert_eq!(s3proxy_http::current_request_id(), None);
/// ```
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(String::clone).ok()
}

/// The body type of every response.
pub type ResponseBody = UnsyncBoxBody<Bytes, Error>;

pub(crate) fn empty_body() -> ResponseBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn full_body(data: impl Into<Bytes>) -> ResponseBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn stream_body(stream: ByteStream) -> ResponseBody {
    StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync()
}

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

/// Per-request context handed to the operation handlers.
pub(crate) struct Ctx {
    pub backend: DynBackend,
    pub config: Arc<ServerConfig>,
    /// This request's id, for error documents sent in a 200 body.
    pub request_id: String,
    /// The request's path, for the same.
    pub resource: String,
}

/// What the handlers see of a request once it is routed and authenticated.
pub(crate) struct S3Request {
    pub headers: http::HeaderMap,
    pub query: Query,
    /// The body as object data, already decoded and being verified.
    pub body: ByteStream,
    /// Whether the body came aws-chunked (its data length is then in a header).
    pub chunked: bool,
    /// The buckets the signer may reach.
    pub grants: Arc<Grants>,
}

/// The S3 server: routes, authenticates and serves requests against a backend.
#[derive(Clone)]
pub struct S3Server {
    backend: DynBackend,
    config: Arc<ServerConfig>,
    auth: Arc<AuthConfig>,
    /// Permits for requests in flight, when `max_requests` limits them.
    requests: Option<Arc<tokio::sync::Semaphore>>,
}

/// Request body size limit for XML documents (a CompleteMultipartUpload of 10,000 parts
/// with checksums fits).
pub const MAX_XML_BODY: usize = 2 << 20;

/// S3's limit on the request header section.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;

impl S3Server {
    /// A server for `backend`.
    pub fn new(backend: DynBackend, config: ServerConfig) -> Self {
        let auth = AuthConfig {
            keyring: Keyring::new(config.credentials.clone()),
            max_skew: config.max_clock_skew,
        };
        let requests = config
            .max_requests
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        S3Server {
            backend,
            config: Arc::new(config),
            auth: Arc::new(auth),
            requests,
        }
    }

    /// Accept connections on `listener` until the task is dropped (plain HTTP, no
    /// limits); [`S3Server::serve_with`] adds TLS, limits and a graceful stop.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.serve_with(listener, ServeOptions::default(), std::future::pending())
            .await
            .map(|_| ())
    }

    /// Serve one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let request_id = hex::encode(rand::random::<[u8; 8]>()).to_uppercase();
        // Every log line written while the request is served, in any layer, its own
        // line included, can name it (see `current_request_id`).
        REQUEST_ID
            .scope(request_id.clone(), self.handle_as(req, request_id))
            .await
    }

    async fn handle_as<B>(&self, req: Request<B>, request_id: String) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resource = path.clone();
        let ctx = Ctx {
            backend: self.backend.clone(),
            config: self.config.clone(),
            request_id: request_id.clone(),
            resource: resource.clone(),
        };
        let permit = match &self.requests {
            None => Ok(None),
            Some(sem) => sem.clone().try_acquire_owned().map(Some),
        };
        let (op, result) = match permit {
            Ok(_permit) => self.dispatch(&ctx, req).await,
            Err(_) => ("Request", Err(Error::SlowDown)),
        };
        let mut failure = None;
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                if e.status() >= 500 {
                    failure = Some(e.to_string());
                } else {
                    log::debug!("{request_id} {op} {method} {path}: {}", e.code());
                }
                error::error_response(&e, &resource, &request_id, method != http::Method::HEAD)
            }
        };
        let headers = response.headers_mut();
        headers.insert("x-amz-request-id", request_id.parse().expect("hex"));
        headers.insert("x-amz-id-2", request_id.parse().expect("hex"));
        headers.insert("server", http::HeaderValue::from_static("s3proxy"));
        if let Ok(date) = time::http_date(SystemTime::now()).parse() {
            headers.insert("date", date);
        }
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        metrics::counter!("s3proxy_requests_total", "operation" => op, "status" => status.to_string())
            .increment(1);
        metrics::histogram!("s3proxy_request_duration_seconds", "operation" => op)
            .record(elapsed.as_secs_f64());
        if let Some(out) = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            && method != http::Method::HEAD
        {
            metrics::counter!("s3proxy_response_bytes_total", "operation" => op).increment(out);
        }
        // One line per request: at error level with the cause when the server failed.
        let ms = elapsed.as_secs_f64() * 1000.0;
        match failure {
            Some(why) => {
                log::error!("{request_id} {op} {method} {path} -> {status} in {ms:.1}ms: {why}")
            }
            None => log::info!("{request_id} {op} {method} {path} -> {status} in {ms:.1}ms"),
        }
        response
    }

    async fn dispatch<B>(
        &self,
        ctx: &Ctx,
        req: Request<B>,
    ) -> (&'static str, Result<Response<ResponseBody>>)
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let header_bytes: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > self.config.max_header_bytes {
            return ("Request", Err(Error::RequestHeaderSectionTooLarge));
        }
        let raw_path = parts.uri.path();
        let raw_query = parts.uri.query().unwrap_or("");
        let query = Query::parse(raw_query);
        let routed = (|| {
            let host = request::header(&parts.headers, "host");
            let (bucket, key) =
                request::address(raw_path, host.as_deref(), &self.config.virtual_host_domains)?;
            let bucket = bucket.map(BucketName::new).transpose()?;
            let key = key.map(ObjectKey::new).transpose()?;
            Endpoint::route(&parts.method, bucket, key, &query, &parts.headers)
        })();
        // Authenticate before anything else answers, even routing errors.
        let host = parts.headers.get("host").and_then(|h| h.to_str().ok());
        let authenticated = auth::authenticate(
            &RequestParts {
                method: parts.method.as_str(),
                raw_path,
                raw_query,
                headers: &parts.headers,
                vhost_bucket: request::vhost_bucket(host, &self.config.virtual_host_domains),
            },
            &self.auth,
            SystemTime::now(),
        );
        let authenticated = match authenticated {
            Ok(a) => a,
            Err(e) => return ("Authenticate", Err(e)),
        };
        let endpoint = match routed {
            Ok(e) => e,
            Err(e) => return ("Route", Err(e)),
        };
        let op = endpoint.name();
        if let Some((bucket, access)) = grants::needed(&endpoint)
            && let Err(e) = authenticated.grants.require(bucket, access)
        {
            log::debug!(
                "{} may not {op} on bucket {bucket}",
                authenticated.access_key
            );
            return (op, Err(e));
        }
        if matches!(
            endpoint,
            Endpoint::PutObject { .. }
                | Endpoint::CopyObject { .. }
                | Endpoint::CreateMultipartUpload { .. }
                | Endpoint::CreateBucket { .. }
        ) && let Err(e) = subresource::check_acl_headers(&parts.headers)
        {
            return (op, Err(e));
        }
        // Bytes are counted as they arrive: chunked uploads without a length and bodies
        // cut short count what was really received.
        let received = metrics::counter!("s3proxy_request_bytes_total", "operation" => op);
        let mut raw = incoming_stream(body, self.config.body_idle_timeout, received);
        // hyper sends `100 Continue` when the body is first read. A handler may first
        // work with the backends for a while (a multipart upload's replicas, a copy's
        // source), and a client that waited a second sends the body unasked and can then
        // misread the late 100 as the answer. The request is authenticated and routed
        // now: ask for the body at once, keeping what arrives first.
        if request::header(&parts.headers, "expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let first = raw.next().await;
            raw = Box::pin(futures::stream::iter(first).chain(raw));
        }
        let chunked = request::is_chunked(&authenticated);
        let body = match request::verified_body(raw, &parts.headers, &authenticated) {
            Ok(b) => b,
            Err(e) => return (op, Err(e)),
        };
        let req = S3Request {
            headers: parts.headers,
            query,
            body,
            chunked,
            grants: authenticated.grants,
        };
        (op, route_to_handler(ctx, endpoint, req).await)
    }
}

async fn route_to_handler(
    ctx: &Ctx,
    endpoint: Endpoint,
    req: S3Request,
) -> Result<Response<ResponseBody>> {
    use Endpoint::*;
    match endpoint {
        ListBuckets => bucket::list_buckets(ctx, &req.grants).await,
        CreateBucket { bucket } => bucket::create_bucket(ctx, &bucket, req).await,
        DeleteBucket { bucket } => bucket::delete_bucket(ctx, &bucket).await,
        HeadBucket { bucket } => bucket::head_bucket(ctx, &bucket).await,
        GetBucketLocation { bucket } => bucket::get_location(ctx, &bucket).await,
        GetBucketVersioning { bucket } => bucket::get_versioning(ctx, &bucket).await,
        ListObjects { bucket } => list::list_objects(ctx, &bucket, &req.query, false).await,
        ListObjectsV2 { bucket } => list::list_objects(ctx, &bucket, &req.query, true).await,
        ListMultipartUploads { bucket } => multipart::list_uploads(ctx, &bucket, &req.query).await,
        DeleteObjects { bucket } => object::delete_objects(ctx, &bucket, req).await,
        GetBucketAcl { bucket } => subresource::get_acl(ctx, &bucket, None).await,
        PutBucketAcl { bucket } => subresource::put_acl(ctx, &bucket, None, req).await,
        ListObjectVersions { bucket } => {
            subresource::list_object_versions(ctx, &bucket, &req.query).await
        }
        GetObjectAcl { bucket, key } => subresource::get_acl(ctx, &bucket, Some(&key)).await,
        PutObjectAcl { bucket, key } => subresource::put_acl(ctx, &bucket, Some(&key), req).await,
        GetObjectTagging { bucket, key } => {
            subresource::get_object_tagging(ctx, &bucket, &key).await
        }
        GetObject { bucket, key } => object::get_object(ctx, &bucket, &key, req, true).await,
        HeadObject { bucket, key } => object::get_object(ctx, &bucket, &key, req, false).await,
        PutObject { bucket, key } => object::put_object(ctx, &bucket, &key, req).await,
        CopyObject { bucket, key } => copy::copy_object(ctx, &bucket, &key, req).await,
        DeleteObject { bucket, key } => object::delete_object(ctx, &bucket, &key).await,
        CreateMultipartUpload { bucket, key } => multipart::create(ctx, &bucket, &key, req).await,
        UploadPart {
            bucket,
            key,
            upload_id,
            part_number,
        } => multipart::upload_part(ctx, &bucket, &key, &upload_id, part_number, req).await,
        UploadPartCopy {
            bucket,
            key,
            upload_id,
            part_number,
        } => copy::upload_part_copy(ctx, &bucket, &key, &upload_id, part_number, req).await,
        CompleteMultipartUpload {
            bucket,
            key,
            upload_id,
        } => multipart::complete(ctx, &bucket, &key, &upload_id, req).await,
        AbortMultipartUpload {
            bucket,
            key,
            upload_id,
        } => multipart::abort(ctx, &bucket, &key, &upload_id).await,
        ListParts {
            bucket,
            key,
            upload_id,
        } => multipart::list_parts(ctx, &bucket, &key, &upload_id, &req.query).await,
    }
}

/// The request body as a stream of data chunks, each counted in `received`; a client
/// that pauses longer than `idle` gets RequestTimeout instead of holding the request open.
fn incoming_stream<B>(body: B, idle: Duration, received: metrics::Counter) -> ByteStream
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    Box::pin(futures::stream::try_unfold(
        (body, received),
        move |(mut body, received)| async move {
            loop {
                match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => return Err(Error::RequestTimeout),
                    Ok(None) => return Ok(None),
                    Ok(Some(Err(e))) => {
                        log::debug!("request body failed: {e}");
                        return Err(Error::IncompleteBody);
                    }
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            received.increment(data.len() as u64);
                            return Ok(Some((data, (body, received))));
                        }
                    }
                }
            }
        },
    ))
}

/// A response with an XML body.
pub(crate) fn xml_response(body: String) -> Result<Response<ResponseBody>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/xml")
        .header("content-length", body.len())
        .body(full_body(body))
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

/// The XML declaration every document starts with.
const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Answer with the XML document `work` produces, keeping the connection alive while it
/// runs. Copies and multipart completions of big objects can take minutes (longer through
/// encryption and replication) without the client hearing a byte, and clients give up:
/// s3fs aborts after `readwrite_timeout` (120 s) and retries, starting the work again. S3's
/// answer, followed here: when the work outlasts `keepalive_after`, send 200 with the XML
/// declaration at once, a space every `keepalive_every`, then the result document, or an
/// `<Error>` document, which S3 clients look for in a 200 to these operations.
pub(crate) async fn xml_keepalive<F>(ctx: &Ctx, work: F) -> Result<Response<ResponseBody>>
where
    F: std::future::Future<Output = Result<String>> + Send + 'static,
{
    let mut work = Box::pin(work);
    if let Ok(done) = tokio::time::timeout(ctx.config.keepalive_after, work.as_mut()).await {
        return xml_response(done?);
    }
    let every = ctx.config.keepalive_every;
    let (resource, request_id) = (ctx.resource.clone(), ctx.request_id.clone());
    let rest = futures::stream::unfold(Some(work), move |state| {
        let (resource, request_id) = (resource.clone(), request_id.clone());
        async move {
            let mut work = state?;
            tokio::select! {
                done = work.as_mut() => {
                    let doc = done.unwrap_or_else(|e| {
                        log::warn!("{request_id} {resource}: {e} (sent in a 200 body)");
                        error::error_document(&e, &resource, &request_id)
                    });
                    let doc = doc.strip_prefix(XML_DECLARATION).unwrap_or(&doc).to_string();
                    Some((Ok(Bytes::from(doc)), None))
                }
                _ = tokio::time::sleep(every) => Some((Ok(Bytes::from_static(b" ")), Some(work))),
            }
        }
    });
    let stream =
        futures::stream::once(async { Ok(Bytes::from_static(XML_DECLARATION.as_bytes())) })
            .chain(rest);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/xml")
        .body(stream_body(Box::pin(stream)))
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

/// An empty response with a status.
pub(crate) fn empty_response(status: StatusCode) -> Result<Response<ResponseBody>> {
    Response::builder()
        .status(status)
        .header("content-length", 0)
        .body(empty_body())
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

/// The complete response sent to a client whose request headers stalled.
pub(crate) fn timeout_response() -> Vec<u8> {
    let request_id = hex::encode(rand::random::<[u8; 8]>()).to_uppercase();
    let body = error::error_document(&Error::RequestTimeout, "", &request_id);
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nx-amz-request-id: {request_id}\r\nconnection: close\r\nserver: s3proxy\r\ndate: {}\r\n\r\n{body}",
        body.len(),
        time::http_date(SystemTime::now()),
    )
    .into_bytes()
}

/// Read a small request body (an XML document) whole, up to [`MAX_XML_BODY`] bytes.
pub(crate) async fn read_xml_body(mut req: S3Request) -> Result<String> {
    let expected = request::content_md5(&req.headers)?;
    let declared = if req.chunked {
        "x-amz-decoded-content-length"
    } else {
        "content-length"
    };
    let declared =
        request::header(&req.headers, declared).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_XML_BODY as u64) {
        return Err(too_big(req.body, declared).await);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = req.body.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_XML_BODY {
            return Err(too_big(req.body, declared).await);
        }
        body.extend_from_slice(&chunk);
    }
    if let Some(want) = expected {
        use md5::Digest;
        if md5::Md5::digest(&body).as_slice() != want {
            return Err(Error::BadDigest);
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| Error::MalformedXml)
}

/// Bodies up to this size are read to their end before a too-big document is refused, so
/// the client, still sending, sees the error instead of a reset connection; bigger ones are
/// refused at once and the connection closed.
const MAX_DRAIN: u64 = 16 << 20;

/// MaxMessageLengthExceeded, after draining what remains of a body of moderate size.
async fn too_big(mut rest: ByteStream, declared: Option<u64>) -> Error {
    if declared.is_some_and(|n| n <= MAX_DRAIN) {
        let mut drained = 0u64;
        while let Some(Ok(chunk)) = rest.next().await {
            drained += chunk.len() as u64;
            if drained > MAX_DRAIN {
                break;
            }
        }
    }
    Error::MaxMessageLengthExceeded
}

/// The owner shown in listings.
pub(crate) fn owner_xml(out: &mut String) {
    out.push_str("<Owner><ID>s3proxy</ID><DisplayName>s3proxy</DisplayName></Owner>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(after_ms: u64, every_ms: u64) -> Ctx {
        let mut config = ServerConfig::new(vec![]);
        config.keepalive_after = Duration::from_millis(after_ms);
        config.keepalive_every = Duration::from_millis(every_ms);
        Ctx {
            backend: Arc::new(s3proxy_backends::Memory::new("mem")),
            config: Arc::new(config),
            request_id: "RID".into(),
            resource: "/b/k".into(),
        }
    }

    async fn body_text(r: Response<ResponseBody>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn doc(root: &str) -> String {
        format!("{}<{root}/>", XML_DECLARATION)
    }

    #[tokio::test]
    async fn quick_work_answers_plainly() {
        let r = xml_keepalive(&ctx(1000, 1000), async { Ok(doc("Done")) })
            .await
            .unwrap();
        assert!(r.headers().contains_key("content-length"));
        assert_eq!(body_text(r).await, doc("Done"));
        let e = xml_keepalive(&ctx(1000, 1000), async {
            Err::<String, _>(Error::NoSuchKey)
        })
        .await
        .unwrap_err();
        assert!(matches!(e, Error::NoSuchKey));
    }

    #[tokio::test]
    async fn slow_work_keeps_the_connection_alive() {
        let slow = |result: Result<String>| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            result
        };
        let r = xml_keepalive(&ctx(20, 50), slow(Ok(doc("Done"))))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!r.headers().contains_key("content-length"));
        let text = body_text(r).await;
        // One declaration, then spaces, then the document: still well-formed XML.
        assert!(text.starts_with(XML_DECLARATION), "{text:?}");
        let rest = &text[XML_DECLARATION.len()..];
        let spaces = rest.len() - rest.trim_start().len();
        assert!(spaces >= 2, "{text:?}");
        assert_eq!(rest.trim_start(), "<Done/>");
        // A failure after the 200 went out is an <Error> document in the body.
        let r = xml_keepalive(&ctx(20, 50), slow(Err(Error::NoSuchKey)))
            .await
            .unwrap();
        let text = body_text(r).await;
        assert_eq!(text.matches("<?xml").count(), 1, "{text:?}");
        assert!(
            text.trim_end()
                .ends_with("<RequestId>RID</RequestId></Error>")
        );
        assert!(text.contains("<Code>NoSuchKey</Code><Message>"), "{text:?}");
    }
}
