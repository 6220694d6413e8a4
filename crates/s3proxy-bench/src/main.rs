//! `s3proxy-bench`: a load generator for any S3 endpoint. It signs real requests (SigV4),
//! drives one operation (PUT, GET whole or ranged, HEAD, LIST, DELETE) at a given object
//! size and concurrency for a count or a duration, and reports ops/s, MiB/s and latency
//! percentiles as text and JSON.
//!
//! Bodies are streamed from one shared pseudo-random pattern, so multi-GiB objects cost
//! no memory; GETs are checked for their size (and, with `--verify`, their bytes).

mod body;
mod sign;

use body::PatternBody;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sign::Signer;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Put,
    Get,
    Head,
    List,
    Delete,
}

/// Load generator for S3 endpoints.
#[derive(Parser, Debug, Clone)]
#[command(name = "s3proxy-bench", version, about)]
struct Args {
    /// Endpoint URL (http only), e.g. http://127.0.0.1:9000.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// Bucket to work in.
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Create the bucket first (an existing one is fine).
    #[arg(long)]
    create_bucket: bool,
    /// Operation.
    #[arg(long, value_enum)]
    op: Op,
    /// Object size: bytes, or with a unit (4KiB, 64MiB, 5GiB; K/M/G are binary too).
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    size: u64,
    /// GET a random range of this many bytes instead of the whole object.
    #[arg(long, value_parser = parse_size)]
    range_size: Option<u64>,
    /// Requests in flight.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Stop after this many operations.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Stop issuing operations after this many seconds (default 10 without --count).
    #[arg(long, short = 'd')]
    duration: Option<f64>,
    /// Distinct keys the operations cycle over (default: the concurrency).
    #[arg(long)]
    keys: Option<u64>,
    /// Key prefix; keys are `<prefix><size>-<n>`.
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// Before GET, HEAD, LIST and DELETE, PUT every key that is missing or has another
    /// size.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    prepare: bool,
    /// Compare every byte a GET returns with what was written.
    #[arg(long)]
    verify: bool,
    /// Sign PUT bodies with their SHA-256 (computed in advance) instead of
    /// UNSIGNED-PAYLOAD.
    #[arg(long)]
    sign_payload: bool,
    /// PUT objects larger than this as multipart uploads with parts of this size (as the
    /// aws cli does), one part at a time.
    #[arg(long, value_parser = parse_size)]
    part_size: Option<u64>,
    /// max-keys of each LIST.
    #[arg(long, default_value_t = 1000)]
    list_max_keys: u32,
    /// Name of this run in the report (e.g. the setup measured).
    #[arg(long, default_value = "")]
    label: String,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also append the JSON report as one line to this file.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

fn size_label(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

type ReqBody = UnsyncBoxBody<Bytes, Infallible>;

struct Bench {
    args: Args,
    client: Client<HttpConnector, ReqBody>,
    signer: Signer,
    host: String,
    base: String,
    pattern: Bytes,
    put_hash: String,
    keys: u64,
}

/// The outcome of one request: bytes of object data moved.
type OpResult = Result<u64, String>;

impl Bench {
    fn key(&self, n: u64) -> String {
        format!("{}{}-{n}", self.args.prefix, size_label(self.args.size))
    }

    fn object_path(&self, key: &str) -> String {
        format!(
            "/{}/{}",
            self.args.bucket,
            s3proxy_http::auth::sigv4::uri_encode(key, true)
        )
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &str,
        payload_hash: &str,
        body: ReqBody,
    ) -> Request<ReqBody> {
        let uri = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let mut b = Request::builder().method(method.clone()).uri(uri);
        for (name, value) in self.signer.sign(
            method.as_str(),
            &self.host,
            path,
            query,
            payload_hash,
            SystemTime::now(),
        ) {
            b = b.header(name, value);
        }
        b.header("host", &self.host)
            .body(body)
            .expect("a valid request")
    }

    fn empty() -> ReqBody {
        Empty::new().map_err(|e| match e {}).boxed_unsync()
    }

    async fn send(
        &self,
        req: Request<ReqBody>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        self.client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e:?}"))
    }

    /// Read a whole response body; with `verify_from`, check it against the pattern.
    async fn drain(
        &self,
        resp: hyper::Response<hyper::body::Incoming>,
        verify_from: Option<u64>,
    ) -> Result<u64, String> {
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body after {n} bytes: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if let Some(start) = verify_from
                    && !body::matches(&self.pattern, start + n, &data)
                {
                    return Err(format!("wrong data at offset {}", start + n));
                }
                n += data.len() as u64;
            }
        }
        Ok(n)
    }

    async fn error_text(&self, what: &str, resp: hyper::Response<hyper::body::Incoming>) -> String {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        format!("{what}: HTTP {status}: {text}")
    }

    async fn put(&self, key: &str) -> OpResult {
        match self.args.part_size {
            Some(part) if part > 0 && part < self.args.size => self.put_multipart(key, part).await,
            _ => self.put_single(key).await,
        }
    }

    async fn put_multipart(&self, key: &str, part_size: u64) -> OpResult {
        let path = self.object_path(key);
        let req = self.request(Method::POST, &path, "uploads=", sign_empty(), Self::empty());
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::OK {
            return Err(self
                .error_text(&format!("CreateMultipartUpload {key}"), resp)
                .await);
        }
        let xml = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("CreateMultipartUpload body: {e}"))?
            .to_bytes();
        let xml = String::from_utf8_lossy(&xml);
        let upload_id = xml
            .split_once("<UploadId>")
            .and_then(|(_, rest)| rest.split_once("</UploadId>"))
            .map(|(id, _)| id.replace("&amp;", "&"))
            .ok_or_else(|| format!("CreateMultipartUpload {key}: no UploadId in {xml}"))?;
        let id = s3proxy_http::auth::sigv4::uri_encode(&upload_id, false);
        let mut complete = String::from("<CompleteMultipartUpload>");
        let (mut offset, mut number) = (0u64, 1u32);
        while offset < self.args.size {
            let len = part_size.min(self.args.size - offset);
            let body = PatternBody::at(self.pattern.clone(), offset, len).boxed_unsync();
            let query = format!("partNumber={number}&uploadId={id}");
            let mut req = self.request(Method::PUT, &path, &query, UNSIGNED, body);
            req.headers_mut()
                .insert("content-length", len.to_string().parse().expect("digits"));
            let resp = self.send(req).await?;
            if resp.status() != StatusCode::OK {
                return Err(self
                    .error_text(&format!("UploadPart {number} of {key}"), resp)
                    .await);
            }
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("UploadPart {number} of {key}: no ETag"))?
                .to_string();
            self.drain(resp, None).await?;
            complete.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            ));
            offset += len;
            number += 1;
        }
        complete.push_str("</CompleteMultipartUpload>");
        let hash = s3proxy_http::auth::sigv4::sha256_hex(complete.as_bytes());
        let body = http_body_util::Full::new(Bytes::from(complete))
            .map_err(|e| match e {})
            .boxed_unsync();
        let query = format!("uploadId={id}");
        let req = self.request(Method::POST, &path, &query, &hash, body);
        let resp = self.send(req).await?;
        let status = resp.status();
        let text = self
            .error_text(&format!("CompleteMultipartUpload {key}"), resp)
            .await;
        // Errors during a long completion arrive inside a 200.
        if status != StatusCode::OK || text.contains("<Error>") {
            return Err(text);
        }
        Ok(self.args.size)
    }

    async fn put_single(&self, key: &str) -> OpResult {
        let size = self.args.size;
        let body = PatternBody::new(self.pattern.clone(), size).boxed_unsync();
        let mut req = self.request(
            Method::PUT,
            &self.object_path(key),
            "",
            &self.put_hash,
            body,
        );
        req.headers_mut()
            .insert("content-length", size.to_string().parse().expect("digits"));
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.error_text(&format!("PUT {key}"), resp).await);
        }
        self.drain(resp, None).await?;
        Ok(size)
    }

    async fn get(&self, key: &str, n: u64) -> OpResult {
        let size = self.args.size;
        let mut req = self.request(
            Method::GET,
            &self.object_path(key),
            "",
            sign_empty(),
            Self::empty(),
        );
        let (start, want, status) = match self.args.range_size {
            Some(len) if len < size => {
                // A spread of offsets, the same sequence every run.
                let start = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % (size - len + 1);
                let value = format!("bytes={start}-{}", start + len - 1);
                req.headers_mut()
                    .insert("range", value.parse().expect("ascii"));
                (start, len, StatusCode::PARTIAL_CONTENT)
            }
            _ => (0, size, StatusCode::OK),
        };
        let resp = self.send(req).await?;
        if resp.status() != status {
            return Err(self.error_text(&format!("GET {key}"), resp).await);
        }
        let got = self.drain(resp, self.args.verify.then_some(start)).await?;
        if got != want {
            return Err(format!("GET {key}: {got} bytes, expected {want}"));
        }
        Ok(got)
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, String> {
        let req = self.request(
            Method::HEAD,
            &self.object_path(key),
            "",
            sign_empty(),
            Self::empty(),
        );
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::OK => {
                let len = resp
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                self.drain(resp, None).await?;
                len.map(Some)
                    .ok_or_else(|| format!("HEAD {key}: no Content-Length"))
            }
            StatusCode::NOT_FOUND => {
                self.drain(resp, None).await?;
                Ok(None)
            }
            _ => Err(self.error_text(&format!("HEAD {key}"), resp).await),
        }
    }

    async fn list(&self) -> OpResult {
        let query = format!(
            "list-type=2&max-keys={}&prefix={}",
            self.args.list_max_keys,
            s3proxy_http::auth::sigv4::uri_encode(&self.args.prefix, false)
        );
        let path = format!("/{}", self.args.bucket);
        let req = self.request(Method::GET, &path, &query, sign_empty(), Self::empty());
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.error_text("LIST", resp).await);
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("LIST body: {e}"))?
            .to_bytes();
        if !String::from_utf8_lossy(&body).contains("<ListBucketResult") {
            return Err("LIST: not a ListBucketResult".into());
        }
        Ok(0)
    }

    async fn delete(&self, key: &str) -> OpResult {
        let req = self.request(
            Method::DELETE,
            &self.object_path(key),
            "",
            sign_empty(),
            Self::empty(),
        );
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::NO_CONTENT && resp.status() != StatusCode::OK {
            return Err(self.error_text(&format!("DELETE {key}"), resp).await);
        }
        self.drain(resp, None).await?;
        Ok(0)
    }

    async fn one(&self, n: u64) -> OpResult {
        let key = self.key(n % self.keys);
        match self.args.op {
            Op::Put => self.put(&key).await,
            Op::Get => self.get(&key, n).await,
            Op::Head => match self.head(&key).await? {
                Some(len) if len == self.args.size => Ok(0),
                Some(len) => Err(format!(
                    "HEAD {key}: size {len}, expected {}",
                    self.args.size
                )),
                None => Err(format!("HEAD {key}: 404")),
            },
            Op::List => self.list().await,
            Op::Delete => self.delete(&key).await,
        }
    }

    async fn create_bucket(&self) -> Result<(), String> {
        let path = format!("/{}", self.args.bucket);
        // Servers differ in how they refuse to create an existing bucket: look first.
        let req = self.request(Method::HEAD, &path, "", sign_empty(), Self::empty());
        if self.send(req).await?.status() == StatusCode::OK {
            return Ok(());
        }
        let req = self.request(Method::PUT, &path, "", sign_empty(), Self::empty());
        let resp = self.send(req).await?;
        let status = resp.status();
        let text = self.error_text("CreateBucket", resp).await;
        if status.is_success() || text.contains("BucketAlreadyOwnedByYou") {
            Ok(())
        } else {
            Err(text)
        }
    }

    /// PUT every key that is missing or has another size.
    async fn prepare(self: &Arc<Self>) -> Result<(), String> {
        let next = Arc::new(AtomicU64::new(0));
        let workers = (0..self.args.concurrency.clamp(1, 16)).map(|_| {
            let (b, next) = (self.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= b.keys {
                        return Ok::<(), String>(());
                    }
                    let key = b.key(n);
                    if b.head(&key).await? != Some(b.args.size) {
                        b.put(&key).await?;
                    }
                }
            })
        });
        for r in futures::future::join_all(workers).await {
            r.map_err(|e| e.to_string())??;
        }
        Ok(())
    }
}

