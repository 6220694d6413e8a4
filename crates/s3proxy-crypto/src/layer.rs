//! `Encrypted`: the encryption layer as a [`Backend`].

mod retry;

use crate::format::*;
use crate::keys::Keyring;
use crate::list_cache::{DEFAULT_LIST_CACHE_BYTES, ListCache};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chacha20poly1305::XChaCha20Poly1305;
use futures::StreamExt;
use s3proxy_core::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Parts remembered per instance so CompleteMultipartUpload can check the plaintext ETags
/// a client lists and ListParts can show them. Bounded; losing it only weakens those two.
const PART_CACHE_LIMIT: usize = 100_000;

/// PUT bodies up to this size (without Content-MD5) are read into memory and hashed before
/// they are written, so their info record goes out with the object.
const INLINE_PUT_LIMIT: u64 = 1 << 20;

/// Batches of segments decrypted ahead of the one being served, on blocking threads.
const DECRYPT_AHEAD: usize = 3;
/// Most segments in one decryption batch. A thread hop and its wake-ups cost about as much
/// CPU as decrypting a few KiB, so a GET hands segments to the blocking pool in batches
/// (doubling from one segment, so the first bytes are not held back) instead of one by one.
const DECRYPT_BATCH: usize = 8;
/// Batches with less plaintext than this are decrypted inline: a thread hop would cost more.
const INLINE_DECRYPT: u64 = 16 << 10;

/// A [`Backend`] that stores everything in its inner backend encrypted and authenticated
/// (format: docs/FORMAT.md) while showing plaintext sizes, ETags and data to its callers.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use s3proxy_core::{Backend, BucketName, ObjectKey, PutOptions, GetOptions, collect_body};
/// use s3proxy_crypto::{Encrypted, Keyring, MasterKey};
/// let inner = std::sync::Arc::new(s3proxy_backends::Memory::new("mem"));
/// let enc = Encrypted::new(inner.clone(), Keyring::single(MasterKey::generate()));
/// let (bucket, key) = (BucketName::new("docs").unwrap(), ObjectKey::new("a.txt").unwrap());
/// enc.create_bucket(&bucket).await.unwrap();
/// let put = enc.put_object(&bucket, &key, bytes::Bytes::from("secret").into(), PutOptions::default())
///     .await.unwrap();
/// assert_eq!(put.etag, "5ebe2294ecd0e0f08eab7690d2a6ee69"); // MD5 of the plaintext
/// let got = enc.get_object(&bucket, &key, GetOptions::default()).await.unwrap();
/// assert_eq!(collect_body(got.body, 100).await.unwrap(), "secret");
/// let raw = inner.get_object(&bucket, &key, GetOptions::default()).await.unwrap();
/// assert_eq!(raw.info.size, 6 + 40); // nonce and tag around one segment
/// # });
/// ```
pub struct Encrypted {
    pub(crate) inner: DynBackend,
    ring: Arc<Keyring>,
    parts: Mutex<HashMap<(String, u32), PartRecord>>,
    /// Plaintext sizes and ETags for listings (list_cache.rs).
    pub(crate) listed: ListCache,
}

#[derive(Clone)]
struct PartRecord {
    plain_md5: String,
    stored_etag: String,
}

/// What the encryption metadata of a stored object says.
pub(crate) struct Decoded {
    data_key: [u8; 32],
    pub(crate) layout: Layout,
    pub(crate) etag: String,
    pub(crate) has_info: bool,
}

