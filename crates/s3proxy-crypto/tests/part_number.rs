//! GET `?partNumber=N` through the encryption layer: the parts come from the object's
//! sealed layout (the inner backend's parts are ciphertext of other sizes), also after a
//! copy; a single PUT is its own part 1.

mod common;

use common::*;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_crypto::{Encrypted, Keyring, MasterKey};
use std::sync::Arc;

async fn part(enc: &Encrypted, key: &str, n: u32) -> Result<(GetResult, bytes::Bytes)> {
    let opts = GetOptions {
        part_number: Some(n),
        ..Default::default()
    };
    let mut got = enc.get_object(&b("enc"), &k(key), opts).await?;
    let body = std::mem::replace(&mut got.body, Box::pin(futures::stream::empty()));
    Ok((got, collect_body(body, 64 << 20).await?))
}

#[tokio::test]
async fn parts_by_number_come_from_the_layout() {
    let enc = Encrypted::new(
        Arc::new(Memory::new("mem")),
        Keyring::single(MasterKey::generate()),
    );
    enc.create_bucket(&b("enc")).await.unwrap();
    let id = enc
        .create_multipart_upload(&b("enc"), &k("mp"), MultipartOptions::default())
        .await
        .unwrap();
    // Part 1 is not a whole number of segments: its stored size is no multiple of anything.
    let parts = [data((5 << 20) + 3, 1), data(5 << 20, 2), data(777, 3)];
    let mut done = vec![];
    for (i, d) in parts.iter().enumerate() {
        let n = i as u32 + 1;
        let etag = enc
            .upload_part(
                &b("enc"),
                &k("mp"),
                &id,
                n,
                d.clone().into(),
                PartOptions::default(),
            )
            .await
            .unwrap();
        done.push(CompletedPart {
            part_number: n,
            etag,
        });
    }
    enc.complete_multipart_upload(&b("enc"), &k("mp"), &id, done)
        .await
        .unwrap();
    enc.copy_object(
        &b("enc"),
        &k("mp"),
        &b("enc"),
        &k("copy"),
        CopyOptions::default(),
    )
    .await
    .unwrap();
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    for key in ["mp", "copy"] {
        let mut start = 0;
        for (i, d) in parts.iter().enumerate() {
            let (got, body) = part(&enc, key, i as u32 + 1).await.unwrap();
            let end = start + d.len() as u64 - 1;
            assert_eq!(got.range, Some((start, end)), "{key} part {}", i + 1);
            assert_eq!((got.info.size, got.info.parts_count), (total, Some(3)));
            assert!(body == d, "{key} part {}", i + 1);
            start = end + 1;
        }
        assert!(matches!(
            part(&enc, key, 4).await,
            Err(Error::InvalidPartNumber)
        ));
    }
    enc.put_object(
        &b("enc"),
        &k("one"),
        data(100, 4).into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let (got, body) = part(&enc, "one", 1).await.unwrap();
    assert_eq!((got.range, got.info.parts_count), (Some((0, 99)), None));
    assert!(body == data(100, 4));
    assert!(matches!(
        part(&enc, "one", 2).await,
        Err(Error::InvalidPartNumber)
    ));
    // An empty object's part 1 is the empty object.
    enc.put_object(
        &b("enc"),
        &k("empty"),
        bytes::Bytes::new().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let (got, body) = part(&enc, "empty", 1).await.unwrap();
    assert_eq!((got.range, got.info.size, body.len()), (None, 0, 0));
}
