//! Hedged reads: a read whose replica has not answered within a short delay asks another
//! replica too, takes the first good answer and drops (cancels) the other call, so one
//! hung backend costs a request that delay instead of the whole backend timeout.
//!
//! The delay is per backend: the 95th percentile of its recent first-answer latencies
//! (HEAD answers, GET response heads), clamped to [`Hedge::MIN`]..[`Hedge::MAX`], with
//! [`Hedge::DEFAULT`] before it has samples; or fixed, or off ([`Hedge`]). A healthy
//! backend answers within its own p95 about 95% of the time, and a hedge is only sent
//! when the first call is slower, so hedging costs a few percent more backend requests.
//!
//! Two reads are hedged:
//!
//! - **The GET's first response** ([`Replicated::first_answer`]): every candidate holds
//!   the located version (the same stamp, asked with If-Match on its ETag), so whichever
//!   answers first serves the same bytes; no correctness question arises.
//! - **The metadata lookup of `locate`** ([`Replicated::fan_out_hedged`]): here a replica
//!   that does not answer could hold a newer version than every one that did. So locate
//!   stops waiting for it only when the answers so far *settle* the key: at least
//!   N − W + 1 replicas answered, the newest version among them is under an
//!   authenticated stamp, and every answer that differs from it (an older version,
//!   "missing") comes from a replica the journal knows missed a write of the key. W is
//!   the write quorum. Every acknowledged write reached W replicas, so any N − W + 1 of
//!   them include one that took the newest acknowledged write: nobody still to answer
//!   holds a newer acknowledged version (a write still in flight is concurrent with the
//!   read and may be seen or not either way). The differences must be explained because
//!   replicas can go back: a wiped disk answers NoSuchKey, a restored backup an older
//!   version, and neither is in the journal. An unexplained difference, a newest version
//!   under an unauthenticated stamp (written around the proxy), or a key nobody has
//!   means waiting for every replica as before. With W = 1 the
//!   newest version may be on one replica only, N − W + 1 is every replica, and locate
//!   waits for all of them as before: hedging then speeds up the GET's body only. A
//!   replica not waited for is treated exactly like an unreachable one: its outcome is
//!   a ServiceUnavailable, it is neither counted missing nor journaled, and its health is
//!   not charged (it was not given its timeout).
//!
//! A call dropped unanswered gives no latency sample and does not count against the
//! backend's circuit (it was not given its timeout). So a hung backend's circuit opens
//! only when a call that is not hedged (a write, a listing, a repair) times out on it, as
//! before; until then each read pays at most its hedge delay there, and that delay stays
//! what its last answers said (a sample of the time given would make it creep towards
//! [`Hedge::MAX`]). The price: a backend that turns slower than its recorded delay loses
//! every race, one extra request per read, until its answers come in time again. Letting
//! dropped calls finish in the background (recording their latency, or their timeout)
//! would fix both; not done yet.
//!
//! ListObjects is not hedged: a merged listing needs every replica's page, for a key
//! written with W = 1 may be listed by one replica only.

use crate::Replicated;
use crate::fanout::Outcome;
use crate::options::Hedge;
use futures::StreamExt;
use futures::future::Either;
use futures::stream::FuturesUnordered;
use s3proxy_core::*;
use std::future::Future;
use std::time::{Duration, Instant};

/// Whether an outcome is an answer about the key itself (not a failure to answer).
pub(crate) fn definitive<T>(outcome: &Outcome<T>) -> bool {
    matches!(
        outcome,
        Ok(_) | Err(Error::NoSuchKey | Error::NoSuchBucket | Error::PreconditionFailed)
    )
}

impl Replicated {
    /// How long a read waits for replica `index` before asking another one too; `None`
    /// with hedging off.
    pub(crate) fn hedge_delay(&self, index: usize) -> Option<Duration> {
        match self.shared.opts.hedge {
            Hedge::Off => None,
            Hedge::After(d) => Some(d),
            Hedge::Adaptive => Some(
                self.replicas()[index]
                    .health
                    .read_p95()
                    .map_or(Hedge::DEFAULT, |d| d.clamp(Hedge::MIN, Hedge::MAX)),
            ),
        }
    }