fn strip_enc(internal: &mut BTreeMap<String, String>) {
    internal.retain(|k, _| !k.starts_with(ENC_PREFIX));
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn if_match(etag: &str) -> Conditions {
    Conditions {
        if_match: Some(quoted(etag)),
        ..Default::default()
    }
}

enum GetFailure {
    /// Give up with this error.
    Fatal(Error),
    /// The replica named served something unauthentic.
    Corrupt(Error, Option<String>),
    /// The object changed between our HEAD and GET.
    Raced,
}

impl Encrypted {
    /// Wrap `inner`, encrypting with the ring's active key and reading with any of its keys.
    pub fn new(inner: DynBackend, ring: Keyring) -> Encrypted {
        Encrypted {
            inner,
            ring: Arc::new(ring),
            parts: Mutex::new(HashMap::new()),
            listed: ListCache::new(DEFAULT_LIST_CACHE_BYTES),
        }
    }

    /// Keep at most about `bytes` of plaintext sizes and ETags for listings over backends
    /// that list no metadata (S3); 0 looks every such object up on every listing.
    pub fn with_list_cache(mut self, bytes: usize) -> Encrypted {
        self.listed = ListCache::new(bytes);
        self
    }

    /// The listing cache: entries held and the bytes they are counted as.
    pub fn list_cache_usage(&self) -> (usize, usize) {
        self.listed.usage()
    }

    /// The keyring in use.
    pub fn keyring(&self) -> &Keyring {
        &self.ring
    }

    pub(crate) fn decode(&self, key: &ObjectKey, stored: &ObjectInfo) -> Result<Decoded> {
        let internal = &stored.metadata.internal;
        let wrapped = internal.get(KEY_META).ok_or_else(|| {
            Error::Corrupt(format!(
                "{key}: the stored object has no encryption metadata (written around the \
                 encryption layer, or its metadata was stripped)"
            ))
        })?;
        let data_key =
            unwrap_data_key(&self.ring, wrapped).map_err(|e| with_key_context(e, key))?;
        let decoded = match internal.get(INFO_META) {
            Some(sealed) => {
                let info = open_info(&data_key, sealed).map_err(|e| with_key_context(e, key))?;
                if info.meta != metadata_hash(&stored.metadata) {
                    return Err(Error::Corrupt(format!(
                        "{key}: content headers or user metadata were changed in storage"
                    )));
                }
                let layout = match &info.parts {
                    Some(parts) => Layout::decode(parts)?,
                    None => Layout::single(info.size),
                };
                if layout.plain_size() != info.size {
                    return Err(Error::Corrupt(format!("{key}: inconsistent info record")));
                }
                Decoded {
                    data_key,
                    layout,
                    etag: info.etag,
                    has_info: true,
                }
            }
            None => {
                if stored.etag.contains('-') {
                    return Err(Error::Corrupt(format!(
                        "{key}: multipart object without its layout record"
                    )));
                }
                let size = plain_size(stored.size).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "{key}: stored size {} is not a valid encrypted size",
                        stored.size
                    ))
                })?;
                Decoded {
                    data_key,
                    layout: Layout::single(size),
                    etag: stored.etag.clone(),
                    has_info: false,
                }
            }
        };
        if decoded.layout.stored_size() != stored.size {
            return Err(Error::Corrupt(format!(
                "{key}: stored size {} differs from the {} bytes its layout needs (truncated, \
                 extended or parts dropped)",
                stored.size,
                decoded.layout.stored_size()
            )));
        }
        Ok(decoded)
    }

    fn plain_info(stored: &ObjectInfo, decoded: &Decoded) -> ObjectInfo {
        let mut metadata = stored.metadata.clone();
        strip_enc(&mut metadata.internal);
        ObjectInfo {
            key: stored.key.clone(),
            size: decoded.layout.plain_size(),
            etag: decoded.etag.clone(),
            last_modified: stored.last_modified,
            metadata,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reader(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &str,
        decoded: &Decoded,
        range: Option<(u64, u64)>,
        exclude: Vec<String>,
        stream: ByteStream,
        served_by: Option<String>,
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
            stored_etag: stored_etag.to_string(),
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

    async fn get_once(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: &GetOptions,
        exclude: &[String],
    ) -> std::result::Result<GetResult, GetFailure> {
        use GetFailure::*;
        let base = GetOptions {
            range: None,
            conditions: Conditions::default(),
            exclude_replicas: exclude.to_vec(),
        };
        let classify = |e: Error, replica: Option<String>| match e {
            Error::Corrupt(_) => Corrupt(e, replica),
            e => Fatal(e),
        };
        match opts.range {
            None => {
                let got = self
                    .inner
                    .get_object(bucket, key, base)
                    .await
                    .map_err(Fatal)?;
                let decoded = self
                    .decode(key, &got.info)
                    .map_err(|e| classify(e, got.served_by.clone()))?;
                self.remember_listed(bucket, key.as_str(), &got.info.etag, &[], &decoded);
                let info = Self::plain_info(&got.info, &decoded);
                opts.conditions.check(&info, false).map_err(Fatal)?;
                let body = self.reader(
                    bucket,
                    key,
                    &got.info.etag,
                    &decoded,
                    None,
                    exclude.to_vec(),
                    got.body,
                    got.served_by.clone(),
                );
                Ok(GetResult {
                    info,
                    range: None,
                    body,
                    served_by: got.served_by,
                })
            }
            Some(range) => {
                let (stored, forms) = self.head_inner(bucket, key, base).await.map_err(Fatal)?;
                let decoded = self.decode(key, &stored).map_err(|e| classify(e, None))?;
                self.remember_listed(bucket, key.as_str(), &stored.etag, &forms, &decoded);
                let info = Self::plain_info(&stored, &decoded);
                opts.conditions.check(&info, false).map_err(Fatal)?;
                let (a, b) = range.resolve(info.size).map_err(Fatal)?;
                let (first, last) = decoded.layout.covering(Some((a, b)));
                let (first, last) = (decoded.layout.segment(first), decoded.layout.segment(last));
                let stored_range = ByteRange::FromTo(
                    first.stored_start,
                    last.stored_start + last.stored_len() - 1,
                );
                let got = self
                    .inner
                    .get_object(
                        bucket,
                        key,
                        GetOptions {
                            range: Some(stored_range),
                            conditions: if_match(&stored.etag),
                            exclude_replicas: exclude.to_vec(),
                        },
                    )
                    .await
                    .map_err(|e| match e {
                        Error::PreconditionFailed | Error::NoSuchKey => Raced,
                        e => Fatal(e),
                    })?;
                let body = self.reader(
                    bucket,
                    key,
                    &stored.etag,
                    &decoded,
                    Some((a, b)),
                    exclude.to_vec(),
                    got.body,
                    got.served_by.clone(),
                );
                Ok(GetResult {
                    info,
                    range: Some((a, b)),
                    body,
                    served_by: got.served_by,
                })
            }
        }
    }

    fn remember_part(&self, inner_id: &str, part: u32, record: PartRecord) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        if parts.len() >= PART_CACHE_LIMIT {
            parts.clear();
        }
        parts.insert((inner_id.to_string(), part), record);
    }

    fn known_part(&self, inner_id: &str, part: u32, stored_etag: &str) -> Option<String> {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts
            .get(&(inner_id.to_string(), part))
            .filter(|r| r.stored_etag == stored_etag)
            .map(|r| r.plain_md5.clone())
    }

    fn forget_upload(&self, inner_id: &str) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.retain(|(id, _), _| id != inner_id);
    }

    fn open_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<(UploadId, [u8; 32])> {
        let (inner, data_key) = parse_upload_token(
            &self.ring,
            bucket.as_str(),
            key.as_str(),
            upload_id.as_str(),
        )
        .ok_or(Error::NoSuchUpload)?;
        Ok((
            UploadId::new(inner).map_err(|_| Error::NoSuchUpload)?,
            data_key,
        ))
    }

    fn token(&self, bucket: &str, key: &str, inner: &UploadId) -> Result<UploadId> {
        UploadId::new(upload_token(
            self.ring.active(),
            bucket,
            key,
            inner.as_str(),
        ))
        .map_err(|_| {
            Error::Internal(format!(
                "the backend's upload id is too long to carry the encryption layer's id: {inner}"
            ))
        })
    }

    async fn all_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        inner_id: &UploadId,
    ) -> Result<BTreeMap<u32, PartInfo>> {
        let mut all = BTreeMap::new();
        let mut marker = 0;
        loop {
            let page = self
                .inner
                .list_parts(
                    bucket,
                    key,
                    inner_id,
                    ListPartsOptions {
                        part_number_marker: marker,
                        max_parts: 1000,
                    },
                )
                .await?;
            for p in page.parts {
                marker = marker.max(p.part_number);
                all.insert(p.part_number, p);
            }
            match page.next_part_number_marker {
                Some(next) if page.is_truncated && next > 0 => marker = next,
                _ if page.is_truncated => {}
                _ => break,
            }
        }
        Ok(all)
    }

    /// Give an object already stored new metadata (its info record), by copying it onto
    /// itself: the inner backend moves no data through this process. The copy only
    /// happens while the stored object is still the one we wrote.
    async fn attach_info(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &str,
        metadata: ObjectMetadata,
    ) -> Result<PutResult> {
        self.inner
            .copy_object(
                bucket,
                key,
                bucket,
                key,
                CopyOptions {
                    directive: MetadataDirective::Replace(metadata),
                    source_conditions: if_match(stored_etag),
                },
            )
            .await
    }
}

