//! Reads: which version every backend's shard belongs to, the newest one k shards can
//! rebuild, and its stripes streamed from k shard objects (data shards first; a parity
//! shard takes over from one that is missing, slow, or fails its checksum).

use crate::erasure::Erasure;
use crate::format::*;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3proxy_core::*;
use s3proxy_replication::Missed;
use s3proxy_replication::stamp_time;

/// The version a read serves: its record, what HEAD shows, and which backends hold it.
#[derive(Clone)]
pub(crate) struct Resolved {
    pub meta: ShardMeta,
    pub info: ObjectInfo,
    /// Backends holding a shard of this version, by shard index (= backend index).
    pub holders: Vec<usize>,
    /// Each backend's own ETag of its shard object of this version (by backend index;
    /// `None` for non-holders): what a copy's per-backend If-Match pins the source to.
    pub etags: Vec<Option<ETag>>,
    /// Backends that did not answer the resolve.
    pub unreachable: usize,
    /// What each backend answered (by backend index).
    pub seen: Vec<Seen>,
}

/// What one backend answered a resolve with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// It did not answer (down, stalled, or an error of its own).
    Unreachable,
    /// No shard of this set: no object, no bucket, or an object without a sound record.
    Absent,
    /// A shard of the version with this stamp.
    Version(String),
}

/// Whether an error says the object (or bucket) is not there, rather than that the
/// backend could not answer.
fn is_absent(e: &Error) -> bool {
    matches!(e, Error::NoSuchKey | Error::NoSuchBucket)
}

impl Erasure {
    /// Ask every backend for its shard of `bucket/key` and pick the newest version that k
    /// of them hold. Absent when no version is readable and the backends that did not
    /// answer could not make one readable; 503 when they could.
    pub(crate) async fn resolve(&self, bucket: &BucketName, key: &ObjectKey) -> Result<Resolved> {
        self.resolve_with(bucket, key, false).await
    }

