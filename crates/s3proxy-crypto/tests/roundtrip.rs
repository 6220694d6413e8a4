//! Round trips over sizes, ranges and part layouts; HEAD, GET and LIST agree; the stored
//! bytes hold no plaintext; ranged reads fetch only covering segments.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use s3proxy_core::*;
use s3proxy_crypto::format::SEGMENT_SIZE;
use std::sync::Arc;

const S: usize = SEGMENT_SIZE as usize;
const MIB: usize = 1 << 20;

fn random_ranges(size: u64, n: usize, seed: u64) -> Vec<ByteRange> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![];
    if size == 0 {
        return out;
    }
    for _ in 0..n {
        let a = rng.gen_range(0..size);
        let b = rng.gen_range(a..size.min(a + 3 * SEGMENT_SIZE));
        out.push(match rng.gen_range(0..4) {
            0 => ByteRange::From(a),
            1 => ByteRange::Suffix(rng.gen_range(1..=size.min(2 * SEGMENT_SIZE + 5))),
            _ => ByteRange::FromTo(a, b),
        });
    }
    out
}

async fn check_object(
    enc: &dyn Backend,
    bucket: &BucketName,
    key: &str,
    want: &[u8],
    etag: &str,
    seed: u64,
) {
    let head = enc
        .head_object(bucket, &k(key), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(head.size, want.len() as u64, "{key}: HEAD size");
    assert_eq!(head.etag, etag, "{key}: HEAD etag");
    let got = read(enc, bucket, key, None).await.unwrap();
    assert!(got == want, "{key}: whole object");
    for range in random_ranges(want.len() as u64, 25, seed) {
        let (a, z) = range.resolve(want.len() as u64).unwrap();
        let got = read(enc, bucket, key, Some(range)).await.unwrap();
        assert!(got == want[a as usize..=z as usize], "{key}: {range:?}");
    }
    let page = enc
        .list_objects(
            bucket,
            ListOptions {
                prefix: key.into(),
                max_keys: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.objects[0].size, want.len() as u64, "{key}: LIST size");
    assert_eq!(page.objects[0].etag, etag, "{key}: LIST etag");
}

#[tokio::test]
async fn single_put_round_trips_over_sizes_and_ranges() {
    let (_, enc, bucket) = setup("single").await;
    // 4 KiB, 16 KiB and 16 KiB + 1: either side of the small PUT sealed inline.
    let sizes = [0, 1, 4096, 16 << 10, (16 << 10) + 1, S - 1, S, S + 1, 2 * S];
    for (i, size) in sizes
        .into_iter()
        .chain([3 * S + 17, 3 * MIB + 5])
        .enumerate()
    {
        let d = data(size, i as u64);
        let key = format!("obj-{size}");
        let put = enc
            .put_object(
                &bucket,
                &k(&key),
                chunked(d.clone(), 7777),
                PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(put.etag, md5_hex(&d));
        check_object(&*enc, &bucket, &key, &d, put.etag.as_str(), i as u64).await;
    }
}

#[tokio::test]
async fn multipart_round_trips_with_aligned_and_odd_parts() {
    let (_, enc, bucket) = setup("multi").await;
    let layouts: Vec<(&str, Vec<usize>)> = vec![
        ("aligned-5mib", vec![5 * MIB, 5 * MIB, 123]),
        ("s3fs-10mb", vec![10_000_000, 999]),
        ("odd", vec![5 * MIB + 1, 5 * MIB + S - 1, 2 * S + 7]),
        ("one-part", vec![S + 3]),
        ("empty-last", vec![5 * MIB, 0]),
    ];
    for (n, (name, sizes)) in layouts.iter().enumerate() {
        let parts: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| data(*s, (n * 10 + i) as u64))
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let etag = multipart(&*enc, &bucket, name, &parts).await;
        let want_etag = multipart_etag(
            parts
                .iter()
                .map(|p| md5_hex(p))
                .collect::<Vec<_>>()
                .iter()
                .map(|s| s.as_str()),
        )
        .unwrap();
        assert_eq!(etag, want_etag, "{name}");
        check_object(&*enc, &bucket, name, &whole, etag.as_str(), n as u64).await;
        // Ranges across every part boundary.
        let mut at = 0u64;
        for s in &sizes[..sizes.len() - 1] {
            at += *s as u64;
            if at == 0 || at >= whole.len() as u64 {
                continue;
            }
            let range = ByteRange::FromTo(at - 1, at);
            let got = read(&*enc, &bucket, name, Some(range)).await.unwrap();
            assert_eq!(
                got,
                whole[at as usize - 1..=at as usize],
                "{name}: boundary {at}"
            );
        }
        if *name != "odd" {
            continue;
        }
        // Copy to another key keeps data and ETag, moving no data through the layer.
        enc.copy_object(
            &bucket,
            &k(name),
            &bucket,
            &k(&format!("{name}-copy")),
            CopyOptions::default(),
        )
        .await
        .unwrap();
        check_object(
            &*enc,
            &bucket,
            &format!("{name}-copy"),
            &whole,
            etag.as_str(),
            99,
        )
        .await;
    }
}

#[tokio::test]
async fn upload_part_copy_reencrypts_a_range() {
    let (_, enc, bucket) = setup("partcopy").await;
    let src = data(3 * S + 100, 5);
    enc.put_object(
        &bucket,
        &k("src"),
        src.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let id = enc
        .create_multipart_upload(&bucket, &k("dst"), MultipartOptions::default())
        .await
        .unwrap();
    let big = data(5 * MIB, 6);
    let e1 = enc
        .upload_part(
            &bucket,
            &k("dst"),
            &id,
            1,
            big.clone().into(),
            PartOptions::default(),
        )
        .await
        .unwrap();
    let e2 = enc
        .upload_part_copy(
            &bucket,
            &k("dst"),
            &id,
            2,
            &bucket,
            &k("src"),
            GetOptions {
                range: Some(ByteRange::FromTo(S as u64 - 10, 2 * S as u64 + 10)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let piece = &src[S - 10..=2 * S + 10];
    assert_eq!(e2, md5_hex(piece));
    enc.complete_multipart_upload(
        &bucket,
        &k("dst"),
        &id,
        vec![
            CompletedPart {
                part_number: 1,
                etag: e1,
            },
            CompletedPart {
                part_number: 2,
                etag: e2,
            },
        ],
    )
    .await
    .unwrap();
    let got = read(&*enc, &bucket, "dst", None).await.unwrap();
    assert!(got[..5 * MIB] == big[..] && got[5 * MIB..] == *piece);
}

#[tokio::test]
async fn listing_without_internal_metadata_derives_exact_sizes() {
    // Single PUTs' sizes invert from their stored sizes alone; a multipart object's never
    // does since it carries a manifest trailer (its size is looked up, docs/FORMAT.md).
    let (inner, enc, bucket) = setup("derive").await;
    for size in [0, 1, S, S + 1, 1_000_000] {
        enc.put_object(
            &bucket,
            &k(&format!("s{size}")),
            data(size, 1).into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    }
    multipart(
        &*enc,
        &bucket,
        "mp",
        &[data(5 * MIB, 1), data(5 * MIB, 2), data(77, 3)],
    )
    .await;
    let page = inner
        .list_objects(
            &bucket,
            ListOptions {
                max_keys: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for o in page.objects {
        let plain = s3proxy_crypto::format::plain_size(o.size);
        let head = enc
            .head_object(&bucket, &k(&o.key), GetOptions::default())
            .await
            .unwrap();
        if o.key == "mp" {
            assert_eq!(plain, None);
            assert_eq!(head.size, 10 * MIB as u64 + 77);
        } else {
            assert_eq!(plain, Some(head.size), "{}", o.key);
        }
    }
}

#[tokio::test]
async fn stored_bytes_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(s3proxy_backends::Filesystem::new("fs", dir.path()).unwrap());
    let enc = s3proxy_crypto::Encrypted::new(inner, ring());
    let bucket = b("secret");
    enc.create_bucket(&bucket).await.unwrap();
    let marker = b"TOP-SECRET-PLAINTEXT-MARKER:";
    let text: Vec<u8> = marker.iter().copied().cycle().take(300_000).collect();
    enc.put_object(
        &bucket,
        &k("doc.txt"),
        bytes::Bytes::from(text.clone()).into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let part: bytes::Bytes = marker
        .iter()
        .copied()
        .cycle()
        .take(5 * MIB)
        .collect::<Vec<u8>>()
        .into();
    multipart(
        &enc,
        &bucket,
        "big.txt",
        &[part.clone(), part.slice(..1000)],
    )
    .await;
    assert!(read(&enc, &bucket, "doc.txt", None).await.unwrap() == text);
    let mut files = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                let bytes = std::fs::read(entry.path()).unwrap();
                // Any 16 consecutive plaintext bytes would show.
                assert!(
                    !bytes
                        .windows(16)
                        .any(|w| marker.windows(16).any(|m| m == w)),
                    "plaintext found in {}",
                    entry.path().display()
                );
            }
        }
    }
    assert!(files >= 2);
}
