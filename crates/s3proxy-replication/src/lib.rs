//! Fan-out replication: several backends behaving as one, under a write quorum, with
//! failover on reads and repair that loses no acknowledged write.
//!
//! - Writes go to every backend concurrently (the body teed as it streams). A write
//!   succeeds once the write quorum acknowledged it; backends that missed it are recorded
//!   in the durable [`Journal`] and repaired when they are healthy again (also after a
//!   restart). Below the quorum the write fails with 503 and every replica keeps
//!   serving the version it had: the write is withdrawn before any backend can commit
//!   it (see `quorum`), and nothing is deleted.
//! - Every version carries a [`Hlc`] stamp in its internal metadata; replicas are compared
//!   by it, never by backend timestamps, and clients see the same ETag, size, metadata and
//!   Last-Modified whichever replica answers.
//! - Reads ask every available replica for the object's metadata, serve from one holding
//!   the newest version, fail over on error or stall (also in the middle of a body), and
//!   repair replicas found missing, stale or corrupt.
//! - Deletes are journaled as tombstones for backends that missed them, so no repair brings
//!   a deleted object back.
//! - Each backend has a circuit breaker; every fan-out logs one line with each backend's
//!   outcome.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use s3proxy_core::DynBackend;
//! use s3proxy_replication::*;
//!
//! fn three_way(a: DynBackend, b: DynBackend, c: DynBackend) -> s3proxy_core::Result<Replicated> {
//!     let replicas = [a, b, c]
//!         .into_iter()
//!         .map(|backend| Replica { backend, timeout: Duration::from_secs(10) })
//!         .collect();
//!     let opts = ReplicationOptions { write_quorum: WriteQuorum::Majority, ..Default::default() };
//!     Replicated::new("replicated", replicas, opts, Arc::new(Journal::in_memory()))
//! }
//! ```

mod failing_repairs;
mod health;
mod journal;
mod quorum;
mod stamp;
mod tee;
mod uploads;

pub use health::{Health, HealthSnapshot};
use journal::EntryId;
pub use journal::{Entry, Journal};
pub use stamp::{Hlc, VERSION_KEY, stamp_time};

use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use quorum::counts_against_backend;
use s3proxy_core::*;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Internal metadata key holding the client-visible ETag of a version when a replica's own
/// ETag may differ (a multipart object repaired as a single PUT).
pub const ETAG_KEY: &str = "s3proxy-etag";

/// How many backends must acknowledge a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteQuorum {
    /// One backend.
    #[default]
    One,
    /// More than half.
    Majority,
    /// Every backend.
    All,
    /// This many (capped at the number of backends).
    Count(usize),
}

impl WriteQuorum {
    /// Acknowledgements needed out of `n` backends.
    ///
    /// ```
    /// use s3proxy_replication::WriteQuorum;
    /// assert_eq!(WriteQuorum::Majority.required(3), 2);
    /// assert_eq!(WriteQuorum::Count(5).required(3), 3);
    /// ```
    pub fn required(&self, n: usize) -> usize {
        match *self {
            WriteQuorum::One => 1,
            WriteQuorum::Majority => n / 2 + 1,
            WriteQuorum::All => n,
            WriteQuorum::Count(c) => c.clamp(1, n.max(1)),
        }
    }
}

impl Serialize for WriteQuorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            WriteQuorum::One => s.serialize_u64(1),
            WriteQuorum::Majority => s.serialize_str("majority"),
            WriteQuorum::All => s.serialize_str("all"),
            WriteQuorum::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for WriteQuorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(0) => Err(serde::de::Error::custom("write_quorum must be at least 1")),
            Raw::N(1) => Ok(WriteQuorum::One),
            Raw::N(n) => Ok(WriteQuorum::Count(n as usize)),
            Raw::S(s) => match s.as_str() {
                "majority" => Ok(WriteQuorum::Majority),
                "all" => Ok(WriteQuorum::All),
                other => other
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(|n| if n == 1 { WriteQuorum::One } else { WriteQuorum::Count(n as usize) })
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "write_quorum must be 1, \"majority\", \"all\" or a number, not {other:?}"
                        ))
                    }),
            },
        }
    }
}

/// Which replica reads go to first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadPreference {
    /// In configuration order.
    #[default]
    Ordered,
    /// The one with the lowest smoothed latency.
    Latency,
}

/// Settings of a [`Replicated`] backend.
#[derive(Clone, Debug)]
pub struct ReplicationOptions {
    /// Acknowledgements a write needs.
    pub write_quorum: WriteQuorum,
    /// Which replica reads prefer.
    pub read_preference: ReadPreference,
    /// Retries of a transient failure (jittered exponential backoff), for calls without a
    /// streaming body.
    pub retries: u32,
    /// Key authenticating the multipart upload ids handed to clients; every proxy instance
    /// in front of the same backends must share it.
    pub upload_id_key: [u8; 32],
    /// This instance's id in version stamps.
    pub node_id: String,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions {
            write_quorum: WriteQuorum::One,
            read_preference: ReadPreference::Ordered,
            retries: 2,
            upload_id_key: rand::random(),
            node_id: hex::encode(rand::random::<[u8; 4]>()),
        }
    }
}

/// One backend of a [`Replicated`] set.
pub struct Replica {
    /// The backend.
    pub backend: DynBackend,
    /// Limit for one call without a streaming body, and for a stall within a body.
    pub timeout: Duration,
}

struct ReplicaState {
    backend: DynBackend,
    timeout: Duration,
    health: Health,
}

struct Shared {
    name: String,
    replicas: Vec<ReplicaState>,
    opts: ReplicationOptions,
    clock: Hlc,
    journal: Arc<Journal>,
    wake_repair: tokio::sync::Notify,
    /// Writes, deletes and repairs in flight per (bucket, key).
    inflight: std::sync::Mutex<std::collections::HashMap<(String, String), InflightSlot>>,
    /// Journal entries whose repair failed: (failures so far, not before). Keeps one key a
    /// backend cannot take from being retried on every pass, which would keep tripping
    /// that backend's circuit and starve the repair of every other key.
    repair_backoff: std::sync::Mutex<std::collections::HashMap<EntryId, (u32, Instant)>>,
}

/// Several backends behaving as one; see the [module documentation](self).
#[derive(Clone)]
pub struct Replicated {
    shared: Arc<Shared>,
}

/// The outcome of one backend in a fan-out.
type Outcome<T> = Result<T>;

fn describe<T>(outcome: &Outcome<T>) -> String {
    match outcome {
        Ok(_) => "ok".into(),
        Err(e) if is_straggler(e) => "still writing".into(),
        Err(e) if e.status() < 500 => e.code().to_string(),
        Err(e) => format!("failed ({e})"),
    }
}

/// The longest a journal entry whose repair keeps failing waits between attempts.
const MAX_REPAIR_BACKOFF: Duration = Duration::from_secs(300);

/// The outcome given to a replica still writing when the quorum was met: not a failure;
/// it finishes in the background and is checked by the repair pass.
fn is_straggler(e: &Error) -> bool {
    matches!(e, Error::ServiceUnavailable(m) if m == STILL_WRITING)
}

const STILL_WRITING: &str = "still writing";

/// The error of a read whose located version every holder had replaced by a newer one.
const CHANGED: &str = "changed while being read";

fn is_changed(e: &Error) -> bool {
    matches!(e, Error::ServiceUnavailable(m) if m == CHANGED)
}

/// The replicas of a fan-out that missed it (unreachable, failing, still writing): the
/// ones to journal.
fn missed_by<T>(outcomes: &[Outcome<T>]) -> Vec<usize> {
    outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Err(e) if e.is_transient()))
        .map(|(i, _)| i)
        .collect()
}

fn version_of(meta: &ObjectMetadata) -> Option<&str> {
    meta.internal.get(VERSION_KEY).map(String::as_str)
}

/// A replica's view of one key.
#[derive(Clone)]
struct Seen {
    index: usize,
    info: ObjectInfo,
}

