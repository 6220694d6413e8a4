//! Every change to stored bytes or metadata is detected, no unauthenticated byte is
//! served, and a wrong or missing master key gives a clear error.

mod common;
use bytes::{Bytes, BytesMut};
use common::*;
use s3proxy_core::*;
use s3proxy_crypto::format::{INFO_META, KEY_META, SEGMENT_SIZE, STORED_SEGMENT};
use s3proxy_crypto::{Encrypted, Keyring, MasterKey};

const S: usize = SEGMENT_SIZE as usize;
const SS: usize = STORED_SEGMENT as usize;

/// The read fails, and whatever it yielded before failing is a correct prefix that ends
/// on a segment boundary (only authenticated segments are served).
async fn assert_detected(enc: &dyn Backend, bucket: &BucketName, key: &str, plain: &[u8]) {
    match enc.get_object(bucket, &k(key), GetOptions::default()).await {
        Err(e) => assert!(matches!(e, Error::Corrupt(_)), "{key}: {e:?}"),
        Ok(got) => {
            let (yielded, err) = drain(got.body).await;
            assert!(err.is_some(), "{key}: tampering not detected");
            assert!(yielded.len() % S == 0, "{key}: partial segment yielded");
            assert!(
                yielded[..] == plain[..yielded.len()],
                "{key}: wrong bytes yielded"
            );
        }
    }
}