fn sign_empty() -> &'static str {
    s3proxy_http::auth::sigv4::EMPTY_SHA256
}

#[derive(Serialize)]
struct Latency {
    mean: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

#[derive(Serialize)]
struct Report {
    label: String,
    endpoint: String,
    op: Op,
    size: u64,
    range_size: Option<u64>,
    concurrency: usize,
    ops: u64,
    errors: u64,
    seconds: f64,
    ops_per_sec: f64,
    bytes: u64,
    mib_per_sec: f64,
    /// Milliseconds, request sent to last body byte received.
    latency_ms: Latency,
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

async fn run(args: Args) -> Result<Report, String> {
    let uri: http::Uri = args
        .endpoint
        .parse()
        .map_err(|e| format!("--endpoint: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("--endpoint: only http:// endpoints are supported".into());
    }
    let host = uri
        .authority()
        .ok_or("--endpoint: no host")?
        .as_str()
        .to_string();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency.max(16))
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let pattern = body::pattern();
    let put_hash = if args.sign_payload {
        body::sha256_hex(&pattern, args.size)
    } else {
        UNSIGNED.to_string()
    };
    let bench = Arc::new(Bench {
        keys: args.keys.unwrap_or(args.concurrency as u64).max(1),
        signer: Signer {
            access_key: args.access_key.clone(),
            secret_key: args.secret_key.clone(),
            region: args.region.clone(),
        },
        base: format!("http://{host}"),
        host,
        client,
        pattern,
        put_hash,
        args: args.clone(),
    });
    if args.create_bucket {
        bench.create_bucket().await?;
    }
    if args.op != Op::Put && args.prepare {
        bench.prepare().await?;
    }
    let duration = match (args.count, args.duration) {
        (_, Some(d)) => Some(Duration::from_secs_f64(d)),
        (None, None) => Some(Duration::from_secs(10)),
        (Some(_), None) => None,
    };
    let count = args.count.unwrap_or(u64::MAX);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let workers = (0..args.concurrency.max(1)).map(|_| {
        let (b, next) = (bench.clone(), next.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut bytes, mut errors) = (0u64, 0u64);
            let mut first_error = None;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                let t = Instant::now();
                match b.one(n).await {
                    Ok(moved) => {
                        latencies.push(t.elapsed().as_micros() as u64);
                        bytes += moved;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, bytes, errors, first_error)
        })
    });
    let results = futures::future::join_all(workers).await;
    let seconds = started.elapsed().as_secs_f64();
    let (mut latencies, mut bytes, mut errors) = (Vec::new(), 0u64, 0u64);
    for r in results {
        let (l, b, e, first) = r.map_err(|e| e.to_string())?;
        latencies.extend(l);
        bytes += b;
        errors += e;
        if let Some(msg) = first {
            eprintln!("s3proxy-bench: error: {msg}");
        }
    }
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let mean = if ops == 0 {
        0.0
    } else {
        latencies.iter().sum::<u64>() as f64 / ops as f64 / 1000.0
    };
    Ok(Report {
        label: args.label.clone(),
        endpoint: args.endpoint.clone(),
        op: args.op,
        size: args.size,
        range_size: args.range_size,
        concurrency: args.concurrency,
        ops,
        errors,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        bytes,
        mib_per_sec: bytes as f64 / seconds / (1 << 20) as f64,
        latency_ms: Latency {
            mean,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            p999: percentile(&latencies, 0.999),
            max: percentile(&latencies, 1.0),
        },
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = match runtime.block_on(run(args.clone())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("s3proxy-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let json = serde_json::to_string(&report).expect("report serializes");
    if let Some(path) = &args.json_out {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{json}"));
        if let Err(e) = written {
            eprintln!("s3proxy-bench: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if args.json {
        println!("{json}");
    } else {
        let l = &report.latency_ms;
        println!(
            "{}{:?} {} c={}{}: {} ops in {:.2}s, {} errors, {:.1} ops/s, {:.1} MiB/s, latency ms \
             mean {:.3} p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
            if report.label.is_empty() {
                String::new()
            } else {
                format!("[{}] ", report.label)
            },
            report.op,
            size_label(report.size),
            report.concurrency,
            report
                .range_size
                .map(|r| format!(" range={}", size_label(r)))
                .unwrap_or_default(),
            report.ops,
            report.seconds,
            report.errors,
            report.ops_per_sec,
            report.mib_per_sec,
            l.mean,
            l.p50,
            l.p99,
            l.p999,
            l.max
        );
    }
    if report.errors > 0 || report.ops == 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("5GiB"), Ok(5 << 30));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("4XB").is_err());
        assert_eq!(size_label(5 << 30), "5GiB");
        assert_eq!(size_label(4096), "4KiB");
        assert_eq!(size_label(1000), "1000B");
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 500.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&v, 0.999), 999.0);
        assert_eq!(percentile(&v, 1.0), 1000.0);
    }
}