impl Replicated {
    /// Replicate over `replicas`, recording missed writes in `journal`.
    pub fn new(
        name: impl Into<String>,
        replicas: Vec<Replica>,
        opts: ReplicationOptions,
        journal: Arc<Journal>,
    ) -> Result<Self> {
        if replicas.is_empty() {
            return Err(Error::InvalidArgument(
                "replication needs at least one backend".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for r in &replicas {
            if !names.insert(r.backend.name().to_string()) {
                return Err(Error::InvalidArgument(format!(
                    "two backends are named {:?}",
                    r.backend.name()
                )));
            }
        }
        let clock = Hlc::new(opts.node_id.clone());
        Ok(Replicated {
            shared: Arc::new(Shared {
                name: name.into(),
                replicas: replicas
                    .into_iter()
                    .map(|r| ReplicaState {
                        backend: r.backend,
                        timeout: r.timeout,
                        health: Health::default(),
                    })
                    .collect(),
                opts,
                clock,
                journal,
                wake_repair: tokio::sync::Notify::new(),
                inflight: Default::default(),
                repair_backoff: Default::default(),
            }),
        })
    }

    fn replicas(&self) -> &[ReplicaState] {
        &self.shared.replicas
    }

    /// The repair journal.
    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// Health of each backend, by name.
    pub fn health(&self) -> Vec<(String, HealthSnapshot)> {
        self.replicas()
            .iter()
            .map(|r| (r.backend.name().to_string(), r.health.snapshot()))
            .collect()
    }

    fn required(&self) -> usize {
        self.shared
            .opts
            .write_quorum
            .required(self.replicas().len())
    }

    /// Call one backend with its timeout, retrying transient failures, updating health.
    async fn call<T, F, Fut>(&self, index: usize, f: F) -> Outcome<T>
    where
        F: Fn(DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.call_checked(index, f, false).await
    }

    /// [`Self::call`], or with `probe` a call that goes through an open circuit (the
    /// health probe that may close it).
    async fn call_checked<T, F, Fut>(&self, index: usize, f: F, probe: bool) -> Outcome<T>
    where
        F: Fn(DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let r = &self.replicas()[index];
        if !probe && !r.health.is_available() {
            return Err(Error::ServiceUnavailable(format!(
                "backend {} is unavailable (circuit open)",
                r.backend.name()
            )));
        }
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let mut timed_out = false;
            let result = match tokio::time::timeout(r.timeout, f(r.backend.clone())).await {
                Ok(result) => result,
                Err(_) => {
                    timed_out = true;
                    Err(Error::ServiceUnavailable(format!(
                        "backend {} timed out after {:?}",
                        r.backend.name(),
                        r.timeout
                    )))
                }
            };
            match &result {
                Err(e) if e.is_transient() => {
                    let opened = if timed_out {
                        r.health.unresponsive()
                    } else if !counts_against_backend(e) {
                        // The backend answered, with a failure of this request only (a key
                        // it cannot hold, say), or the proxy failed the call itself: that
                        // is no reason to stop sending it others.
                        false
                    } else {
                        r.health.failure()
                    };
                    if opened {
                        log::warn!(
                            "backend {}: circuit opened after repeated failures: {e}",
                            r.backend.name()
                        );
                    }
                    // A backend that did not answer in time is not asked again: the
                    // request moves on to the other replicas instead of waiting twice.
                    if !timed_out
                        && !probe
                        && attempt < self.shared.opts.retries
                        && r.health.is_available()
                    {
                        attempt += 1;
                        let base = 25u64 << attempt;
                        let jitter = rand::random::<u64>() % base;
                        tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                        continue;
                    }
                }
                _ => {
                    if r.health.success(started.elapsed()) {
                        log::info!("backend {}: available again", r.backend.name());
                        self.shared.wake_repair.notify_one();
                    }
                }
            }
            return result;
        }
    }

    /// Run `f` on every backend concurrently; log one line with each outcome.
    async fn fan_out<T, F, Fut>(&self, op: &str, target: &str, f: F) -> Vec<Outcome<T>>
    where
        F: Fn(DynBackend) -> Fut + Clone,
        Fut: Future<Output = Result<T>>,
    {
        self.fan_out_except(op, target, &[], f).await
    }

    /// [`Self::fan_out`], except on the replicas in `later`, whose outcome is "still
    /// writing": the caller runs `f` there once they are ready.
    async fn fan_out_except<T, F, Fut>(
        &self,
        op: &str,
        target: &str,
        later: &[usize],
        f: F,
    ) -> Vec<Outcome<T>>
    where
        F: Fn(DynBackend) -> Fut + Clone,
        Fut: Future<Output = Result<T>>,
    {
        let calls = (0..self.replicas().len()).map(|i| {
            let f = f.clone();
            async move {
                if later.contains(&i) {
                    return Err(Error::ServiceUnavailable(STILL_WRITING.into()));
                }
                self.call(i, f).await
            }
        });
        let outcomes = futures::future::join_all(calls).await;
        self.log_outcomes(op, target, &outcomes);
        outcomes
    }

    fn log_outcomes<T>(&self, op: &str, target: &str, outcomes: &[Outcome<T>]) {
        let line = self
            .replicas()
            .iter()
            .zip(outcomes)
            .map(|(r, o)| format!("{}={}", r.backend.name(), describe(o)))
            .collect::<Vec<_>>()
            .join(" ");
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(e) if e.status() >= 500 && !is_straggler(e)))
        {
            log::warn!("{op} {target}: {line}");
        } else {
            log::info!("{op} {target}: {line}");
        }
    }

    /// Record that `index` missed the operation stamped `stamp` on a key.
    fn journal_missed(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        index: usize,
        stamp: &str,
        tombstone: bool,
        force: bool,
    ) {
        let entry = Entry {
            bucket: bucket.to_string(),
            key: key.to_string(),
            backend: self.replicas()[index].backend.name().to_string(),
            stamp: stamp.to_string(),
            tombstone: tombstone.then(|| stamp.to_string()),
            force,
        };
        if let Err(e) = self.shared.journal.record(entry) {
            log::error!("cannot record a missed write of {bucket}/{key}: {e}");
        }
        self.shared.wake_repair.notify_one();
    }

    /// Present a replica's info as the client sees it: the version's time and ETag.
    fn present(&self, mut info: ObjectInfo) -> ObjectInfo {
        if let Some(t) = info
            .metadata
            .internal
            .remove(VERSION_KEY)
            .as_deref()
            .and_then(stamp_time)
        {
            info.last_modified = t;
        }
        if let Some(etag) = info.metadata.internal.remove(ETAG_KEY) {
            info.etag = etag;
        }
        info
    }

