//! The sealing pipeline: a plaintext body (a PUT or a part) becomes stored segments,
//! hashed and sealed on blocking threads while the body streams in and out.

use crate::aead::Cipher;
use crate::format::*;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3proxy_core::*;
use std::sync::{Arc, Mutex};

/// Full segments sealed by one blocking task.
const SEAL_BATCH: usize = 4;
/// Batches being sealed at once: with the hashing thread and the I/O tasks, enough to keep
/// every core busy on a PUT, and bounded (a few hundred KiB per request).
const SEAL_IN_FLIGHT: usize = 2;
/// Plaintext chunks queued for the MD5 thread.
const HASH_QUEUE: usize = 32;

type DigestSlot = Arc<Mutex<Option<[u8; 16]>>>;

/// A segment buffer: the fresh random nonce, then room for the plaintext and the tag.
fn segment_buffer() -> BytesMut {
    let mut buf = BytesMut::with_capacity(STORED_SEGMENT as usize);
    buf.extend_from_slice(&rand::random::<[u8; 24]>());
    buf
}

/// How a PUT's plaintext digest is obtained.
#[derive(Clone, Copy)]
pub(super) enum PlainDigest {
    /// Hash the body as it streams (on its own thread); compare with the client's
    /// Content-MD5 when there is one.
    Hash(Option<[u8; 16]>),
    /// Already known (the body was hashed while it was collected).
    Known([u8; 16]),
}

/// Seals a plaintext body into stored segments as a pipeline: this task reads the body
/// and assembles segments, one blocking thread computes the plaintext MD5, and batches
/// of segments are sealed on blocking threads, so hashing, sealing and the network I/O
/// on either side overlap instead of running in series on one task.
struct SealPump {
    length: u64,
    cipher: Cipher,
    part: u32,
    digest: PlainDigest,
    slot: DigestSlot,
    out: tokio::sync::mpsc::Sender<Result<Bytes>>,
}

/// The stored body's reader went away: stop quietly.
struct Gone;

impl SealPump {
    async fn run(self, input: ByteStream) {
        let out = self.out.clone();
        match self.pump(input).await {
            Ok(Ok(())) | Ok(Err(Gone)) => {}
            Err(e) => {
                let _ = out.send(Err(e)).await;
            }
        }
    }

    async fn send_sealed(
        &self,
        in_flight: &mut std::collections::VecDeque<tokio::task::JoinHandle<Vec<Bytes>>>,
        keep: usize,
    ) -> Result<std::result::Result<(), Gone>> {
        while in_flight.len() > keep {
            let sealed = in_flight
                .pop_front()
                .expect("non-empty")
                .await
                .map_err(|e| Error::Internal(format!("sealing segments: {e}")))?;
            for segment in sealed {
                if self.out.send(Ok(segment)).await.is_err() {
                    return Ok(Err(Gone));
                }
            }
        }
        Ok(Ok(()))
    }