fn with_key_context(e: Error, key: &ObjectKey) -> Error {
    match e {
        Error::Corrupt(m) => Error::Corrupt(format!("{key}: {m}")),
        Error::Internal(m) => Error::Internal(format!("{key}: {m}")),
        e => e,
    }
}

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
enum PlainDigest {
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
    cipher: XChaCha20Poly1305,
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
fn seal_body(
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

fn take_digest(slot: &Mutex<Option<[u8; 16]>>) -> Result<String> {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(hex::encode)
        .ok_or_else(|| {
            Error::Internal("the backend stored a body it did not read to the end".into())
        })
}

/// Verifies and decrypts stored segments in order, failing over to another replica when
/// one does not authenticate.
struct Reader {
    inner: DynBackend,
    bucket: BucketName,
    key: ObjectKey,
    stored_etag: String,
    exclude: Vec<String>,
    cipher: XChaCha20Poly1305,
    layout: Arc<Layout>,
    pos: Option<SegmentPos>,
    last: SegmentPos,
    /// Plaintext bytes to yield, half-open.
    want: (u64, u64),
    stream: ByteStream,
    buf: BytesMut,
    served_by: Option<String>,
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
        let Some(replica) = self.served_by.clone() else {
            return Err(problem);
        };
        if self.exclude.contains(&replica) {
            return Err(problem);
        }
        log::warn!(
            "{}/{}: replica {replica} served data that failed authentication ({problem}); \
             reading from another replica",
            self.bucket,
            self.key
        );
        self.inner
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
                    exclude_replicas: self.exclude.clone(),
                },
            )
            .await
            .map_err(|e| {
                Error::Corrupt(format!("{problem}; no other replica could serve it: {e}"))
            })?;
        match &got.served_by {
            Some(name) if !self.exclude.contains(name) => {}
            _ => {
                return Err(Error::Corrupt(format!(
                    "{problem}; no other replica is left to read from"
                )));
            }
        }
        self.stream = got.body;
        self.served_by = got.served_by;
        self.buf.clear();
        Ok(())
    }
}

