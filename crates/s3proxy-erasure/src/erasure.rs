//! The erasure-coded set: its backends (shard i on backend i), its options, clock and
//! journal, and the fan-out helpers every operation uses.

use crate::inflight::CutOff;
use s3proxy_core::*;
use s3proxy_replication::{Entry, Hlc, Journal, Missed, Target, WriteQuorum};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of an [`Erasure`] set.
///
/// ```
/// let opts = s3proxy_erasure::ErasureOptions::new(2, 1);
/// assert_eq!(opts.required(), 2); // the default quorum: k shards of every stripe
/// ```
#[derive(Clone, Debug)]
pub struct ErasureOptions {
    /// Data shards per stripe (k).
    pub data_shards: usize,
    /// Parity shards per stripe (m).
    pub parity_shards: usize,
    /// Object bytes per stripe.
    pub stripe_size: u64,
    /// Shards of every stripe a write needs stored; `None`: k, the fewest that rebuild it.
    /// Never fewer than k are accepted, whatever this says.
    pub write_quorum: Option<WriteQuorum>,
    /// Limit for one call without a streaming body, and for a stall within a body.
    pub timeout: Duration,
    /// This instance's id in version stamps.
    pub node_id: String,
}

impl ErasureOptions {
    /// k data and m parity shards, the default stripe, quorum and timeout.
    pub fn new(data_shards: usize, parity_shards: usize) -> Self {
        ErasureOptions {
            data_shards,
            parity_shards,
            stripe_size: crate::format::DEFAULT_STRIPE,
            write_quorum: None,
            timeout: Duration::from_secs(30),
            node_id: hex::encode(std::process::id().to_le_bytes()),
        }
    }

    /// Shards per stripe.
    pub fn total(&self) -> usize {
        self.data_shards + self.parity_shards
    }

    /// Shards of every stripe a write must store.
    pub fn required(&self) -> usize {
        let n = self.total();
        self.write_quorum
            .map_or(self.data_shards, |q| q.required(n))
            .clamp(self.data_shards, n)
    }
}

/// Objects cut into stripes of k data + m parity shards, shard i of every stripe on
/// backend i; see the [crate documentation](crate).
#[derive(Clone)]
pub struct Erasure {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) backends: Vec<DynBackend>,
    pub(crate) opts: ErasureOptions,
    pub(crate) clock: Hlc,
    pub(crate) journal: Arc<Journal>,
    /// Keys being written or repaired: they take turns (see `inflight`).
    pub(crate) inflight: Arc<crate::inflight::Inflight>,
    /// Per backend: whether its last answer was a server failure or none (see
    /// `log_outcomes`), so that a backend that is down is warned of once, not on every
    /// request until it is back.
    pub(crate) failing: Vec<std::sync::atomic::AtomicBool>,
}

impl Erasure {
    /// An erasure-coded set over `backends` (exactly k + m of them, in shard order),
    /// recording missed shards in `journal`.
    pub fn new(
        name: impl Into<String>,
        backends: Vec<DynBackend>,
        opts: ErasureOptions,
        journal: Arc<Journal>,
    ) -> Result<Self> {
        let (k, m) = (opts.data_shards, opts.parity_shards);
        if k == 0 || m == 0 {
            return Err(Error::InvalidArgument(format!(
                "erasure coding needs at least one data and one parity shard (got {k} + {m})"
            )));
        }
        if k + m != backends.len() {
            return Err(Error::InvalidArgument(format!(
                "erasure coding with {k} data + {m} parity shards needs {} backends, not {}",
                k + m,
                backends.len()
            )));
        }
        if k > m + 1 {
            return Err(Error::InvalidArgument(format!(
                "{k} data + {m} parity shards: more data than parity + 1 shards is not supported \
                 yet (a write failing after some backends committed could leave neither the \
                 old nor the new version with {k} shards); use at most {} data shards with {m} \
                 parity, or more parity",
                m + 1
            )));
        }
        if !reed_solomon_simd::ReedSolomonEncoder::supports(k, m) {
            return Err(Error::InvalidArgument(format!(
                "{k} data + {m} parity shards are more than the codec supports"
            )));
        }
        if opts.stripe_size < 2 * k as u64 || opts.stripe_size > crate::format::MAX_STRIPE {
            return Err(Error::InvalidArgument(format!(
                "the stripe size must be {} to {} bytes",
                2 * k,
                crate::format::MAX_STRIPE
            )));
        }
        let mut names = std::collections::HashSet::new();
        if let Some(b) = backends
            .iter()
            .find(|b| !names.insert(b.name().to_string()))
        {
            return Err(Error::InvalidArgument(format!(
                "two backends are named {:?}",
                b.name()
            )));
        }
        let clock = Hlc::new(opts.node_id.clone());
        let failing = backends.iter().map(|_| Default::default()).collect();
        Ok(Erasure {
            shared: Arc::new(Shared {
                name: name.into(),
                failing,
                backends,
                opts,
                clock,
                journal,
                inflight: Default::default(),
            }),
        })
    }

