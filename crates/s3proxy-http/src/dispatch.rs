//! One request from arrival to answer: [`S3Server`] gives it an id, holds a slot of the
//! request limit, authenticates and routes it, calls the operation's handler, and writes
//! the request's log line and metrics.

use crate::auth::grants::{self, Grants};
use crate::auth::{self, AuthConfig, Keyring, RequestParts};
use crate::body::{ResponseBody, incoming_stream};
use crate::config::ServerConfig;
use crate::request::{self, Query};
use crate::router::Endpoint;
use crate::server::ServeOptions;
use crate::{bucket, copy, error, list, multipart, object, subresource, time};
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response};
use s3proxy_core::{BucketName, ByteStream, DynBackend, Error, ObjectKey, Result};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

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
    pub(crate) config: Arc<ServerConfig>,
    auth: Arc<AuthConfig>,
    /// Permits for requests in flight, when `max_requests` limits them.
    requests: Option<Arc<tokio::sync::Semaphore>>,
    /// The per-request metrics' handles.
    stats: crate::stats::Stats,
}

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
            stats: Default::default(),
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
        // A request that announced a body may be answered before its body was read (an
        // authentication, routing or ACL refusal). A client that sent `Expect:
        // 100-continue` then never sends the body, and one that did may be cut short:
        // either way the connection's next bytes are not the next request, so such an
        // answer closes the connection.
        let announced_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
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
                let mut r =
                    error::error_response(&e, &resource, &request_id, method != http::Method::HEAD);
                if announced_body {
                    r.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                r
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
        let stats = self.stats.op(op);
        stats.requests(op, status).increment(1);
        stats.duration.record(elapsed.as_secs_f64());
        if let Some(out) = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            && method != http::Method::HEAD
        {
            stats.response_bytes.increment(out);
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
        let (mut parts, body) = req.into_parts();
        let header_bytes: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > self.config.max_header_bytes {
            return ("Request", Err(Error::RequestHeaderSectionTooLarge));
        }
        let uri = parts.uri.clone();
        let raw_path = uri.path();
        let raw_query = uri.query().unwrap_or("");
        let query = Query::parse(raw_query);
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
        // A presigned URL's signed x-amz-* parameters count as headers (boto3 puts a
        // presigned PUT's metadata there), for routing and the handlers alike.
        if let Err(e) = request::add_query_headers(&mut parts.headers, &authenticated) {
            return ("Authenticate", Err(e));
        }
        let routed = (|| {
            let host = request::header(&parts.headers, "host");
            let (bucket, key) =
                request::address(raw_path, host.as_deref(), &self.config.virtual_host_domains)?;
            let bucket = bucket.map(BucketName::new).transpose()?;
            let key = key.map(ObjectKey::new).transpose()?;
            Endpoint::route(&parts.method, bucket, key, &query, &parts.headers)
        })();
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
        let received = self.stats.op(op).request_bytes.clone();
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
