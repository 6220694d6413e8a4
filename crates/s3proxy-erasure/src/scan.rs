//! The repair scan and the scrub: every object of every bucket looked at, each backend's
//! shard found missing, of an older version, or (scrub) failing its checksums rebuilt
//! from k others. What a wiped or replaced backend needs, which the journal does not
//! know of.

use crate::erasure::Erasure;
use crate::format::*;
use crate::read::{Resolved, Seen, ShardStream};
use bytes::Bytes;
use s3proxy_core::*;
use std::collections::BTreeMap;

/// Backend timeouts after which a newer version than the readable one is judged
/// abandoned (a write that failed its quorum) rather than one still committing: a write
/// cut off at the timeout may land one timeout later (its turn lingers that long).
pub const SETTLE_TIMEOUTS: u32 = 3;

/// What a scan does.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Only this bucket; `None`: every bucket.
    pub bucket: Option<BucketName>,
    /// Read every shard whole and check each stripe's checksum and the trailer (scrub);
    /// else only the shards' records are compared (repair).
    pub verify: bool,
    /// Report what would be rebuilt, rebuilding (and creating) nothing.
    pub dry_run: bool,
}

/// What a scan found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardScan {
    /// Objects looked at.
    pub objects: usize,
    /// Buckets created on backends that lacked them (or, in a dry run, to create).
    pub buckets_created: usize,
    /// Shards read whole and checked (with `verify`).
    pub verified: usize,
    /// Shards missing, or of another version than the one served.
    pub missing: usize,
    /// Shards that fail a checksum (with `verify`).
    pub corrupt: usize,
    /// Shards rebuilt and written back.
    pub rebuilt: usize,
    /// Shards (or objects) that could not be checked or rebuilt now: a backend that did
    /// not answer, a key being written, fewer than k sound shards.
    pub failed: usize,
}

impl Erasure {
    /// Look at every object (of `opts.bucket`, or of every bucket) and rebuild each
    /// backend's shard that is missing, of another version, or (with `opts.verify`)
    /// corrupt, from k others; create each bucket on the backends that lack it first (a
    /// wiped backend). `progress` is called with each object's bucket before it is looked at.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use s3proxy_core::{Backend, DynBackend};
    /// # let backends: Vec<DynBackend> = (0..3).map(|i| Arc::new(s3proxy_backends::Memory::new(format!("m{i}"))) as DynBackend).collect();
    /// # let journal = Arc::new(s3proxy_replication::Journal::in_memory());
    /// use s3proxy_erasure::{Erasure, ErasureOptions, ScanOptions};
    /// let ec = Erasure::new("ec", backends, ErasureOptions::new(2, 1), journal).unwrap();
    /// let done = ec.scan(&ScanOptions { verify: true, ..Default::default() }, &|_| {}).await.unwrap();
    /// assert_eq!(done.objects, 0);
    /// # });
    /// ```
    pub async fn scan(
        &self,
        opts: &ScanOptions,
        progress: &(dyn Fn(&BucketName) + Sync),
    ) -> Result<ShardScan> {
        let mut done = ShardScan::default();
        // The objects, then the uploads' state (hidden from the first listing).
        let prefixes = ["", crate::multipart::UPLOADS_PREFIX];
        for bucket in self.live_buckets(opts, &mut done).await? {
            for prefix in prefixes {
                self.scan_prefix(&bucket, prefix, opts, progress, &mut done)
                    .await?;
            }
        }
        Ok(done)
    }

