//! A multipart object is readable whole from the moment the inner completion succeeds,
//! even when the copy that attaches its info record never happens (a crash between the
//! two steps, or AWS refusing CopyObject of a source above 5 GiB): it is read from the
//! manifest stored at its end. And an object whose info record was stripped is never
//! served with unauthenticated headers.

mod common;

use async_trait::async_trait;
use common::*;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_crypto::Encrypted;
use s3proxy_crypto::format::{INFO_META, KEY_META};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const MIB: usize = 1 << 20;

/// Memory that lists as S3 does (no metadata), refuses CopyObject of an object onto
/// itself while `refuse_attach` is set (as AWS does above 5 GiB; as a crash does), and
/// fails the next `fail_completes` completions after taking their parts.
struct Refusing {
    mem: Memory,
    refuse_attach: AtomicBool,
    fail_completes: AtomicU32,
}

#[async_trait]
impl forward::Forward for Refusing {
    fn inner(&self) -> &dyn Backend {
        &self.mem
    }
    fn name(&self) -> &str {
        "refusing"
    }
    async fn copy_object(
        &self,
        sb: &BucketName,
        sk: &ObjectKey,
        db: &BucketName,
        dk: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        if sb == db && sk == dk && self.refuse_attach.load(Ordering::Relaxed) {
            return Err(Error::InvalidRequest(
                "The specified copy source is larger than the maximum allowable size for a \
                 copy source: 5368709120"
                    .into(),
            ));
        }
        self.mem.copy_object(sb, sk, db, dk, opts).await
    }
    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        let mut page = self.mem.list_objects(bucket, opts).await?;
        for o in &mut page.objects {
            o.internal = None;
        }
        Ok(page)
    }
    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        let left = self.fail_completes.load(Ordering::Relaxed);
        if left > 0 {
            self.fail_completes.store(left - 1, Ordering::Relaxed);
            return Err(Error::ServiceUnavailable("injected".into()));
        }
        self.mem
            .complete_multipart_upload(bucket, key, id, parts)
            .await
    }
}

async fn stack(bucket: &str) -> (Arc<Refusing>, Arc<Encrypted>, BucketName) {
    let inner = Arc::new(Refusing {
        mem: Memory::new("mem"),
        refuse_attach: AtomicBool::new(true),
        fail_completes: AtomicU32::new(0),
    });
    inner.refuse_attach.store(true, Ordering::Relaxed);
    let enc = Arc::new(Encrypted::new(inner.clone(), ring()));
    let bucket = b(bucket);
    enc.create_bucket(&bucket).await.unwrap();
    (inner, enc, bucket)
}

fn multipart_etag(parts: &[bytes::Bytes]) -> String {
    s3proxy_core::multipart_etag(
        parts
            .iter()
            .map(|p| md5_hex(p))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    )
    .unwrap()
    .into_string()
}

fn with_user_meta() -> ObjectMetadata {
    let mut m = ObjectMetadata::default();
    m.user.insert("color".into(), "blue".into());
    m.headers.content_type = Some("text/plain".into());
    m
}

/// Upload with `metadata` through `enc`, part numbers from `first`.
async fn upload(
    enc: &dyn Backend,
    bucket: &BucketName,
    key: &str,
    parts: &[bytes::Bytes],
    first: u32,
) -> (UploadId, Vec<CompletedPart>) {
    let id = enc
        .create_multipart_upload(
            bucket,
            &k(key),
            MultipartOptions {
                metadata: with_user_meta(),
            },
        )
        .await
        .unwrap();
    let mut done = vec![];
    for (i, p) in parts.iter().enumerate() {
        let n = first + i as u32;
        let etag = enc
            .upload_part(
                bucket,
                &k(key),
                &id,
                n,
                chunked(p.clone(), 70_000),
                PartOptions::default(),
            )
            .await
            .unwrap();
        done.push(CompletedPart {
            part_number: n,
            etag,
        });
    }
    (id, done)
}

async fn check_readable(enc: &Encrypted, bucket: &BucketName, key: &str, want: &[u8], etag: &str) {
    let head = enc
        .head_object(bucket, &k(key), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (head.size, head.etag.as_str()),
        (want.len() as u64, etag),
        "{key}"
    );
    assert_eq!(
        head.metadata.user.get("color").map(String::as_str),
        Some("blue")
    );
    assert_eq!(
        read(enc, bucket, key, None).await.unwrap(),
        want,
        "{key}: whole"
    );
    let n = want.len() as u64;
    for (a, z) in [
        (0, 0),
        (n - 1, n - 1),
        (5 * MIB as u64 - 3, 5 * MIB as u64 + 5),
        (n - 900, n - 1),
    ] {
        let got = read(enc, bucket, key, Some(ByteRange::FromTo(a, z)))
            .await
            .unwrap();
        assert_eq!(got, &want[a as usize..=z as usize], "{key}: {a}-{z}");
    }
}

