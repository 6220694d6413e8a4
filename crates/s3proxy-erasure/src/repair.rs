//! Repair: a shard a backend missed (journaled by a write, a delete, or a read that found
//! it corrupt) rebuilt from k others and written back, or a deleted object's stale shard
//! deleted.

use crate::erasure::Erasure;
use crate::format::*;
use crate::inflight::{KeyTurn, WriteWatch};
use crate::write::Chunker;
use bytes::Bytes;
use s3proxy_core::*;
use s3proxy_replication::Entry;
use std::time::Duration;

/// What one replay of the journal did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardRepairs {
    /// Shards rebuilt and written back.
    pub rebuilt: usize,
    /// Stale shards of deleted objects deleted.
    pub deleted: usize,
    /// Entries found already repaired (or with nothing left to repair).
    pub settled: usize,
    /// Entries that could not be repaired now; they stay in the journal.
    pub failed: usize,
}

enum Outcome {
    Rebuilt,
    Deleted,
    Settled,
}

impl Erasure {
    /// Repair every journaled shard that can be repaired now.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use s3proxy_core::DynBackend;
    /// # let backends: Vec<DynBackend> = (0..3).map(|i| Arc::new(s3proxy_backends::Memory::new(format!("m{i}"))) as DynBackend).collect();
    /// # let journal = Arc::new(s3proxy_replication::Journal::in_memory());
    /// let ec = s3proxy_erasure::Erasure::new("ec", backends, s3proxy_erasure::ErasureOptions::new(2, 1), journal).unwrap();
    /// assert_eq!(ec.replay_journal().await, Default::default());
    /// # });
    /// ```
    pub async fn replay_journal(&self) -> ShardRepairs {
        self.replay(self.shared.journal.pending()).await
    }

    /// [`Erasure::replay_journal`] for the entries of one bucket only.
    pub async fn replay_journal_of(&self, bucket: &str) -> ShardRepairs {
        self.replay(self.shared.journal.pending_in(bucket)).await
    }

    async fn replay(&self, entries: Vec<Entry>) -> ShardRepairs {
        let mut done = ShardRepairs::default();
        for entry in entries {
            match self.repair_entry(&entry).await {
                Ok(outcome) => {
                    match outcome {
                        Outcome::Rebuilt => done.rebuilt += 1,
                        Outcome::Deleted => done.deleted += 1,
                        Outcome::Settled => done.settled += 1,
                    }
                    if let Err(e) = self.shared.journal.remove(&entry) {
                        log::error!("{}: cannot update the journal: {e}", self.shared.name);
                    }
                }
                Err(e) => {
                    done.failed += 1;
                    log::warn!(
                        "{} repair of {}/{} on {}: {e}; left in the journal",
                        self.shared.name,
                        entry.bucket,
                        entry.target,
                        entry.backend
                    );
                }
            }
        }
        done
    }

