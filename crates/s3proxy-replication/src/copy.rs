//! CopyObject over replicas: each replica copies its own copy of the located source
//! version, and a replica still writing the source copies once its write is done.

use crate::Replicated;
use crate::fanout::{Outcome, missed_by};
use crate::inflight::InflightWrite;
use crate::journal::Missed;
use crate::stamp::{ETAG_KEY, VERSION_KEY, version_of};
use s3proxy_core::*;
use std::collections::HashMap;
use std::future::Future;

impl Replicated {
    /// CopyObject: locate the source's newest version, and have every replica copy its own
    /// copy of it under a new stamp.
    pub(crate) async fn replicated_copy(
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
        let stamp = self.new_stamp(dst_bucket.as_str(), dst_key.as_str());
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
        metadata
            .internal
            .insert(VERSION_KEY.into(), stamp.to_string());
        let source_version = version_of(&holders[0].info.metadata)
            .unwrap_or("")
            .to_string();
        // The ETag the copy shows when the metadata pins one (see `present`).
        let pinned_etag = metadata.internal.get(ETAG_KEY).map(ETag::new);
        // Each replica copies its own copy of the source: only if it is the version
        // located, or concurrent writes could give replicas different data under one stamp.
        // Each replica is held to its own ETag of that version: replicas of different
        // kinds give the same bytes different ETags. One that does not hold it is held
        // to the first holder's, and misses the copy unless it has the same bytes.
        let located = located_etags(self, &holders);
        let inner = CopyOptions {
            directive: MetadataDirective::Replace(metadata),
            source_conditions: Conditions {
                if_match: Some(holders[0].info.etag.as_str().to_owned()),
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
                let (sb, sk, db, dk, mut o) =
                    (sb.clone(), sk.clone(), db.clone(), dk.clone(), o.clone());
                if let Some(etag) = located.get(b.name()) {
                    o.source_conditions.if_match = Some(etag.as_str().to_owned());
                }
                async move { b.copy_object(&sb, &sk, &db, &dk, o).await }
            }
        };
        // A copy makes a version of the destination: in flight for repair and overlaps.
        let guard = InflightWrite::start(self, dst_bucket, dst_key, None);
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
        let missed = missed_by(&outcomes);
        let uncertain = !missed.is_empty();
        for i in missed {
            self.journal_missed(dst_bucket, dst_key, i, stamp.as_str(), Missed::Write);
        }
        // The ETag a HEAD of the new object shows: the pinned one, else the new copy's on
        // the replica reads go to first (a copy of a multipart object may get another
        // ETag than its source's).
        let read_first = self
            .read_order(&[])
            .into_iter()
            .find_map(|i| outcomes.get(i)?.as_ref().ok().map(|r| r.etag.clone()));
        let first = self.quorum_result(outcomes, |_| false)?;
        let first = first.ok_or_else(|| Error::Internal("no successful copy".into()))?;
        if !later.is_empty() {
            self.copy_when_written(guard, (src_bucket, src_key), later, target, copy);
        } else if uncertain {
            // A replica whose copy failed or timed out may still make it.
            guard.linger(self.longest_timeout());
        }
        let etag = pinned_etag
            .or(read_first)
            .unwrap_or_else(|| first.etag.clone());
        Ok(PutResult {
            etag,
            last_modified: stamp.time().unwrap_or(first.last_modified),
        })
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
}

/// Each holder's own backend ETag of the located version, by replica name.
fn located_etags(r: &Replicated, holders: &[crate::read::Seen]) -> HashMap<String, ETag> {
    holders
        .iter()
        .map(|h| {
            let name = r.replicas()[h.index].backend.name().to_string();
            (name, h.info.etag.clone())
        })
        .collect()
}