#[tokio::test]
async fn bit_flips_anywhere_are_detected() {
    let (inner, enc, bucket) = setup("flip").await;
    let plain = data(3 * S + 100, 1);
    enc.put_object(
        &bucket,
        &k("o"),
        plain.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let (meta, stored) = raw(&*inner, &bucket, "o").await;
    for at in [0, 23, 24, 1000, SS - 1, SS, 2 * SS + 500, stored.len() - 1] {
        let mut bad = BytesMut::from(&stored[..]);
        bad[at] ^= 0x01;
        store_raw(&*inner, &bucket, "o", meta.clone(), bad.freeze()).await;
        assert_detected(&*enc, &bucket, "o", &plain).await;
        // Ranged reads of the flipped segment fail too.
        let seg = (at / SS) as u64;
        let r = read(
            &*enc,
            &bucket,
            "o",
            Some(ByteRange::FromTo(seg * SEGMENT_SIZE, seg * SEGMENT_SIZE)),
        )
        .await;
        assert!(matches!(r, Err(Error::Corrupt(_))), "flip at {at}: {r:?}");
    }
}

#[tokio::test]
async fn truncation_at_every_segment_boundary_is_detected() {
    let (inner, enc, bucket) = setup("trunc").await;
    let plain = data(4 * S, 2);
    enc.put_object(
        &bucket,
        &k("o"),
        plain.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let (meta, stored) = raw(&*inner, &bucket, "o").await;
    // With the info record the size no longer matches; without it (an S3 listing or a
    // stripped record), the last remaining segment is not marked final.
    let mut no_info = meta.clone();
    no_info.internal.remove(INFO_META);
    for segments in 1..4 {
        for m in [&meta, &no_info] {
            store_raw(
                &*inner,
                &bucket,
                "o",
                m.clone(),
                stored.slice(..segments * SS),
            )
            .await;
            assert_detected(&*enc, &bucket, "o", &plain).await;
        }
    }
    // Dropping the last part of a multipart object.
    let parts = [data(5 << 20, 3), data(1000, 4)];
    multipart(&*enc, &bucket, "mp", &parts).await;
    let (meta, stored) = raw(&*inner, &bucket, "mp").await;
    let first_part = s3proxy_crypto::format::stored_size(5 << 20) as usize;
    store_raw(&*inner, &bucket, "mp", meta, stored.slice(..first_part)).await;
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert_detected(&*enc, &bucket, "mp", &whole).await;
}

#[tokio::test]
async fn reordered_segments_are_detected() {
    let (inner, enc, bucket) = setup("reorder").await;
    let plain = data(3 * S, 5);
    enc.put_object(
        &bucket,
        &k("o"),
        plain.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let (meta, stored) = raw(&*inner, &bucket, "o").await;
    let mut swapped = BytesMut::new();
    swapped.extend_from_slice(&stored[SS..2 * SS]);
    swapped.extend_from_slice(&stored[..SS]);
    swapped.extend_from_slice(&stored[2 * SS..]);
    store_raw(&*inner, &bucket, "o", meta.clone(), swapped.freeze()).await;
    assert_detected(&*enc, &bucket, "o", &plain).await;
    // Moving the final segment earlier (same sizes) fails too.
    let mut moved = BytesMut::new();
    moved.extend_from_slice(&stored[..SS]);
    moved.extend_from_slice(&stored[2 * SS..]);
    moved.extend_from_slice(&stored[SS..2 * SS]);
    store_raw(&*inner, &bucket, "o", meta, moved.freeze()).await;
    assert_detected(&*enc, &bucket, "o", &plain).await;
}

#[tokio::test]
async fn swapped_bodies_or_keys_between_objects_are_detected() {
    let (inner, enc, bucket) = setup("swap").await;
    let (pa, pb) = (data(2 * S + 9, 6), data(2 * S + 9, 7));
    enc.put_object(&bucket, &k("a"), pa.clone().into(), PutOptions::default())
        .await
        .unwrap();
    enc.put_object(&bucket, &k("b"), pb.clone().into(), PutOptions::default())
        .await
        .unwrap();
    let (ma, ba) = raw(&*inner, &bucket, "a").await;
    let (mb, bb) = raw(&*inner, &bucket, "b").await;
    // Bodies swapped, metadata kept.
    store_raw(&*inner, &bucket, "a", ma.clone(), bb.clone()).await;
    assert_detected(&*enc, &bucket, "a", &pa).await;
    // Wrapped data keys swapped, bodies kept.
    let mut m = ma.clone();
    m.internal
        .insert(KEY_META.into(), mb.internal[KEY_META].clone());
    store_raw(&*inner, &bucket, "a", m, ba.clone()).await;
    assert!(matches!(
        enc.head_object(&bucket, &k("a"), GetOptions::default())
            .await,
        Err(Error::Corrupt(_))
    ));
    assert_detected(&*enc, &bucket, "a", &pa).await;
    // Info records swapped.
    let mut m = ma.clone();
    m.internal
        .insert(INFO_META.into(), mb.internal[INFO_META].clone());
    store_raw(&*inner, &bucket, "a", m, ba.clone()).await;
    assert!(matches!(
        enc.head_object(&bucket, &k("a"), GetOptions::default())
            .await,
        Err(Error::Corrupt(_))
    ));
}

/// Change one character in the middle of the last `.`-separated field (the sealed or
/// wrapped bytes), always to a different character of the same alphabet, so the change
/// touches real data bits whatever the random content.
fn change_one_char(value: &str) -> String {
    let start = value.rfind('.').map_or(0, |i| i + 1);
    let at = start + (value.len() - start) / 2;
    let old = value.as_bytes()[at];
    let new = if old == b'A' { 'B' } else { 'A' };
    format!("{}{new}{}", &value[..at], &value[at + 1..])
}

#[tokio::test]
async fn changed_metadata_is_detected() {
    let (inner, enc, bucket) = setup("meta").await;
    let mut meta = ObjectMetadata::default();
    meta.user.insert("mode".into(), "33188".into());
    meta.headers.content_type = Some("text/plain".into());
    let plain = data(1000, 8);
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
    let (stored_meta, stored) = raw(&*inner, &bucket, "o").await;
    type Change = Box<dyn Fn(&mut ObjectMetadata)>;
    let cases: Vec<Change> = vec![
        Box::new(|m| {
            m.user.insert("mode".into(), "33261".into());
        }),
        Box::new(|m| m.headers.content_type = Some("text/html".into())),
        Box::new(|m| {
            m.internal.remove(KEY_META);
        }),
        Box::new(|m| {
            let v = change_one_char(&m.internal[INFO_META]);
            m.internal.insert(INFO_META.into(), v);
        }),
        Box::new(|m| {
            let v = change_one_char(&m.internal[KEY_META]);
            m.internal.insert(KEY_META.into(), v);
        }),
    ];
    for (i, change) in cases.iter().enumerate() {
        let mut m = stored_meta.clone();
        change(&mut m);
        store_raw(&*inner, &bucket, "o", m, stored.clone()).await;
        let head = enc
            .head_object(&bucket, &k("o"), GetOptions::default())
            .await;
        assert!(matches!(head, Err(Error::Corrupt(_))), "case {i}: {head:?}");
        assert_detected(&*enc, &bucket, "o", &plain).await;
    }
    // Other layers' internal keys are not ours to judge.
    let mut m = stored_meta.clone();
    m.internal.insert("s3proxy-version".into(), "42".into());
    store_raw(&*inner, &bucket, "o", m, stored).await;
    assert!(read(&*enc, &bucket, "o", None).await.unwrap() == plain);
}

#[tokio::test]
async fn wrong_or_missing_master_key_is_a_clear_error() {
    let (inner, enc, bucket) = setup("keys").await;
    enc.put_object(
        &bucket,
        &k("o"),
        Bytes::from("hello").into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let same_id = Encrypted::new(
        inner.clone(),
        Keyring::single(MasterKey::new("test", [8; 32]).unwrap()),
    );
    let err = same_id
        .head_object(&bucket, &k("o"), GetOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wrong master key"), "{err}");
    let other_id = Encrypted::new(
        inner.clone(),
        Keyring::single(MasterKey::new("other", [7; 32]).unwrap()),
    );
    let err = other_id
        .get_object(&bucket, &k("o"), GetOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("\"test\", which is not configured"),
        "{err}"
    );
    // A rotated ring still reads old objects and writes with the new key.
    let rotated = Encrypted::new(
        inner.clone(),
        Keyring::new(
            [
                MasterKey::new("test", [7; 32]).unwrap(),
                MasterKey::new("new", [9; 32]).unwrap(),
            ],
            "new",
        )
        .unwrap(),
    );
    assert_eq!(read(&rotated, &bucket, "o", None).await.unwrap(), b"hello");
    rotated
        .copy_object(&bucket, &k("o"), &bucket, &k("o"), CopyOptions::default())
        .await
        .unwrap();
    let (meta, _) = raw(&*inner, &bucket, "o").await;
    assert!(meta.internal[KEY_META].starts_with("1.new."));
    // Uploads ids are bound to bucket and key, and cannot be forged.
    let id = enc
        .create_multipart_upload(&bucket, &k("m"), MultipartOptions::default())
        .await
        .unwrap();
    let r = enc
        .upload_part(
            &bucket,
            &k("other"),
            &id,
            1,
            Bytes::from("x").into(),
            PartOptions::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::NoSuchUpload)));
    let forged = UploadId::new(id.as_str().replacen("e1.test.", "e1.test.A", 1)).unwrap();
    let r = enc
        .upload_part(
            &bucket,
            &k("m"),
            &forged,
            1,
            Bytes::from("x").into(),
            PartOptions::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::NoSuchUpload)));
}
