//! Helpers shared by the encryption layer's tests.
#![allow(dead_code)]

use bytes::Bytes;
use futures::StreamExt;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_crypto::{Encrypted, Keyring, MasterKey};
use std::sync::Arc;

pub fn b(name: &str) -> BucketName {
    BucketName::new(name).unwrap()
}

pub fn k(key: &str) -> ObjectKey {
    ObjectKey::new(key).unwrap()
}

pub fn data(len: usize, seed: u64) -> Bytes {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v.into()
}

pub fn md5_hex(d: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(d))
}

/// A body delivered in `chunk`-byte pieces.
pub fn chunked(d: Bytes, chunk: usize) -> Body {
    let length = d.len() as u64;
    let chunks: Vec<Result<Bytes>> = (0..d.len())
        .step_by(chunk)
        .map(|at| Ok(d.slice(at..(at + chunk).min(d.len()))))
        .collect();
    Body {
        stream: Box::pin(futures::stream::iter(chunks)),
        length,
    }
}

/// Everything a body yields before it ends or fails, and the error if it failed.
pub async fn drain(mut body: ByteStream) -> (Vec<u8>, Option<Error>) {
    let mut out = vec![];
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

pub async fn read(
    backend: &dyn Backend,
    bucket: &BucketName,
    key: &str,
    range: Option<ByteRange>,
) -> Result<Vec<u8>> {
    let got = backend
        .get_object(
            bucket,
            &k(key),
            GetOptions {
                range,
                ..Default::default()
            },
        )
        .await?;
    let (bytes, err) = drain(got.body).await;
    match err {
        Some(e) => Err(e),
        None => Ok(bytes),
    }
}

pub fn ring() -> Keyring {
    Keyring::single(MasterKey::new("test", [7; 32]).unwrap())
}

pub async fn setup(bucket: &str) -> (Arc<Memory>, Arc<Encrypted>, BucketName) {
    let inner = Arc::new(Memory::new("mem"));
    let enc = Arc::new(Encrypted::new(inner.clone(), ring()));
    let bucket = b(bucket);
    enc.create_bucket(&bucket).await.unwrap();
    (inner, enc, bucket)
}

/// Upload `parts` as one multipart object; returns the ETag of the completion.
pub async fn multipart(enc: &dyn Backend, bucket: &BucketName, key: &str, parts: &[Bytes]) -> ETag {
    let id = enc
        .create_multipart_upload(bucket, &k(key), MultipartOptions::default())
        .await
        .unwrap();
    let mut done = vec![];
    // Upload in reverse order, as parallel clients may.
    for (i, p) in parts.iter().enumerate().rev() {
        let etag = enc
            .upload_part(
                bucket,
                &k(key),
                &id,
                i as u32 + 1,
                chunked(p.clone(), 100_000),
                PartOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(etag, md5_hex(p));
        done.push(CompletedPart {
            part_number: i as u32 + 1,
            etag,
        });
    }
    done.reverse();
    enc.complete_multipart_upload(bucket, &k(key), &id, done)
        .await
        .unwrap()
        .etag
}

/// The stored object as the inner backend holds it: metadata and raw bytes.
pub async fn raw(inner: &dyn Backend, bucket: &BucketName, key: &str) -> (ObjectMetadata, Bytes) {
    let got = inner
        .get_object(bucket, &k(key), GetOptions::default())
        .await
        .unwrap();
    let meta = got.info.metadata.clone();
    let (bytes, err) = drain(got.body).await;
    assert!(err.is_none());
    (meta, bytes.into())
}

/// Overwrite the stored object in the inner backend, as someone with access to the
/// storage could.
pub async fn store_raw(
    inner: &dyn Backend,
    bucket: &BucketName,
    key: &str,
    meta: ObjectMetadata,
    bytes: Bytes,
) {
    inner
        .put_object(
            bucket,
            &k(key),
            bytes.into(),
            PutOptions {
                metadata: meta,
                content_md5: None,
            },
        )
        .await
        .unwrap();
}
