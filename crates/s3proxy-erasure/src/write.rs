//! Writes: the body cut into stripes as it streams, each stripe encoded and its shards
//! sent to their backends, the last bytes withheld until the quorum can take them.
//!
//! Memory is bounded by the stripe being read plus [`QUEUED_STRIPES`] encoded stripes
//! per backend, whatever the object size. As in the replication layer (its `quorum`
//! module gives the reasoning), a write that cannot reach its quorum is withdrawn
//! before any backend commits it: a backend is sent its shard object's last bytes (the
//! trailer) only once `required` backends are connected and have taken everything
//! before, so a failed write leaves every backend with the version it had.

use crate::erasure::Erasure;
use crate::format::*;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3proxy_core::*;
use s3proxy_replication::{Missed, Stamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Encoded stripes queued per backend: a slow backend holds the others up by at most
/// this much plus the stall timeout, after which it is cut off (and journaled).
const QUEUED_STRIPES: usize = 2;

/// Why the backends' bodies fail when a write is withdrawn.
const WITHDRAWN: &str = "write withdrawn before commit: write quorum not reachable";

/// Reads exact-sized pieces (stripes) from a body.
pub(crate) struct Chunker {
    source: Md5Stream,
    pending: Bytes,
}

impl Chunker {
    pub(crate) fn new(body: Body) -> Self {
        Chunker {
            source: Md5Stream::new(body.stream, body.length),
            pending: Bytes::new(),
        }
    }

    /// The next `n` bytes; [`Error::IncompleteBody`] when the body ends first.
    pub(crate) async fn read(&mut self, n: usize) -> Result<Bytes> {
        if self.pending.len() >= n {
            return Ok(self.pending.split_to(n));
        }
        let mut buf = BytesMut::with_capacity(n);
        buf.extend_from_slice(&std::mem::take(&mut self.pending));
        while buf.len() < n {
            let mut chunk = self.source.next().await.ok_or(Error::IncompleteBody)??;
            let take = (n - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk.split_to(take));
            self.pending = chunk;
        }
        Ok(buf.freeze())
    }

    /// After the last read: check the body ended where its length said, and give its MD5.
    pub(crate) async fn finish(&mut self) -> Result<[u8; 16]> {
        if !self.pending.is_empty() {
            return Err(Error::InvalidRequest(
                "the body is longer than its declared Content-Length".into(),
            ));
        }
        while let Some(chunk) = self.source.next().await {
            if !chunk?.is_empty() {
                return Err(Error::InvalidRequest(
                    "the body is longer than its declared Content-Length".into(),
                ));
            }
        }
        Ok(self.source.digest())
    }
}

/// The pump's end of one backend's body: the channel, and whether the backend has
/// started reading it (a backend that never asks for data is not connected).
struct Sender {
    tx: mpsc::Sender<Result<Bytes>>,
    polled: Arc<AtomicBool>,
}

impl std::ops::Deref for Sender {
    type Target = mpsc::Sender<Result<Bytes>>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

/// A backend's body fed from a channel.
fn channel_body(rx: mpsc::Receiver<Result<Bytes>>, polled: Arc<AtomicBool>, length: u64) -> Body {
    let stream = futures::stream::unfold(rx, move |mut rx| {
        polled.store(true, Ordering::SeqCst);
        async move { rx.recv().await.map(|item| (item, rx)) }
    });
    Body {
        stream: Box::pin(stream),
        length,
    }
}

/// Send `chunk` to every live backend; one that stalls beyond `stall` or has gone is cut
/// off (its sender dropped after an error, so it cannot commit).
async fn send_all(senders: &mut [Option<Sender>], chunks: Vec<Bytes>, stall: Duration) {
    let sends = senders
        .iter_mut()
        .zip(chunks)
        .map(|(slot, chunk)| async move {
            if let Some(tx) = slot
                && tx.send_timeout(Ok(chunk), stall).await.is_err()
            {
                let _ = tx.try_send(Err(Error::ServiceUnavailable("shard write stalled".into())));
                *slot = None;
            }
        });
    futures::future::join_all(sends).await;
}

/// Wait until `required` backends are connected and have taken everything sent so far.
async fn quorum_ready(senders: &mut [Option<Sender>], required: usize, stall: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + stall;
    loop {
        for slot in senders.iter_mut() {
            if slot.as_ref().is_some_and(|tx| tx.is_closed()) {
                *slot = None;
            }
        }
        let live = senders.iter().flatten().count();
        let drained = senders
            .iter()
            .flatten()
            .filter(|tx| tx.polled.load(Ordering::SeqCst) && tx.capacity() == tx.max_capacity())
            .count();
        if drained >= required {
            return true;
        }
        if live < required || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn withdraw(senders: &mut [Option<Sender>], why: &str) {
    for slot in senders.iter_mut() {
        if let Some(tx) = slot.take() {
            let _ = tx.try_send(Err(Error::ServiceUnavailable(format!(
                "{WITHDRAWN}: {why}"
            ))));
        }
    }
}

/// Everything a write's stripes are sent with.
struct Stripes<'a> {
    layout: &'a Layout,
    first: Bytes,
    early_md5: Option<[u8; 16]>,
    content_md5: Option<[u8; 16]>,
    stamp: &'a str,
    stall: Duration,
}

impl Stripes<'_> {
    /// Send every stripe but the last; give the last (with the trailers) and the MD5.
    async fn send(
        self,
        chunker: &mut Chunker,
        senders: &mut [Option<Sender>],
    ) -> Result<(Vec<Bytes>, [u8; 16])> {
        let layout = self.layout;
        let stripes = layout.stripes();
        let finish = |md5: [u8; 16]| {
            if self.content_md5.is_some_and(|w| w != md5) {
                Err(Error::BadDigest)
            } else {
                Ok(md5)
            }
        };
        let mut data = self.first;
        for s in 0..stripes {
            if s > 0 {
                data = chunker.read(layout.stripe_len(s) as usize).await?;
            }
            let mut shards = encode_stripe(layout, s, &data)?;
            if s + 1 < stripes {
                send_all(senders, shards, self.stall).await;
                continue;
            }
            // The last stripe goes out with the trailer, once the quorum is ready.
            let md5 = match self.early_md5 {
                Some(md5) if stripes == 1 => md5,
                _ => finish(chunker.finish().await?)?,
            };
            let t = trailer(self.stamp, &md5);
            for shard in &mut shards {
                let mut joined = BytesMut::from(&shard[..]);
                joined.extend_from_slice(&t);
                *shard = joined.freeze();
            }
            return Ok((shards, md5));
        }
        let md5 = match self.early_md5 {
            Some(md5) => md5,
            None => finish(chunker.finish().await?)?,
        };
        Ok((vec![trailer(self.stamp, &md5); senders.len()], md5))
    }
}

/// What a striped write stored.
pub(crate) struct Written {
    pub etag: ETag,
    pub stamp: Stamp,
}

impl Erasure {
    /// Store `body` as shard objects of a new version of `bucket/key`, each carrying
    /// `metadata` and its [`ShardMeta`]. Succeeds once `required` backends stored theirs;
    /// the others are journaled. `etag` is the ETag to record instead of the body's MD5
    /// (a completed multipart upload's).
    pub(crate) async fn write_striped(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        content_md5: Option<[u8; 16]>,
        metadata: ObjectMetadata,
        etag: Option<ETag>,
    ) -> Result<Written> {
        // One write of a key at a time, and stamped once its turn came, so that the later
        // of two writes is also the newer (see `inflight`).
        let turn = self
            .shared
            .inflight
            .write_turn(bucket, key, self.turn_wait())
            .await?;
        let stamp = self.shared.clock.next();
        let opts = &self.shared.opts;
        let layout = Layout {
            k: self.k(),
            m: self.m(),
            stripe: opts.stripe_size,
            size: body.length,
        };
        let stripes = layout.stripes();
        let mut chunker = Chunker::new(body);
        // The first stripe is read before any backend is asked: when it is the whole
        // object, its MD5 (the ETag) goes into the metadata and no trailer read is needed.
        let first = if stripes > 0 {
            chunker.read(layout.stripe_len(0) as usize).await?
        } else {
            Bytes::new()
        };
        let early_md5 = if stripes <= 1 {
            let md5 = chunker.finish().await?;
            if content_md5.is_some_and(|want| want != md5) {
                return Err(Error::BadDigest);
            }
            Some(md5)
        } else {
            content_md5
        };
        let base = ShardMeta {
            v: FORMAT_VERSION,
            k: layout.k,
            m: layout.m,
            i: 0,
            stripe: layout.stripe,
            size: layout.size,
            etag: etag
                .clone()
                .or(early_md5.map(|md5| ETag::new(hex::encode(md5)))),
            ver: stamp.to_string(),
        };
        let n = self.backends().len();
        let mut senders = Vec::with_capacity(n);
        let mut puts = Vec::with_capacity(n);
        for i in 0..self.backends().len() {
            let (tx, rx) = mpsc::channel(QUEUED_STRIPES);
            let polled = Arc::new(AtomicBool::new(false));
            senders.push(Some(Sender {
                tx,
                polled: polled.clone(),
            }));
            let mut meta = metadata.clone();
            ShardMeta { i, ..base.clone() }.store(&mut meta);
            let put = PutOptions {
                metadata: meta,
                content_md5: None,
            };
            let body = channel_body(rx, polled, layout.shard_object_len());
            // Bounded: a backend that took the whole body and never answers (or stopped
            // reading it) is cut off and journaled instead of holding the PUT forever.
            puts.push(self.bounded_put(i, bucket, key, body, put, turn.cut_off()));
        }
        let required = opts.required();
        let stall = self.timeout();
        let pump = async {
            let sent = Stripes {
                layout: &layout,
                first,
                early_md5,
                content_md5,
                stamp: stamp.as_str(),
                stall,
            }
            .send(&mut chunker, &mut senders)
            .await;
            let outcome = match sent {
                Ok((last, md5)) if quorum_ready(&mut senders, required, stall).await => {
                    send_all(&mut senders, last, stall).await;
                    Ok(md5)
                }
                Ok(_) => Err(None),
                Err(e) => Err(Some(e)),
            };
            if let Err(e) = &outcome {
                let why = e
                    .as_ref()
                    .map_or("the write quorum is not reachable".into(), |e| {
                        e.to_string()
                    });
                withdraw(&mut senders, &why);
            }
            senders.clear();
            outcome
        };
        let (md5, outcomes) = tokio::join!(pump, futures::future::join_all(puts));
        self.log_outcomes("PutObject", &format!("{bucket}/{key}"), &outcomes);
        let stored = outcomes.iter().filter(|o| o.is_ok()).count();
        let md5 = match md5 {
            Ok(md5) => md5,
            // The body's own fault (short, long, bad digest) is the answer.
            Err(Some(e)) => return Err(e),
            // The quorum was lost: a client error the backends agree on (no such bucket)
            // says why better than 503.
            Err(None) => {
                return Err(outcomes
                    .into_iter()
                    .filter_map(Result::err)
                    .find(|e| !e.is_transient())
                    .unwrap_or_else(|| {
                        Error::ServiceUnavailable(format!(
                            "fewer than {required} backends could take the write"
                        ))
                    }));
            }
        };
        if stored < required {
            // What committed anyway holds fewer than the quorum's shards: reads go on
            // serving the version that still has k shards, and every backend is journaled
            // for a check, so that repair replaces the stale partial shards (or deletes
            // them, where no version is readable) and restores the redundancy.
            if stored > 0 {
                for i in 0..n {
                    self.journal_missed(bucket, key, i, stamp.as_str(), Missed::Write);
                }
            }
            log::warn!(
                "{} PutObject {bucket}/{key}: {stored} of {n} shards stored, {required} needed",
                self.shared.name
            );
            return Err(Error::ServiceUnavailable(format!(
                "{stored} of {n} shards stored, {required} needed"
            )));
        }
        for (i, o) in outcomes.iter().enumerate() {
            if o.is_err() {
                self.journal_missed(bucket, key, i, stamp.as_str(), Missed::Write);
            }
        }
        Ok(Written {
            etag: etag.unwrap_or_else(|| ETag::new(hex::encode(md5))),
            stamp,
        })
    }
}
