//! Repair of one journaled entry: recording what a replica missed, bringing that replica
//! to the newest version (or applying a journaled delete, or a bucket's deletion), and
//! backing off an entry whose repair keeps failing.

use crate::Replicated;
use crate::inflight::InflightWrite;
use crate::journal::{Entry, Missed, Target};
use crate::stamp::ETAG_KEY;
use s3proxy_core::*;
use std::time::{Duration, Instant};

/// The longest a journal entry whose repair keeps failing waits between attempts.
const MAX_REPAIR_BACKOFF: Duration = Duration::from_secs(300);
/// A newer journaled operation on a key whose repair failed is tried again after this, not
/// after the whole backoff (it may be what repairs it), yet not on every pass.
const MIN_REPAIR_RETRY: Duration = Duration::from_secs(1);

impl Replicated {
    /// Record that `index` missed the operation stamped `stamp` on a key.
    pub(crate) fn journal_missed(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        index: usize,
        stamp: &str,
        missed: Missed,
    ) {
        let entry = Entry::new(
            bucket.as_str(),
            Target::Object(key.to_string()),
            self.replicas()[index].backend.name(),
            stamp,
            missed,
        );
        if let Err(e) = self.shared.journal.record(entry) {
            log::error!("cannot record a missed write of {bucket}/{key}: {e}");
        }
        self.shared.wake_repair.notify_one();
    }

    /// Replace `backend`'s replica of a key from the other replicas now, whatever its
    /// version stamp says: what `s3proxy scrub` does with a replica that failed
    /// authentication. The repair goes through the journal (a forced entry), so when it
    /// cannot be done now (the backend or every good replica unreachable) the entry stays
    /// for the repair pass. Returns whether the replica was replaced (or the key turned
    /// out deleted).
    pub async fn repair_replica(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        backend: &str,
    ) -> Result<bool> {
        let Some(index) = self
            .replicas()
            .iter()
            .position(|r| r.backend.name() == backend)
        else {
            return Err(Error::InvalidArgument(format!(
                "no backend named {backend:?}"
            )));
        };
        let stamp = self.shared.clock.next();
        self.journal_missed(bucket, key, index, stamp.as_str(), Missed::Corrupt);
        let Some(entry) = self
            .shared
            .journal
            .pending_in(bucket.as_str())
            .into_iter()
            .find(|e| e.target.key() == Some(key.as_str()) && e.backend == backend)
        else {
            return Err(Error::Internal(
                "the forced repair was not journaled".into(),
            ));
        };
        let done = self.repair_entry(&entry).await?;
        if done {
            self.shared.journal.remove(&entry)?;
        }
        Ok(done)
    }

    /// Repair one journal entry; clear it when done, log why when it failed.
    /// An entry that failed waits 1 s, 2 s, 4 s… (at most [`MAX_REPAIR_BACKOFF`]) before
    /// its next attempt.
    pub(crate) async fn repair_and_clear(&self, entry: &Entry) {
        let id = entry.id();
        let backoff = || {
            self.shared
                .repair_backoff
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if backoff()
            .get(&id)
            // A newer operation missed on the key is tried at once: what failed was
            // another write's repair.
            .is_some_and(|(_, not_before, stamp, failed_at)| {
                let now = Instant::now();
                now < *not_before && (*stamp == entry.stamp || now < *failed_at + MIN_REPAIR_RETRY)
            })
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
                let failures = map.get(&id).map_or(0, |(n, _, _, _)| *n) + 1;
                let wait = Duration::from_secs(1 << failures.min(16)).min(MAX_REPAIR_BACKOFF);
                let now = Instant::now();
                map.insert(id, (failures, now + wait, entry.stamp.clone(), now));
                log::warn!(
                    "repair {}/{} on {} failed ({failures} times; next try in {wait:?}): {e}",
                    entry.bucket,
                    entry.target,
                    entry.backend
                );
            }
        }
    }

    /// Bring one journaled key up to date on its backend. Returns whether the entry is done.
    pub(crate) async fn repair_entry(&self, entry: &Entry) -> Result<bool> {
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
        let Target::Object(entry_key) = &entry.target else {
            return self.repair_bucket_deletion(target, &entry.bucket).await;
        };
        if self.write_in_flight(&entry.bucket, entry_key) {
            // Decide once the writes settle; an older one may still land.
            return Ok(false);
        }
        let bucket = BucketName::new(entry.bucket.clone())?;
        let key = ObjectKey::new(entry_key.clone())?;
        // A repair writes too: a client write or delete that overlaps it must not be undone
        // by an older version the repair read before it (see InflightWrite).
        let guard = InflightWrite::start(self, &bucket, &key, None);
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
        let mut newest: Option<(crate::stamp::Rank, usize, ObjectInfo)> = None;
        let mut target_version = None;
        let mut target_rank = None;
        for (i, v) in views.into_iter().enumerate() {
            match v {
                Ok(info) => {
                    let version = self.rank_seen(&entry.bucket, entry_key, i, &info.metadata);
                    if i == target {
                        target_version = Some(version.stamp.clone());
                        target_rank = Some(version.clone());
                        if entry.forced() {
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
        let tombstone = self.shared.journal.tombstone(&entry.bucket, entry_key);
        // A forced repair (a replica that failed authentication) replaces the target's
        // copy by the newest other one. It never deletes without a journaled delete (no
        // other replica holding the key means the target's copy may be the only one) and
        // never puts an older version over a newer one: a corrupt newest version is
        // reported, not rolled back.
        if entry.forced() {
            let newest_other = newest.as_ref().map(|(v, _, _)| v);
            if newest_other.is_none() && tombstone.is_none() {
                if unreachable {
                    return Ok(false);
                }
                log::error!(
                    "repair {}/{} on {}: no other replica holds it; left as it is",
                    entry.bucket,
                    entry.target,
                    entry.backend
                );
                return Ok(true);
            }
            if let (Some(other), Some(own)) = (newest_other, &target_rank)
                && other < own
            {
                log::error!(
                    "repair {}/{} on {}: it holds a newer version ({}) than any other replica                      ({}); not rolled back",
                    entry.bucket,
                    entry.target,
                    entry.backend,
                    own.stamp,
                    other.stamp
                );
                return Ok(true);
            }
        }
        let target_backend = self.replicas()[target].backend.clone();
        let deleted = match (&newest, &tombstone) {
            (None, _) => true,
            (Some((v, _, _)), Some(t)) => *t >= v.stamp,
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
                    entry.target,
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
        let version = version.stamp;
        if !entry.forced() && target_version.as_deref() == Some(version.as_str()) {
            return Ok(true);
        }
        if source == target {
            return Ok(true);
        }
        log::info!(
            "repair {}/{} on {}: copying version {version} from {}",
            entry.bucket,
            entry.target,
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
                        if_match: Some(info.etag.as_str().to_owned()),
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
            .or_insert_with(|| got.info.etag.as_str().to_owned());
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
            Err(e) => {
                if e.is_transient() {
                    // The target may have taken the whole copy and still store it.
                    guard.linger(self.replicas()[target].timeout);
                }
                Err(e)
            }
            Ok(_) => {
                self.replicas()[target].counters.repaired(length);
                Ok(true)
            }
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
}