    /// Replay the journal every `interval` while it has entries, until the set is dropped.
    pub fn start_background(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = std::sync::Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(shared) = weak.upgrade() else { return };
                let set = Erasure { shared };
                if !set.shared.journal.is_empty() {
                    let done = set.replay_journal().await;
                    if done != ShardRepairs::default() {
                        log::info!("{} repair: {done:?}", set.shared.name);
                    }
                }
            }
        })
    }

    async fn repair_entry(&self, entry: &Entry) -> Result<Outcome> {
        let Some(i) = self
            .backends()
            .iter()
            .position(|b| b.name() == entry.backend)
        else {
            // A backend no longer configured: nothing this set can do.
            return Ok(Outcome::Settled);
        };
        let bucket = BucketName::new(entry.bucket.clone())?;
        // Shard entries are of objects; a bucket's would fail here as an empty key.
        let key = ObjectKey::new(entry.target.to_string())?;
        // The key's turn, held from the resolve to the shard's commit: no client write of
        // the key lands in between, so the shard rebuilt is never older than what the key
        // holds. A key being written is left for the next replay, which sees that write.
        let Some(turn) = self.shared.inflight.repair_turn(&bucket, &key) else {
            return Err(Error::ServiceUnavailable(
                "a write of the key is in flight; repaired on the next replay".into(),
            ));
        };
        let resolved = match self.resolve(&bucket, &key).await {
            Ok(r) => r,
            Err(Error::NoSuchKey) | Err(Error::NoSuchBucket) => {
                // Deleted (or never readable): the backend's shard, if any, goes.
                let gone = self
                    .call_marking(i, Some(turn.cut_off()), |b| async move {
                        b.delete_object(&bucket, &key).await
                    })
                    .await;
                return match gone {
                    Ok(()) | Err(Error::NoSuchBucket) => Ok(Outcome::Deleted),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        if entry.stamp > resolved.meta.ver && resolved.unreachable > 0 {
            // The entry is for a newer version than the one readable now, whose holders
            // may be the backends that did not answer: neither settled nor rebuilt from
            // the older one. (With every backend answering, the newer version is one
            // that failed its quorum: its partial shards are replaced below.)
            return Err(Error::ServiceUnavailable(format!(
                "the journaled version {} is newer than the readable {}",
                entry.stamp, resolved.meta.ver
            )));
        }
        if resolved.holders.contains(&i) && !entry.forced() {
            return Ok(Outcome::Settled);
        }
        self.rebuild_shard(&bucket, &key, &resolved, i, &turn)
            .await?;
        Ok(Outcome::Rebuilt)
    }

    /// Write shard object `i` of a resolved version, rebuilt from the other holders.
    pub(crate) async fn rebuild_shard(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        resolved: &crate::read::Resolved,
        i: usize,
        turn: &KeyTurn,
    ) -> Result<()> {
        let mut sources = crate::read::Resolved {
            holders: resolved
                .holders
                .iter()
                .copied()
                .filter(|&h| h != i)
                .collect(),
            ..resolved.clone()
        };
        if sources.holders.len() < self.k() {
            return Err(Error::ServiceUnavailable(format!(
                "fewer than {} other shards to rebuild from",
                self.k()
            )));
        }
        sources.holders.sort_unstable();
        let layout = resolved.meta.layout();
        let data = match layout.size {
            0 => Box::pin(futures::stream::empty()) as ByteStream,
            n => self.stream_range(bucket, key, &sources, (0, n - 1)),
        };
        let state = Rebuild {
            chunker: Chunker::new(Body {
                stream: data,
                length: layout.size,
            }),
            layout,
            i,
            next: 0,
            ver: resolved.meta.ver.clone(),
            done: false,
            watch: turn.watch(),
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let item = st.next_piece().await;
            st.done |= item.is_err();
            Some((item, st))
        });
        let mut metadata = resolved.info.metadata.clone();
        ShardMeta {
            i,
            ..resolved.meta.clone()
        }
        .store(&mut metadata);
        let body = Body {
            stream: Box::pin(stream),
            length: layout.shard_object_len(),
        };
        let opts = PutOptions {
            metadata,
            content_md5: None,
        };
        self.bounded_put(i, bucket, key, body, opts, turn.cut_off())
            .await
            .map(drop)
    }
}

/// Shard `i` of an object being rebuilt, produced stripe by stripe from its bytes.
struct Rebuild {
    chunker: Chunker,
    layout: Layout,
    i: usize,
    next: u64,
    ver: String,
    done: bool,
    /// A client write waiting for the key: the rebuild stops before its shard can
    /// commit (the write would replace it anyway, and should not wait for it).
    watch: WriteWatch,
}

impl Rebuild {
    /// The next stripe's shard (with its checksum), or after the last the trailer.
    async fn next_piece(&mut self) -> Result<Bytes> {
        if self.watch.write_waiting() {
            return Err(Error::ServiceUnavailable(
                "repair withdrawn: a client write of the key is waiting".into(),
            ));
        }
        if self.next < self.layout.stripes() {
            let s = self.next;
            self.next += 1;
            let data = self
                .chunker
                .read(self.layout.stripe_len(s) as usize)
                .await?;
            let mut shards = encode_stripe(&self.layout, s, &data)?;
            return Ok(shards.swap_remove(self.i));
        }
        self.done = true;
        let md5 = self.chunker.finish().await?;
        Ok(trailer(&self.ver, &md5))
    }
}
