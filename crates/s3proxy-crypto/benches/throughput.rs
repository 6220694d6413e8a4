//! Encrypt and decrypt throughput of the encryption layer over the Memory backend, against
//! raw ChaCha20-Poly1305 and XChaCha20-Poly1305 sealing of 64 KiB buffers in the same run.
//! Run: `cargo bench -p s3proxy-crypto`.

use bytes::Bytes;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, XChaCha20Poly1305, XNonce};
use futures::StreamExt;
use s3proxy_core::*;
use s3proxy_crypto::{Encrypted, Keyring, MasterKey};
use std::sync::Arc;
use std::time::Instant;

const TOTAL: usize = 256 << 20;
const OBJECT: usize = 64 << 20;
const SEG: usize = 64 << 10;

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / (1 << 20) as f64
}

fn raw_aead() -> (f64, f64) {
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
    let chacha = mbps(TOTAL, start.elapsed().as_secs_f64());
    let x = XChaCha20Poly1305::new(&[1u8; 32].into());
    let start = Instant::now();
    for _ in 0..TOTAL / SEG {
        let nonce: [u8; 24] = rand::random();
        let tag = x
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"aad", &mut buf)
            .unwrap();
        std::hint::black_box(tag);
    }
    (chacha, mbps(TOTAL, start.elapsed().as_secs_f64()))
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (chacha, xchacha) = raw_aead();
    let (plain_put, plain_get) =
        rt.block_on(layer(Arc::new(s3proxy_backends::Memory::new("plain"))));
    let enc = Encrypted::new(
        Arc::new(s3proxy_backends::Memory::new("mem")),
        Keyring::single(MasterKey::generate()),
    );
    let (enc_put, enc_get) = rt.block_on(layer(Arc::new(enc)));
    println!("raw ChaCha20-Poly1305 seal, 64 KiB:   {chacha:8.1} MiB/s");
    println!("raw XChaCha20-Poly1305 seal, 64 KiB:  {xchacha:8.1} MiB/s");
    println!(
        "Memory backend alone: PUT {plain_put:8.1} MiB/s, GET {plain_get:8.1} MiB/s (includes MD5 of the data)"
    );
    println!(
        "Encrypted over Memory: PUT (encrypt) {enc_put:8.1} MiB/s, GET (decrypt) {enc_get:8.1} MiB/s"
    );
    println!(
        "ratio to raw ChaCha20-Poly1305: encrypt {:.2}, decrypt {:.2}",
        enc_put / chacha,
        enc_get / chacha
    );
}