#[tokio::test]
async fn a_completion_whose_info_record_is_refused_reads_from_its_manifest() {
    let (inner, enc, bucket) = stack("manifest").await;
    // A small last part (kept by this instance) and a last part above the minimum.
    for (key, parts) in [
        ("small-tail", vec![data(5 * MIB, 1), data(777, 2)]),
        ("big-tail", vec![data(5 * MIB, 3), data(5 * MIB + 3, 4)]),
    ] {
        let (id, done) = upload(&*enc, &bucket, key, &parts, 1).await;
        let put = enc
            .complete_multipart_upload(&bucket, &k(key), &id, done.clone())
            .await
            .expect("the completion succeeds without its info record");
        let etag = multipart_etag(&parts);
        assert_eq!(put.etag, etag);
        let stored = inner
            .head_object(&bucket, &k(key), GetOptions::default())
            .await
            .unwrap();
        assert!(
            !stored.metadata.internal.contains_key(INFO_META),
            "the copy was refused"
        );
        assert!(!stored.metadata.internal.contains_key(KEY_META));
        let want = parts.concat();
        check_readable(&enc, &bucket, key, &want, &etag).await;
        // A fresh instance (no cache, no remembered parts) reads it the same.
        let other = Encrypted::new(inner.clone(), ring());
        check_readable(&other, &bucket, key, &want, &etag).await;
        // The retried completion answers as the first.
        let again = other
            .complete_multipart_upload(&bucket, &k(key), &id, done)
            .await
            .unwrap();
        assert_eq!(again.etag, etag);
        // Listings show the plaintext size and ETag.
        let page = other
            .list_objects(
                &bucket,
                ListOptions {
                    max_keys: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let listed = page.objects.iter().find(|o| o.key == key).unwrap();
        assert_eq!(
            (listed.size, listed.etag.as_str()),
            (want.len() as u64, etag.as_str())
        );
        // CopyObject from it gives a complete object (the copy to another key is allowed).
        enc.copy_object(
            &bucket,
            &k(key),
            &bucket,
            &k(&format!("{key}.copy")),
            CopyOptions::default(),
        )
        .await
        .unwrap();
        check_readable(&other, &bucket, &format!("{key}.copy"), &want, &etag).await;
        // UploadPartCopy from it.
        let dst = k(&format!("{key}.parts"));
        let id = enc
            .create_multipart_upload(&bucket, &dst, MultipartOptions::default())
            .await
            .unwrap();
        let range = (4 * MIB as u64, want.len() as u64 - 1);
        let etag = enc
            .upload_part_copy(
                &bucket,
                &dst,
                &id,
                1,
                &bucket,
                &k(key),
                GetOptions {
                    range: Some(ByteRange::FromTo(range.0, range.1)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        enc.complete_multipart_upload(
            &bucket,
            &dst,
            &id,
            vec![CompletedPart {
                part_number: 1,
                etag,
            }],
        )
        .await
        .unwrap();
        assert_eq!(
            read(&*enc, &bucket, dst.as_str(), None).await.unwrap(),
            &want[range.0 as usize..]
        );
    }
}

#[tokio::test]
async fn with_the_copy_allowed_the_info_record_is_attached_and_the_manifest_kept() {
    let (inner, enc, bucket) = stack("fast").await;
    inner.refuse_attach.store(false, Ordering::Relaxed);
    let parts = vec![data(5 * MIB, 5), data(1000, 6)];
    let (id, done) = upload(&*enc, &bucket, "doc", &parts, 1).await;
    let put = enc
        .complete_multipart_upload(&bucket, &k("doc"), &id, done)
        .await
        .unwrap();
    let stored = inner
        .head_object(&bucket, &k("doc"), GetOptions::default())
        .await
        .unwrap();
    assert!(stored.metadata.internal.contains_key(INFO_META));
    check_readable(&enc, &bucket, "doc", &parts.concat(), put.etag.as_str()).await;
    // Rotation-style copy onto itself (what rotate-keys does) keeps it readable.
    enc.copy_object(
        &bucket,
        &k("doc"),
        &bucket,
        &k("doc"),
        CopyOptions::default(),
    )
    .await
    .unwrap();
    check_readable(&enc, &bucket, "doc", &parts.concat(), put.etag.as_str()).await;
}

#[tokio::test]
async fn the_manifest_part_of_a_failed_completion_is_not_listed_and_a_retry_completes() {
    let (inner, enc, bucket) = stack("retry").await;
    let all = ListPartsOptions {
        part_number_marker: 0,
        max_parts: 1000,
    };
    // A last part above the minimum: the manifest is a part of its own, after it.
    let parts = vec![data(5 * MIB, 7), data(5 * MIB + 300, 8)];
    let (id, done) = upload(&*enc, &bucket, "doc", &parts, 1).await;
    inner.fail_completes.store(1, Ordering::Relaxed);
    assert!(
        enc.complete_multipart_upload(&bucket, &k("doc"), &id, done.clone())
            .await
            .is_err()
    );
    let raw = inner
        .mem
        .list_parts(&bucket, &k("doc"), &open(&id), all.clone())
        .await
        .unwrap();
    assert_eq!(raw.parts.len(), 3, "the manifest part was uploaded");
    let listed = enc
        .list_parts(&bucket, &k("doc"), &id, all.clone())
        .await
        .unwrap();
    let seen: Vec<(u32, u64)> = listed
        .parts
        .iter()
        .map(|p| (p.part_number, p.size))
        .collect();
    assert_eq!(seen, [(1, 5 * MIB as u64), (2, 5 * MIB as u64 + 300)]);
    let put = enc
        .complete_multipart_upload(&bucket, &k("doc"), &id, done)
        .await
        .unwrap();
    check_readable(&enc, &bucket, "doc", &parts.concat(), put.etag.as_str()).await;

    // A small last part: re-uploaded with the manifest behind it, then the completion
    // fails; retried through an instance that never saw that part (as after a crash).
    let parts = vec![data(5 * MIB, 9), data(300, 10)];
    let (id, done) = upload(&*enc, &bucket, "small", &parts, 1).await;
    inner.fail_completes.store(1, Ordering::Relaxed);
    assert!(
        enc.complete_multipart_upload(&bucket, &k("small"), &id, done.clone())
            .await
            .is_err()
    );
    let raw = inner
        .mem
        .list_parts(&bucket, &k("small"), &open(&id), all)
        .await
        .unwrap();
    assert_eq!(raw.parts.len(), 2, "part numbers stay consecutive");
    let other = Encrypted::new(inner.clone(), ring());
    let put = other
        .complete_multipart_upload(&bucket, &k("small"), &id, done)
        .await
        .unwrap();
    assert_eq!(put.etag, multipart_etag(&parts));
    check_readable(&other, &bucket, "small", &parts.concat(), put.etag.as_str()).await;
}

/// The inner id of an upload token `e1.<key id>.<mac>.<inner>`.
fn open(id: &UploadId) -> UploadId {
    UploadId::new(id.as_str().splitn(4, '.').nth(3).unwrap()).unwrap()
}

#[tokio::test]
async fn no_part_number_left_falls_back_to_the_info_record() {
    let (inner, enc, bucket) = stack("full").await;
    // A small part 10000 takes the manifest behind it, as any small last part.
    let small = vec![data(5 * MIB, 9), data(10, 10)];
    let (id, done) = upload(&*enc, &bucket, "small", &small, 9999).await;
    let put = enc
        .complete_multipart_upload(&bucket, &k("small"), &id, done)
        .await
        .unwrap();
    check_readable(&enc, &bucket, "small", &small.concat(), put.etag.as_str()).await;
    // A last part 10000 above the minimum leaves no part number for the manifest: with
    // the copy refused there is nothing to read the object from, the window that remains
    // (docs/DATA-SAFETY.md).
    let parts = vec![data(5 * MIB, 9), data(5 * MIB + 10, 10)];
    let (id, done) = upload(&*enc, &bucket, "doc", &parts, 9999).await;
    assert!(
        enc.complete_multipart_upload(&bucket, &k("doc"), &id, done.clone())
            .await
            .is_err()
    );
    inner.refuse_attach.store(false, Ordering::Relaxed);
    let (id, done) = upload(&*enc, &bucket, "doc2", &parts, 9999).await;
    let put = enc
        .complete_multipart_upload(&bucket, &k("doc2"), &id, done)
        .await
        .unwrap();
    check_readable(&enc, &bucket, "doc2", &parts.concat(), put.etag.as_str()).await;
}

/// Store `bytes` with `metadata` as a multipart object directly in the inner backend, as
/// an attacker with write access to the storage could.
async fn store_multipart(
    inner: &Memory,
    bucket: &BucketName,
    key: &str,
    bytes: bytes::Bytes,
    metadata: ObjectMetadata,
) {
    let id = inner
        .create_multipart_upload(bucket, &k(key), MultipartOptions { metadata })
        .await
        .unwrap();
    let etag = inner
        .upload_part(
            bucket,
            &k(key),
            &id,
            1,
            bytes.into(),
            PartOptions::default(),
        )
        .await
        .unwrap();
    inner
        .complete_multipart_upload(
            bucket,
            &k(key),
            &id,
            vec![CompletedPart {
                part_number: 1,
                etag,
            }],
        )
        .await
        .unwrap();
}

async fn refused_as_corrupt(enc: &Encrypted, bucket: &BucketName, key: &str) {
    let head = enc
        .head_object(bucket, &k(key), GetOptions::default())
        .await;
    assert!(
        matches!(head, Err(Error::Corrupt(_))),
        "{key}: HEAD {head:?}"
    );
    let got = read(enc, bucket, key, None).await;
    assert!(
        matches!(got, Err(Error::Corrupt(_))),
        "{key}: GET {:?}",
        got.map(|b| b.len())
    );
}

#[tokio::test]
async fn a_tampered_or_swapped_manifest_is_refused() {
    let (inner, enc, bucket) = stack("tamper").await;
    let parts = vec![data(5 * MIB, 11), data(5 * MIB + 1, 12)];
    for key in ["a", "b"] {
        let (id, done) = upload(&*enc, &bucket, key, &parts, 1).await;
        enc.complete_multipart_upload(&bucket, &k(key), &id, done)
            .await
            .unwrap();
    }
    let (meta, a) = raw(&inner.mem, &bucket, "a").await;
    let (_, b_bytes) = raw(&inner.mem, &bucket, "b").await;
    assert_eq!(a.len(), b_bytes.len());
    // The same object stored again as it was still reads.
    store_multipart(&inner.mem, &bucket, "same", a.clone(), meta.clone()).await;
    let renamed = enc
        .head_object(&bucket, &k("same"), GetOptions::default())
        .await;
    assert!(
        matches!(renamed, Err(Error::Corrupt(_))),
        "the manifest binds bucket and key"
    );
    store_multipart(&inner.mem, &bucket, "a", a.clone(), meta.clone()).await;
    check_readable(&enc, &bucket, "a", &parts.concat(), &multipart_etag(&parts)).await;
    // One bit of the sealed record flipped.
    let mut bent = a.to_vec();
    let at = bent.len() - 30;
    bent[at] ^= 1;
    store_multipart(&inner.mem, &bucket, "a", bent.into(), meta.clone()).await;
    refused_as_corrupt(&enc, &bucket, "a").await;
    // The manifest of another object of the same layout.
    let tail = 70_000;
    let swapped = [&a[..a.len() - tail], &b_bytes[b_bytes.len() - tail..]].concat();
    store_multipart(&inner.mem, &bucket, "a", swapped.into(), meta.clone()).await;
    refused_as_corrupt(&enc, &bucket, "a").await;
    // The footer cut off.
    store_multipart(
        &inner.mem,
        &bucket,
        "a",
        a.slice(..a.len() - 12),
        meta.clone(),
    )
    .await;
    refused_as_corrupt(&enc, &bucket, "a").await;
    // A footer claiming a huge record (the footer is not authenticated): refused before
    // anything that size is read.
    let footer = a.len() - 12;
    let mut claims_more = a.to_vec();
    claims_more[footer..footer + 4].copy_from_slice(&((a.len() - 12) as u32).to_be_bytes());
    store_multipart(&inner.mem, &bucket, "a", claims_more.into(), meta.clone()).await;
    refused_as_corrupt(&enc, &bucket, "a").await;
    // Changed user metadata.
    let mut changed = meta.clone();
    changed.user.insert("color".into(), "red".into());
    store_multipart(&inner.mem, &bucket, "a", a.clone(), changed).await;
    refused_as_corrupt(&enc, &bucket, "a").await;
}

#[tokio::test]
async fn an_upload_created_before_the_upgrade_completes_without_serving_its_untagged_headers() {
    let (inner, enc, bucket) = stack("legacy").await;
    // Created as the previous version did: no upload metadata tag; the same `e1.` token.
    let inner_id = inner
        .mem
        .create_multipart_upload(
            &bucket,
            &k("old"),
            MultipartOptions {
                metadata: with_user_meta(),
            },
        )
        .await
        .unwrap();
    let token =
        s3proxy_crypto::format::upload_token(ring().active(), "legacy", "old", inner_id.as_str());
    let id = UploadId::new(token).unwrap();
    let parts = vec![data(5 * MIB, 13), data(99, 14)];
    let mut done = vec![];
    for (i, p) in parts.iter().enumerate() {
        let etag = enc
            .upload_part(
                &bucket,
                &k("old"),
                &id,
                i as u32 + 1,
                p.clone().into(),
                PartOptions::default(),
            )
            .await
            .unwrap();
        done.push(CompletedPart {
            part_number: i as u32 + 1,
            etag,
        });
    }
    let put = enc
        .complete_multipart_upload(&bucket, &k("old"), &id, done)
        .await
        .unwrap();
    assert_eq!(put.etag, multipart_etag(&parts));
    let head = enc
        .head_object(&bucket, &k("old"), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(head.size, parts.concat().len() as u64);
    assert!(
        head.metadata.user.is_empty(),
        "unauthenticated metadata is not served"
    );
    assert_eq!(head.metadata.headers.content_type, None);
    assert_eq!(
        read(&*enc, &bucket, "old", None).await.unwrap(),
        parts.concat()
    );
    // With the copy allowed, an old upload gets its info record as before.
    inner.refuse_attach.store(false, Ordering::Relaxed);
    let inner_id = inner
        .mem
        .create_multipart_upload(
            &bucket,
            &k("old2"),
            MultipartOptions {
                metadata: with_user_meta(),
            },
        )
        .await
        .unwrap();
    let id = UploadId::new(s3proxy_crypto::format::upload_token(
        ring().active(),
        "legacy",
        "old2",
        inner_id.as_str(),
    ))
    .unwrap();
    let etag = enc
        .upload_part(
            &bucket,
            &k("old2"),
            &id,
            1,
            parts[1].clone().into(),
            PartOptions::default(),
        )
        .await
        .unwrap();
    enc.complete_multipart_upload(
        &bucket,
        &k("old2"),
        &id,
        vec![CompletedPart {
            part_number: 1,
            etag,
        }],
    )
    .await
    .unwrap();
    let head = enc
        .head_object(&bucket, &k("old2"), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        head.metadata.user.get("color").map(String::as_str),
        Some("blue")
    );
}

#[tokio::test]
async fn a_single_put_whose_info_record_was_stripped_serves_only_authenticated_headers() {
    let (inner, enc, bucket) = stack("strip").await;
    let body = data(3000, 15);
    enc.put_object(
        &bucket,
        &k("doc"),
        body.clone().into(),
        PutOptions {
            metadata: with_user_meta(),
            content_md5: None,
        },
    )
    .await
    .unwrap();
    let (meta, stored) = raw(&inner.mem, &bucket, "doc").await;
    let put_raw = |m: ObjectMetadata| {
        let (inner, bucket, stored) = (inner.clone(), bucket.clone(), stored.clone());
        async move {
            inner
                .mem
                .put_object(
                    &bucket,
                    &k("doc"),
                    stored.into(),
                    PutOptions {
                        metadata: m,
                        content_md5: None,
                    },
                )
                .await
                .unwrap();
        }
    };
    // Info record stripped: the metadata seal still authenticates the headers.
    let mut m = meta.clone();
    m.internal.remove(INFO_META);
    put_raw(m.clone()).await;
    let head = enc
        .head_object(&bucket, &k("doc"), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(head.size, 3000);
    assert_eq!(
        head.metadata.user.get("color").map(String::as_str),
        Some("blue")
    );
    assert_eq!(read(&*enc, &bucket, "doc", None).await.unwrap(), body);
    // ... and refuses changed ones.
    let mut changed = m.clone();
    changed.user.insert("color".into(), "red".into());
    put_raw(changed).await;
    let head = enc
        .head_object(&bucket, &k("doc"), GetOptions::default())
        .await;
    assert!(matches!(head, Err(Error::Corrupt(_))), "{head:?}");
    // Both stripped (as objects written before the seal may be): the data is served, its
    // unauthenticated headers and user metadata are not.
    m.internal.remove(s3proxy_crypto::manifest::META_SEAL);
    put_raw(m).await;
    let head = enc
        .head_object(&bucket, &k("doc"), GetOptions::default())
        .await
        .unwrap();
    assert!(head.metadata.user.is_empty());
    assert_eq!(head.metadata.headers.content_type, None);
    let got = enc
        .get_object(&bucket, &k("doc"), GetOptions::default())
        .await
        .unwrap();
    assert!(got.info.metadata.user.is_empty());
    assert_eq!(drain(got.body).await.0, body);
}
