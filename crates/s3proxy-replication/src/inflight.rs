//! What is in flight per key (writes, deletes, repairs, and replicas still writing an
//! acknowledged write): overlapping operations on a key journal every replica for a check,
//! repair waits for a key's writes to settle, and copies and completions wait for the
//! replicas still writing.

use crate::Replicated;
use crate::journal::{Entry, Missed, Target};
use s3proxy_core::*;
use std::time::{Duration, Instant};

/// What is in flight on one key: how many writes, deletes and repairs, whether two ever
/// overlapped, and the newest delete among them.
#[derive(Default)]
pub(crate) struct InflightSlot {
    pub(crate) count: usize,
    /// Of `count`, the operations that make or remove a version of the key (all but the
    /// parts of an upload): only two of those overlapping can leave replicas disagreeing.
    pub(crate) versions: usize,
    pub(crate) contended: bool,
    pub(crate) tombstone: Option<String>,
    /// Writes acknowledged to the client whose slower replicas are still writing.
    pub(crate) stragglers: usize,
    /// The replicas still writing for those writes (one entry per write and replica).
    pub(crate) straggling: Vec<usize>,
}

/// Marks a write, delete or repair of a key as in flight. When operations on one key
/// overlapped, the last to finish journals every replica for a check: a slower, older write
/// (or a repair that read an older version) may have landed on a replica after a newer one,
/// and only comparing version stamps tells. The check carries the newest overlapping
/// delete's tombstone, so it deletes what an older write brought back instead of spreading it.
pub(crate) struct InflightWrite {
    this: Replicated,
    id: (String, String),
    kind: WriteKind,
}

/// What an in-flight write does to its key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WriteKind {
    /// A PUT, copy, completion, delete or repair: the key's version changes.
    Version,
    /// A part of a multipart upload of the key: the object is untouched until the upload
    /// completes, so parts written side by side (every client uploads them so) are no
    /// overlap to check, but completion and repair still wait for them.
    Part,
}

impl InflightWrite {
    /// A write of a version of the key (see [`WriteKind::Version`]). `tombstone`: the
    /// stamp of the delete this is, if it is one.
    pub(crate) fn start(
        this: &Replicated,
        bucket: &BucketName,
        key: &ObjectKey,
        tombstone: Option<String>,
    ) -> Self {
        Self::start_kind(this, bucket, key, WriteKind::Version, tombstone)
    }

    /// A write of the given kind; only version writes overlapping each other are checked.
    pub(crate) fn start_kind(
        this: &Replicated,
        bucket: &BucketName,
        key: &ObjectKey,
        kind: WriteKind,
        tombstone: Option<String>,
    ) -> Self {
        let id = (bucket.to_string(), key.to_string());
        let mut map = this.inflight();
        let slot = map.entry(id.clone()).or_default();
        slot.count += 1;
        if kind == WriteKind::Version {
            slot.versions += 1;
            if slot.versions > 1 {
                slot.contended = true;
            }
        }
        slot.tombstone = slot.tombstone.take().max(tombstone);
        InflightWrite {
            this: this.clone(),
            id,
            kind,
        }
    }

    /// Count this write's background replicas (+1 when it leaves them behind, -1 when
    /// they are done).
    pub(crate) fn add_stragglers(&self, delta: isize) {
        let mut map = self.this.inflight();
        if let Some(slot) = map.get_mut(&self.id) {
            slot.stragglers = slot.stragglers.saturating_add_signed(delta);
        }
    }

    /// Mark replicas as still writing this key in the background.
    pub(crate) fn mark_straggling(&self, replicas: &[usize]) {
        if let Some(slot) = self.this.inflight().get_mut(&self.id) {
            slot.straggling.extend_from_slice(replicas);
        }
    }

    /// One replica marked by [`Self::mark_straggling`] is done, well or not.
    pub(crate) fn straggler_done(&self, replica: usize) {
        if let Some(slot) = self.this.inflight().get_mut(&self.id)
            && let Some(at) = slot.straggling.iter().position(|r| *r == replica)
        {
            slot.straggling.swap_remove(at);
        }
    }