    /// [`Erasure::resolve`] for a client's read (GET, HEAD, a copy's source): where shards
    /// of the key exist but no version has k of them, and no delete of it is journaled, the
    /// object may be one that was acknowledged and is unreadable now (lost shards, a
    /// write that failed midway): 503, not a 404 that says it never existed.
    pub(crate) async fn resolve_served(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Resolved> {
        self.resolve_with(bucket, key, true).await
    }

    async fn resolve_with(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        served: bool,
    ) -> Result<Resolved> {
        let outcomes = self
            .fan_out("HeadObject", &format!("{bucket}/{key}"), |_, b| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move { b.head_object(&bucket, &key, GetOptions::default()).await }
            })
            .await;
        let mut found: Vec<Option<ShardMeta>> = vec![None; outcomes.len()];
        let mut infos: Vec<Option<ObjectInfo>> = vec![None; outcomes.len()];
        let (mut unreachable, mut no_bucket, mut answered) = (0, 0, 0);
        let mut seen = vec![Seen::Absent; outcomes.len()];
        for (i, o) in outcomes.into_iter().enumerate() {
            match o {
                Ok(info) => {
                    answered += 1;
                    // A shard found on another backend than its index says is not used.
                    found[i] = ShardMeta::from_metadata(&info.metadata).filter(|m| m.i == i);
                    if let Some(m) = &found[i] {
                        seen[i] = Seen::Version(m.ver.clone());
                    }
                    infos[i] = Some(info);
                }
                Err(Error::NoSuchBucket) => no_bucket += 1,
                Err(e) if is_absent(&e) => answered += 1,
                Err(_) => {
                    unreachable += 1;
                    seen[i] = Seen::Unreachable;
                }
            }
        }
        // Versions, newest first; the first with k agreeing shards wins.
        let mut versions: Vec<&ShardMeta> = found.iter().flatten().collect();
        versions.sort_by(|a, b| b.ver.cmp(&a.ver));
        versions.dedup_by(|a, b| a.ver == b.ver);
        let mut best = 0;
        // The most holders of a newer version of this set's layout that is not readable.
        let mut newer = 0;
        for candidate in versions {
            let holders: Vec<usize> = (0..found.len())
                .filter(|&i| found[i].as_ref().is_some_and(|m| m.same_version(candidate)))
                .collect();
            best = best.max(holders.len());
            let ours = candidate.k == self.k() && candidate.m == self.m();
            if holders.len() >= candidate.k
                && ours
                && newer > 0
                && newer + unreachable >= self.shared.opts.required()
            {
                // A newer version may have been acknowledged (its holders and the
                // backends that did not answer make a write quorum): serving this older
                // one would go back in time.
                return Err(Error::ServiceUnavailable(format!(
                    "{bucket}/{key}: a newer version may be on the {unreachable} backends that did not answer"
                )));
            }
            if ours && holders.len() < candidate.k {
                newer = newer.max(holders.len());
            }
            if holders.len() >= candidate.k && ours {
                let etags: Vec<Option<ETag>> = (0..infos.len())
                    .map(|i| {
                        let held = holders.contains(&i);
                        infos[i].as_ref().filter(|_| held).map(|f| f.etag.clone())
                    })
                    .collect();
                let first = holders[0];
                let stored = infos[first].take().expect("a holder answered");
                let meta = candidate.clone();
                let mut metadata = stored.metadata;
                strip(&mut metadata);
                let mut info = ObjectInfo {
                    key: key.clone(),
                    size: meta.size,
                    etag: meta.etag.clone().unwrap_or_default(),
                    last_modified: stamp_time(&meta.ver).unwrap_or(stored.last_modified),
                    metadata,
                    parts_count: None,
                };
                if meta.etag.is_none() {
                    info.etag = self.read_trailer(bucket, key, &meta, &holders).await?;
                }
                return Ok(Resolved {
                    meta,
                    info,
                    holders,
                    etags,
                    unreachable,
                    seen,
                });
            }
        }
        if answered == 0 && no_bucket > 0 && unreachable == 0 {
            return Err(Error::NoSuchBucket);
        }
        if best + unreachable >= self.k() {
            return Err(Error::ServiceUnavailable(format!(
                "{bucket}/{key}: {unreachable} backends did not answer and no version has {} shards",
                self.k()
            )));
        }
        if no_bucket > answered {
            return Err(Error::NoSuchBucket);
        }
        if served
            && best > 0
            && self
                .shared
                .journal
                .tombstone(bucket.as_str(), key.as_str())
                .is_none()
        {
            return Err(Error::ServiceUnavailable(format!(
                "{bucket}/{key}: {best} shards of one version found, {} needed",
                self.k()
            )));
        }
        Err(Error::NoSuchKey)
    }

    /// The object's ETag from a holder's trailer (the first that verifies).
    async fn read_trailer(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        meta: &ShardMeta,
        holders: &[usize],
    ) -> Result<ETag> {
        let len = meta.layout().shard_object_len();
        for &i in holders {
            let opts = GetOptions {
                range: Some(ByteRange::FromTo(len - TRAILER_LEN, len - 1)),
                ..Default::default()
            };
            let got = self
                .call(i, |b| {
                    let (bucket, key) = (bucket.clone(), key.clone());
                    async move {
                        let got = b.get_object(&bucket, &key, opts).await?;
                        collect_body(got.body, TRAILER_LEN as usize).await
                    }
                })
                .await;
            match got.map(|t| check_trailer(&meta.ver, &t)) {
                Ok(Some(md5)) => return Ok(ETag::new(hex::encode(md5))),
                Ok(None) => log::warn!(
                    "{} {bucket}/{key}: the trailer on {} fails its checksum",
                    self.shared.name,
                    self.backends()[i].name()
                ),
                Err(e) => log::warn!(
                    "{} {bucket}/{key}: trailer from {}: {e}",
                    self.shared.name,
                    self.backends()[i].name()
                ),
            }
        }
        Err(Error::ServiceUnavailable(format!(
            "{bucket}/{key}: no backend gave a sound trailer"
        )))
    }

