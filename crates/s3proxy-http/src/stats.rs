//! The per-request metrics' handles, looked up once per operation (and status) instead
//! of once per request: a labelled lookup in the recorder (building the key, hashing it,
//! the registry's lock, `status.to_string()`) cost about 2 % of the proxy's CPU per
//! 4 KiB request (issue #18), more than recording itself.
//!
//! Handles are taken from the recorder installed when an operation is first served: the
//! binary installs its recorder before it serves; an embedder that installs one later
//! gets no per-request metrics from operations already served.

use metrics::{Counter, Histogram};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The handles of one operation.
pub(crate) struct OpStats {
    /// `s3proxy_request_duration_seconds`.
    pub duration: Histogram,
    /// `s3proxy_response_bytes_total`.
    pub response_bytes: Counter,
    /// `s3proxy_request_bytes_total`.
    pub request_bytes: Counter,
    /// `s3proxy_requests_total`, per status.
    requests: Mutex<HashMap<u16, Counter>>,
}

impl OpStats {
    /// The request counter of `status`.
    pub(crate) fn requests(&self, op: &'static str, status: u16) -> Counter {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(status)
            .or_insert_with(|| {
                metrics::counter!("s3proxy_requests_total", "operation" => op, "status" => status.to_string())
            })
            .clone()
    }
}

/// Every operation's handles.
#[derive(Clone, Default)]
pub(crate) struct Stats {
    ops: Arc<Mutex<HashMap<&'static str, Arc<OpStats>>>>,
}

impl Stats {
    /// The handles of `op`.
    pub(crate) fn op(&self, op: &'static str) -> Arc<OpStats> {
        let mut map = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(op)
            .or_insert_with(|| {
                Arc::new(OpStats {
                    duration: metrics::histogram!("s3proxy_request_duration_seconds", "operation" => op),
                    response_bytes: metrics::counter!("s3proxy_response_bytes_total", "operation" => op),
                    request_bytes: metrics::counter!("s3proxy_request_bytes_total", "operation" => op),
                    requests: Mutex::default(),
                })
            })
            .clone()
    }
}
