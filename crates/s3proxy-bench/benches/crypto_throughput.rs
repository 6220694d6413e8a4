//! Encrypt and decrypt throughput of the encryption layer over the Memory backend, against
//! raw ChaCha20-Poly1305 and XChaCha20-Poly1305 sealing of 64 KiB buffers in the same run.
//! The layer is also measured over a sink (a backend that only drains what it is given),
//! which isolates the layer's own cost from the Memory backend's MD5 of the stored bytes;
//! and raw MD5, which a PUT needs for the plaintext ETag, for comparison.
//! Run: `cargo bench -p s3proxy-bench --bench crypto_throughput`.

use bytes::Bytes;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, XChaCha20Poly1305, XNonce};
use futures::StreamExt;
use s3proxy_core::*;
use s3proxy_crypto::{Encrypted, Keyring, MasterKey};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

const TOTAL: usize = 256 << 20;
const OBJECT: usize = 64 << 20;
const SEG: usize = 64 << 10;

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / (1 << 20) as f64
}

/// Raw AEAD rates over 64 KiB buffers: the layer's XChaCha20-Poly1305
/// (`s3proxy_crypto::aead`, sealing and opening), and for reference the `chacha20poly1305`
/// crate's XChaCha20-Poly1305 and ChaCha20-Poly1305.
struct RawAead {
    layers_seal: f64,
    layers_open: f64,
    reference_xchacha: f64,
    reference_chacha: f64,
}

fn raw_aead() -> RawAead {
    let mut buf = vec![7u8; SEG];
    let c = ChaCha20Poly1305::new(&[1u8; 32].into());
    let start = Instant::now();
    for i in 0..TOTAL / SEG {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = c
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"aad", &mut buf)
            .unwrap();
        std::hint::black_box(tag);
    }
    let reference_chacha = mbps(TOTAL, start.elapsed().as_secs_f64());
    let x = XChaCha20Poly1305::new(&[1u8; 32].into());
    let start = Instant::now();
    for _ in 0..TOTAL / SEG {
        let nonce: [u8; 24] = rand::random();
        let tag = x
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"aad", &mut buf)
            .unwrap();
        std::hint::black_box(tag);
    }
    let reference_xchacha = mbps(TOTAL, start.elapsed().as_secs_f64());
    let ours = s3proxy_crypto::aead::Cipher::new(&[1u8; 32]);
    let start = Instant::now();
    for _ in 0..TOTAL / SEG {
        let nonce: [u8; 24] = rand::random();
        std::hint::black_box(ours.seal_in_place(&nonce, b"aad", &mut buf));
    }
    let layers_seal = mbps(TOTAL, start.elapsed().as_secs_f64());
    let nonce = [5u8; 24];
    let plain = buf.clone();
    let tag = ours.seal_in_place(&nonce, b"aad", &mut buf);
    let sealed = buf.clone();
    let start = Instant::now();
    for _ in 0..TOTAL / SEG {
        buf.copy_from_slice(&sealed);
        ours.open_in_place(&nonce, b"aad", &mut buf, &tag).unwrap();
    }
    let layers_open = mbps(TOTAL, start.elapsed().as_secs_f64());
    assert_eq!(buf, plain);
    RawAead {
        layers_seal,
        layers_open,
        reference_xchacha,
        reference_chacha,
    }
}

/// Nanoseconds per seal of a small message (a wrapped key, an info record, a 4 KiB
/// object's one segment): the layer's AEAD, then the `chacha20poly1305` crate's.
fn small_seals(size: usize) -> (f64, f64) {
    const CALLS: u32 = 100_000;
    let mut buf = vec![3u8; size];
    let ours = s3proxy_crypto::aead::Cipher::new(&[2u8; 32]);
    let start = Instant::now();
    for i in 0..CALLS {
        let mut nonce = [0u8; 24];
        nonce[..4].copy_from_slice(&i.to_le_bytes());
        std::hint::black_box(ours.seal_in_place(&nonce, b"aad", &mut buf));
    }
    let layers = start.elapsed().as_nanos() as f64 / CALLS as f64;
    let start = Instant::now();
    for i in 0..CALLS {
        let mut nonce = [0u8; 24];
        nonce[..4].copy_from_slice(&i.to_le_bytes());
        let x = XChaCha20Poly1305::new(&[2u8; 32].into());
        let tag = x
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"aad", &mut buf)
            .unwrap();
        std::hint::black_box(tag);
    }
    (layers, start.elapsed().as_nanos() as f64 / CALLS as f64)
}