    async fn pump(&self, mut input: ByteStream) -> Result<std::result::Result<(), Gone>> {
        let count = segment_count(self.length);
        let (hash_tx, hasher) = match self.digest {
            PlainDigest::Hash(_) => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
                let hasher = tokio::task::spawn_blocking(move || {
                    use md5::{Digest, Md5};
                    let mut md5 = Md5::new();
                    while let Some(chunk) = rx.blocking_recv() {
                        md5.update(&chunk);
                    }
                    <[u8; 16]>::from(md5.finalize())
                });
                (Some(tx), Some(hasher))
            }
            PlainDigest::Known(_) => (None, None),
        };
        let mut in_flight = std::collections::VecDeque::new();
        let mut batch: Vec<(BytesMut, u32)> = Vec::with_capacity(SEAL_BATCH);
        let mut segment = segment_buffer();
        let (mut seen, mut index) = (0u64, 0u64);
        let full = (NONCE_LEN + SEGMENT_SIZE) as usize;
        while let Some(chunk) = input.next().await {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > self.length {
                return Err(Error::InvalidRequest(
                    "the body is longer than its declared Content-Length".into(),
                ));
            }
            if let Some(tx) = &hash_tx
                && tx.send(chunk.clone()).await.is_err()
            {
                return Err(Error::Internal("the MD5 thread stopped".into()));
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let n = (full - segment.len()).min(rest.len());
                segment.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                // The last segment is held back until the body has ended with the
                // promised length (and digest), so a short, long or corrupted body never
                // yields a complete-looking object.
                if segment.len() == full && index + 1 < count {
                    batch.push((
                        std::mem::replace(&mut segment, segment_buffer()),
                        index as u32,
                    ));
                    index += 1;
                    if batch.len() == SEAL_BATCH {
                        in_flight.push_back(self.seal_batch(std::mem::take(&mut batch)));
                        if let Err(gone) = self.send_sealed(&mut in_flight, SEAL_IN_FLIGHT).await? {
                            return Ok(Err(gone));
                        }
                    }
                }
            }
        }
        if seen != self.length {
            return Err(Error::IncompleteBody);
        }
        if !batch.is_empty() {
            in_flight.push_back(self.seal_batch(batch));
        }
        if let Err(gone) = self.send_sealed(&mut in_flight, 0).await? {
            return Ok(Err(gone));
        }
        let digest = match (self.digest, hasher) {
            (PlainDigest::Known(d), _) => d,
            (PlainDigest::Hash(_), Some(hasher)) => {
                drop(hash_tx);
                hasher
                    .await
                    .map_err(|e| Error::Internal(format!("hashing the body: {e}")))?
            }
            (PlainDigest::Hash(_), None) => unreachable!("a hasher is started for Hash"),
        };
        if let PlainDigest::Hash(Some(want)) = self.digest
            && want != digest
        {
            return Err(Error::BadDigest);
        }
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        seal_segment_in_place(&self.cipher, self.part, index as u32, true, &mut segment);
        if self.out.send(Ok(segment.freeze())).await.is_err() {
            return Ok(Err(Gone));
        }
        Ok(Ok(()))
    }

    fn seal_batch(&self, batch: Vec<(BytesMut, u32)>) -> tokio::task::JoinHandle<Vec<Bytes>> {
        let (cipher, part) = (self.cipher.clone(), self.part);
        tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|(mut buf, index)| {
                    seal_segment_in_place(&cipher, part, index, false, &mut buf);
                    buf.freeze()
                })
                .collect()
        })
    }
}

/// The stored body for a plaintext body, and where its MD5 appears once it has ended.
pub(super) fn seal_body(
    body: Body,
    data_key: &[u8; 32],
    part: u32,
    digest: PlainDigest,
) -> (Body, DigestSlot) {
    let slot = DigestSlot::default();
    let (tx, rx) = tokio::sync::mpsc::channel(SEAL_BATCH * (SEAL_IN_FLIGHT + 1));
    let pump = SealPump {
        length: body.length,
        cipher: data_cipher(data_key),
        part,
        digest,
        slot: slot.clone(),
        out: tx,
    };
    tokio::spawn(pump.run(body.stream));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        Body {
            stream: Box::pin(stream),
            length: stored_size(body.length),
        },
        slot,
    )
}

/// Plaintext bodies up to this size, already in memory, are sealed on the calling task:
/// the pipeline's task, channel and thread hops cost more than sealing a few KiB (a 4 KiB
/// PUT is one segment).
pub(super) const INLINE_SEAL: u64 = 16 << 10;

/// The stored body for a small plaintext already in memory (at most [`INLINE_SEAL`]
/// bytes, so one final segment) whose MD5 is known: what [`seal_body`] would give, sealed
/// here and now.
pub(super) fn seal_small(
    plain: &[u8],
    data_key: &[u8; 32],
    part: u32,
    md5: [u8; 16],
) -> (Body, DigestSlot) {
    debug_assert!(plain.len() as u64 <= INLINE_SEAL);
    let mut segment = segment_buffer();
    segment.extend_from_slice(plain);
    seal_segment_in_place(&data_cipher(data_key), part, 0, true, &mut segment);
    let stored = segment.freeze();
    debug_assert_eq!(stored.len() as u64, stored_size(plain.len() as u64));
    // The digest is given once the backend has taken the body's one chunk, as the
    // pipeline gives it at the body's end: a backend that answers without reading the
    // body is still caught by `take_digest`.
    let slot: DigestSlot = Arc::new(Mutex::new(None));
    let length = stored.len() as u64;
    let filled = slot.clone();
    let stream = futures::stream::once(async move {
        *filled.lock().unwrap_or_else(|e| e.into_inner()) = Some(md5);
        Ok(stored)
    });
    (
        Body {
            stream: Box::pin(stream),
            length,
        },
        slot,
    )
}

pub(super) fn take_digest(slot: &Mutex<Option<[u8; 16]>>) -> Result<String> {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(hex::encode)
        .ok_or_else(|| {
            Error::Internal("the backend stored a body it did not read to the end".into())
        })
}