    /// [`Erasure::scan`] of the keys under `prefix` in one bucket.
    async fn scan_prefix(
        &self,
        bucket: &BucketName,
        prefix: &str,
        opts: &ScanOptions,
        progress: &(dyn Fn(&BucketName) + Sync),
        done: &mut ShardScan,
    ) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let list = ListOptions {
                prefix: prefix.into(),
                start_after: after.clone(),
                ..Default::default()
            };
            let page = self.merged_listing(bucket, list).await?;
            for o in &page.objects {
                progress(bucket);
                done.objects += 1;
                let key = ObjectKey::new(o.key.clone())?;
                self.scan_key(bucket, &key, opts, done).await;
            }
            let last = page.objects.last().map(|o| o.key.clone());
            match page.next_marker.or(last) {
                Some(next) if page.is_truncated => after = Some(next),
                _ => return Ok(()),
            }
        }
    }

    /// The buckets of this set (those k backends hold: fewer are the leftovers of a
    /// delete), each created on the backends that lack it.
    async fn live_buckets(
        &self,
        opts: &ScanOptions,
        done: &mut ShardScan,
    ) -> Result<Vec<BucketName>> {
        let outcomes = self
            .fan_out(
                "ListBuckets",
                "",
                |_, b| async move { b.list_buckets().await },
            )
            .await;
        if outcomes.iter().filter(|o| o.is_ok()).count() < self.k() {
            return Err(Error::ServiceUnavailable(format!(
                "fewer than {} backends listed their buckets",
                self.k()
            )));
        }
        let mut held: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, o) in outcomes.iter().enumerate() {
            for b in o.iter().flatten() {
                held.entry(b.name.clone()).or_default().push(i);
            }
        }
        let unreachable = outcomes.iter().filter(|o| o.is_err()).count();
        let mut live = vec![];
        for (name, holders) in held {
            if opts.bucket.as_ref().is_some_and(|b| b.as_str() != name) {
                continue;
            }
            if holders.len() < self.k() {
                // Fewer than k: what a delete leaves behind, unless the backends that did
                // not answer hold it too; then it cannot be told now.
                if holders.len() + unreachable >= self.k() {
                    done.failed += 1;
                    log::warn!(
                        "{} scan: bucket {name} is on {} backends, and {unreachable} did not answer; not scanned",
                        self.shared.name,
                        holders.len()
                    );
                }
                continue;
            }
            let bucket = BucketName::new(name)?;
            for (i, o) in outcomes.iter().enumerate() {
                if o.is_err() || holders.contains(&i) {
                    continue;
                }
                done.buckets_created += 1;
                if opts.dry_run {
                    continue;
                }
                let made = self
                    .call(i, |b| {
                        let bucket = bucket.clone();
                        async move { b.create_bucket(&bucket).await }
                    })
                    .await;
                if let Err(e) = made.or_else(|e| match e {
                    Error::BucketAlreadyOwnedByYou => Ok(()),
                    e => Err(e),
                }) {
                    done.failed += 1;
                    log::warn!(
                        "{} scan: cannot create {bucket} on {}: {e}",
                        self.shared.name,
                        self.backends()[i].name()
                    );
                }
            }
            live.push(bucket);
        }
        if let Some(b) = &opts.bucket
            && !live.contains(b)
        {
            return Err(Error::NoSuchBucket);
        }
        Ok(live)
    }

    /// Check one object's shards on every backend; rebuild those found wanting.
    async fn scan_key(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: &ScanOptions,
        done: &mut ShardScan,
    ) {
        let name = &self.shared.name;
        // The key's turn, as a journaled repair takes it: no client write lands between
        // the resolve and the rebuilt shard's commit (see `inflight`).
        let Some(turn) = self.shared.inflight.repair_turn(bucket, key) else {
            done.failed += 1;
            log::info!("{name} scan {bucket}/{key}: being written; left for the next scan");
            return;
        };
        let resolved = match self.resolve(bucket, key).await {
            Ok(r) => r,
            // Deleted since it was listed.
            Err(Error::NoSuchKey) => return,
            Err(e) => {
                done.failed += 1;
                log::warn!("{name} scan {bucket}/{key}: {e}");
                return;
            }
        };
        let mut targets = vec![];
        let mut corrupt = vec![];
        let mut trailers = vec![];
        for (i, seen) in resolved.seen.iter().enumerate() {
            let backend = self.backends()[i].name();
            if resolved.holders.contains(&i) {
                if !opts.verify {
                    continue;
                }
                match self.shard_is_sound(bucket, key, &resolved.meta, i).await {
                    Ok(Some(trailer)) => {
                        done.verified += 1;
                        trailers.push((i, trailer));
                    }
                    Ok(None) => {
                        done.verified += 1;
                        done.corrupt += 1;
                        log::warn!("{name} scan {bucket}/{key}: the shard on {backend} is corrupt");
                        corrupt.push(i);
                        targets.push(i);
                    }
                    Err(e) => {
                        // Unreadable says nothing about the bytes: not rebuilt over.
                        done.failed += 1;
                        log::warn!(
                            "{name} scan {bucket}/{key}: cannot read the shard on {backend}: {e}"
                        );
                    }
                }
                continue;
            }
            match seen {
                Seen::Unreachable => done.failed += 1,
                // A newer version than the one served, with backends not answering: it
                // may be an acknowledged write whose other holders are those (the rule
                // journaled repairs follow); left alone.
                Seen::Version(v) if *v > resolved.meta.ver && resolved.unreachable > 0 => {
                    done.failed += 1;
                }
                // A newer version written moments ago: it may be a write still committing
                // on another instance (which this one's turns do not order), soon on k
                // backends; rebuilding the older version over it could undo it once
                // acknowledged. Left for a later scan, or for the journal of its writer.
                Seen::Version(v) if *v > resolved.meta.ver && self.recent(v) => {
                    done.failed += 1;
                    log::info!(
                        "{name} scan {bucket}/{key}: {backend} holds a newer version written \
                         moments ago; left for the next scan"
                    );
                }
                _ => {
                    done.missing += 1;
                    targets.push(i);
                }
            }
        }
        if resolved
            .meta
            .etag
            .as_ref()
            .is_some_and(|e| e.as_str().contains('-'))
        {
            // A multipart ETag is no MD5 to check the trailer against, and after a copy
            // the trailer's checksum is bound to the stamp of the write that made the
            // shard: the original holders' to an older stamp, a shard rebuilt since the
            // copy to this one. The MD5 half is the same on every holder: the one of a
            // trailer that verifies under this stamp, else the one most holders have, is
            // the reference. A trailer that does not verify under this stamp must also be
            // the one most such holders have (the originals' trailer, all the same bytes).
            let digest = |t: &Bytes| t.get(..16).map(Bytes::copy_from_slice);
            let current = |t: &Bytes| check_trailer(&resolved.meta.ver, t).is_some();
            let digest_count =
                |d: &Option<Bytes>| trailers.iter().filter(|(_, u)| &digest(u) == d).count();
            let reference = trailers
                .iter()
                .map(|(_, t)| t)
                .find(|t| current(t))
                .map(digest)
                .or_else(|| {
                    trailers
                        .iter()
                        .map(|(_, t)| digest(t))
                        .max_by_key(digest_count)
                });
            let older: Vec<&Bytes> = trailers
                .iter()
                .map(|(_, t)| t)
                .filter(|t| !current(t))
                .collect();
            let shared_by = |t: &Bytes| older.iter().filter(|u| **u == t).count();
            let older_reference = older.iter().max_by_key(|t| shared_by(t)).copied().cloned();
            // Beside a trailer of this stamp, an older one is the originals' only when
            // more than one holder has it: one alone is a damaged copy of either.
            let any_current = older.len() < trailers.len();
            let older_sound = |t: &Bytes| {
                older_reference.as_ref() == Some(t) && (!any_current || shared_by(t) > 1)
            };
            for (i, t) in &trailers {
                let sound = reference.as_ref().is_none_or(|r| r == &digest(t))
                    && (current(t) || older_sound(t));
                if !sound {
                    done.corrupt += 1;
                    log::warn!(
                        "{name} scan {bucket}/{key}: the trailer on {} is corrupt",
                        self.backends()[*i].name()
                    );
                    corrupt.push(*i);
                    targets.push(*i);
                }
            }
        }
        if opts.dry_run || targets.is_empty() {
            return;
        }
        // Corrupt shards are no source for the others.
        let sources = Resolved {
            holders: resolved
                .holders
                .iter()
                .copied()
                .filter(|h| !corrupt.contains(h))
                .collect(),
            ..resolved.clone()
        };
        for i in targets {
            match self.rebuild_shard(bucket, key, &sources, i, &turn).await {
                Ok(()) => done.rebuilt += 1,
                Err(e) => {
                    done.failed += 1;
                    log::warn!(
                        "{name} scan {bucket}/{key}: cannot rebuild the shard on {}: {e}",
                        self.backends()[i].name()
                    );
                }
            }
        }
    }

    /// Whether version `stamp` was written less than [`SETTLE_TIMEOUTS`] backend
    /// timeouts ago (or carries a time ahead of this clock, or none readable).
    fn recent(&self, stamp: &str) -> bool {
        let settle = self.timeout().saturating_mul(SETTLE_TIMEOUTS);
        match s3proxy_replication::stamp_time(stamp) {
            Some(t) => {
                std::time::SystemTime::now()
                    .duration_since(t)
                    .is_ok_and(|age| age < settle)
                    || t > std::time::SystemTime::now()
            }
            None => false,
        }
    }

    /// Read shard object `i` of version `meta` whole: whether its length, every stripe's
    /// checksum and the trailer (and the ETag it gives, when recorded) are sound; if so,
    /// its trailer. An error means it could not be read, which says nothing about its
    /// bytes.
    async fn shard_is_sound(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        meta: &ShardMeta,
        i: usize,
    ) -> Result<Option<Bytes>> {
        let got = self
            .call(i, |b| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move { b.get_object(&bucket, &key, GetOptions::default()).await }
            })
            .await?;
        if ShardMeta::from_metadata(&got.info.metadata).as_ref()
            != Some(&ShardMeta { i, ..meta.clone() })
        {
            return Err(Error::ServiceUnavailable(
                "the shard changed while read".into(),
            ));
        }
        let layout = meta.layout();
        if got.info.size != layout.shard_object_len() {
            return Ok(None);
        }
        let mut reader = ShardStream {
            index: i,
            body: got.body,
            pending: Bytes::new(),
        };
        let timeout = self.timeout();
        for s in 0..layout.stripes() {
            let want = (layout.shard_len(s) + CRC_LEN) as usize;
            match reader.read_exact(want, timeout).await {
                Ok(bytes) if check_shard(s, i, &bytes).is_some() => {}
                Ok(_) | Err(Error::IncompleteBody) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let trailer = match reader.read_exact(TRAILER_LEN as usize, timeout).await {
            Ok(t) => t,
            Err(Error::IncompleteBody) => return Ok(None),
            Err(e) => return Err(e),
        };
        let sound = match &meta.etag {
            // What reads take the ETag from: bound to this version's stamp.
            None => check_trailer(&meta.ver, &trailer).is_some(),
            // Recorded, so reads never use the trailer, whose checksum may be bound to an
            // older stamp (a copy gives the shards a new one and keeps their bytes): its
            // MD5 must be the ETag, unless that is a multipart one, which is no MD5.
            // (multipart: the scan compares the trailers of all holders instead).
            Some(etag) if etag.as_str().contains('-') => true,
            Some(etag) => hex::encode(&trailer[..16]) == *etag,
        };
        Ok(sound.then_some(trailer))
    }
}