    /// The repair journal.
    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// Keys with a write or repair in flight (or waiting for its turn).
    pub fn writes_in_flight(&self) -> usize {
        self.shared.inflight.len()
    }

    /// The settings.
    pub fn options(&self) -> &ErasureOptions {
        &self.shared.opts
    }

    pub(crate) fn backends(&self) -> &[DynBackend] {
        &self.shared.backends
    }

    pub(crate) fn k(&self) -> usize {
        self.shared.opts.data_shards
    }

    pub(crate) fn m(&self) -> usize {
        self.shared.opts.parity_shards
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.shared.opts.timeout
    }

    /// Call `f` on backend `i` within the timeout.
    pub(crate) async fn call<T, F, Fut>(&self, i: usize, f: F) -> Result<T>
    where
        F: FnOnce(DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.call_marking(i, None, f).await
    }

    /// [`Erasure::call`] of a call that changes the key: one cut off by the timeout
    /// may still be applied by the backend, so it marks `cut` (the key's turn lingers).
    pub(crate) async fn call_marking<T, F, Fut>(
        &self,
        i: usize,
        cut: Option<&CutOff>,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce(DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let backend = self.backends()[i].clone();
        let name = backend.name().to_string();
        match tokio::time::timeout(self.timeout(), f(backend)).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(cut) = cut {
                    cut.mark(self.timeout());
                }
                Err(Error::ServiceUnavailable(format!("{name}: timed out")))
            }
        }
    }

    /// How long a client write waits for its key's turn: a backend timeout for the
    /// write holding it, and one more for a turn lingering after a cut-off.
    pub(crate) fn turn_wait(&self) -> Duration {
        self.timeout().saturating_mul(2)
    }

    /// Call `f` on every backend concurrently; one outcome per backend, in order.
    pub(crate) async fn fan_out<T, F, Fut>(&self, op: &str, target: &str, f: F) -> Vec<Result<T>>
    where
        F: Fn(usize, DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.fan_out_marking(op, target, None, f).await
    }

    /// [`Erasure::fan_out`] of calls that change the key (see [`Erasure::call_marking`]).
    pub(crate) async fn fan_out_marking<T, F, Fut>(
        &self,
        op: &str,
        target: &str,
        cut: Option<&CutOff>,
        f: F,
    ) -> Vec<Result<T>>
    where
        F: Fn(usize, DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let f = &f;
        let calls = (0..self.backends().len()).map(|i| self.call_marking(i, cut, move |b| f(i, b)));
        let outcomes = futures::future::join_all(calls).await;
        self.log_outcomes(op, target, &outcomes);
        outcomes
    }

    /// One line per fan-out that did not succeed everywhere: which backends failed, why.
    /// A warning when a backend failed (5xx, unreachable) or the backends disagree (one
    /// lacks a shard the others hold); debug when every backend gave the same client answer (one
    /// code), such as NoSuchKey for a key none holds: that is the object's state,
    /// not a failure, and s3fs asks for absent names before every file it creates. Debug
    /// too when the only failures are of backends already failing at their last answer:
    /// a backend that is down is warned of when it goes, and noted when it answers again.
    pub(crate) fn log_outcomes<T>(&self, op: &str, target: &str, outcomes: &[Result<T>]) {
        use std::sync::atomic::Ordering;
        let mut news = false;
        for (i, o) in outcomes.iter().enumerate() {
            let Some(flag) = self.shared.failing.get(i) else {
                continue;
            };
            let now_failing = o.as_ref().is_err_and(|e| e.status() >= 500);
            let was_failing = flag.swap(now_failing, Ordering::Relaxed);
            if now_failing && !was_failing {
                news = true;
            } else if was_failing && !now_failing {
                log::info!(
                    "{} backend {}: answers again",
                    self.shared.name,
                    self.shared.backends[i].name()
                );
            }
        }
        let only_known_failures = !news
            && outcomes
                .iter()
                .all(|o| o.as_ref().map_or_else(|e| e.status() >= 500, |_| true));
        let failed: Vec<String> = outcomes
            .iter()
            .zip(self.backends())
            .filter_map(|(o, b)| o.as_ref().err().map(|e| format!("{}: {e}", b.name())))
            .collect();
        if failed.is_empty() {
            return;
        }
        // The same code from every backend: one answering AccessDenied or NoSuchBucket
        // beside the others' NoSuchKey is misconfigured, and that is worth a warning.
        let first_code = outcomes
            .first()
            .and_then(|o| o.as_ref().err())
            .map(|e| e.code());
        let answered_alike = outcomes.iter().all(|o| {
            o.as_ref()
                .is_err_and(|e| e.status() < 500 && Some(e.code()) == first_code)
        });
        let level = if answered_alike || only_known_failures {
            log::Level::Debug
        } else {
            log::Level::Warn
        };
        log::log!(
            level,
            "{} {op} {target}: {} of {} backends failed ({})",
            self.shared.name,
            failed.len(),
            outcomes.len(),
            failed.join("; ")
        );
    }

    /// Journal that backend `i` missed version `stamp` of `bucket/key` (`missed` says
    /// what); an entry that cannot be recorded is logged, as the write
    /// itself stood.
    pub(crate) fn journal_missed(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        i: usize,
        stamp: &str,
        missed: Missed,
    ) {
        let entry = Entry::new(
            bucket.as_str(),
            Target::Object(key.as_str().into()),
            self.backends()[i].name(),
            stamp,
            missed,
        );
        if let Err(e) = self.shared.journal.record(entry) {
            log::error!(
                "{} {bucket}/{key}: cannot journal the shard missed by {}: {e}",
                self.shared.name,
                self.backends()[i].name()
            );
        }
    }
}