    /// The object bytes `range` (inclusive) of a resolved version, streamed.
    pub(crate) fn stream_range(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        resolved: &Resolved,
        range: (u64, u64),
    ) -> ByteStream {
        let layout = resolved.meta.layout();
        let (first, last) = layout.covering(range);
        // Data shards first: they are the stripe's bytes, no decoding needed.
        let mut order = resolved.holders.clone();
        order.sort_by_key(|&i| (i >= self.k(), i));
        let state = StripeReader {
            t: Target {
                er: self.clone(),
                bucket: bucket.clone(),
                key: key.clone(),
                layout,
                ver: resolved.meta.ver.clone(),
                last,
            },
            spare: order,
            active: vec![],
            next: first,
            last,
            range,
        };
        Box::pin(futures::stream::unfold(state, |mut st| async move {
            if st.next > st.last {
                return None;
            }
            match st.next_stripe().await {
                Ok(bytes) => Some((Ok(bytes), st)),
                Err(e) => {
                    // Nothing more after an error.
                    st.next = st.last + 1;
                    Some((Err(e), st))
                }
            }
        }))
    }
}

/// One shard object being read from stripe `at` on.
pub(crate) struct ShardStream {
    pub(crate) index: usize,
    pub(crate) body: ByteStream,
    pub(crate) pending: Bytes,
}

impl ShardStream {
    /// The next `n` bytes, each wait for the backend bounded by `timeout`.
    pub(crate) async fn read_exact(
        &mut self,
        n: usize,
        timeout: std::time::Duration,
    ) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(n);
        while buf.len() < n {
            if self.pending.is_empty() {
                self.pending = match tokio::time::timeout(timeout, self.body.next()).await {
                    Ok(Some(chunk)) => chunk?,
                    Ok(None) => return Err(Error::IncompleteBody),
                    Err(_) => return Err(Error::ServiceUnavailable("shard read stalled".into())),
                };
            }
            let take = (n - buf.len()).min(self.pending.len());
            buf.extend_from_slice(&self.pending.split_to(take));
        }
        Ok(buf.freeze())
    }
}

/// What a GET reads: the version of one object, up to its last stripe.
struct Target {
    er: Erasure,
    bucket: BucketName,
    key: ObjectKey,
    layout: Layout,
    ver: String,
    last: u64,
}

/// A GET's progress: the shard objects being read and those held in reserve.
struct StripeReader {
    t: Target,
    /// Holders not read from yet, in preference order.
    spare: Vec<usize>,
    active: Vec<ShardStream>,
    next: u64,
    last: u64,
    range: (u64, u64),
}

impl Target {
    /// Start reading shard object `i` at stripe `next`.
    async fn open(&self, next: u64, i: usize) -> Result<ShardStream> {
        let start = self.layout.shard_offset(next);
        let end = self.layout.shard_offset(self.last) + self.layout.shard_len(self.last) + CRC_LEN;
        let opts = GetOptions {
            range: Some(ByteRange::FromTo(start, end - 1)),
            ..Default::default()
        };
        let got = self
            .er
            .call(i, |b| {
                let (bucket, key) = (self.bucket.clone(), self.key.clone());
                async move { b.get_object(&bucket, &key, opts).await }
            })
            .await?;
        let version = ShardMeta::from_metadata(&got.info.metadata);
        if version
            .as_ref()
            .is_none_or(|m| m.ver != self.ver || m.i != i)
        {
            return Err(Error::ServiceUnavailable(
                "the shard changed while read".into(),
            ));
        }
        Ok(ShardStream {
            index: i,
            body: got.body,
            pending: Bytes::new(),
        })
    }
}

