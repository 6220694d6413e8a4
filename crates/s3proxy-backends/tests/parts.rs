//! GET `?partNumber=N` on the memory and filesystem backends: a multipart object's parts
//! as uploaded, a single PUT as its own part 1, and what S3 refuses.

use bytes::Bytes;
use s3proxy_backends::{Filesystem, Memory, conformance::pattern};
use s3proxy_core::*;
use std::sync::Arc;

async fn part(
    b: &dyn Backend,
    bucket: &BucketName,
    key: &str,
    n: u32,
) -> Result<(GetResult, Bytes)> {
    let opts = GetOptions {
        part_number: Some(n),
        ..Default::default()
    };
    let mut got = b
        .get_object(bucket, &ObjectKey::new(key).unwrap(), opts)
        .await?;
    let body = std::mem::replace(&mut got.body, Box::pin(futures::stream::empty()));
    Ok((got, collect_body(body, 64 << 20).await?))
}

async fn parts_by_number(b: DynBackend) {
    let bucket = BucketName::new("parts").unwrap();
    b.create_bucket(&bucket).await.unwrap();
    let key = ObjectKey::new("mp").unwrap();
    let id = b
        .create_multipart_upload(&bucket, &key, MultipartOptions::default())
        .await
        .unwrap();
    let data = [pattern(5 << 20, 1), pattern(5 << 20, 2), pattern(1000, 3)];
    let mut done = vec![];
    for (i, d) in data.iter().enumerate() {
        let n = i as u32 + 1;
        // Part 2 is uploaded twice: the last upload is the part.
        if n == 2 {
            let other = pattern(5 << 20, 9).into();
            b.upload_part(&bucket, &key, &id, n, other, PartOptions::default())
                .await
                .unwrap();
        }
        let etag = b
            .upload_part(
                &bucket,
                &key,
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
    b.complete_multipart_upload(&bucket, &key, &id, done)
        .await
        .unwrap();
    let total = (10 << 20) + 1000;
    let mut start = 0u64;
    for (i, d) in data.iter().enumerate() {
        let (got, body) = part(&*b, &bucket, "mp", i as u32 + 1).await.unwrap();
        let end = start + d.len() as u64 - 1;
        assert_eq!(got.range, Some((start, end)));
        assert_eq!(got.info.size, total);
        assert_eq!(got.info.parts_count, Some(3));
        assert!(body == d, "part {}", i + 1);
        start = end + 1;
    }
    assert!(matches!(
        part(&*b, &bucket, "mp", 4).await,
        Err(Error::InvalidPartNumber)
    ));
    // A whole GET names no parts count.
    let whole = b
        .get_object(&bucket, &key, GetOptions::default())
        .await
        .unwrap();
    assert_eq!(whole.info.parts_count, None);
    // A copy keeps the parts, as it keeps the multipart ETag.
    let copy = ObjectKey::new("copy").unwrap();
    b.copy_object(&bucket, &key, &bucket, &copy, CopyOptions::default())
        .await
        .unwrap();
    let (got, body) = part(&*b, &bucket, "copy", 3).await.unwrap();
    assert_eq!(
        (got.range, got.info.parts_count),
        (Some((10 << 20, total - 1)), Some(3))
    );
    assert!(body == data[2]);
    // A single PUT is its own part 1.
    let one = ObjectKey::new("one").unwrap();
    b.put_object(
        &bucket,
        &one,
        Bytes::from("single").into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let (got, body) = part(&*b, &bucket, "one", 1).await.unwrap();
    assert_eq!((got.range, got.info.parts_count), (Some((0, 5)), None));
    assert_eq!(body, "single");
    assert!(matches!(
        part(&*b, &bucket, "one", 2).await,
        Err(Error::InvalidPartNumber)
    ));
    let both = GetOptions {
        part_number: Some(1),
        range: Some(ByteRange::FromTo(0, 1)),
        ..Default::default()
    };
    assert!(matches!(
        b.get_object(&bucket, &one, both).await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn memory_serves_parts_by_number() {
    parts_by_number(Arc::new(Memory::new("mem"))).await;
}

#[tokio::test]
async fn filesystem_serves_parts_by_number() {
    let dir = tempfile::tempdir().unwrap();
    parts_by_number(Arc::new(Filesystem::new("fs", dir.path()).unwrap())).await;
}
