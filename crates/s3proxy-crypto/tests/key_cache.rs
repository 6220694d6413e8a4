//! The cache of opened data keys and info records (issue #18): a read of an object seen
//! before skips opening its records, but never serves a changed object with the old
//! entry, and a record tampered with after a good read is still refused.

mod common;
use bytes::Bytes;
use common::*;
use s3proxy_core::*;
use s3proxy_crypto::Encrypted;
use s3proxy_crypto::format::{INFO_META, KEY_META};
use std::sync::Arc;

/// Another proxy instance over the same storage writes a new version: the first
/// instance, which cached the old version's data key, reads the new one (a stale data
/// key would fail authentication of every segment).
#[tokio::test]
async fn a_changed_object_never_uses_the_old_entry() {
    let (inner, enc, bucket) = setup("changed").await;
    let other = Encrypted::new(inner.clone(), ring());
    let key = k("o");
    enc.put_object(
        &bucket,
        &key,
        Bytes::from("version one").into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        read(&*enc, &bucket, "o", None).await.unwrap(),
        b"version one"
    );
    assert_eq!(enc.key_cache_usage().0, 1);
    for (i, text) in ["version two, longer", "version 3"].into_iter().enumerate() {
        other
            .put_object(
                &bucket,
                &key,
                Bytes::from(text).into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        let head = enc
            .head_object(&bucket, &key, GetOptions::default())
            .await
            .unwrap();
        assert_eq!(head.size, text.len() as u64, "version {}", i + 2);
        assert_eq!(head.etag, md5_hex(text.as_bytes()));
        assert_eq!(
            read(&*enc, &bucket, "o", None).await.unwrap(),
            text.as_bytes()
        );
    }
    // Metadata changed in place by the other instance (a copy onto itself keeps the
    // stored bytes, and with them the backend's ETag): the new metadata is served.
    let mut meta = ObjectMetadata::default();
    meta.user.insert("mode".into(), "33261".into());
    other
        .copy_object(
            &bucket,
            &key,
            &bucket,
            &key,
            CopyOptions {
                directive: MetadataDirective::Replace(meta),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let head = enc
        .head_object(&bucket, &key, GetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        head.metadata.user.get("mode").map(String::as_str),
        Some("33261")
    );
    assert_eq!(read(&*enc, &bucket, "o", None).await.unwrap(), b"version 3");
}

/// After a good read has cached the records, a change to either record, to the
/// metadata or to the size, with the stored bytes (and so the backend's ETag) kept, is
/// refused exactly as without the cache.
#[tokio::test]
async fn a_tampered_record_is_still_refused_after_a_good_read() {
    let (inner, enc, bucket) = setup("tampered").await;
    let plain = data(5000, 3);
    let mut meta = ObjectMetadata::default();
    meta.user.insert("owner".into(), "alice".into());
    enc.put_object(
        &bucket,
        &k("o"),
        plain.clone().into(),
        PutOptions {
            metadata: meta,
            content_md5: None,
        },
    )
    .await
    .unwrap();
    let (good_meta, stored) = raw(&*inner, &bucket, "o").await;
    let flip = |v: &str| {
        let at = v.len() / 2;
        let new = if v.as_bytes()[at] == b'A' { 'B' } else { 'A' };
        format!("{}{new}{}", &v[..at], &v[at + 1..])
    };
    type Change = Box<dyn Fn(&mut ObjectMetadata)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "info record",
            Box::new(move |m| {
                let v = flip(&m.internal[INFO_META]);
                m.internal.insert(INFO_META.into(), v);
            }),
        ),
        (
            "wrapped key",
            Box::new(move |m| {
                let v = flip(&m.internal[KEY_META]);
                m.internal.insert(KEY_META.into(), v);
            }),
        ),
        (
            "user metadata",
            Box::new(|m| {
                m.user.insert("owner".into(), "mallory".into());
            }),
        ),
        (
            "content type",
            Box::new(|m| m.headers.content_type = Some("text/html".into())),
        ),
    ];
    for (what, change) in &cases {
        // A good read first: the records are cached.
        store_raw(&*inner, &bucket, "o", good_meta.clone(), stored.clone()).await;
        assert!(
            read(&*enc, &bucket, "o", None).await.unwrap() == plain,
            "{what}"
        );
        assert!(enc.key_cache_usage().0 >= 1);
        let mut bad = good_meta.clone();
        change(&mut bad);
        store_raw(&*inner, &bucket, "o", bad, stored.clone()).await;
        let head = enc
            .head_object(&bucket, &k("o"), GetOptions::default())
            .await;
        assert!(matches!(head, Err(Error::Corrupt(_))), "{what}: {head:?}");
        let get = enc
            .get_object(&bucket, &k("o"), GetOptions::default())
            .await;
        assert!(matches!(get, Err(Error::Corrupt(_))), "{what}");
    }
    // The stored bytes cut short, records kept: the size no longer matches the layout.
    store_raw(&*inner, &bucket, "o", good_meta.clone(), stored.clone()).await;
    assert!(read(&*enc, &bucket, "o", None).await.unwrap() == plain);
    store_raw(
        &*inner,
        &bucket,
        "o",
        good_meta,
        stored.slice(..stored.len() - 1),
    )
    .await;
    let head = enc
        .head_object(&bucket, &k("o"), GetOptions::default())
        .await;
    assert!(matches!(head, Err(Error::Corrupt(_))), "{head:?}");
}

/// The cache holds one entry per object read, within its budget, and none when off.
#[tokio::test]
async fn the_cache_is_bounded_and_can_be_off() {
    let inner = Arc::new(s3proxy_backends::Memory::new("mem"));
    let small = Encrypted::new(inner.clone(), ring()).with_key_cache(16 << 10);
    let off = Encrypted::new(inner.clone(), ring()).with_key_cache(0);
    let bucket = b("bounded");
    small.create_bucket(&bucket).await.unwrap();
    for i in 0..200 {
        let key = format!("key-{i}");
        small
            .put_object(
                &bucket,
                &k(&key),
                Bytes::from(key.clone()).into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            read(&small, &bucket, &key, None).await.unwrap(),
            key.as_bytes()
        );
        assert_eq!(
            read(&off, &bucket, &key, None).await.unwrap(),
            key.as_bytes()
        );
    }
    let (entries, bytes) = small.key_cache_usage();
    assert!(
        bytes <= 16 << 10 && entries > 10,
        "{entries} entries, {bytes} bytes"
    );
    assert_eq!(off.key_cache_usage(), (0, 0));
    small.delete_object(&bucket, &k("key-199")).await.unwrap();
    assert_eq!(small.key_cache_usage().0, entries - 1);
}