fn raw_md5() -> f64 {
    use md5::{Digest, Md5};
    let buf = vec![7u8; SEG];
    let mut h = Md5::new();
    let start = Instant::now();
    for _ in 0..TOTAL / SEG {
        h.update(&buf);
    }
    std::hint::black_box(h.finalize());
    mbps(TOTAL, start.elapsed().as_secs_f64())
}

/// Memory, except that PUT only drains the body: what is left is the caller's own cost.
struct Sink(s3proxy_backends::Memory);

#[async_trait::async_trait]
impl Backend for Sink {
    fn name(&self) -> &str {
        "sink"
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.0.list_buckets().await
    }
    async fn create_bucket(&self, b: &BucketName) -> Result<()> {
        self.0.create_bucket(b).await
    }
    async fn delete_bucket(&self, b: &BucketName) -> Result<()> {
        self.0.delete_bucket(b).await
    }
    async fn head_bucket(&self, b: &BucketName) -> Result<()> {
        self.0.head_bucket(b).await
    }
    async fn put_object(
        &self,
        _: &BucketName,
        _: &ObjectKey,
        mut body: Body,
        _: PutOptions,
    ) -> Result<PutResult> {
        while let Some(chunk) = body.stream.next().await {
            std::hint::black_box(chunk?);
        }
        Ok(PutResult {
            etag: "sink".into(),
            last_modified: SystemTime::now(),
        })
    }
    async fn get_object(&self, b: &BucketName, k: &ObjectKey, o: GetOptions) -> Result<GetResult> {
        self.0.get_object(b, k, o).await
    }
    async fn head_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        o: GetOptions,
    ) -> Result<ObjectInfo> {
        self.0.head_object(b, k, o).await
    }
    async fn delete_object(&self, b: &BucketName, k: &ObjectKey) -> Result<()> {
        self.0.delete_object(b, k).await
    }
    async fn copy_object(
        &self,
        sb: &BucketName,
        sk: &ObjectKey,
        db: &BucketName,
        dk: &ObjectKey,
        o: CopyOptions,
    ) -> Result<PutResult> {
        self.0.copy_object(sb, sk, db, dk, o).await
    }
    async fn list_objects(&self, b: &BucketName, o: ListOptions) -> Result<ListResult> {
        self.0.list_objects(b, o).await
    }
    async fn create_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        o: MultipartOptions,
    ) -> Result<UploadId> {
        self.0.create_multipart_upload(b, k, o).await
    }
    async fn upload_part(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
        n: u32,
        body: Body,
        o: PartOptions,
    ) -> Result<ETag> {
        self.0.upload_part(b, k, u, n, body, o).await
    }
    async fn complete_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
        p: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.0.complete_multipart_upload(b, k, u, p).await
    }
    async fn abort_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
    ) -> Result<()> {
        self.0.abort_multipart_upload(b, k, u).await
    }
    async fn list_parts(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
        o: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        self.0.list_parts(b, k, u, o).await
    }
    async fn list_multipart_uploads(
        &self,
        b: &BucketName,
        o: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.0.list_multipart_uploads(b, o).await
    }
}

fn body(data: &Bytes) -> Body {
    let chunks: Vec<Result<Bytes>> = (0..data.len())
        .step_by(1 << 20)
        .map(|i| Ok(data.slice(i..i + (1 << 20))))
        .collect();
    Body {
        stream: Box::pin(futures::stream::iter(chunks)),
        length: data.len() as u64,
    }
}