    /// Keep the key in flight for `duration` more, in the background: a backend whose
    /// call was abandoned or timed out may still apply it.
    pub(crate) fn linger(self, duration: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            drop(self);
        });
    }

    /// Whether another operation on the key overlapped this one so far.
    pub(crate) fn overlapped(&self) -> bool {
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
            if self.kind == WriteKind::Version {
                slot.versions -= 1;
            }
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
                // A check, carrying the newest delete the contended writes saw.
                let entry = Entry {
                    tombstone: tombstone.clone(),
                    ..Entry::new(
                        bucket.as_str(),
                        Target::Object(key.to_string()),
                        replica.backend.name(),
                        stamp.clone(),
                        Missed::Write,
                    )
                };
                if let Err(e) = self.this.shared.journal.record(entry) {
                    log::error!("cannot record a check of {bucket}/{key}: {e}");
                }
            }
            self.this.shared.wake_repair.notify_one();
        }
    }
}

impl Replicated {
    /// Keys with writes in flight (stragglers included).
    pub fn writes_in_flight(&self) -> usize {
        self.inflight().len()
    }

    pub(crate) fn write_in_flight(&self, bucket: &str, key: &str) -> bool {
        self.inflight()
            .contains_key(&(bucket.to_string(), key.to_string()))
    }

    /// The in-flight table (a poisoned lock still holds consistent counts).
    pub(crate) fn inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), InflightSlot>> {
        self.shared
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Wait, at most [`Self::longest_timeout`], until no in-flight slot is `busy`.
    pub(crate) async fn wait_inflight(
        &self,
        busy: impl Fn(&(String, String), &InflightSlot) -> bool,
    ) {
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
    pub(crate) fn straggling(&self, bucket: &BucketName, key: &ObjectKey) -> Vec<usize> {
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

    /// Wait until no acknowledged write to the key has replicas still writing. A multipart
    /// upload acknowledges a part once the quorum holds it; listing or completing the
    /// upload right after must see every replica's copy of every part, or the slower
    /// replicas would fail the completion.
    pub(crate) async fn settle_stragglers(&self, bucket: &BucketName, key: &ObjectKey) {
        self.wait_inflight(|(b, k), slot| {
            b == bucket.as_str() && k == key.as_str() && slot.stragglers > 0
        })
        .await;
    }

    /// Before a bucket goes: wait for writes to it still in flight, then apply the
    /// journal's pending entries for it, so replicas hold no leftovers the proxy hides.
    pub(crate) async fn settle_bucket(&self, bucket: &BucketName) {
        self.wait_inflight(|(b, _), _| b == bucket.as_str()).await;
        for entry in self.shared.journal.pending_in(bucket.as_str()) {
            self.repair_and_clear(&entry).await;
        }
    }
}

impl Replicated {
    /// What every replica says of the bucket's contents: the first that lists an object or
    /// an upload, and those that could not be asked: an outage, a timeout, overload. A
    /// replica without the bucket, or one that answered the listing with an error of its
    /// own (a call it does not implement), was reached.
    pub(crate) async fn bucket_contents(&self, bucket: &BucketName) -> BucketContents {
        let checks = (0..self.replicas().len()).map(|i| async move {
            self.call(
                i,
                |b| async move { list::holds_anything(&*b, bucket).await },
            )
            .await
        });
        let answers = futures::future::join_all(checks).await;
        BucketContents {
            holder: answers.iter().position(|a| matches!(a, Ok(true))),
            unreachable: answers
                .iter()
                .enumerate()
                .filter(|(_, a)| matches!(a, Err(e) if crate::quorum::counts_against_backend(e)))
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// After a DeleteBucket some replicas refused as not empty: create the bucket again on
    /// those that deleted it, so that it stays whole.
    pub(crate) async fn recreate_bucket_where_deleted(
        &self,
        bucket: &BucketName,
        outcomes: &[crate::fanout::Outcome<()>],
    ) {
        for (i, _) in outcomes.iter().enumerate().filter(|(_, o)| o.is_ok()) {
            let name = self.replicas()[i].backend.name();
            match self
                .call(i, |b| async move { b.create_bucket(bucket).await })
                .await
            {
                Ok(()) | Err(Error::BucketAlreadyOwnedByYou) => {
                    log::warn!(
                        "DeleteBucket {bucket}: refused on another replica; recreated on {name}"
                    )
                }
                Err(e) => log::error!(
                    "DeleteBucket {bucket}: refused on another replica, and {name} cannot recreate it: {e}"
                ),
            }
        }
    }
}

/// What the replicas hold of a bucket, as DeleteBucket checks it before deleting anywhere.
pub(crate) struct BucketContents {
    /// The first replica that lists an object or an upload.
    pub(crate) holder: Option<usize>,
    /// The replicas that could not be asked.
    pub(crate) unreachable: Vec<usize>,
}
