//! The reader of GET bodies: verifies and decrypts the stored segments covering the
//! requested bytes, in batches decrypted ahead on blocking threads, and fails over to
//! another replica from the first segment that does not authenticate.

use super::decode::{Decoded, with_key_context};
use super::{Encrypted, if_match};
use crate::aead::Cipher;
use crate::format::*;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3proxy_core::replicas::{self, ServedBy};
use s3proxy_core::*;
use std::sync::Arc;

/// Batches of segments decrypted ahead of the one being served, on blocking threads.
const DECRYPT_AHEAD: usize = 3;
/// Most segments in one decryption batch. A thread hop and its wake-ups cost about as much
/// CPU as decrypting a few KiB, so a GET hands segments to the blocking pool in batches
/// (doubling from one segment, so the first bytes are not held back) instead of one by one.
const DECRYPT_BATCH: usize = 8;
/// Batches with less plaintext than this are decrypted inline: a thread hop would cost more.
const INLINE_DECRYPT: u64 = 16 << 10;

impl Encrypted {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reader(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &ETag,
        decoded: &Decoded,
        range: Option<(u64, u64)>,
        exclude: Vec<String>,
        stream: ByteStream,
        served_by: Option<ServedBy>,
    ) -> ByteStream {
        let layout = Arc::new(decoded.layout.clone());
        let (first, last) = layout.covering(range);
        let want = match range {
            Some((a, b)) => (a, b + 1),
            None => (0, layout.plain_size()),
        };
        let reader = Reader {
            inner: self.inner.clone(),
            bucket: bucket.clone(),
            key: key.clone(),
            stored_etag: stored_etag.clone(),
            exclude,
            cipher: data_cipher(&decoded.data_key),
            layout,
            pos: Some(first),
            last,
            want,
            stream,
            buf: BytesMut::new(),
            served_by,
            queue: std::collections::VecDeque::with_capacity(DECRYPT_AHEAD),
            ready: std::collections::VecDeque::with_capacity(DECRYPT_BATCH),
            batch: 1,
            pending: None,
        };
        Box::pin(futures::stream::unfold(reader, |mut r| async move {
            r.next_chunk().await.map(|item| (item, r))
        }))
    }
}

/// Verifies and decrypts stored segments in order, failing over to another replica when
/// one does not authenticate.
struct Reader {
    inner: DynBackend,
    bucket: BucketName,
    key: ObjectKey,
    stored_etag: ETag,
    exclude: Vec<String>,
    cipher: Cipher,
    layout: Arc<Layout>,
    pos: Option<SegmentPos>,
    last: SegmentPos,
    /// Plaintext bytes to yield, half-open.
    want: (u64, u64),
    stream: ByteStream,
    buf: BytesMut,
    served_by: Option<ServedBy>,
    /// Batches of segments read and being decrypted, in order.
    queue: std::collections::VecDeque<(Vec<(SegmentRef, SegmentPos)>, Decrypting)>,
    /// Segments of the oldest finished batch, in order, not yet served.
    ready: std::collections::VecDeque<(SegmentRef, SegmentPos, Result<Bytes>)>,
    /// Segments in the next batch.
    batch: usize,
    /// A segment that could not be read from this replica, to fail over from once the
    /// segments before it have been served.
    pending: Option<(SegmentRef, SegmentPos, Error)>,
}

enum Decrypting {
    Done(Vec<Result<Bytes>>),
    Running(tokio::task::JoinHandle<Vec<Result<Bytes>>>),
}

enum Fill {
    Short,
    Failed(Error),
}