impl StripeReader {
    /// Open readers from the spares (at stripe `self.next`) until `want` more are open.
    async fn open_more(&mut self, want: usize, into: &mut Vec<ShardStream>) -> Result<()> {
        let target = into.len() + want;
        while into.len() < target {
            let short = target - into.len();
            if self.spare.is_empty() {
                return Err(Error::ServiceUnavailable(format!(
                    "{}/{}: stripe {} has fewer than {} sound shards",
                    self.t.bucket, self.t.key, self.next, self.t.layout.k
                )));
            }
            let picked: Vec<usize> = self.spare.drain(..short.min(self.spare.len())).collect();
            let (t, next) = (&self.t, self.next);
            let opened = futures::future::join_all(picked.iter().map(|&i| t.open(next, i))).await;
            for (i, o) in picked.into_iter().zip(opened) {
                match o {
                    Ok(s) => into.push(s),
                    Err(e) => t.er.shard_failed(&t.bucket, &t.key, i, &e),
                }
            }
        }
        Ok(())
    }

    async fn next_stripe(&mut self) -> Result<Bytes> {
        let s = self.next;
        let k = self.t.layout.k;
        let want = (self.t.layout.shard_len(s) + CRC_LEN) as usize;
        let timeout = self.t.er.timeout();
        let mut good: Vec<(usize, Vec<u8>)> = vec![];
        let mut kept = vec![];
        let mut pending = std::mem::take(&mut self.active);
        loop {
            if pending.len() + good.len() < k {
                let short = k - pending.len() - good.len();
                self.open_more(short, &mut pending).await?;
            }
            let reads =
                futures::future::join_all(pending.iter_mut().map(|r| r.read_exact(want, timeout)))
                    .await;
            for (reader, read) in pending.drain(..).zip(reads) {
                let i = reader.index;
                match read.map(|b| check_shard(s, i, &b).map(<[u8]>::to_vec)) {
                    Ok(Some(bytes)) => {
                        good.push((i, bytes));
                        kept.push(reader);
                    }
                    Ok(None) => {
                        log::warn!(
                            "{} {}/{}: shard {i} of stripe {s} on {} fails its checksum; rebuilt from the others",
                            self.t.er.shared.name,
                            self.t.bucket,
                            self.t.key,
                            self.t.er.backends()[i].name()
                        );
                        self.t.er.journal_missed(
                            &self.t.bucket,
                            &self.t.key,
                            i,
                            &self.t.ver,
                            Missed::Corrupt,
                        );
                    }
                    Err(e) => self.t.er.shard_failed(&self.t.bucket, &self.t.key, i, &e),
                }
            }
            if good.len() >= k {
                break;
            }
        }
        self.active = kept;
        good.truncate(self.t.layout.k);
        let stripe = if good.iter().all(|(i, _)| *i < self.t.layout.k) {
            good.sort_by_key(|(i, _)| *i);
            let mut out = BytesMut::with_capacity(want * self.t.layout.k);
            for (_, bytes) in &good {
                out.extend_from_slice(bytes);
            }
            out.truncate(self.t.layout.stripe_len(s) as usize);
            out.freeze()
        } else {
            decode_stripe(&self.t.layout, s, good)?
        };
        self.next += 1;
        // Only the requested bytes of the first and last stripes.
        let base = s * self.t.layout.stripe;
        let from = self.range.0.saturating_sub(base) as usize;
        let to = ((self.range.1 + 1 - base) as usize).min(stripe.len());
        Ok(stripe.slice(from..to))
    }
}

impl Erasure {
    /// A shard that could not be read: logged (its backend's version is repaired by the
    /// journal when it was a write that missed it, or by a scrub).
    pub(crate) fn shard_failed(&self, bucket: &BucketName, key: &ObjectKey, i: usize, e: &Error) {
        log::warn!(
            "{} {bucket}/{key}: shard {i} on {} unavailable ({e}); read from parity",
            self.shared.name,
            self.backends()[i].name()
        );
    }
}