async fn layer(backend: DynBackend) -> (f64, f64) {
    let bucket = BucketName::new("bench").unwrap();
    backend.create_bucket(&bucket).await.unwrap();
    let data = Bytes::from(vec![42u8; OBJECT]);
    let rounds = TOTAL / OBJECT;
    let start = Instant::now();
    for i in 0..rounds {
        let key = ObjectKey::new(format!("o{i}")).unwrap();
        backend
            .put_object(&bucket, &key, body(&data), PutOptions::default())
            .await
            .unwrap();
    }
    let put = mbps(TOTAL, start.elapsed().as_secs_f64());
    let start = Instant::now();
    for i in 0..rounds {
        let key = ObjectKey::new(format!("o{i}")).unwrap();
        let mut got = backend
            .get_object(&bucket, &key, GetOptions::default())
            .await
            .unwrap()
            .body;
        while let Some(chunk) = got.next().await {
            std::hint::black_box(chunk.unwrap());
        }
    }
    (put, mbps(TOTAL, start.elapsed().as_secs_f64()))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = raw_aead();
    let xchacha = raw.layers_seal;
    let md5 = raw_md5();
    let (plain_put, plain_get) =
        rt.block_on(layer(Arc::new(s3proxy_backends::Memory::new("plain"))));
    let ring = Keyring::single(MasterKey::generate());
    let enc = Encrypted::new(Arc::new(s3proxy_backends::Memory::new("mem")), ring.clone());
    let (enc_put, enc_get) = rt.block_on(layer(Arc::new(enc)));
    let sink = Encrypted::new(Arc::new(Sink(s3proxy_backends::Memory::new("sink"))), ring);
    let (sink_put, _) = rt.block_on(layer_put_only(Arc::new(sink)));
    println!(
        "raw XChaCha20-Poly1305 seal, 64 KiB:  {:8.1} MiB/s (s3proxy_crypto::aead, the layer's)",
        raw.layers_seal
    );
    println!(
        "raw XChaCha20-Poly1305 open, 64 KiB:  {:8.1} MiB/s (s3proxy_crypto::aead)",
        raw.layers_open
    );
    println!(
        "reference: chacha20poly1305 crate, 64 KiB seals: XChaCha20-Poly1305 {:8.1} MiB/s, ChaCha20-Poly1305 {:8.1} MiB/s",
        raw.reference_xchacha, raw.reference_chacha
    );
    for size in [32, 4096] {
        let (ours, reference) = small_seals(size);
        println!(
            "one seal of {size} B: s3proxy_crypto::aead {ours:6.0} ns, chacha20poly1305 crate {reference:6.0} ns"
        );
    }
    println!("raw MD5, 64 KiB:                      {md5:8.1} MiB/s");
    println!(
        "Memory backend alone: PUT {plain_put:8.1} MiB/s, GET {plain_get:8.1} MiB/s (includes MD5 of the data)"
    );
    println!(
        "Encrypted over Memory: PUT (encrypt) {enc_put:8.1} MiB/s, GET (decrypt) {enc_get:8.1} MiB/s"
    );
    println!("Encrypted over a sink: PUT (encrypt + plaintext MD5) {sink_put:8.1} MiB/s");
    println!(
        "ratio to raw XChaCha20-Poly1305: encrypt (over a sink) / seal {:.2}, decrypt / open {:.2}",
        sink_put / xchacha,
        enc_get / raw.layers_open
    );
}

async fn layer_put_only(backend: DynBackend) -> (f64, ()) {
    let bucket = BucketName::new("bench").unwrap();
    backend.create_bucket(&bucket).await.unwrap();
    let data = Bytes::from(vec![42u8; OBJECT]);
    let rounds = TOTAL / OBJECT;
    let start = Instant::now();
    for i in 0..rounds {
        let key = ObjectKey::new(format!("o{i}")).unwrap();
        backend
            .put_object(&bucket, &key, body(&data), PutOptions::default())
            .await
            .unwrap();
    }
    (mbps(TOTAL, start.elapsed().as_secs_f64()), ())
}
