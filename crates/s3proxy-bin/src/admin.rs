//! The admin listener (`[admin]`, loopback by default): Prometheus `/metrics`, `/health`
//! (200 while the process serves) and `/ready` (200 while the write quorum is reachable,
//! 503 otherwise, so a load balancer drains an instance whose backends are gone).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use s3proxy_replication::{HealthSnapshot, Replicated, WriteQuorum};
use std::sync::Arc;
use std::time::Duration;

/// What the admin endpoints read.
pub struct Admin {
    metrics: PrometheusHandle,
    replicated: Option<Replicated>,
    write_quorum: WriteQuorum,
}

/// Latency buckets, in seconds, for every duration histogram: from a cached HEAD to a
/// multi-GiB transfer.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Install the process's metrics recorder (once, before any request is served).
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| format!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

impl Admin {
    /// The admin endpoints over a stack, replicated or not.
    pub fn new(
        metrics: PrometheusHandle,
        replicated: Option<Replicated>,
        write_quorum: WriteQuorum,
    ) -> Arc<Admin> {
        Arc::new(Admin {
            metrics,
            replicated,
            write_quorum,
        })
    }

    /// Backends available and the number a write needs, from one health snapshot.
    fn quorum(&self, health: &[(String, HealthSnapshot)]) -> (usize, usize) {
        match &self.replicated {
            None => (1, 1),
            Some(_) => {
                let up = health.iter().filter(|(_, h)| !h.open).count();
                (up, self.write_quorum.required(health.len()))
            }
        }
    }

    fn health(&self) -> Vec<(String, HealthSnapshot)> {
        self.replicated
            .as_ref()
            .map(|r| r.health())
            .unwrap_or_default()
    }

    /// Gauges read at scrape time from the replication layer's own state.
    fn refresh_gauges(&self) {
        let Some(r) = &self.replicated else {
            return;
        };
        let health = r.health();
        for (name, h) in &health {
            let backend = name.clone();
            metrics::gauge!("s3proxy_backend_circuit_open", "backend" => backend.clone())
                .set(if h.open { 1.0 } else { 0.0 });
            metrics::gauge!("s3proxy_backend_latency_seconds", "backend" => backend.clone())
                .set(h.latency_ms / 1000.0);
            metrics::counter!("s3proxy_backend_requests_total", "backend" => backend.clone(), "outcome" => "ok")
                .absolute(h.successes);
            metrics::counter!("s3proxy_backend_requests_total", "backend" => backend, "outcome" => "error")
                .absolute(h.failures);
        }
        for (name, s) in r.stats() {
            let backend = name;
            metrics::counter!("s3proxy_repair_copies_total", "backend" => backend.clone())
                .absolute(s.repair_copies);
            metrics::counter!("s3proxy_repair_bytes_total", "backend" => backend.clone())
                .absolute(s.repair_bytes);
            metrics::counter!("s3proxy_tamper_detections_total", "backend" => backend.clone())
                .absolute(s.tamper_detections);
            metrics::counter!("s3proxy_hedged_reads_total", "backend" => backend.clone())
                .absolute(s.hedged_reads);
            for (kind, n) in s.unauthenticated_stamps {
                metrics::counter!("s3proxy_unauthenticated_stamps_total", "backend" => backend.clone(), "kind" => kind.name())
                    .absolute(n);
            }
        }
        let journal = r.journal();
        metrics::gauge!("s3proxy_repair_journal_pending").set(journal.len() as f64);
        metrics::gauge!("s3proxy_repair_journal_oldest_seconds")
            .set(journal.oldest_age().map_or(0.0, |age| age.as_secs_f64()));
        metrics::gauge!("s3proxy_writes_in_flight").set(r.writes_in_flight() as f64);
        let (up, needed) = self.quorum(&health);
        metrics::gauge!("s3proxy_backends_available").set(up as f64);
        metrics::gauge!("s3proxy_write_quorum").set(needed as f64);
    }

    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String| {
            Response::builder()
                .status(status)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_default()
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        }
        match req.uri().path() {
            "/metrics" => {
                self.refresh_gauges();
                let mut r = text(StatusCode::OK, self.metrics.render());
                r.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            "/health" => text(StatusCode::OK, "ok\n".into()),
            "/ready" => {
                let (up, needed) = self.quorum(&self.health());
                if up >= needed {
                    text(
                        StatusCode::OK,
                        format!("ready: {up} backend(s) up, {needed} needed\n"),
                    )
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {up} backend(s) up, {needed} needed for a write\n"),
                    )
                }
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /health, /ready\n".into(),
            ),
        }
    }

    /// Serve the admin endpoints on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = admin.answer(&req);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
