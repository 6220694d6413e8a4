//! Listings over a backend that lists like S3 (only stored sizes and ETags, no metadata)
//! show exactly what HEAD shows, for every layout, without a HEAD per listed key once the
//! sizes and ETags are known, and never stale across instances.

mod common;

use async_trait::async_trait;
use common::*;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_crypto::Encrypted;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const MB: usize = 1_000_000;
const MIB: usize = 1 << 20;

/// Memory, listing as S3 does (no internal metadata), counting HEADs. With `skew`, it
/// plays a replicating layer over two replicas holding the same bytes under different
/// ETags (moto gives a copied multipart object the MD5 of its bytes, s3s-fs keeps the
/// multipart ETag): HEAD presents "h" + the listed ETag and `head_object_etags` reports
/// both, as `Replicated` does; listings show the other replica's.
struct ListsLikeS3 {
    mem: Memory,
    heads: AtomicU64,
    skew: bool,
}

impl ListsLikeS3 {
    fn heads(&self) -> u64 {
        self.heads.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl forward::Forward for ListsLikeS3 {
    fn inner(&self) -> &dyn Backend {
        &self.mem
    }
    fn name(&self) -> &str {
        "s3-like"
    }
    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let mut got = self.mem.get_object(bucket, key, opts).await?;
        if self.skew {
            got.info.etag = ETag::new(format!("h{}", got.info.etag.as_str()));
        }
        Ok(got)
    }
    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        let mut info = self.mem.head_object(bucket, key, opts).await?;
        if self.skew {
            info.etag = ETag::new(format!("h{}", info.etag.as_str()));
        }
        Ok(info)
    }
    async fn head_object_etags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Vec<ETag>)> {
        let info = Backend::head_object(self, bucket, key, opts).await?;
        let raw = ETag::new(info.etag.as_str().trim_start_matches('h'));
        let etags = if self.skew {
            vec![info.etag.clone(), raw]
        } else {
            vec![]
        };
        Ok((info, etags))
    }
    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        let mut page = self.mem.list_objects(bucket, opts).await?;
        for o in &mut page.objects {
            o.internal = None;
        }
        Ok(page)
    }
}

fn s3_like() -> Arc<ListsLikeS3> {
    Arc::new(ListsLikeS3 {
        mem: Memory::new("mem"),
        heads: AtomicU64::new(0),
        skew: false,
    })
}

type Views = BTreeMap<String, (u64, ETag)>;

