//! A write of a body to every backend under the write quorum: the body teed to each, the
//! quorum's grace for the others, stragglers left to finish in the background, and the
//! backends that missed it journaled. What a write below its quorum leaves is in `quorum`.

use crate::Replicated;
use crate::fanout::{Outcome, STILL_WRITING};
use crate::inflight::{InflightWrite, WriteKind};
use crate::journal::Missed;
use crate::quorum::counts_against_backend;
use crate::tee;
use futures::StreamExt;
use s3proxy_core::*;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Which write [`Replicated::replicated_write`] does: its name in logs, and its kind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteOp {
    pub(crate) name: &'static str,
    pub(crate) kind: WriteKind,
}

impl WriteOp {
    pub(crate) const PUT_OBJECT: WriteOp = WriteOp {
        name: "PutObject",
        kind: WriteKind::Version,
    };
    pub(crate) const UPLOAD_PART: WriteOp = WriteOp {
        name: "UploadPart",
        kind: WriteKind::Part,
    };
}

impl Replicated {
    /// Write through the tee to every available backend, under the quorum.
    pub(crate) async fn replicated_write<F, Fut, T>(
        &self,
        write_op: WriteOp,
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
        let WriteOp { name: op, kind } = write_op;
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
        let mut guard = Some(InflightWrite::start_kind(self, bucket, key, kind, None));
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
        // Replicas left writing in the background once the quorum was met.
        let mut straggling: Vec<usize> = Vec::new();
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
                        self.count_failure(index, e);
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
                    // A part changes no object: a replica that ends up without it fails
                    // the completion, which journals it then (see complete_upload).
                    if kind == WriteKind::Version {
                        for &i in &stragglers {
                            self.journal_missed(bucket, key, i, stamp, Missed::Write);
                        }
                    }
                    let this = self.clone();
                    let (b, k, s) = (bucket.clone(), key.clone(), stamp.to_string());
                    let op = op.to_string();
                    // Taken once: the loop ends here.
                    let guard = guard.take();
                    if let Some(guard) = &guard {
                        guard.add_stragglers(1);
                        guard.mark_straggling(&stragglers);
                    }
                    tokio::spawn(async move {
                        // The write counts as in flight until its stragglers are done.
                        let guard = guard;
                        while let Some((index, joined)) = tasks.next().await {
                            if let Some(guard) = &guard {
                                guard.straggler_done(index);
                            }
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
                        if let Some(guard) = &guard {
                            guard.add_stragglers(-1);
                        }
                    });
                    for &i in &stragglers {
                        outcomes[i] = Some(Err(Error::ServiceUnavailable(STILL_WRITING.into())));
                    }
                    straggling = stragglers;
                }
                break;
            }
        }
        let mut abandoned = false;
        for (i, abort) in &aborts {
            if outcomes[*i].is_none() {
                abandoned = true;
                // Abandoned: its connection is dropped, so a body it has not taken whole
                // is never committed.
                abort.abort();
                outcomes[*i] = Some(Err(Error::ServiceUnavailable(format!(
                    "backend {} gave no answer in time; abandoned",
                    self.replicas()[*i].backend.name()
                ))));
            }
        }
        if let (true, Some(guard)) = (abandoned, guard.take()) {
            // An abandoned backend that had taken the whole body may still commit it after
            // the connection is gone: the key stays in flight a while longer, so repair
            // does not judge it, nor a delete miss it, before that could land.
            guard.linger(stall);
        }
        if let Some(p) = pump.take() {
            client_error = p.await.ok().and_then(|r| r.err());
        }
        let outcomes: Vec<Outcome<T>> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::ServiceUnavailable("no outcome".into()))))
            .collect();
        self.log_outcomes(op, &format!("{bucket}/{key}"), &outcomes, &straggling);
        if let Some(e) = client_error {
            // The client's body failed (bad digest, signature, short): no backend committed.
            return Err(e);
        }
        if successes < required {
            // Nothing is deleted or rolled back: see quorum::refused.
            self.refused_write(op, kind, bucket, key, stamp, &outcomes);
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
            if kind == WriteKind::Version && o.is_err() && !straggling.contains(&i) {
                self.journal_missed(bucket, key, i, stamp, Missed::Write);
            }
        }
        outcomes
            .into_iter()
            .find_map(|o| o.ok())
            .ok_or_else(|| Error::Internal("no successful write".into()))
    }
}
