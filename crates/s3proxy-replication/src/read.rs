//! Reading: every replica's view of a key, the newest version and who holds it (stale and
//! missing replicas are journaled for repair on the way), the order replicas are read in,
//! and a GET served from the first holder that answers. Both the lookup and the GET's
//! first response are hedged (see `hedge`).

use crate::Replicated;
use crate::failover::Failover;
use crate::journal::Missed;
use crate::options::ReadPreference;
use crate::stamp::{ETAG_KEY, Rank, VERSION_KEY, stamp_time};
use s3proxy_core::*;

/// What one attempt at a GET came to.
// Returned once per attempt and unpacked at once: boxing would cost an allocation per GET.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ReadAttempt {
    /// Served by a holder of the located version.
    Served(GetResult),
    /// Every holder had replaced the located version by a newer one meanwhile: locate
    /// again.
    Changed,
}

/// A replica's view of one key.
#[derive(Clone)]
pub(crate) struct Seen {
    pub(crate) index: usize,
    pub(crate) info: ObjectInfo,
    /// How its version ranks (see `stamp`).
    pub(crate) rank: Rank,
}

impl Replicated {
    /// Present a replica's info as the client sees it: the version's time and ETag.
    pub(crate) fn present(&self, mut info: ObjectInfo) -> ObjectInfo {
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
            info.etag = ETag::new(etag);
        }
        info
    }

    /// Order of replicas to read from.
    pub(crate) fn read_order(&self, exclude: &[String]) -> Vec<usize> {
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
    pub(crate) async fn locate(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        op: &str,
    ) -> Result<Vec<Seen>> {
        self.check_bucket_not_deleted(bucket)?;
        let target = format!("{bucket}/{key}");
        // Replicas that have not answered within their hedge delay are not waited for
        // once at least N - W + 1 replicas answered and their answers settle the key:
        // the newest of them is under an authenticated stamp, and every answer that
        // differs from it (an older version, "missing") is from a replica the journal
        // knows missed a write of the key. Any N - W + 1 replicas include one that took
        // the newest acknowledged write, unless one of them went back (a wiped disk
        // answers "missing", a restored backup an older version): an unexplained
        // difference means waiting for every replica, as does a key nobody has, or a
        // newest version written around the proxy (an unauthenticated stamp). See `hedge`.
        let read_quorum = self.replicas().len() - self.required() + 1;
        let stamp_key = &self.shared.stamp_key;
        let settled = |outcomes: &[Option<Result<ObjectInfo>>]| {
            let answers: Vec<(usize, &Result<ObjectInfo>)> = outcomes
                .iter()
                .enumerate()
                .filter_map(|(i, o)| o.as_ref().map(|o| (i, o)))
                .filter(|(_, o)| crate::hedge::definitive(*o))
                .collect();
            if answers.len() < read_quorum {
                return false;
            }
            let rank = |info: &ObjectInfo| {
                stamp_key.rank(
                    bucket.as_str(),
                    key.as_str(),
                    crate::stamp::version_of(&info.metadata),
                )
            };
            let Some(newest) = answers
                .iter()
                .filter_map(|(_, o)| o.as_ref().ok().map(rank))
                .max()
            else {
                return false;
            };
            if newest.trust != crate::stamp::Trust::Authenticated {
                return false;
            }
            let tombstone = self.shared.journal.tombstone(bucket.as_str(), key.as_str());
            let behind = self.shared.journal.behind(
                bucket.as_str(),
                key.as_str(),
                tombstone.as_deref().unwrap_or(""),
            );
            answers.iter().all(|(i, o)| {
                let agrees = o.as_ref().is_ok_and(|info| rank(info) == newest);
                agrees
                    || behind
                        .iter()
                        .any(|b| b == self.replicas()[*i].backend.name())
            })
        };
        let outcomes = self
            .fan_out_hedged(
                op,
                &target,
                |b| {
                    let (bucket, key) = (bucket.clone(), key.clone());
                    async move { b.head_object(&bucket, &key, GetOptions::default()).await }
                },
                settled,
            )
            .await;
        let mut seen = vec![];
        let mut missing = vec![];
        let mut first_error = None;
        let mut no_bucket = 0;
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(info) => {
                    let rank = self.rank_seen(bucket.as_str(), key.as_str(), index, &info.metadata);
                    seen.push(Seen { index, info, rank })
                }
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
        let newest = seen.iter().map(|s| s.rank.clone()).max();
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
        if tombstone
            .as_deref()
            .is_some_and(|t| t >= newest.stamp.as_str())
        {
            // Deleted through the proxy; some replica has not applied the delete yet.
            return Err(Error::NoSuchKey);
        }
        self.observe(bucket.as_str(), key.as_str(), &newest);
        let newest_rank = newest;
        let newest = newest_rank.stamp.clone();
        for s in &seen {
            if s.rank < newest_rank {
                log::info!(
                    "{target}: replica {} holds an older version; repairing",
                    self.replicas()[s.index].backend.name()
                );
                self.journal_missed(bucket, key, s.index, &newest, Missed::Write);
            }
        }
        for index in missing {
            log::info!(
                "{target}: replica {} is missing the object; repairing",
                self.replicas()[index].backend.name()
            );
            self.journal_missed(bucket, key, index, &newest, Missed::Write);
        }
        let order = self.read_order(&[]);
        let mut holders: Vec<Seen> = seen.into_iter().filter(|s| s.rank == newest_rank).collect();
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
    /// [`ReadAttempt::Changed`], for [`Backend::get_object`] to locate again.
    pub(crate) async fn get_located(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: &GetOptions,
    ) -> Result<ReadAttempt> {
        let mut holders = self.locate(bucket, key, "GetObject/locate").await?;
        let excluded = s3proxy_core::replicas::excluded(opts);
        holders.retain(|s| {
            !excluded
                .iter()
                .any(|n| n == self.replicas()[s.index].backend.name())
        });
        let Some(first) = holders.first() else {
            return Err(Error::Corrupt(format!(
                "{bucket}/{key}: no replica left that has not failed verification"
            )));
        };
        let mut info = self.present(first.info.clone());
        opts.conditions.check(&info, false)?;
        // A part's bytes are known once a replica answers for it; a failover mid-body
        // then reads them as a range.
        opts.refuse_part_with_range()?;
        let part = opts.part_number;
        let mut range = match part {
            Some(_) => None,
            None => opts.range.map(|r| r.resolve(info.size)).transpose()?,
        };
        let (start, end) = range.unwrap_or((0, info.size.saturating_sub(1)));
        let inner_opts = |holder: &Seen| GetOptions {
            range: if info.size == 0 || part.is_some() {
                None
            } else {
                Some(ByteRange::FromTo(start, end))
            },
            part_number: part,
            conditions: Conditions {
                if_match: Some(holder.info.etag.as_str().to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        // Every holder has the located version, so whichever answers first serves the
        // same bytes: a holder that has not answered within its hedge delay is raced by
        // the next (see `hedge`).
        let candidates: Vec<usize> = holders.iter().map(|h| h.index).collect();
        let got = self
            .first_answer(&candidates, |position, b| {
                let (bucket, key) = (bucket.clone(), key.clone());
                let o = inner_opts(&holders[position]);
                async move { b.get_object(&bucket, &key, o).await }
            })
            .await;
        let mut last_error = None;
        let mut changed = false;
        match got {
            Ok((position, got)) => {
                if part.is_some() {
                    range = got.range;
                    info.parts_count = got.info.parts_count;
                }
                let (start, end) = range.unwrap_or((0, info.size.saturating_sub(1)));
                let holder = &holders[position];
                let backend = &self.replicas()[holder.index].backend;
                // For a layer above that verifies the data: which replica to exclude, and
                // this layer to report it to, when it fails.
                let extensions = s3proxy_core::replicas::serving(
                    backend.name(),
                    std::sync::Arc::new(self.clone()),
                );
                // Failover continues from the other holders, in read order.
                let mut rest: Vec<usize> = vec![holder.index];
                rest.extend(candidates.iter().filter(|i| **i != holder.index));
                let failover = Failover {
                    this: self.clone(),
                    bucket: bucket.clone(),
                    key: key.clone(),
                    etag: holder.info.etag.clone(),
                    holders: rest,
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
                return Ok(ReadAttempt::Served(GetResult {
                    info,
                    range,
                    body,
                    extensions,
                }));
            }
            Err(failures) => {
                for (position, e) in failures {
                    match e {
                        Error::PreconditionFailed => {
                            // Overwritten since it was located.
                            changed = true;
                        }
                        // Every holder has the same version, hence the same parts: no
                        // other replica's failure (a server that cannot serve parts)
                        // says more.
                        Error::InvalidPartNumber => return Err(Error::InvalidPartNumber),
                        e => {
                            log::warn!(
                                "GetObject {bucket}/{key}: {} failed ({e}); trying the next replica",
                                self.replicas()[holders[position].index].backend.name()
                            );
                            last_error = Some(e);
                        }
                    }
                }
            }
        }
        // A replica that failed outright says more than one that moved on.
        match last_error {
            Some(e) => Err(e),
            None if changed => Ok(ReadAttempt::Changed),
            None => Err(Error::NoSuchKey),
        }
    }
}

fn got_empty() -> ByteStream {
    Box::pin(futures::stream::empty())
}