/// Every page, `page` keys at a time.
async fn listed(enc: &dyn Backend, bucket: &BucketName, page: usize) -> Views {
    let mut out = Views::new();
    let mut start_after = None;
    loop {
        let got = enc
            .list_objects(
                bucket,
                ListOptions {
                    max_keys: page,
                    start_after: start_after.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for o in &got.objects {
            assert!(o.internal.as_ref().is_none_or(|m| m.is_empty()));
            out.insert(o.key.clone(), (o.size, o.etag.clone()));
        }
        if !got.is_truncated {
            return out;
        }
        start_after = got.next_marker;
    }
}

async fn headed(enc: &dyn Backend, bucket: &BucketName, keys: &Views) -> Views {
    let mut out = Views::new();
    for key in keys.keys() {
        let h = enc
            .head_object(bucket, &k(key), GetOptions::default())
            .await
            .unwrap();
        out.insert(key.clone(), (h.size, h.etag));
    }
    out
}

/// Objects of every layout: single PUTs inline, streamed (info record attached by a
/// copy) and with Content-MD5; multipart with 10,000,000-byte parts, aligned parts, one
/// part; a copy; a metadata update in place.
async fn every_layout(enc: &dyn Backend, bucket: &BucketName) -> Views {
    let mut want = Views::new();
    for size in [0, 1, 65_535, 65_536, 65_537, MB, 3 * MB + 7] {
        let body = data(size, size as u64);
        let key = format!("single/{size}");
        enc.put_object(
            bucket,
            &k(&key),
            chunked(body.clone(), 70_000),
            Default::default(),
        )
        .await
        .unwrap();
        want.insert(key, (size as u64, ETag::new(md5_hex(&body))));
    }
    let body = data(2 * MB, 77);
    let md5: [u8; 16] = hex::decode(md5_hex(&body)).unwrap().try_into().unwrap();
    let opts = PutOptions {
        content_md5: Some(md5),
        ..Default::default()
    };
    enc.put_object(bucket, &k("single/md5"), body.clone().into(), opts)
        .await
        .unwrap();
    want.insert(
        "single/md5".into(),
        (body.len() as u64, ETag::new(md5_hex(&body))),
    );
    for (size, part) in [
        (25 * MB, 10 * MB),
        (10 * MB + 1, 10 * MB),
        (13 * MIB, 5 * MIB),
        (3 * MB, 3 * MB),
    ] {
        let body = data(size, size as u64 + 1);
        let parts: Vec<_> = (0..size)
            .step_by(part)
            .map(|at| body.slice(at..(at + part).min(size)))
            .collect();
        let key = format!("multi/{size}-{part}");
        let etag = multipart(enc, bucket, &key, &parts).await;
        want.insert(key, (size as u64, etag));
    }
    let src = want["multi/25000000-10000000"].clone();
    enc.copy_object(
        bucket,
        &k("multi/25000000-10000000"),
        bucket,
        &k("copy"),
        Default::default(),
    )
    .await
    .unwrap();
    want.insert("copy".into(), src.clone());
    let mut meta = ObjectMetadata::default();
    meta.user.insert("mode".into(), "600".into());
    let opts = CopyOptions {
        directive: MetadataDirective::Replace(meta),
        ..Default::default()
    };
    let key = k("multi/25000000-10000000");
    enc.copy_object(bucket, &key, bucket, &key, opts)
        .await
        .unwrap();
    want
}

#[tokio::test]
async fn listing_over_an_s3_like_backend_shows_head_sizes_and_etags() {
    let inner = s3_like();
    let enc = Encrypted::new(inner.clone(), ring());
    let bucket = b("list");
    enc.create_bucket(&bucket).await.unwrap();
    let want = every_layout(&enc, &bucket).await;
    assert_eq!(want["multi/25000000-10000000"].0, 25_000_000);
    assert_eq!(headed(&enc, &bucket, &want).await, want);

    // The writing instance knows every object: no lookup at all.
    let before = inner.heads();
    assert_eq!(listed(&enc, &bucket, 1000).await, want);
    assert_eq!(listed(&enc, &bucket, 3).await, want);
    assert_eq!(inner.heads(), before, "a warm listing looked objects up");

    // Another instance (same key, own cache): one lookup per object, then none.
    let other = Encrypted::new(inner.clone(), ring());
    let before = inner.heads();
    assert_eq!(listed(&other, &bucket, 4).await, want);
    assert_eq!(inner.heads() - before, want.len() as u64);
    let before = inner.heads();
    assert_eq!(listed(&other, &bucket, 1000).await, want);
    assert_eq!(inner.heads(), before, "a warm listing looked objects up");
    let (entries, bytes) = other.list_cache_usage();
    assert_eq!(entries, want.len());
    assert!(bytes < 1000 * want.len(), "{bytes}");
}

#[tokio::test]
async fn an_overwrite_through_one_instance_lists_new_values_on_another() {
    let inner = s3_like();
    let (a, b2) = (
        Encrypted::new(inner.clone(), ring()),
        Encrypted::new(inner.clone(), ring()),
    );
    let bucket = b("stale");
    a.create_bucket(&bucket).await.unwrap();
    let one = data(10 * MB + 5, 1);
    let etag = multipart(
        &a,
        &bucket,
        "obj",
        &[one.slice(..10 * MB), one.slice(10 * MB..)],
    )
    .await;
    let want: Views = [("obj".to_string(), (one.len() as u64, etag))].into();
    assert_eq!(listed(&b2, &bucket, 10).await, want);
    // Same size, new data, through the other instance; then a small one of any size.
    let two = data(10 * MB + 5, 2);
    let etag = multipart(
        &a,
        &bucket,
        "obj",
        &[two.slice(..10 * MB), two.slice(10 * MB..)],
    )
    .await;
    let want: Views = [("obj".to_string(), (two.len() as u64, etag))].into();
    assert_eq!(listed(&b2, &bucket, 10).await, want);
    a.put_object(
        &bucket,
        &k("obj"),
        bytes::Bytes::from("x").into(),
        Default::default(),
    )
    .await
    .unwrap();
    let want: Views = [("obj".to_string(), (1, ETag::new(md5_hex(b"x"))))].into();
    assert_eq!(listed(&b2, &bucket, 10).await, want);
    assert_eq!(headed(&b2, &bucket, &want).await, want);
}

#[tokio::test]
async fn a_cache_too_small_for_the_bucket_still_lists_exactly() {
    let inner = s3_like();
    let enc = Encrypted::new(inner.clone(), ring()).with_list_cache(2000);
    let bucket = b("small");
    enc.create_bucket(&bucket).await.unwrap();
    let mut want = Views::new();
    for i in 0..50 {
        let body = data(100 + i, i as u64);
        let key = format!("k{i:03}");
        enc.put_object(&bucket, &k(&key), body.clone().into(), Default::default())
            .await
            .unwrap();
        want.insert(key, (body.len() as u64, ETag::new(md5_hex(&body))));
    }
    assert_eq!(listed(&enc, &bucket, 7).await, want);
    assert!(enc.list_cache_usage().1 <= 2000);
    let none = Encrypted::new(inner.clone(), ring()).with_list_cache(0);
    assert_eq!(listed(&none, &bucket, 1000).await, want);
    assert_eq!(none.list_cache_usage(), (0, 0));
}

#[tokio::test]
async fn objects_this_layer_cannot_read_list_as_stored_and_deleted_ones_vanish() {
    let inner = s3_like();
    let enc = Encrypted::new(inner.clone(), ring());
    let bucket = b("foreign");
    enc.create_bucket(&bucket).await.unwrap();
    // Written around the encryption layer: listed as stored, the listing does not fail.
    inner
        .put_object(
            &bucket,
            &k("plain"),
            bytes::Bytes::from("hello").into(),
            Default::default(),
        )
        .await
        .unwrap();
    enc.put_object(
        &bucket,
        &k("enc"),
        bytes::Bytes::from("hi").into(),
        Default::default(),
    )
    .await
    .unwrap();
    let got = listed(&enc, &bucket, 10).await;
    assert_eq!(got["enc"], (2, ETag::new(md5_hex(b"hi"))));
    assert_eq!(got["plain"].1, md5_hex(b"hello"));
    enc.delete_object(&bucket, &k("enc")).await.unwrap();
    assert_eq!(enc.list_cache_usage().0, 0);
    assert!(!listed(&enc, &bucket, 10).await.contains_key("enc"));
}

#[tokio::test]
async fn every_replicas_etag_of_the_same_bytes_is_recognised() {
    let inner = Arc::new(ListsLikeS3 {
        mem: Memory::new("mem"),
        heads: AtomicU64::new(0),
        skew: true,
    });
    let writer = Encrypted::new(inner.clone(), ring());
    let bucket = b("skew");
    writer.create_bucket(&bucket).await.unwrap();
    let body = data(10 * MB + 3, 5);
    let etag = multipart(
        &writer,
        &bucket,
        "mp",
        &[body.slice(..10 * MB), body.slice(10 * MB..)],
    )
    .await;
    writer
        .put_object(
            &bucket,
            &k("s"),
            bytes::Bytes::from("abc").into(),
            Default::default(),
        )
        .await
        .unwrap();
    let want: Views = [
        ("mp".to_string(), (body.len() as u64, etag)),
        ("s".to_string(), (3, md5_hex(b"abc").into())),
    ]
    .into();
    // The writer looked the completed object up and learnt both forms.
    let before = inner.heads();
    assert_eq!(listed(&writer, &bucket, 10).await, want);
    assert_eq!(inner.heads(), before);
    let reader = Encrypted::new(inner.clone(), ring());
    assert_eq!(listed(&reader, &bucket, 10).await, want);
    assert_eq!(headed(&reader, &bucket, &want).await, want);
    let before = inner.heads();
    for _ in 0..3 {
        assert_eq!(listed(&reader, &bucket, 10).await, want);
        assert_eq!(listed(&writer, &bucket, 10).await, want);
    }
    assert_eq!(inner.heads(), before, "a warm listing looked objects up");
}