impl Reader {
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        loop {
            // Keep the next batches decrypting (in parallel) while this one is served.
            while self.queue.len() < DECRYPT_AHEAD && self.pending.is_none() && self.pos.is_some() {
                if let Err(e) = self.read_batch().await {
                    self.stop();
                    return Some(Err(e));
                }
            }
            if self.ready.is_empty()
                && let Some((segs, job)) = self.queue.pop_front()
            {
                let opened = match job {
                    Decrypting::Done(r) => r,
                    Decrypting::Running(handle) => handle.await.unwrap_or_else(|e| {
                        vec![Err(Error::Internal(format!("decrypting segments: {e}")))]
                    }),
                };
                self.ready.extend(
                    segs.into_iter()
                        .zip(opened)
                        .map(|((seg, pos), plain)| (seg, pos, plain)),
                );
                continue;
            }
            let (seg, pos, problem) = match self.ready.pop_front() {
                Some((seg, pos, opened)) => match opened {
                    Ok(plain) => {
                        let from = self.want.0.max(seg.plain_start);
                        let to = self.want.1.min(seg.plain_start + seg.plain_len);
                        if from < to {
                            let at = (from - seg.plain_start) as usize;
                            return Some(Ok(plain.slice(at..at + (to - from) as usize)));
                        }
                        continue;
                    }
                    Err(e @ Error::Corrupt(_)) => (seg, pos, e),
                    Err(e) => {
                        self.stop();
                        return Some(Err(e));
                    }
                },
                None => match self.pending.take() {
                    Some(p) => p,
                    None => return None,
                },
            };
            // Everything read after the failed segment came from the same replica: read
            // again from that segment on another one.
            self.queue.clear();
            self.ready.clear();
            self.pending = None;
            self.batch = 1;
            if let Err(e) = self.fail_over(&seg, problem).await {
                self.stop();
                return Some(Err(e));
            }
            self.pos = Some(pos);
        }
    }

    /// Reads the next batch of segments and starts decrypting it. A stored object that
    /// ends early leaves its first missing segment in `pending`, after the batch.
    async fn read_batch(&mut self) -> Result<()> {
        let mut segs = Vec::with_capacity(self.batch);
        let mut stored = Vec::with_capacity(self.batch);
        let mut plain_len = 0;
        while segs.len() < self.batch {
            let Some(pos) = self.pos else { break };
            let seg = self.layout.segment(pos);
            let len = seg.stored_len() as usize;
            match self.fill(len).await {
                Ok(()) => {
                    stored.push(self.buf.split_to(len));
                    plain_len += seg.plain_len;
                    segs.push((seg, pos));
                    self.pos = if pos == self.last {
                        None
                    } else {
                        self.layout.next(pos)
                    };
                }
                Err(Fill::Short) => {
                    let problem = Error::Corrupt(format!(
                        "segment {} of part {}: the stored object ended early",
                        seg.index, seg.part
                    ));
                    self.pending = Some((seg, pos, problem));
                    break;
                }
                Err(Fill::Failed(e)) => return Err(e),
            }
        }
        if segs.is_empty() {
            return Ok(());
        }
        self.batch = (self.batch * 2).min(DECRYPT_BATCH);
        let cipher = self.cipher.clone();
        let refs: Vec<SegmentRef> = segs.iter().map(|(seg, _)| *seg).collect();
        let open = move || {
            refs.iter()
                .zip(stored)
                .map(|(seg, stored)| {
                    open_segment_owned(&cipher, seg.part, seg.index, seg.last, stored)
                })
                .collect()
        };
        let job = if plain_len < INLINE_DECRYPT {
            Decrypting::Done(open())
        } else {
            Decrypting::Running(tokio::task::spawn_blocking(open))
        };
        self.queue.push_back((segs, job));
        Ok(())
    }

    fn stop(&mut self) {
        self.pos = None;
        self.queue.clear();
        self.ready.clear();
        self.pending = None;
    }

    async fn fill(&mut self, n: usize) -> std::result::Result<(), Fill> {
        while self.buf.len() < n {
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(Fill::Failed(e)),
                None => return Err(Fill::Short),
            }
        }
        Ok(())
    }

    /// Report the replica that served `problem`, and continue from `seg` on another one.
    async fn fail_over(&mut self, seg: &SegmentRef, problem: Error) -> Result<()> {
        let problem = with_key_context(problem, &self.key);
        let Some(served) = self.served_by.clone() else {
            return Err(problem);
        };
        let replica = served.replica;
        if self.exclude.contains(&replica) {
            return Err(problem);
        }
        log::warn!(
            "{}/{}: replica {replica} served data that failed authentication ({problem}); \
             reading from another replica",
            self.bucket,
            self.key
        );
        served
            .layer
            .report_corrupt(&self.bucket, &self.key, &replica)
            .await;
        self.exclude.push(replica);
        let last = self.layout.segment(self.last);
        let range = ByteRange::FromTo(seg.stored_start, last.stored_start + last.stored_len() - 1);
        let got = self
            .inner
            .get_object(
                &self.bucket,
                &self.key,
                GetOptions {
                    range: Some(range),
                    conditions: if_match(&self.stored_etag),
                    extensions: replicas::excluding(&self.exclude),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                Error::Corrupt(format!("{problem}; no other replica could serve it: {e}"))
            })?;
        match replicas::served_by(&got) {
            Some(s) if !self.exclude.contains(&s.replica) => {}
            _ => {
                return Err(Error::Corrupt(format!(
                    "{problem}; no other replica is left to read from"
                )));
            }
        }
        self.stream = got.body;
        self.served_by = got.extensions.get::<ServedBy>().cloned();
        self.buf.clear();
        Ok(())
    }
}