/// Whose move it is in a backend's PUT, and since when: the backend's while it has not
/// asked for the next piece of a body that has one ready, or has had the whole body and
/// not answered; ours while the body waits for data (from the client, or for the write
/// quorum).
struct Turn {
    backend: bool,
    since: Instant,
    /// Body bytes handed over so far, and whether the stream ended.
    sent: u64,
    ended: bool,
}

/// A PUT body that records [`Turn`] on every poll.
struct Watched {
    inner: ByteStream,
    turn: Arc<Mutex<Turn>>,
}

impl futures::Stream for Watched {
    type Item = Result<bytes::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        // A piece handed over, or the end: the backend's move (take more, or answer).
        turn.backend = polled.is_ready();
        turn.since = Instant::now();
        match &polled {
            std::task::Poll::Ready(Some(Ok(piece))) => turn.sent += piece.len() as u64,
            std::task::Poll::Ready(None) => turn.ended = true,
            _ => {}
        }
        polled
    }
}

impl Erasure {
    /// PutObject of `body` on backend `i`, cut off once the backend has kept the write
    /// waiting for the timeout: not asking for a body piece that is ready, or not
    /// answering once it has the whole body (a process that accepted the connection and
    /// stalled). Time the body spends waiting for its own data is not counted, so a slow
    /// client does not fail its backends. A write cut off mid-body is dropped before the
    /// backend has it whole, so it cannot commit; one cut off after the backend had every
    /// byte may still commit later, and marks `cut` so that the key's turn lingers.
    pub(crate) async fn bounded_put(
        &self,
        i: usize,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
        cut: &CutOff,
    ) -> Result<PutResult> {
        let backend = self.backends()[i].clone();
        let limit = self.timeout();
        let turn = Arc::new(Mutex::new(Turn {
            backend: true,
            since: Instant::now(),
            sent: 0,
            ended: false,
        }));
        let length = body.length;
        let body = Body {
            stream: Box::pin(Watched {
                inner: body.stream,
                turn: turn.clone(),
            }),
            length: body.length,
        };
        let put = backend.put_object(bucket, key, body, opts);
        let watchdog = async {
            loop {
                let wait = {
                    let t = turn.lock().unwrap_or_else(|e| e.into_inner());
                    match t.backend {
                        true if t.since.elapsed() >= limit => break,
                        true => limit - t.since.elapsed(),
                        // Ours: look again soon, the backend's turn may start any time.
                        false => limit / 4,
                    }
                };
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            }
        };
        tokio::select! {
            put = put => put,
            () = watchdog => {
                let t = turn.lock().unwrap_or_else(|e| e.into_inner());
                if t.ended || t.sent >= length {
                    cut.mark(limit);
                }
                Err(Error::ServiceUnavailable(format!(
                "{}: the PUT stalled for {limit:?}",
                backend.name()
            )))
            }
        }
    }
}
