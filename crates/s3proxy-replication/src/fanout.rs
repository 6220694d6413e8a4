//! Calling backends: one call with its timeout, retries and health bookkeeping, the same
//! call on every backend at once, and the one log line per fan-out with each backend's
//! outcome.

use crate::Replicated;
use crate::quorum::counts_against_backend;
use s3proxy_core::*;
use std::future::Future;
use std::time::{Duration, Instant};

/// The longest the probe of a suspect backend may take (see `health`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one backend in a fan-out.
pub(crate) type Outcome<T> = Result<T>;

fn describe<T>(outcome: &Outcome<T>, straggling: bool) -> String {
    match outcome {
        Ok(_) => "ok".into(),
        Err(_) if straggling => "still writing".into(),
        Err(e) if e.status() < 500 => e.code().to_string(),
        Err(e) => format!("failed ({e})"),
    }
}

/// The error text of the outcome given to a replica still writing when the quorum was met:
/// not a failure; it finishes in the background and is checked by the repair pass. Which
/// replicas are straggling is passed around by index (see `log_outcomes`), never read
/// back from this text.
pub(crate) const STILL_WRITING: &str = "still writing";

/// The replicas of a fan-out that missed it (unreachable, failing, still writing): the
/// ones to journal.
pub(crate) fn missed_by<T>(outcomes: &[Outcome<T>]) -> Vec<usize> {
    outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Err(e) if e.is_transient()))
        .map(|(i, _)| i)
        .collect()
}

impl Replicated {
    /// Call one backend with its timeout, retrying transient failures, updating health.
    pub(crate) async fn call<T, F, Fut>(&self, index: usize, f: F) -> Outcome<T>
    where
        F: Fn(DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.call_checked(index, f, false).await
    }

    /// [`Self::call`], or with `probe` a call that goes through an open circuit (the
    /// health probe that may close it).
    pub(crate) async fn call_checked<T, F, Fut>(
        &self,
        index: usize,
        f: F,
        probe: bool,
    ) -> Outcome<T>
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
                    if timed_out {
                        if r.health.unresponsive() {
                            log::warn!("backend {}: circuit opened: {e}", r.backend.name());
                        }
                    } else if counts_against_backend(e) {
                        self.count_failure(index, e);
                    }
                    // Otherwise the backend answered, with a failure of this request only
                    // (a key it cannot hold, say), or the proxy failed the call itself:
                    // that is no reason to stop sending it others.
                    // A backend that did not answer in time is not asked again: the
                    // request moves on to the other replicas instead of waiting twice.
                    if !timed_out
                        && !probe
                        && attempt < self.shared.opts.retries
                        && r.health.is_available()
                        && !r.health.is_suspect()
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

    /// Count a failure that says backend `index` may be down (also one of a probe, whose
    /// circuit another call may have closed meanwhile). After several in a row, ask
    /// it a request that names no object, in the background: only when that fails too is
    /// the circuit opened, so that one key a backend cannot serve (it drops the connection
    /// on it, say) does not take the backend out for every other request.
    pub(crate) fn count_failure(&self, index: usize, e: &Error) {
        let r = &self.replicas()[index];
        if r.health.failure() != crate::health::Failure::Suspect {
            return;
        }
        let this = self.clone();
        let cause = e.to_string();
        tokio::spawn(async move {
            let r = &this.replicas()[index];
            // Short: a backend that cannot list its buckets in this time is better skipped
            // (the background probe, with the full timeout, closes the circuit again).
            let answer =
                tokio::time::timeout(r.timeout.min(PROBE_TIMEOUT), r.backend.list_buckets()).await;
            let reachable = match &answer {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => !counts_against_backend(e),
                Err(_) => false,
            };
            if r.health.confirmed(reachable) {
                let probe = if reachable {
                    "probes answered but nothing else succeeded: backing off"
                } else {
                    "and a failed probe"
                };
                log::warn!(
                    "backend {}: circuit opened after repeated failures ({cause}) {probe}",
                    r.backend.name()
                );
            } else if reachable {
                log::info!(
                    "backend {}: answers a probe after repeated failures ({cause}); those were the requests' own, circuit stays closed",
                    r.backend.name()
                );
            }
        });
    }

    /// Run `f` on every backend concurrently; log one line with each outcome.
    pub(crate) async fn fan_out<T, F, Fut>(&self, op: &str, target: &str, f: F) -> Vec<Outcome<T>>
    where
        F: Fn(DynBackend) -> Fut + Clone,
        Fut: Future<Output = Result<T>>,
    {
        self.fan_out_except(op, target, &[], f).await
    }

    /// [`Self::fan_out`], except on the replicas in `later`, whose outcome is "still
    /// writing": the caller runs `f` there once they are ready.
    pub(crate) async fn fan_out_except<T, F, Fut>(
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
        self.log_outcomes(op, target, &outcomes, later);
        outcomes
    }

    /// One line with each backend's outcome; `straggling` are the replicas still writing
    /// in the background (not failures).
    pub(crate) fn log_outcomes<T>(
        &self,
        op: &str,
        target: &str,
        outcomes: &[Outcome<T>],
        straggling: &[usize],
    ) {
        let line = self
            .replicas()
            .iter()
            .zip(outcomes)
            .enumerate()
            .map(|(i, (r, o))| {
                format!(
                    "{}={}",
                    r.backend.name(),
                    describe(o, straggling.contains(&i))
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        if outcomes
            .iter()
            .enumerate()
            .any(|(i, o)| matches!(o, Err(e) if e.status() >= 500 && !straggling.contains(&i)))
        {
            log::warn!("{op} {target}: {line}");
        } else {
            log::info!("{op} {target}: {line}");
        }
    }
}