#[async_trait]
impl Backend for Encrypted {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.inner.create_bucket(bucket).await
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.inner.delete_bucket(bucket).await
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.inner.head_bucket(bucket).await
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let data_key: [u8; 32] = rand::random();
        let mut metadata = opts.metadata;
        strip_enc(&mut metadata.internal);
        metadata.internal.insert(
            KEY_META.into(),
            wrap_data_key(self.ring.active(), &data_key),
        );
        let (size, meta_hash) = (body.length, metadata_hash(&metadata));
        let info = |etag: String| Info {
            size,
            etag,
            parts: None,
            meta: meta_hash.clone(),
        };
        // A small body is read (and hashed) first, so that, as with Content-MD5, the ETag
        // is known before the write and one write suffices: no second request to attach
        // the info record, which would make the backend copy the object.
        let (body, plain_digest) = match opts.content_md5 {
            None if body.length <= INLINE_PUT_LIMIT => {
                let mut stream = Md5Stream::new(body.stream, body.length);
                let mut buf = BytesMut::with_capacity(body.length as usize);
                while let Some(chunk) = stream.next().await {
                    buf.extend_from_slice(&chunk?);
                }
                let md5 = stream.digest();
                (Body::from(buf.freeze()), PlainDigest::Known(md5))
            }
            md5 => (body, PlainDigest::Hash(md5)),
        };
        let etag_known = match plain_digest {
            PlainDigest::Known(md5) | PlainDigest::Hash(Some(md5)) => Some(md5),
            PlainDigest::Hash(None) => None,
        };
        if let Some(md5) = etag_known {
            let sealed = seal_info(&data_key, &info(hex::encode(md5)));
            metadata.internal.insert(INFO_META.into(), sealed);
        }
        let (stored, digest) = seal_body(body, &data_key, 0, plain_digest);
        let put = self
            .inner
            .put_object(
                bucket,
                key,
                stored,
                PutOptions {
                    metadata: metadata.clone(),
                    content_md5: None,
                },
            )
            .await?;
        let etag = take_digest(&digest)?;
        let mut last_modified = put.last_modified;
        let remember = |stored_etag: &str| {
            let view = (size, etag.clone());
            self.remember_written(bucket, key, stored_etag, stored_size(size), view);
        };
        if etag_known.is_some() {
            remember(&put.etag);
        } else {
            let sealed = seal_info(&data_key, &info(etag.clone()));
            metadata.internal.insert(INFO_META.into(), sealed);
            match self.attach_info(bucket, key, &put.etag, metadata).await {
                Ok(r) => {
                    remember(&r.etag);
                    last_modified = r.last_modified
                }
                // Overwritten meanwhile: the newer object stands.
                Err(Error::PreconditionFailed) | Err(Error::NoSuchKey) => {}
                Err(e) => log::warn!(
                    "{bucket}/{key}: stored, but recording its ETag failed ({e}); HEAD and \
                     LIST show the stored ETag until it is rewritten"
                ),
            }
        }
        Ok(PutResult {
            etag,
            last_modified,
        })
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let mut exclude = opts.exclude_replicas.clone();
        let mut last_problem = None;
        for _ in 0..4 {
            match self.get_once(bucket, key, &opts, &exclude).await {
                Ok(got) => return Ok(got),
                Err(GetFailure::Fatal(e)) => return Err(e),
                Err(GetFailure::Corrupt(e, Some(replica))) if !exclude.contains(&replica) => {
                    log::warn!("{bucket}/{key}: replica {replica}: {e}; trying another replica");
                    self.inner.report_corrupt(bucket, key, &replica).await;
                    exclude.push(replica);
                    last_problem = Some(e);
                }
                Err(GetFailure::Corrupt(e, _)) => return Err(e),
                Err(GetFailure::Raced) => {}
            }
        }
        Err(last_problem.unwrap_or_else(|| {
            Error::ServiceUnavailable(format!("{bucket}/{key} kept changing while being read"))
        }))
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let (stored, forms) = self
            .head_inner(
                bucket,
                key,
                GetOptions {
                    range: None,
                    conditions: Conditions::default(),
                    exclude_replicas: opts.exclude_replicas,
                },
            )
            .await?;
        let decoded = self.decode(key, &stored)?;
        self.remember_listed(bucket, key.as_str(), &stored.etag, &forms, &decoded);
        let info = Self::plain_info(&stored, &decoded);
        opts.conditions.check(&info, false)?;
        Ok(info)
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.listed.forget(bucket.as_str(), key.as_str());
        self.inner.delete_object(bucket, key).await
    }

    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        for key in &keys {
            self.listed.forget(bucket.as_str(), key.as_str());
        }
        self.inner.delete_objects(bucket, keys).await
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        let (stored, _) = self
            .head_inner(src_bucket, src_key, GetOptions::default())
            .await?;
        let decoded = self.decode(src_key, &stored)?;
        let info = Self::plain_info(&stored, &decoded);
        opts.source_conditions.check(&info, true)?;
        let mut metadata = match opts.directive {
            MetadataDirective::Copy => info.metadata.clone(),
            MetadataDirective::Replace(new) => new,
        };
        strip_enc(&mut metadata.internal);
        // The data key is re-wrapped (with the active master key) and the info record
        // re-sealed for the new metadata; the ciphertext is copied by the inner backend.
        metadata.internal.insert(
            KEY_META.into(),
            wrap_data_key(self.ring.active(), &decoded.data_key),
        );
        if decoded.has_info {
            let parts = (decoded.layout.parts().len() > 1 || decoded.etag.contains('-'))
                .then(|| decoded.layout.encode());
            let sealed = seal_info(
                &decoded.data_key,
                &Info {
                    size: info.size,
                    etag: info.etag.clone(),
                    parts,
                    meta: metadata_hash(&metadata),
                },
            );
            metadata.internal.insert(INFO_META.into(), sealed);
        }
        let copied = self
            .inner
            .copy_object(
                src_bucket,
                src_key,
                dst_bucket,
                dst_key,
                CopyOptions {
                    directive: MetadataDirective::Replace(metadata),
                    source_conditions: if_match(&stored.etag),
                },
            )
            .await?;
        if stored.etag.contains('-') {
            // A copy of a multipart object may be given another ETag than the copy reports.
            self.learn_listed(dst_bucket, dst_key).await;
        } else {
            self.remember_listed(dst_bucket, dst_key.as_str(), &copied.etag, &[], &decoded);
        }
        Ok(PutResult {
            etag: info.etag,
            last_modified: copied.last_modified,
        })
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        let mut page = self.inner.list_objects(bucket, opts).await?;
        self.plaintext_listing(bucket, &mut page).await?;
        Ok(page)
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        let mut metadata = opts.metadata;
        strip_enc(&mut metadata.internal);
        let inner = self
            .inner
            .create_multipart_upload(bucket, key, MultipartOptions { metadata })
            .await?;
        self.token(bucket.as_str(), key.as_str(), &inner)
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<String> {
        let (inner_id, data_key) = self.open_upload(bucket, key, upload_id)?;
        let (stored, digest) = seal_body(
            body,
            &data_key,
            part_number,
            PlainDigest::Hash(opts.content_md5),
        );
        let stored_etag = self
            .inner
            .upload_part(
                bucket,
                key,
                &inner_id,
                part_number,
                stored,
                PartOptions::default(),
            )
            .await?;
        let plain_md5 = take_digest(&digest)?;
        self.remember_part(
            inner_id.as_str(),
            part_number,
            PartRecord {
                plain_md5: plain_md5.clone(),
                stored_etag,
            },
        );
        Ok(plain_md5)
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        let (inner_id, data_key) = self.open_upload(bucket, key, upload_id)?;
        if parts.is_empty() {
            return Err(Error::MalformedXml);
        }
        if parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(Error::InvalidPartOrder);
        }
        let stored_parts = match self.all_parts(bucket, key, &inner_id).await {
            Err(Error::NoSuchUpload) => {
                return self
                    .completed_already(bucket, key, &data_key, &parts)
                    .await
                    .ok_or(Error::NoSuchUpload);
            }
            other => other?,
        };
        let mut inner_parts = Vec::with_capacity(parts.len());
        let mut plain_md5s = Vec::with_capacity(parts.len());
        let mut spans = Vec::with_capacity(parts.len());
        for p in &parts {
            let have = stored_parts.get(&p.part_number).ok_or(Error::InvalidPart)?;
            let claimed = p.etag.trim_matches('"').to_ascii_lowercase();
            if claimed.len() != 32 || hex::decode(&claimed).is_err() {
                return Err(Error::InvalidPart);
            }
            // Parts uploaded through this instance are checked; others (uploaded through
            // another instance) are taken as the client lists them.
            if let Some(known) = self.known_part(inner_id.as_str(), p.part_number, &have.etag)
                && known != claimed
            {
                return Err(Error::InvalidPart);
            }
            let plain = plain_size(have.size).ok_or_else(|| {
                Error::Corrupt(format!("part {} has an invalid stored size", p.part_number))
            })?;
            spans.push((p.part_number, plain));
            inner_parts.push(CompletedPart {
                part_number: p.part_number,
                etag: have.etag.clone(),
            });
            plain_md5s.push(claimed);
        }
        if spans[..spans.len() - 1]
            .iter()
            .any(|(_, size)| *size < MIN_PART_SIZE)
        {
            return Err(Error::EntityTooSmall);
        }
        let done = self
            .inner
            .complete_multipart_upload(bucket, key, &inner_id, inner_parts)
            .await?;
        self.forget_upload(inner_id.as_str());
        let layout = Layout::from_parts(spans);
        let etag = multipart_etag(plain_md5s.iter().map(String::as_str))?;
        // Metadata is fixed when an upload starts, before the size and ETag are known: the
        // key and info records are attached now, by a copy onto itself.
        let (stored, _) = self
            .head_inner(
                bucket,
                key,
                GetOptions {
                    conditions: if_match(&done.etag),
                    ..Default::default()
                },
            )
            .await?;
        let mut metadata = stored.metadata;
        strip_enc(&mut metadata.internal);
        metadata.internal.insert(
            KEY_META.into(),
            wrap_data_key(self.ring.active(), &data_key),
        );
        let sealed = seal_info(
            &data_key,
            &Info {
                size: layout.plain_size(),
                etag: etag.clone(),
                parts: Some(layout.encode()),
                meta: metadata_hash(&metadata),
            },
        );
        metadata.internal.insert(INFO_META.into(), sealed);
        let copied = self.attach_info(bucket, key, &done.etag, metadata).await?;
        self.learn_listed(bucket, key).await;
        Ok(PutResult {
            etag,
            last_modified: copied.last_modified,
        })
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        let (inner_id, _) = self.open_upload(bucket, key, upload_id)?;
        self.inner
            .abort_multipart_upload(bucket, key, &inner_id)
            .await?;
        self.forget_upload(inner_id.as_str());
        Ok(())
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        let (inner_id, _) = self.open_upload(bucket, key, upload_id)?;
        let mut page = self.inner.list_parts(bucket, key, &inner_id, opts).await?;
        for p in &mut page.parts {
            if let Some(md5) = self.known_part(inner_id.as_str(), p.part_number, &p.etag) {
                p.etag = md5;
            }
            if let Some(size) = plain_size(p.size) {
                p.size = size;
            }
        }
        Ok(page)
    }

    async fn report_corrupt(&self, bucket: &BucketName, key: &ObjectKey, replica: &str) {
        self.inner.report_corrupt(bucket, key, replica).await
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        let mut page = self.inner.list_multipart_uploads(bucket, opts).await?;
        for u in &mut page.uploads {
            u.upload_id = self.token(bucket.as_str(), &u.key, &u.upload_id)?;
        }
        Ok(page)
    }
}