    /// [`Self::call`] for a read: its first answer's latency is a sample of the hedge delay.
    pub(crate) async fn read_call<T, F, Fut>(&self, index: usize, f: F) -> Outcome<T>
    where
        F: Fn(DynBackend) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let outcome = self.call(index, f).await;
        if definitive(&outcome) {
            self.replicas()[index]
                .health
                .read_answered(started.elapsed());
        }
        outcome
    }

    /// The first good answer to `f` (given the position in `candidates` and the backend)
    /// from `candidates` (replica indexes, in the order to ask them): the first is asked,
    /// and the next one too whenever the latest asked has not answered within its hedge
    /// delay, or at once when one fails. Returns the position in `candidates` that
    /// answered, with its answer, dropping the calls still running; or every failure,
    /// with its position, in the order they came.
    pub(crate) async fn first_answer<T, F, Fut>(
        &self,
        candidates: &[usize],
        f: F,
    ) -> std::result::Result<(usize, T), Vec<(usize, Error)>>
    where
        F: Fn(usize, DynBackend) -> Fut + Clone,
        Fut: Future<Output = Result<T>>,
    {
        let launch = |position: usize| {
            let f = f.clone();
            async move {
                let outcome = self
                    .read_call(candidates[position], move |b| f(position, b))
                    .await;
                (position, outcome)
            }
        };
        let mut running = FuturesUnordered::new();
        let mut failures = vec![];
        let mut next = 0;
        loop {
            if running.is_empty() {
                if next == candidates.len() {
                    return Err(failures);
                }
                running.push(launch(next));
                next += 1;
            }
            let delay = if next < candidates.len() {
                self.hedge_delay(candidates[next - 1])
            } else {
                None
            };
            let hedge = match delay {
                Some(d) => Either::Left(tokio::time::sleep(d)),
                None => Either::Right(futures::future::pending::<()>()),
            };
            match futures::future::select(running.next(), std::pin::pin!(hedge)).await {
                Either::Left((Some((position, Ok(answer))), _)) => return Ok((position, answer)),
                Either::Left((Some((position, Err(e))), _)) => {
                    failures.push((position, e));
                    if next < candidates.len() && !running.is_empty() {
                        running.push(launch(next));
                        next += 1;
                    }
                }
                Either::Left((None, _)) => {}
                Either::Right(_) => {
                    log::debug!(
                        "backend {}: no answer within {:?}; asking {} too",
                        self.replicas()[candidates[next - 1]].backend.name(),
                        delay.unwrap_or_default(),
                        self.replicas()[candidates[next]].backend.name()
                    );
                    self.replicas()[candidates[next - 1]].counters.hedged();
                    running.push(launch(next));
                    next += 1;
                }
            }
        }
    }

    /// [`Self::fan_out`] for a read that can do without stragglers: every replica is
    /// asked; once every one still running has had its hedge delay and `settled` says the
    /// outcomes so far (`None`: no answer yet) decide the read, the rest are dropped and
    /// their outcome is a ServiceUnavailable, as for an unreachable replica.
    pub(crate) async fn fan_out_hedged<T, F, Fut>(
        &self,
        op: &str,
        target: &str,
        f: F,
        settled: impl Fn(&[Option<Outcome<T>>]) -> bool,
    ) -> Vec<Outcome<T>>
    where
        F: Fn(DynBackend) -> Fut + Clone,
        Fut: Future<Output = Result<T>>,
    {
        let n = self.replicas().len();
        let started = Instant::now();
        let mut outcomes: Vec<Option<Outcome<T>>> = (0..n).map(|_| None).collect();
        let mut running: FuturesUnordered<_> = (0..n)
            .map(|i| {
                let f = f.clone();
                async move { (i, self.read_call(i, f).await) }
            })
            .collect();
        while !running.is_empty() {
            let deadline = (0..n)
                .filter(|i| outcomes[*i].is_none())
                .map(|i| self.hedge_delay(i).map(|d| started + d))
                .try_fold(started, |latest, d| d.map(|d| d.max(latest)));
            if let Some(deadline) = deadline
                && Instant::now() >= deadline
                && settled(&outcomes)
            {
                break;
            }
            let wait = match deadline.filter(|d| *d > Instant::now()) {
                Some(d) => Either::Left(tokio::time::sleep_until(d.into())),
                None => Either::Right(futures::future::pending::<()>()),
            };
            if let Either::Left((Some((i, outcome)), _)) =
                futures::future::select(running.next(), std::pin::pin!(wait)).await
            {
                outcomes[i] = Some(outcome);
            }
        }
        drop(running);
        let outcomes: Vec<Outcome<T>> = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    self.replicas()[i].counters.hedged();
                    Err(Error::ServiceUnavailable(format!(
                        "backend {} had not answered after {:?}; not waited for",
                        self.replicas()[i].backend.name(),
                        started.elapsed()
                    )))
                })
            })
            .collect();
        self.log_outcomes(op, target, &outcomes, &[]);
        outcomes
    }
}