    /// Order of replicas to read from.
    fn read_order(&self, exclude: &[String]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.replicas().len())
            .filter(|i| {
                !exclude
                    .iter()
                    .any(|n| n == self.replicas()[*i].backend.name())
            })
            .collect();
        if self.shared.opts.read_preference == ReadPreference::Latency {
            order.sort_by(|a, b| {
                let la = self.replicas()[*a].health.snapshot().latency_ms;
                let lb = self.replicas()[*b].health.snapshot().latency_ms;
                la.total_cmp(&lb)
            });
        }
        order
    }

    /// Every available replica's view of a key; the newest version first. Replicas that
    /// are missing it or hold an older version are scheduled for repair.
    async fn locate(&self, bucket: &BucketName, key: &ObjectKey, op: &str) -> Result<Vec<Seen>> {
        self.check_bucket_not_deleted(bucket)?;
        let target = format!("{bucket}/{key}");
        let outcomes = self
            .fan_out(op, &target, |b| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move { b.head_object(&bucket, &key, GetOptions::default()).await }
            })
            .await;
        let mut seen = vec![];
        let mut missing = vec![];
        let mut first_error = None;
        let mut no_bucket = 0;
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(info) => seen.push(Seen { index, info }),
                Err(Error::NoSuchKey) => missing.push(index),
                Err(Error::NoSuchBucket) => {
                    no_bucket += 1;
                    missing.push(index)
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let newest = seen
            .iter()
            .map(|s| version_of(&s.info.metadata).unwrap_or("").to_string())
            .max();
        let tombstone = self.shared.journal.tombstone(bucket.as_str(), key.as_str());
        let Some(newest) = newest else {
            if let Some(e) = first_error {
                // Some replicas could not answer. The key is missing all the same unless
                // the journal says a replica that answered missed a write of it: then the
                // only copy may be on one that did not answer. Without this, one backend
                // down would turn every HEAD of a new name (s3fs makes many) into a 503.
                // (Entries older than a journaled delete of the key do not count.)
                let behind = self.shared.journal.behind(
                    bucket.as_str(),
                    key.as_str(),
                    tombstone.as_deref().unwrap_or(""),
                );
                let answered_behind = missing.iter().any(|i| {
                    behind
                        .iter()
                        .any(|b| b == self.replicas()[*i].backend.name())
                });
                if missing.is_empty() || answered_behind {
                    return Err(e);
                }
            }
            if no_bucket == missing.len() {
                return Err(Error::NoSuchBucket);
            }
            return Err(Error::NoSuchKey);
        };
        if tombstone.as_deref().is_some_and(|t| t >= newest.as_str()) {
            // Deleted through the proxy; some replica has not applied the delete yet.
            return Err(Error::NoSuchKey);
        }
        self.shared.clock.observe(&newest);
        for s in &seen {
            if version_of(&s.info.metadata).unwrap_or("") < newest.as_str() {
                log::info!(
                    "{target}: replica {} holds an older version; repairing",
                    self.replicas()[s.index].backend.name()
                );
                self.journal_missed(bucket, key, s.index, &newest, false, false);
            }
        }
        for index in missing {
            log::info!(
                "{target}: replica {} is missing the object; repairing",
                self.replicas()[index].backend.name()
            );
            self.journal_missed(bucket, key, index, &newest, false, false);
        }
        let order = self.read_order(&[]);
        let mut holders: Vec<Seen> = seen
            .into_iter()
            .filter(|s| version_of(&s.info.metadata).unwrap_or("") == newest.as_str())
            .collect();
        holders.sort_by_key(|s| {
            order
                .iter()
                .position(|i| *i == s.index)
                .unwrap_or(usize::MAX)
        });
        Ok(holders)
    }

    /// One GET: locate the newest version and read it from the first holder that serves
    /// it. Every holder refusing the located version means it changed meanwhile:
    /// [`CHANGED`], for [`Backend::get_object`] to locate again.
    async fn get_located(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: &GetOptions,
    ) -> Result<GetResult> {
        let mut holders = self.locate(bucket, key, "GetObject/locate").await?;
        holders.retain(|s| {
            !opts
                .exclude_replicas
                .iter()
                .any(|n| n == self.replicas()[s.index].backend.name())
        });
        let Some(first) = holders.first() else {
            return Err(Error::Corrupt(format!(
                "{bucket}/{key}: no replica left that has not failed verification"
            )));
        };
        let info = self.present(first.info.clone());
        opts.conditions.check(&info, false)?;
        let range = opts.range.map(|r| r.resolve(info.size)).transpose()?;
        let (start, end) = range.unwrap_or((0, info.size.saturating_sub(1)));
        let mut last_error = None;
        for (position, holder) in holders.iter().enumerate() {
            let backend = self.replicas()[holder.index].backend.clone();
            let inner_opts = GetOptions {
                range: if info.size == 0 {
                    None
                } else {
                    Some(ByteRange::FromTo(start, end))
                },
                conditions: Conditions {
                    if_match: Some(holder.info.etag.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let got = self
                .call(holder.index, |b| {
                    let (bucket, key, o) = (bucket.clone(), key.clone(), inner_opts.clone());
                    async move { b.get_object(&bucket, &key, o).await }
                })
                .await;
            match got {
                Ok(got) => {
                    let served_by = Some(backend.name().to_string());
                    let failover = Failover {
                        this: self.clone(),
                        bucket: bucket.clone(),
                        key: key.clone(),
                        etag: holder.info.etag.clone(),
                        holders: holders[position..].iter().map(|h| h.index).collect(),
                        current: 0,
                        body: got.body,
                        next_offset: start,
                        end: if info.size == 0 { 0 } else { end },
                    };
                    let body = if info.size == 0 {
                        got_empty()
                    } else {
                        failover.into_stream()
                    };
                    return Ok(GetResult {
                        info,
                        range,
                        body,
                        served_by,
                    });
                }
                Err(Error::PreconditionFailed) => {
                    // Overwritten since it was located.
                    last_error.get_or_insert(Error::ServiceUnavailable(CHANGED.into()));
                }
                Err(e) => {
                    log::warn!(
                        "GetObject {bucket}/{key}: {} failed ({e}); trying the next replica",
                        backend.name()
                    );
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(Error::NoSuchKey))
    }

    /// Write through the tee to every available backend, under the quorum.
    async fn replicated_write<F, Fut, T>(
        &self,
        op: &str,
        bucket: &BucketName,
        key: &ObjectKey,
        stamp: &str,
        body: Body,
        write: F,
    ) -> Result<T>
    where
        F: Fn(usize, DynBackend, Body) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Clone + Send + 'static,
    {
        self.check_bucket_not_deleted(bucket)?;
        let n = self.replicas().len();
        let required = self.required();
        let available: Vec<usize> = (0..n)
            .filter(|i| self.replicas()[*i].health.is_available())
            .collect();
        if available.len() < required {
            return Err(Error::ServiceUnavailable(format!(
                "write quorum not reachable: {} of {n} backends available, {required} required",
                available.len()
            )));
        }
        let stall = self.longest_timeout();
        let guard = InflightWrite::start(self, bucket, key, None);
        // Held until `required` backends are ready to commit: below that, withdrawn
        // before any backend replaces what it holds (see tee).
        let tee::Teed {
            bodies,
            pump,
            withdrawn,
        } = tee::tee(body, available.len(), stall, required);
        let mut tasks = futures::stream::FuturesUnordered::new();
        let mut aborts = Vec::with_capacity(available.len());
        for (index, body) in available.iter().copied().zip(bodies) {
            let backend = self.replicas()[index].backend.clone();
            let fut = write(index, backend, body);
            let handle = tokio::spawn(async move {
                let started = Instant::now();
                (fut.await, started.elapsed())
            });
            aborts.push((index, handle.abort_handle()));
            tasks.push(async move { (index, handle.await) });
        }
        let mut outcomes: Vec<Option<Outcome<T>>> = (0..n)
            .map(|i| {
                (!available.contains(&i))
                    .then(|| Err(Error::ServiceUnavailable("circuit open".into())))
            })
            .collect();
        let mut successes = 0;
        let mut pump = Some(pump);
        let mut client_error = None;
        // Once the quorum is met, the other replicas get a short grace to finish (a
        // quarter of the write's time so far, between 2 and 50 ms): those that do are not
        // stragglers, and spare the journal a record, its fsyncs and a repair check, which
        // with equally fast backends would otherwise follow almost every W=1 write.
        let mut grace_until: Option<tokio::time::Instant> = None;
        let started = tokio::time::Instant::now();
        loop {
            let next = match grace_until {
                // Past the grace, no outcome: what is still writing is a straggler.
                Some(until) => tokio::time::timeout_at(until, tasks.next())
                    .await
                    .unwrap_or_default(),
                // Below the quorum, replicas that cannot change the answer (too few are
                // left) or that took the whole body get the stall timeout to answer; then
                // they are abandoned (a stopped process never answers).
                None => loop {
                    match tokio::time::timeout(stall, tasks.next()).await {
                        Ok(next) => break next,
                        Err(_)
                            if successes + tasks.len() < required
                                || pump.as_ref().is_none_or(|p| p.is_finished()) =>
                        {
                            break None;
                        }
                        Err(_) => {}
                    }
                },
            };
            let grace_over = match next {
                None if grace_until.is_some() && !tasks.is_empty() => true,
                None => break,
                Some(_) => false,
            };
            if let Some((index, joined)) = next {
                let (result, elapsed) = match joined {
                    Ok(r) => r,
                    Err(e) => (
                        Err(Error::Internal(format!("write task failed: {e}"))),
                        Duration::ZERO,
                    ),
                };
                let health = &self.replicas()[index].health;
                match &result {
                    Ok(_) => {
                        health.success(elapsed);
                        successes += 1;
                    }
                    // A write the proxy withdrew, or one this backend refused alone (a key it
                    // cannot hold): not a sign the backend is down.
                    Err(e) if counts_against_backend(e) && !withdrawn.load(Ordering::SeqCst) => {
                        health.failure();
                    }
                    Err(_) => {}
                }
                outcomes[index] = Some(result);
                if successes >= required && tasks.is_empty() {
                    break;
                }
                if successes >= required && grace_until.is_none() {
                    let grace = (started.elapsed() / 4)
                        .clamp(Duration::from_millis(2), Duration::from_millis(50));
                    grace_until = Some(tokio::time::Instant::now() + grace);
                }
            }
            if grace_over {
                // Quorum met: the body has been read whole (a backend cannot finish before
                // it). Stragglers are recorded now and cleared if they finish.
                if let Some(p) = pump.take() {
                    client_error = p.await.ok().and_then(|r| r.err());
                }
                if client_error.is_none() {
                    let stragglers: Vec<usize> =
                        (0..n).filter(|i| outcomes[*i].is_none()).collect();
                    for &i in &stragglers {
                        self.journal_missed(bucket, key, i, stamp, false, false);
                    }
                    let this = self.clone();
                    let (b, k, s) = (bucket.clone(), key.clone(), stamp.to_string());
                    let op = op.to_string();
                    guard.add_stragglers(1);
                    guard.mark_straggling(&stragglers);
                    tokio::spawn(async move {
                        // The write counts as in flight until its stragglers are done.
                        let guard = guard;
                        while let Some((index, joined)) = tasks.next().await {
                            guard.straggler_done(index);
                            let ok = matches!(joined, Ok((Ok(_), _)));
                            let name = this.replicas()[index].backend.name().to_string();
                            log::info!(
                                "{op} {b}/{k}: straggler {name} {}",
                                if ok {
                                    "finished"
                                } else {
                                    "failed; left for repair"
                                }
                            );
                            // The entry stays: the repair pass checks the replica
                            // really holds the newest version (an older write to the same
                            // key may have landed after a newer one) before clearing it.
                            let _ = (ok, &s);
                            this.shared.wake_repair.notify_one();
                        }
                        guard.add_stragglers(-1);
                    });
                    for i in stragglers {
                        outcomes[i] = Some(Err(Error::ServiceUnavailable(STILL_WRITING.into())));
                    }
                }
                break;
            }
        }
        for (i, abort) in &aborts {
            if outcomes[*i].is_none() {
                // Abandoned: its connection is dropped, so a body it has not taken whole
                // is never committed.
                abort.abort();
                outcomes[*i] = Some(Err(Error::ServiceUnavailable(format!(
                    "backend {} gave no answer in time; abandoned",
                    self.replicas()[*i].backend.name()
                ))));
            }
        }
        if let Some(p) = pump.take() {
            client_error = p.await.ok().and_then(|r| r.err());
        }
        let outcomes: Vec<Outcome<T>> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::ServiceUnavailable("no outcome".into()))))
            .collect();
        self.log_outcomes(op, &format!("{bucket}/{key}"), &outcomes);
        if let Some(e) = client_error {
            // The client's body failed (bad digest, signature, short): no backend committed.
            return Err(e);
        }
        if successes < required {
            // Nothing is deleted or rolled back: see quorum::refused.
            self.refused_write(op, bucket, key, stamp, &outcomes);
            // Every backend refusing for the same reason (NoSuchBucket, BadDigest...) is the
            // client's answer, not an outage.
            if successes == 0
                && outcomes
                    .iter()
                    .all(|o| matches!(o, Err(e) if !e.is_transient()))
                && let Some(Err(e)) = outcomes.into_iter().next()
            {
                return Err(e);
            }
            return Err(Error::ServiceUnavailable(format!(
                "write quorum not met: {successes} of {n} backends acknowledged, {required} required"
            )));
        }
        for (i, o) in outcomes.iter().enumerate() {
            if let Err(e) = o
                && !is_straggler(e)
            {
                self.journal_missed(bucket, key, i, stamp, false, false);
            }
        }
        outcomes
            .into_iter()
            .find_map(|o| o.ok())
            .ok_or_else(|| Error::Internal("no successful write".into()))
    }

    /// Decide the fan-out result of a call that must reach the quorum (bucket operations,
    /// deletes, copies): the first success, a client error every backend agreed on, or 503.
    /// Callers journal the backends that missed it.
    fn quorum_result<T>(
        &self,
        outcomes: Vec<Outcome<T>>,
        ok_errors: impl Fn(&Error) -> bool,
    ) -> Result<Option<T>> {
        let n = outcomes.len();
        let mut first_ok = None;
        let mut acked = 0;
        let mut client_errors = vec![];
        for o in outcomes {
            match o {
                Ok(v) => {
                    acked += 1;
                    first_ok.get_or_insert(v);
                }
                Err(e) if ok_errors(&e) => acked += 1,
                Err(e) if !e.is_transient() => client_errors.push(e),
                Err(_) => {}
            }
        }
        if acked == 0 && !client_errors.is_empty() {
            return Err(client_errors.remove(0));
        }
        if acked < self.required() {
            return Err(Error::ServiceUnavailable(format!(
                "write quorum not met: {acked} of {n} backends acknowledged, {} required",
                self.required()
            )));
        }
        Ok(first_ok)
    }

    /// Bring one journaled key up to date on its backend. Returns whether the entry is done.
    async fn repair_entry(&self, entry: &Entry) -> Result<bool> {
        let Some(target) = self
            .replicas()
            .iter()
            .position(|r| r.backend.name() == entry.backend)
        else {
            log::warn!(
                "repair journal names unknown backend {:?}; dropping the entry",
                entry.backend
            );
            return Ok(true);
        };
        if !self.replicas()[target].health.is_available() {
            return Ok(false);
        }
        if self.write_in_flight(&entry.bucket, &entry.key) {
            // Decide once the writes settle; an older one may still land.
            return Ok(false);
        }
        if entry.key.is_empty() {
            return self.repair_bucket_deletion(target, &entry.bucket).await;
        }
        let bucket = BucketName::new(entry.bucket.clone())?;
        let key = ObjectKey::new(entry.key.clone())?;
        // A repair writes too: a client write or delete that overlaps it must not be undone
        // by an older version the repair read before it (see InflightWrite).
        let _guard = InflightWrite::start(self, &bucket, &key, None);
        // Every replica's view, the target's included.
        let views = futures::future::join_all((0..self.replicas().len()).map(|i| {
            let (bucket, key) = (bucket.clone(), key.clone());
            async move {
                self.call(i, |b| {
                    let (bucket, key) = (bucket.clone(), key.clone());
                    async move { b.head_object(&bucket, &key, GetOptions::default()).await }
                })
                .await
            }
        }))
        .await;
        let mut unreachable = false;
        let mut newest: Option<(String, usize, ObjectInfo)> = None;
        let mut target_version = None;
        for (i, v) in views.into_iter().enumerate() {
            match v {
                Ok(info) => {
                    let version = version_of(&info.metadata).unwrap_or("").to_string();
                    if i == target {
                        target_version = Some(version.clone());
                        if entry.force {
                            continue;
                        }
                    }
                    if newest.as_ref().is_none_or(|(v, _, _)| version > *v) {
                        newest = Some((version, i, info));
                    }
                }
                Err(Error::NoSuchKey | Error::NoSuchBucket) => {}
                Err(e) if i == target => return Err(e),
                Err(_) => unreachable = true,
            }
        }
        let tombstone = self.shared.journal.tombstone(&entry.bucket, &entry.key);
        let target_backend = self.replicas()[target].backend.clone();
        let deleted = match (&newest, &tombstone) {
            (None, _) => true,
            (Some((v, _, _)), Some(t)) => t >= v,
            _ => false,
        };
        if deleted {
            if newest.is_none() && tombstone.is_none() && unreachable && target_version.is_some() {
                // The target's copy may be the only one but for replicas we cannot reach:
                // wait for them before deciding it was deleted.
                return Ok(false);
            }
            // A journaled delete holds for the target, whatever the unreachable replicas
            // hold. (Without one, the target holds nothing to delete.)
            if target_version
                .as_deref()
                .is_some_and(|v| tombstone.as_deref().is_none_or(|t| v <= t))
            {
                log::info!(
                    "repair {}/{} on {}: applying delete",
                    entry.bucket,
                    entry.key,
                    entry.backend
                );
                target_backend.delete_object(&bucket, &key).await?;
            }
            // "Deleted" was decided without the replicas that did not answer, and one of
            // them may hold the only copy of a version (a write only it took, after any
            // delete): the entry stays until they answer, so that version reaches the
            // target then.
            return Ok(!unreachable);
        }
        let (version, source, info) = newest.expect("not deleted, so a newest version exists");
        if !entry.force && target_version.as_deref() == Some(version.as_str()) {
            return Ok(true);
        }
        if source == target {
            return Ok(true);
        }
        log::info!(
            "repair {}/{} on {}: copying version {version} from {}",
            entry.bucket,
            entry.key,
            entry.backend,
            self.replicas()[source].backend.name()
        );
        let got = self.replicas()[source]
            .backend
            .get_object(
                &bucket,
                &key,
                GetOptions {
                    conditions: Conditions {
                        if_match: Some(info.etag.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?;
        let mut metadata = got.info.metadata.clone();
        metadata
            .internal
            .entry(ETAG_KEY.to_string())
            .or_insert(got.info.etag.clone());
        let length = got.info.size;
        let put = target_backend
            .put_object(
                &bucket,
                &key,
                Body {
                    stream: got.body,
                    length,
                },
                PutOptions {
                    metadata: metadata.clone(),
                    content_md5: None,
                },
            )
            .await;
        match put {
            Err(Error::NoSuchBucket) => {
                target_backend
                    .create_bucket(&bucket)
                    .await
                    .or_else(|e| match e {
                        Error::BucketAlreadyOwnedByYou => Ok(()),
                        e => Err(e),
                    })?;
                Ok(false)
            }
            Err(e) => Err(e),
            Ok(_) => Ok(true),
        }
    }

    /// Keys with writes in flight (stragglers included).
    pub fn writes_in_flight(&self) -> usize {
        self.inflight().len()
    }

    fn write_in_flight(&self, bucket: &str, key: &str) -> bool {
        self.inflight()
            .contains_key(&(bucket.to_string(), key.to_string()))
    }

    /// The in-flight table (a poisoned lock still holds consistent counts).
    fn inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), InflightSlot>> {
        self.shared
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// NoSuchBucket when the bucket was deleted through the proxy and some backend that
    /// missed the delete still holds it.
    fn check_bucket_not_deleted(&self, bucket: &BucketName) -> Result<()> {
        if self.shared.journal.bucket_deleted(bucket.as_str()) {
            Err(Error::NoSuchBucket)
        } else {
            Ok(())
        }
    }

    /// Delete a bucket on a backend that missed its deletion, with whatever that backend
    /// still holds in it (the bucket was empty when the client deleted it).
    async fn repair_bucket_deletion(&self, target: usize, bucket: &str) -> Result<bool> {
        let backend = self.replicas()[target].backend.clone();
        let bucket = BucketName::new(bucket.to_string())?;
        loop {
            let page = match backend
                .list_objects(
                    &bucket,
                    ListOptions {
                        max_keys: 1000,
                        ..Default::default()
                    },
                )
                .await
            {
                Err(Error::NoSuchBucket) => return Ok(true),
                other => other?,
            };
            for o in &page.objects {
                backend
                    .delete_object(&bucket, &ObjectKey::new(o.key.clone())?)
                    .await
                    .or_else(|e| match e {
                        Error::NoSuchKey => Ok(()),
                        e => Err(e),
                    })?;
            }
            if !page.is_truncated || page.objects.is_empty() {
                break;
            }
        }
        log::info!("repair: deleting bucket {bucket} on {}", backend.name());
        match backend.delete_bucket(&bucket).await {
            Ok(()) | Err(Error::NoSuchBucket) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The longest timeout of any replica: how long a write may stall there.
    fn longest_timeout(&self) -> Duration {
        self.replicas()
            .iter()
            .map(|r| r.timeout)
            .max()
            .unwrap_or(Duration::from_secs(30))
    }

    /// Wait, at most [`Self::longest_timeout`], until no in-flight slot is `busy`.
    async fn wait_inflight(&self, busy: impl Fn(&(String, String), &InflightSlot) -> bool) {
        let deadline = Instant::now() + self.longest_timeout();
        loop {
            let pending = self.inflight().iter().any(|(id, slot)| busy(id, slot));
            if !pending || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The replicas still writing an acknowledged write of the key in the background.
    fn straggling(&self, bucket: &BucketName, key: &ObjectKey) -> Vec<usize> {
        let id = (bucket.to_string(), key.to_string());
        let mut replicas = self
            .inflight()
            .get(&id)
            .map(|slot| slot.straggling.clone())
            .unwrap_or_default();
        replicas.sort_unstable();
        replicas.dedup();
        replicas
    }

    /// In the background: on each replica in `later`, once its write of the source is done,
    /// run the copy. They are journaled already; the repair pass then finds them current,
    /// or repairs those where the copy failed. `guard` keeps the destination in flight.
    fn copy_when_written<F, Fut>(
        &self,
        guard: InflightWrite,
        (src_bucket, src_key): (&BucketName, &ObjectKey),
        later: Vec<usize>,
        target: String,
        copy: F,
    ) where
        F: Fn(DynBackend) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<PutResult>> + Send + 'static,
    {
        let this = self.clone();
        let (sb, sk) = (src_bucket.to_string(), src_key.to_string());
        // Not marked as straggling replicas: with the source as destination, the wait
        // below would wait for itself.
        guard.add_stragglers(1);
        tokio::spawn(async move {
            let guard = guard;
            futures::future::join_all(later.iter().map(|&i| {
                let (this, sb, sk, copy, target) = (&this, &sb, &sk, copy.clone(), &target);
                async move {
                    this.wait_inflight(|(b, k), slot| {
                        b == sb && k == sk && slot.straggling.contains(&i)
                    })
                    .await;
                    let outcome = this.call(i, copy).await;
                    let name = this.replicas()[i].backend.name();
                    match outcome {
                        Ok(_) => log::info!("CopyObject {target}: {name}=ok (after its write)"),
                        Err(e) => log::info!(
                            "CopyObject {target}: {name} failed after its write ({e}); left for repair"
                        ),
                    }
                }
            }))
            .await;
            this.shared.wake_repair.notify_one();
            guard.add_stragglers(-1);
        });
    }

    /// Wait until no acknowledged write to the key has replicas still writing. A multipart
    /// upload acknowledges a part once the quorum holds it; listing or completing the
    /// upload right after must see every replica's copy of every part, or the slower
    /// replicas would fail the completion.
    async fn settle_stragglers(&self, bucket: &BucketName, key: &ObjectKey) {
        self.wait_inflight(|(b, k), slot| {
            b == bucket.as_str() && k == key.as_str() && slot.stragglers > 0
        })
        .await;
    }

    /// Before a bucket goes: wait for writes to it still in flight, then apply the
    /// journal's pending entries for it, so replicas hold no leftovers the proxy hides.
    async fn settle_bucket(&self, bucket: &BucketName) {
        self.wait_inflight(|(b, _), _| b == bucket.as_str()).await;
        for entry in self.shared.journal.pending_in(bucket.as_str()) {
            self.repair_and_clear(&entry).await;
        }
    }

    /// Repair one journal entry; clear it when done, log why when it failed.
    /// An entry that failed waits 1 s, 2 s, 4 s… (at most [`MAX_REPAIR_BACKOFF`]) before
    /// its next attempt.
    async fn repair_and_clear(&self, entry: &Entry) {
        let id = entry.id();
        let backoff = || {
            self.shared
                .repair_backoff
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if backoff()
            .get(&id)
            .is_some_and(|(_, not_before)| Instant::now() < *not_before)
        {
            return;
        }
        match self.repair_entry(entry).await {
            Ok(true) => {
                backoff().remove(&id);
                if let Err(e) = self.shared.journal.remove(entry) {
                    log::warn!("cannot clear a repaired journal entry: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => {
                let mut map = backoff();
                let failures = map.get(&id).map_or(0, |(n, _)| *n) + 1;
                let wait = Duration::from_secs(1 << failures.min(16)).min(MAX_REPAIR_BACKOFF);
                map.insert(id, (failures, Instant::now() + wait));
                log::warn!(
                    "repair {}/{} on {} failed ({failures} times; next try in {wait:?}): {e}",
                    entry.bucket,
                    entry.key,
                    entry.backend
                );
            }
        }
    }

    /// Probe every backend whose circuit is open and due a probe; a success closes it.
    pub async fn probe_open_circuits(&self) {
        for (i, r) in self.replicas().iter().enumerate() {
            if r.health.wants_probe() {
                let probe = self
                    .call_checked(i, |b| async move { b.list_buckets().await }, true)
                    .await;
                if probe.is_err() {
                    log::debug!("backend {} still unavailable", r.backend.name());
                }
            }
        }
    }

    /// Replay the journal once: every entry whose backend is available. Returns how many
    /// entries are still pending.
    pub async fn replay_journal(&self) -> usize {
        self.probe_open_circuits().await;
        if let Err(e) = self.shared.journal.reload() {
            log::warn!("cannot reload the repair journal: {e}");
        }
        for entry in self.shared.journal.pending() {
            self.repair_and_clear(&entry).await;
        }
        self.shared.journal.len()
    }

    /// Start the background work: probe backends whose circuit is open, and replay the
    /// journal when a backend comes back and every few seconds while entries are pending.
    pub fn start_background(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = this.shared.wake_repair.notified() => {
                        // Let a burst of writes settle before replaying.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                this.probe_open_circuits().await;
                if !this.shared.journal.is_empty() {
                    let left = this.replay_journal().await;
                    if left > 0 {
                        log::info!("repair journal: {left} entries pending");
                    }
                }
            }
        })
    }

    /// Scan every backend, compare keys by version stamp, and bring every replica up to
    /// date (copy what is missing or stale, apply journaled deletes). With `dry_run`, only
    /// count. `progress` is called after each key with (done, total).
    pub async fn repair_scan(
        &self,
        only_bucket: Option<&BucketName>,
        dry_run: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<RepairSummary> {
        let mut summary = RepairSummary::default();
        let buckets: Vec<BucketName> = match only_bucket {
            Some(b) => vec![b.clone()],
            None => {
                let mut names = std::collections::BTreeSet::new();
                for (i, r) in self.replicas().iter().enumerate() {
                    let listed = self
                        .call(i, |b| async move { b.list_buckets().await })
                        .await
                        .map_err(|e| {
                            Error::ServiceUnavailable(format!("backend {}: {e}", r.backend.name()))
                        })?;
                    names.extend(listed.into_iter().map(|b| b.name));
                }
                names
                    .into_iter()
                    .filter_map(|n| BucketName::new(n).ok())
                    .collect()
            }
        };
        for bucket in buckets {
            // Every replica's full listing: key -> (replica -> version).
            let mut keys: std::collections::BTreeMap<String, Vec<Option<String>>> =
                Default::default();
            let n = self.replicas().len();
            for i in 0..n {
                let mut start_after = None;
                loop {
                    let opts = ListOptions {
                        start_after: start_after.clone(),
                        max_keys: 1000,
                        ..Default::default()
                    };
                    let page = match self
                        .call(i, |b| {
                            let (bucket, opts) = (bucket.clone(), opts.clone());
                            async move { b.list_objects(&bucket, opts).await }
                        })
                        .await
                    {
                        Ok(p) => p,
                        Err(Error::NoSuchBucket) => break,
                        Err(e) => {
                            return Err(Error::ServiceUnavailable(format!(
                                "listing {bucket} on {}: {e}",
                                self.replicas()[i].backend.name()
                            )));
                        }
                    };
                    for o in &page.objects {
                        let version = match &o.internal {
                            Some(internal) => {
                                internal.get(VERSION_KEY).cloned().unwrap_or_default()
                            }
                            None => {
                                let key = ObjectKey::new(o.key.clone())?;
                                match self
                                    .call(i, |b| {
                                        let (bucket, key) = (bucket.clone(), key.clone());
                                        async move {
                                            b.head_object(&bucket, &key, GetOptions::default())
                                                .await
                                        }
                                    })
                                    .await
                                {
                                    Ok(info) => {
                                        version_of(&info.metadata).unwrap_or("").to_string()
                                    }
                                    Err(_) => continue,
                                }
                            }
                        };
                        keys.entry(o.key.clone()).or_insert_with(|| vec![None; n])[i] =
                            Some(version);
                    }
                    if !page.is_truncated {
                        break;
                    }
                    start_after = page.next_marker;
                }
            }
            let total = keys.len() as u64;
            for (done, (key, versions)) in keys.into_iter().enumerate() {
                summary.keys += 1;
                let newest = versions.iter().flatten().max().cloned().unwrap_or_default();
                let tombstone = self.shared.journal.tombstone(bucket.as_str(), &key);
                let deleted = tombstone.as_deref().is_some_and(|t| t >= newest.as_str());
                let object_key = ObjectKey::new(key.clone())?;
                for (i, v) in versions.iter().enumerate() {
                    let needs = if deleted {
                        v.is_some()
                    } else {
                        v.as_deref() != Some(newest.as_str())
                    };
                    if !needs {
                        continue;
                    }
                    if deleted {
                        summary.deletes += 1
                    } else {
                        summary.copies += 1
                    }
                    if dry_run {
                        continue;
                    }
                    let entry = Entry {
                        bucket: bucket.to_string(),
                        key: key.clone(),
                        backend: self.replicas()[i].backend.name().to_string(),
                        stamp: newest.clone(),
                        tombstone: None,
                        force: false,
                    };
                    match self.repair_entry(&entry).await {
                        Ok(true) => {}
                        Ok(false) => {
                            summary.failed += 1;
                            self.journal_missed(&bucket, &object_key, i, &newest, false, false);
                        }
                        Err(e) => {
                            summary.failed += 1;
                            log::warn!("repair {bucket}/{key} on {}: {e}", entry.backend);
                            self.journal_missed(&bucket, &object_key, i, &newest, false, false);
                        }
                    }
                }
                progress(done as u64 + 1, total);
            }
        }
        Ok(summary)
    }
}

/// What is in flight on one key: how many writes, deletes and repairs, whether two ever
/// overlapped, and the newest delete among them.
#[derive(Default)]
struct InflightSlot {
    count: usize,
    contended: bool,
    tombstone: Option<String>,
    /// Writes acknowledged to the client whose slower replicas are still writing.
    stragglers: usize,
    /// The replicas still writing for those writes (one entry per write and replica).
    straggling: Vec<usize>,
}

/// Marks a write, delete or repair of a key as in flight. When operations on one key
/// overlapped, the last to finish journals every replica for a check: a slower, older write
/// (or a repair that read an older version) may have landed on a replica after a newer one,
/// and only comparing version stamps tells. The check carries the newest overlapping
/// delete's tombstone, so it deletes what an older write brought back instead of spreading it.
struct InflightWrite {
    this: Replicated,
    id: (String, String),
}

impl InflightWrite {
    /// `tombstone`: the stamp of the delete this is, if it is one.
    fn start(
        this: &Replicated,
        bucket: &BucketName,
        key: &ObjectKey,
        tombstone: Option<String>,
    ) -> Self {
        let id = (bucket.to_string(), key.to_string());
        let mut map = this.inflight();
        let slot = map.entry(id.clone()).or_default();
        slot.count += 1;
        if slot.count > 1 {
            slot.contended = true;
        }
        slot.tombstone = slot.tombstone.take().max(tombstone);
        InflightWrite {
            this: this.clone(),
            id,
        }
    }

    /// Count this write's background replicas (+1 when it leaves them behind, -1 when
    /// they are done).
    fn add_stragglers(&self, delta: isize) {
        let mut map = self.this.inflight();
        if let Some(slot) = map.get_mut(&self.id) {
            slot.stragglers = slot.stragglers.saturating_add_signed(delta);
        }
    }

    /// Mark replicas as still writing this key in the background.
    fn mark_straggling(&self, replicas: &[usize]) {
        if let Some(slot) = self.this.inflight().get_mut(&self.id) {
            slot.straggling.extend_from_slice(replicas);
        }
    }

    /// One replica marked by [`Self::mark_straggling`] is done, well or not.
    fn straggler_done(&self, replica: usize) {
        if let Some(slot) = self.this.inflight().get_mut(&self.id)
            && let Some(at) = slot.straggling.iter().position(|r| *r == replica)
        {
            slot.straggling.swap_remove(at);
        }
    }

    /// Whether another operation on the key overlapped this one so far.
    fn overlapped(&self) -> bool {
        self.this
            .inflight()
            .get(&self.id)
            .is_some_and(|slot| slot.contended)
    }
}

impl Drop for InflightWrite {
    fn drop(&mut self) {
        let (contended, tombstone) = {
            let mut map = self.this.inflight();
            let Some(slot) = map.get_mut(&self.id) else {
                return;
            };
            slot.count -= 1;
            if slot.count > 0 {
                return;
            }
            let slot = map.remove(&self.id).unwrap_or_default();
            (slot.contended, slot.tombstone)
        };
        if contended
            && let (Ok(bucket), Ok(key)) = (
                BucketName::new(self.id.0.clone()),
                ObjectKey::new(self.id.1.clone()),
            )
        {
            let stamp = self.this.shared.clock.next();
            for replica in self.this.replicas() {
                let entry = Entry {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    backend: replica.backend.name().to_string(),
                    stamp: stamp.clone(),
                    tombstone: tombstone.clone(),
                    force: false,
                };
                if let Err(e) = self.this.shared.journal.record(entry) {
                    log::error!("cannot record a check of {bucket}/{key}: {e}");
                }
            }
            self.this.shared.wake_repair.notify_one();
        }
    }
}

/// What a repair scan found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairSummary {
    /// Keys examined.
    pub keys: u64,
    /// Replicas brought up to date by copying.
    pub copies: u64,
    /// Replicas on which a journaled delete was applied.
    pub deletes: u64,
    /// Repairs that failed (left in the journal).
    pub failed: u64,
}

/// A GET body that continues from another replica when its replica fails or stalls.
struct Failover {
    this: Replicated,
    bucket: BucketName,
    key: ObjectKey,
    etag: String,
    holders: Vec<usize>,
    current: usize,
    body: ByteStream,
    next_offset: u64,
    end: u64,
}

impl Failover {
    fn into_stream(self) -> ByteStream {
        Box::pin(futures::stream::try_unfold(self, |mut s| async move {
            loop {
                if s.next_offset > s.end {
                    return Ok(None);
                }
                let stall = s.this.replicas()[s.holders[s.current]].timeout;
                let failure = match tokio::time::timeout(stall, s.body.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        s.next_offset += chunk.len() as u64;
                        return Ok(Some((chunk, s)));
                    }
                    Ok(None) => Error::Internal("replica ended the body early".into()),
                    Ok(Some(Err(e))) => e,
                    Err(_) => Error::ServiceUnavailable(format!("stalled for {stall:?}")),
                };
                let failed = s.this.replicas()[s.holders[s.current]]
                    .backend
                    .name()
                    .to_string();
                s.this.replicas()[s.holders[s.current]]
                    .health
                    .unresponsive();
                loop {
                    s.current += 1;
                    let Some(&next) = s.holders.get(s.current) else {
                        log::warn!(
                            "GetObject {}/{}: {failed} failed mid-body ({failure}) and no replica is left",
                            s.bucket,
                            s.key
                        );
                        return Err(failure);
                    };
                    let backend = s.this.replicas()[next].backend.clone();
                    log::warn!(
                        "GetObject {}/{}: {failed} failed mid-body ({failure}); continuing from {} at byte {}",
                        s.bucket,
                        s.key,
                        backend.name(),
                        s.next_offset
                    );
                    let opts = GetOptions {
                        range: Some(ByteRange::FromTo(s.next_offset, s.end)),
                        conditions: Conditions {
                            if_match: Some(s.etag.clone()),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    if let Ok(got) = backend.get_object(&s.bucket, &s.key, opts).await {
                        s.body = got.body;
                        break;
                    }
                }
            }
        }))
    }
}

#[async_trait]
impl Backend for Replicated {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let outcomes = self
            .fan_out(
                "ListBuckets",
                "-",
                |b| async move { b.list_buckets().await },
            )
            .await;
        let mut merged: std::collections::BTreeMap<String, BucketInfo> = Default::default();
        let mut first_error = None;
        let mut any = false;
        for o in outcomes {
            match o {
                Ok(list) => {
                    any = true;
                    for b in list {
                        merged
                            .entry(b.name.clone())
                            .and_modify(|m| m.created = m.created.min(b.created))
                            .or_insert(b);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (any, first_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(merged
                .into_values()
                .filter(|b| !self.shared.journal.bucket_deleted(&b.name))
                .collect()),
        }
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        if self.shared.journal.bucket_deleted(bucket.as_str()) {
            // Created again: a backend that missed the delete keeps its bucket as it is.
            if let Err(e) = self.shared.journal.clear_bucket_deleted(bucket.as_str()) {
                log::warn!("cannot clear the journaled deletion of bucket {bucket}: {e}");
            }
        }
        let outcomes = self
            .fan_out("CreateBucket", bucket.as_str(), |b| {
                let bucket = bucket.clone();
                async move { b.create_bucket(&bucket).await }
            })
            .await;
        // Every backend that answered already has it (one that is down does not change
        // what the client is told).
        let answered = outcomes
            .iter()
            .filter(|o| !matches!(o, Err(e) if e.is_transient()));
        let all_existed = answered.clone().count() > 0
            && answered
                .into_iter()
                .all(|o| matches!(o, Err(Error::BucketAlreadyOwnedByYou)));
        if all_existed {
            return Err(Error::BucketAlreadyOwnedByYou);
        }
        // Backends that missed it get the bucket when repair first writes to them.
        self.quorum_result(outcomes, |e| matches!(e, Error::BucketAlreadyOwnedByYou))
            .map(|_| ())
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        // Decide on what the client sees, before any backend deletes anything: a bucket
        // that lists objects is not empty, whatever one replica would say.
        let listed = self
            .list_objects(
                bucket,
                ListOptions {
                    max_keys: 1,
                    ..Default::default()
                },
            )
            .await?;
        if !listed.objects.is_empty() || !listed.common_prefixes.is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        // It lists empty; replicas may still hold what that view hides: writes still
        // landing, deletes journaled for them. Let those finish and apply first.
        self.settle_bucket(bucket).await;
        let outcomes = self
            .fan_out("DeleteBucket", bucket.as_str(), |b| {
                let bucket = bucket.clone();
                async move { b.delete_bucket(&bucket).await }
            })
            .await;
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::BucketNotEmpty)))
        {
            return Err(Error::BucketNotEmpty);
        }
        if outcomes
            .iter()
            .all(|o| matches!(o, Err(Error::NoSuchBucket)))
        {
            return Err(Error::NoSuchBucket);
        }
        let missed = missed_by(&outcomes);
        self.quorum_result(outcomes, |e| matches!(e, Error::NoSuchBucket))?;
        // Backends that missed the delete keep the bucket: journal its deletion (an entry
        // with an empty key), which hides it from then on and has repair delete it there.
        let stamp = self.shared.clock.next();
        for i in missed {
            let entry = Entry {
                bucket: bucket.to_string(),
                key: String::new(),
                backend: self.replicas()[i].backend.name().to_string(),
                stamp: stamp.clone(),
                tombstone: Some(stamp.clone()),
                force: false,
            };
            if let Err(e) = self.shared.journal.record(entry) {
                log::error!("cannot record the deletion of bucket {bucket}: {e}");
            }
        }
        Ok(())
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.check_bucket_not_deleted(bucket)?;
        let outcomes = self
            .fan_out("HeadBucket", bucket.as_str(), |b| {
                let bucket = bucket.clone();
                async move { b.head_bucket(&bucket).await }
            })
            .await;
        let mut first_error = None;
        for o in outcomes {
            match o {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if first_error
                        .as_ref()
                        .is_none_or(|f: &Error| matches!(f, Error::NoSuchBucket))
                    {
                        first_error = Some(e);
                    }
                }
            }
        }
        Err(first_error.unwrap_or(Error::NoSuchBucket))
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        let stamp = self.shared.clock.next();
        opts.metadata
            .internal
            .insert(VERSION_KEY.into(), stamp.clone());
        let result = self
            .replicated_write(
                "PutObject",
                bucket,
                key,
                &stamp,
                body,
                |_, backend, body| {
                    let (bucket, key, opts) = (bucket.clone(), key.clone(), opts.clone());
                    async move { backend.put_object(&bucket, &key, body, opts).await }
                },
            )
            .await?;
        Ok(PutResult {
            etag: result.etag,
            last_modified: stamp_time(&stamp).unwrap_or(result.last_modified),
        })
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        // A write between locating the newest version and reading it changes the object
        // on every holder: locate again (a few times) rather than fail the read.
        let mut attempts = 0;
        loop {
            match self.get_located(bucket, key, &opts).await {
                Err(e) if is_changed(&e) && attempts < 3 => attempts += 1,
                Err(e) if is_changed(&e) => {
                    return Err(Error::ServiceUnavailable(format!(
                        "{bucket}/{key} kept changing while being read"
                    )));
                }
                other => return other,
            }
        }
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let holders = self.locate(bucket, key, "HeadObject").await?;
        let info = self.present(holders[0].info.clone());
        opts.conditions.check(&info, false)?;
        Ok(info)
    }

    async fn head_object_etags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Vec<String>)> {
        let holders = self.locate(bucket, key, "HeadObject").await?;
        let shown = &holders[0].info;
        let etags = holders
            .iter()
            .filter(|h| {
                version_of(&h.info.metadata) == version_of(&shown.metadata)
                    && h.info.size == shown.size
            })
            .map(|h| h.info.etag.clone())
            .collect();
        let info = self.present(shown.clone());
        opts.conditions.check(&info, false)?;
        Ok((info, etags))
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        let stamp = self.shared.clock.next();
        let guard = InflightWrite::start(self, bucket, key, Some(stamp.clone()));
        let outcomes = self
            .fan_out("DeleteObject", &format!("{bucket}/{key}"), |b| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move { b.delete_object(&bucket, &key).await }
            })
            .await;
        let skipped = missed_by(&outcomes);
        // Journal the tombstone before answering, even below the quorum: a delete that
        // reached some backends must not be undone by repair.
        for i in &skipped {
            self.journal_missed(bucket, key, *i, &stamp, true, false);
        }
        if guard.overlapped() {
            // Another write or a repair of this key ran meanwhile and may land an older
            // version after this delete: the tombstone, journaled before the answer, hides
            // it from reads and lists and has repair delete it.
            for i in 0..self.replicas().len() {
                self.journal_missed(bucket, key, i, &stamp, true, false);
            }
        }
        drop(guard);
        self.quorum_result(outcomes, |e| matches!(e, Error::NoSuchKey))
            .map(|_| ())
    }

    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        self.head_bucket(bucket).await?;
        let results = futures::stream::iter(keys.into_iter().map(|key| async move {
            let result = self.delete_object(bucket, &key).await;
            DeleteOutcome { key, result }
        }))
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
        Ok(results)
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        let holders = self
            .locate(src_bucket, src_key, "CopyObject/locate")
            .await?;
        let source = self.present(holders[0].info.clone());
        opts.source_conditions.check(&source, true)?;
        let stamp = self.shared.clock.next();
        let mut metadata = match &opts.directive {
            MetadataDirective::Copy => holders[0].info.metadata.clone(),
            MetadataDirective::Replace(m) => {
                let mut m = m.clone();
                // Keep the client-visible ETag of the source version.
                if let Some(etag) = holders[0].info.metadata.internal.get(ETAG_KEY) {
                    m.internal.entry(ETAG_KEY.into()).or_insert(etag.clone());
                }
                m
            }
        };
        metadata.internal.insert(VERSION_KEY.into(), stamp.clone());
        let source_version = version_of(&holders[0].info.metadata)
            .unwrap_or("")
            .to_string();
        // Each replica copies its own copy of the source: only if it is the version
        // located, or concurrent writes could give replicas different data under one stamp.
        let inner = CopyOptions {
            directive: MetadataDirective::Replace(metadata),
            source_conditions: Conditions {
                if_match: Some(holders[0].info.etag.clone()),
                ..Default::default()
            },
        };
        // A replica still writing the source (a W=1 PUT that answered before it, followed
        // at once by this copy: the encryption layer attaches its record so) copies once
        // its write is done. Copying now would fail on the version it still holds and
        // leave the replica to a repair that moves the whole object again.
        let later = self.straggling(src_bucket, src_key);
        let target = format!("{src_bucket}/{src_key} -> {dst_bucket}/{dst_key}");
        let copy = {
            let (sb, sk, db, dk, o) = (
                src_bucket.clone(),
                src_key.clone(),
                dst_bucket.clone(),
                dst_key.clone(),
                inner.clone(),
            );
            move |b: DynBackend| {
                let (sb, sk, db, dk, o) =
                    (sb.clone(), sk.clone(), db.clone(), dk.clone(), o.clone());
                async move { b.copy_object(&sb, &sk, &db, &dk, o).await }
            }
        };
        let guard =
            (!later.is_empty()).then(|| InflightWrite::start(self, dst_bucket, dst_key, None));
        let outcomes = self
            .fan_out_except("CopyObject", &target, &later, copy.clone())
            .await;
        // A replica whose source was stale or missing copied the wrong thing or nothing:
        // treat it as missed.
        let outcomes: Vec<Outcome<PutResult>> = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| match o {
                // Same source bytes (If-Match held), whatever its stamp said.
                Ok(r) => Ok(r),
                Err(Error::PreconditionFailed) => Err(Error::ServiceUnavailable(format!(
                    "source version {source_version} not on replica {i}"
                ))),
                Err(Error::NoSuchKey) if !holders.is_empty() => Err(Error::ServiceUnavailable(
                    "source missing on this replica".into(),
                )),
                other => other,
            })
            .collect();
        for i in missed_by(&outcomes) {
            self.journal_missed(dst_bucket, dst_key, i, &stamp, false, false);
        }
        let first = self.quorum_result(outcomes, |_| false)?;
        let first = first.ok_or_else(|| Error::Internal("no successful copy".into()))?;
        if let Some(guard) = guard {
            self.copy_when_written(guard, (src_bucket, src_key), later, target, copy);
        }
        Ok(PutResult {
            etag: source.etag,
            last_modified: stamp_time(&stamp).unwrap_or(first.last_modified),
        })
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        self.check_bucket_not_deleted(bucket)?;
        let outcomes = self
            .fan_out("ListObjects", bucket.as_str(), |b| {
                let (bucket, opts) = (bucket.clone(), opts.clone());
                async move { b.list_objects(&bucket, opts).await }
            })
            .await;
        let mut pages = vec![];
        let mut first_error = None;
        for o in outcomes {
            match o {
                Ok(p) => pages.push(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if pages.is_empty() {
            return Err(first_error.unwrap_or(Error::NoSuchBucket));
        }
        // Merge: one entry per key (the newest version) or common prefix, in order.
        enum Item {
            Object(ObjectSummary),
            Prefix(String),
        }
        let mut merged: std::collections::BTreeMap<String, Item> = Default::default();
        let mut any_truncated = false;
        for page in pages {
            any_truncated |= page.is_truncated;
            for p in page.common_prefixes {
                merged.insert(p.clone(), Item::Prefix(p));
            }
            for o in page.objects {
                let version = o
                    .internal
                    .as_ref()
                    .and_then(|m| m.get(VERSION_KEY))
                    .cloned();
                let newer = match merged.get(&o.key) {
                    Some(Item::Object(existing)) => {
                        let old = existing
                            .internal
                            .as_ref()
                            .and_then(|m| m.get(VERSION_KEY))
                            .cloned();
                        version > old
                    }
                    _ => true,
                };
                if newer {
                    merged.insert(o.key.clone(), Item::Object(o));
                }
            }
        }
        let mut result = ListResult::default();
        let max = opts.max_keys.min(list::MAX_KEYS);
        let mut count = 0;
        let mut last = None;
        for (name, item) in merged {
            if let Item::Object(o) = &item {
                let version = o
                    .internal
                    .as_ref()
                    .and_then(|m| m.get(VERSION_KEY))
                    .cloned()
                    .unwrap_or_default();
                if self
                    .shared
                    .journal
                    .tombstone(bucket.as_str(), &o.key)
                    .is_some_and(|t| t >= version)
                {
                    continue;
                }
            }
            if count == max {
                result.is_truncated = true;
                break;
            }
            count += 1;
            last = Some(name);
            match item {
                Item::Prefix(p) => result.common_prefixes.push(p),
                Item::Object(mut o) => {
                    if let Some(internal) = &mut o.internal {
                        if let Some(t) =
                            internal.remove(VERSION_KEY).as_deref().and_then(stamp_time)
                        {
                            o.last_modified = t;
                        }
                        if let Some(etag) = internal.remove(ETAG_KEY) {
                            o.etag = etag;
                        }
                    }
                    result.objects.push(o);
                }
            }
        }
        result.is_truncated |= any_truncated;
        if result.is_truncated {
            result.next_marker = last;
        }
        Ok(result)
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        mut opts: MultipartOptions,
    ) -> Result<UploadId> {
        self.check_bucket_not_deleted(bucket)?;
        let stamp = self.shared.clock.next();
        opts.metadata
            .internal
            .insert(VERSION_KEY.into(), stamp.clone());
        let outcomes = self
            .fan_out("CreateMultipartUpload", &format!("{bucket}/{key}"), |b| {
                let (bucket, key, opts) = (bucket.clone(), key.clone(), opts.clone());
                async move { b.create_multipart_upload(&bucket, &key, opts).await }
            })
            .await;
        let ids: Vec<Option<UploadId>> =
            outcomes.iter().map(|o| o.as_ref().ok().cloned()).collect();
        self.quorum_result(outcomes, |_| false)?;
        self.encode_upload(&ids)
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<String> {
        let upload = self.decode_upload(upload_id)?;
        // Parts are not versions: the stamp only names this write in the journal.
        let stamp = upload.stamp.unwrap_or_else(|| self.shared.clock.next());
        let ids = Arc::new(upload.ids);
        let write_ids = ids.clone();
        self.replicated_write(
            "UploadPart",
            bucket,
            key,
            &stamp,
            body,
            move |index, backend, body| {
                let (bucket, key, opts, ids) =
                    (bucket.clone(), key.clone(), opts.clone(), write_ids.clone());
                async move {
                    match &ids[index] {
                        Some(id) => {
                            backend
                                .upload_part(&bucket, &key, id, part_number, body, opts)
                                .await
                        }
                        // Not a failure of the backend: it was down when the upload began.
                        None => Err(Error::Internal("not part of this upload".into())),
                    }
                }
            },
        )
        .await
    }

    async fn upload_part_copy(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        src: GetOptions,
    ) -> Result<String> {
        let ids = self.decode_upload(upload_id)?.ids;
        let holders = self
            .locate(src_bucket, src_key, "UploadPartCopy/locate")
            .await?;
        let source = self.present(holders[0].info.clone());
        src.conditions.check(&source, true)?;
        let inner_src = GetOptions {
            range: src.range,
            conditions: Conditions {
                if_match: Some(holders[0].info.etag.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let outcomes = futures::future::join_all((0..self.replicas().len()).map(|i| {
            let id = ids[i].clone();
            let inner_src = inner_src.clone();
            let holds = holders.iter().any(|h| h.index == i);
            async move {
                let Some(id) = id else {
                    return Err(Error::ServiceUnavailable("not part of this upload".into()));
                };
                if !holds {
                    return Err(Error::ServiceUnavailable(
                        "source version not on this replica".into(),
                    ));
                }
                self.call(i, |b| {
                    let (bucket, key, id, sb, sk, o) = (
                        bucket.clone(),
                        key.clone(),
                        id.clone(),
                        src_bucket.clone(),
                        src_key.clone(),
                        inner_src.clone(),
                    );
                    async move {
                        b.upload_part_copy(&bucket, &key, &id, part_number, &sb, &sk, o)
                            .await
                    }
                })
                .await
            }
        }))
        .await;
        self.log_outcomes(
            "UploadPartCopy",
            &format!("{bucket}/{key}#{part_number}"),
            &outcomes,
        );
        let first = self.quorum_result(outcomes, |_| false)?;
        first.ok_or_else(|| Error::Internal("no successful part copy".into()))
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        let uploads::DecodedUpload { stamp, ids } = self.decode_upload(upload_id)?;
        self.settle_stragglers(bucket, key).await;
        let outcomes = futures::future::join_all((0..self.replicas().len()).map(|i| {
            let id = ids[i].clone();
            let parts = parts.clone();
            async move {
                let Some(id) = id else {
                    return Err(Error::ServiceUnavailable("not part of this upload".into()));
                };
                // Assembling may take a while on a backend; allow well beyond one call.
                let r = &self.replicas()[i];
                match tokio::time::timeout(
                    r.timeout * 10,
                    r.backend.complete_multipart_upload(bucket, key, &id, parts),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(Error::ServiceUnavailable(format!(
                        "backend {} timed out completing the upload",
                        r.backend.name()
                    ))),
                }
            }
        }))
        .await;
        self.log_outcomes(
            "CompleteMultipartUpload",
            &format!("{bucket}/{key}"),
            &outcomes,
        );
        let any_ok = outcomes.iter().any(|o| o.is_ok());
        if !any_ok
            && outcomes
                .iter()
                .any(|o| matches!(o, Err(Error::NoSuchUpload)))
            && let Some(done) = self.completed_already(bucket, key, &parts).await
        {
            return Ok(done);
        }
        // The version's stamp, which the upload's metadata gave the object: in the id of
        // uploads created before ids stopped carrying it, else on a replica that completed.
        let stamp = match (stamp, outcomes.iter().position(|o| o.is_ok())) {
            (Some(stamp), _) => stamp,
            (None, Some(i)) => self
                .call(i, |b| async move {
                    b.head_object(bucket, key, GetOptions::default()).await
                })
                .await
                .ok()
                .and_then(|info| version_of(&info.metadata).map(str::to_string))
                .unwrap_or_else(|| self.shared.clock.next()),
            (None, None) => self.shared.clock.next(),
        };
        // A replica that failed while another completed lacks the object: journal it
        // whatever its error was (a part it never got gives InvalidPart there).
        for (i, o) in outcomes.iter().enumerate() {
            if matches!(o, Err(e) if e.is_transient() || any_ok) {
                self.journal_missed(bucket, key, i, &stamp, false, false);
            }
        }
        let first = self.quorum_result(outcomes, |_| false)?;
        let first = first.ok_or_else(|| Error::Internal("no successful completion".into()))?;
        Ok(PutResult {
            etag: first.etag,
            last_modified: stamp_time(&stamp).unwrap_or(first.last_modified),
        })
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        let ids = self.decode_upload(upload_id)?.ids;
        let outcomes = futures::future::join_all((0..self.replicas().len()).map(|i| {
            let id = ids[i].clone();
            async move {
                match id {
                    Some(id) => {
                        self.call(i, |b| {
                            let (bucket, key, id) = (bucket.clone(), key.clone(), id.clone());
                            async move { b.abort_multipart_upload(&bucket, &key, &id).await }
                        })
                        .await
                    }
                    None => Err(Error::NoSuchUpload),
                }
            }
        }))
        .await;
        self.log_outcomes(
            "AbortMultipartUpload",
            &format!("{bucket}/{key}"),
            &outcomes,
        );
        if outcomes.iter().any(|o| o.is_ok()) {
            return Ok(());
        }
        self.quorum_result(outcomes, |e| matches!(e, Error::NoSuchUpload))
            .map(|_| ())
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        let ids = self.decode_upload(upload_id)?.ids;
        self.settle_stragglers(bucket, key).await;
        let mut last_error = Error::NoSuchUpload;
        for i in self.read_order(&[]) {
            let Some(id) = ids[i].clone() else { continue };
            match self
                .call(i, |b| {
                    let (bucket, key, id, opts) =
                        (bucket.clone(), key.clone(), id.clone(), opts.clone());
                    async move { b.list_parts(&bucket, &key, &id, opts).await }
                })
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        // Each backend lists its own upload ids; they are put together into the ids
        // CreateMultipartUpload gave (see uploads). Pairing needs all of a key's uploads
        // from every backend, so backends are asked for full pages (S3's 1000) and the
        // caller trims to what it was asked for.
        let mut opts = opts;
        opts.max_uploads = opts.max_uploads.max(1000);
        let outcomes = self
            .fan_out("ListMultipartUploads", bucket.as_str(), |b| {
                let (bucket, opts) = (bucket.clone(), opts.clone());
                async move { b.list_multipart_uploads(&bucket, opts).await }
            })
            .await;
        let mut first_error = None;
        let mut pages = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            match o {
                Ok(page) => pages.push(Some(page)),
                Err(e) => {
                    first_error.get_or_insert(e);
                    pages.push(None);
                }
            }
        }
        if pages.iter().all(Option::is_none) {
            return Err(first_error.unwrap_or(Error::NoSuchBucket));
        }
        let mut result = self.group_listed(pages)?;
        result
            .uploads
            // Ties (uploads of one key started in the same second) broken by id, so that
            // every listing orders them alike and upload-id-marker paging holds.
            .sort_by(|a, b| {
                a.key
                    .cmp(&b.key)
                    .then(a.initiated.cmp(&b.initiated))
                    .then_with(|| a.upload_id.as_str().cmp(b.upload_id.as_str()))
            });
        Ok(result)
    }

    async fn report_corrupt(&self, bucket: &BucketName, key: &ObjectKey, replica: &str) {
        if let Some(index) = self
            .replicas()
            .iter()
            .position(|r| r.backend.name() == replica)
        {
            log::warn!(
                "{bucket}/{key}: replica {replica} served data that failed verification; repairing it"
            );
            let stamp = self.shared.clock.next();
            self.journal_missed(bucket, key, index, &stamp, false, true);
        }
    }
}

fn got_empty() -> ByteStream {
    Box::pin(futures::stream::empty())
}
