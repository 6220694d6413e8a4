//! The behaviour suite every [`Backend`] must pass, one generic suite instantiated per
//! backend (memory, filesystem, S3 servers, another s3proxy).
//!
//! Each check panics with a message naming the backend and the case, so it is meant to be
//! called from tests:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let backend = std::sync::Arc::new(s3proxy_backends::Memory::new("mem"));
//! s3proxy_backends::conformance::run_all(backend, "conf-doc").await;
//! # });
//! ```

// A test suite: an unwrap that fails is a test that fails.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures::StreamExt;
use s3proxy_core::*;
use std::sync::Arc;

fn b(name: &str) -> BucketName {
    BucketName::new(name).expect("valid test bucket")
}

fn k(key: &str) -> ObjectKey {
    ObjectKey::new(key).expect("valid test key")
}

/// Deterministic test data: `len` bytes derived from `seed`.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// A body that yields `data` in chunks of `chunk` bytes but claims `length`.
fn chunked(data: Bytes, chunk: usize, length: u64) -> Body {
    let chunks: Vec<Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    Body {
        stream: Box::pin(futures::stream::iter(chunks)),
        length,
    }
}

async fn read_all(backend: &dyn Backend, bucket: &BucketName, key: &str) -> Result<Bytes> {
    let got = backend
        .get_object(bucket, &k(key), GetOptions::default())
        .await?;
    let mut out = Vec::new();
    let mut body = got.body;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.into())
}

/// Run every check, using buckets whose names start with `prefix` (3 to 40 characters of
/// lowercase letters, digits and hyphens). The buckets are deleted at the end.
pub async fn run_all(backend: DynBackend, prefix: &str) {
    buckets(backend.clone(), prefix).await;
    objects(backend.clone(), prefix).await;
    edge_keys(backend.clone(), prefix).await;
    listing(backend.clone(), prefix).await;
    copy(backend.clone(), prefix).await;
    multipart(backend.clone(), prefix).await;
}

async fn empty_bucket(backend: &dyn Backend, bucket: &BucketName) {
    loop {
        let page = backend
            .list_objects(
                bucket,
                ListOptions {
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("list for cleanup");
        for o in &page.objects {
            backend
                .delete_object(bucket, &k(&o.key))
                .await
                .expect("delete for cleanup");
        }
        if !page.is_truncated {
            break;
        }
    }
    let uploads = backend
        .list_multipart_uploads(bucket, ListUploadsOptions::default())
        .await
        .expect("list uploads for cleanup");
    for u in uploads.uploads {
        let _ = backend
            .abort_multipart_upload(bucket, &k(&u.key), &u.upload_id)
            .await;
    }
    backend.delete_bucket(bucket).await.expect("delete bucket");
}

/// Bucket lifecycle and bucket errors.
pub async fn buckets(backend: DynBackend, prefix: &str) {
    let name = backend.name().to_string();
    let bucket = b(&format!("{prefix}-bkt"));
    let missing = backend.head_bucket(&bucket).await;
    assert!(
        matches!(missing, Err(Error::NoSuchBucket)),
        "{name}: head of a missing bucket: {missing:?}"
    );
    backend.create_bucket(&bucket).await.expect("create bucket");
    let again = backend.create_bucket(&bucket).await;
    assert!(
        matches!(again, Err(Error::BucketAlreadyOwnedByYou)),
        "{name}: second create gives BucketAlreadyOwnedByYou, got {again:?}"
    );
    backend.head_bucket(&bucket).await.expect("head bucket");
    let listed = backend.list_buckets().await.expect("list buckets");
    assert!(
        listed.iter().any(|x| x.name == bucket.as_str()),
        "{name}: created bucket is listed"
    );
    backend
        .put_object(
            &bucket,
            &k("x"),
            Bytes::from("1").into(),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(
        matches!(
            backend.delete_bucket(&bucket).await,
            Err(Error::BucketNotEmpty)
        ),
        "{name}: delete of a non-empty bucket"
    );
    backend
        .delete_object(&bucket, &k("x"))
        .await
        .expect("delete");
    backend.delete_bucket(&bucket).await.expect("delete bucket");
    assert!(
        matches!(backend.head_bucket(&bucket).await, Err(Error::NoSuchBucket)),
        "{name}: bucket gone after delete"
    );
    let missing = b(&format!("{prefix}-missing"));
    assert!(matches!(
        backend
            .put_object(
                &missing,
                &k("x"),
                Bytes::from("1").into(),
                PutOptions::default()
            )
            .await,
        Err(Error::NoSuchBucket)
    ));
    assert!(matches!(
        backend
            .get_object(&missing, &k("x"), GetOptions::default())
            .await,
        Err(Error::NoSuchBucket)
    ));
    assert!(matches!(
        backend.list_objects(&missing, ListOptions::default()).await,
        Err(Error::NoSuchBucket)
    ));
}

/// Put, get, head, delete, ranges, conditions, digests and length checks.
pub async fn objects(backend: DynBackend, prefix: &str) {
    let name = backend.name().to_string();
    let bucket = b(&format!("{prefix}-obj"));
    backend.create_bucket(&bucket).await.expect("create");
    for size in [0usize, 1, 65535, 65536, 65537, 1 << 20] {
        let data = pattern(size, size as u8);
        let mut meta = ObjectMetadata::default();
        meta.headers.content_type = Some("text/plain".into());
        meta.headers.cache_control = Some("no-cache".into());
        meta.user.insert("mode".into(), "33188".into());
        meta.internal.insert("s3proxy-test".into(), "v".into());
        let key = format!("size-{size}");
        let put = backend
            .put_object(
                &bucket,
                &k(&key),
                chunked(data.clone(), 1000, size as u64),
                PutOptions {
                    metadata: meta.clone(),
                    content_md5: None,
                },
            )
            .await
            .expect("put");
        assert_eq!(put.etag, md5_hex(&data), "{name}: ETag is the MD5");
        let head = backend
            .head_object(&bucket, &k(&key), GetOptions::default())
            .await
            .expect("head");
        assert_eq!(head.size, size as u64, "{name}: head size");
        assert_eq!(head.etag, put.etag);
        assert_eq!(head.metadata, meta, "{name}: metadata round-trips");
        let got = read_all(&*backend, &bucket, &key).await.expect("get");
        assert!(got == data, "{name}: data round-trips at size {size}");
    }
    // Ranges.
    let data = pattern(100_000, 7);
    backend
        .put_object(&bucket, &k("r"), data.clone().into(), PutOptions::default())
        .await
        .expect("put");
    for (range, want) in [
        (ByteRange::FromTo(0, 0), 0..1),
        (ByteRange::FromTo(99_990, 200_000), 99_990..100_000),
        (ByteRange::From(50_000), 50_000..100_000),
        (ByteRange::Suffix(10), 99_990..100_000),
        (ByteRange::FromTo(65_535, 65_536), 65_535..65_537),
    ] {
        let got = backend
            .get_object(
                &bucket,
                &k("r"),
                GetOptions {
                    range: Some(range),
                    ..Default::default()
                },
            )
            .await
            .expect("ranged get");
        assert_eq!(
            got.range,
            Some((want.start as u64, want.end as u64 - 1)),
            "{name}: {range:?}"
        );
        assert_eq!(got.info.size, 100_000);
        let body = collect_body(got.body, 200_000).await.expect("body");
        assert!(
            body == data.slice(want.clone()),
            "{name}: range {range:?} bytes"
        );
    }
    let bad_range = backend
        .get_object(
            &bucket,
            &k("r"),
            GetOptions {
                range: Some(ByteRange::From(100_000)),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(bad_range, Err(Error::InvalidRange)),
        "{name}: range past the end"
    );
    // Conditions.
    let etag = md5_hex(&data);
    let cond = |c: Conditions| GetOptions {
        conditions: c,
        ..Default::default()
    };
    let r = backend
        .get_object(
            &bucket,
            &k("r"),
            cond(Conditions {
                if_none_match: Some(ETag::new(etag.as_str()).quoted()),
                ..Default::default()
            }),
        )
        .await;
    assert!(
        matches!(r, Err(Error::NotModified)),
        "{name}: If-None-Match"
    );
    let r = backend
        .head_object(
            &bucket,
            &k("r"),
            cond(Conditions {
                if_match: Some("\"other\"".into()),
                ..Default::default()
            }),
        )
        .await;
    assert!(
        matches!(r, Err(Error::PreconditionFailed)),
        "{name}: If-Match"
    );
    // Short, long and bad-digest bodies store nothing and keep the old object.
    let short = backend
        .put_object(
            &bucket,
            &k("r"),
            chunked(pattern(10, 1), 3, 20),
            PutOptions::default(),
        )
        .await;
    assert!(
        matches!(short, Err(Error::IncompleteBody)),
        "{name}: short body"
    );
    let long = backend
        .put_object(
            &bucket,
            &k("r"),
            chunked(pattern(30, 1), 3, 20),
            PutOptions::default(),
        )
        .await;
    assert!(long.is_err(), "{name}: long body");
    let bad = backend
        .put_object(
            &bucket,
            &k("r"),
            Bytes::from("abc").into(),
            PutOptions {
                content_md5: Some([0; 16]),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(bad, Err(Error::BadDigest)), "{name}: bad digest");
    assert!(
        read_all(&*backend, &bucket, "r").await.expect("get") == data,
        "{name}: failed writes keep the old object"
    );
    let good_md5: [u8; 16] = hex::decode(md5_hex(b"abc")).unwrap().try_into().unwrap();
    backend
        .put_object(
            &bucket,
            &k("r"),
            Bytes::from("abc").into(),
            PutOptions {
                content_md5: Some(good_md5),
                ..Default::default()
            },
        )
        .await
        .expect("put with the right digest");
    // Delete, also of a missing key.
    backend
        .delete_object(&bucket, &k("r"))
        .await
        .expect("delete");
    backend
        .delete_object(&bucket, &k("never-existed"))
        .await
        .expect("delete of a missing key succeeds");
    assert!(matches!(
        backend
            .get_object(&bucket, &k("r"), GetOptions::default())
            .await,
        Err(Error::NoSuchKey)
    ));
    let outcomes = backend
        .delete_objects(&bucket, vec![k("size-0"), k("size-1"), k("nope")])
        .await
        .expect("delete many");
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    empty_bucket(&*backend, &bucket).await;
}

/// The keys that cannot coexist as plain paths: every one round-trips and is listed.
pub async fn edge_keys(backend: DynBackend, prefix: &str) {
    let name = backend.name().to_string();
    let bucket = b(&format!("{prefix}-keys"));
    backend.create_bucket(&bucket).await.expect("create");
    let long = "k".repeat(1024);
    let long_unicode = "é".repeat(512);
    let mut keys: Vec<String> = [
        "a",
        "a/",
        "a/b",
        "//",
        "a//b",
        "..",
        ".",
        "../x",
        "a/../b",
        "./a",
        "with space",
        "100%",
        "a+b",
        "ünïcödé/文件",
        "#hash?q=1&x",
        "\\back",
        "tab\there",
        "new\nline",
        "/leading",
        "trailing/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    keys.push(long.clone());
    keys.push(long_unicode.clone());
    for (i, key) in keys.iter().enumerate() {
        backend
            .put_object(
                &bucket,
                &k(key),
                Bytes::from(format!("content of {i}")).into(),
                PutOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: put {key:?}: {e}"));
    }
    for (i, key) in keys.iter().enumerate() {
        let got = read_all(&*backend, &bucket, key)
            .await
            .unwrap_or_else(|e| panic!("{name}: get {key:?}: {e}"));
        assert_eq!(got, format!("content of {i}"), "{name}: key {key:?}");
    }
    let page = backend
        .list_objects(
            &bucket,
            ListOptions {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    let mut sorted = keys.clone();
    sorted.sort();
    let listed: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
    assert_eq!(
        listed, sorted,
        "{name}: every key listed once, in byte order"
    );
    assert!(matches!(
        ObjectKey::new(format!("{long}x")),
        Err(Error::KeyTooLong)
    ));
    empty_bucket(&*backend, &bucket).await;
}

/// Listing order, prefixes, delimiters and pagination.
pub async fn listing(backend: DynBackend, prefix: &str) {
    let name = backend.name().to_string();
    let bucket = b(&format!("{prefix}-list"));
    backend.create_bucket(&bucket).await.expect("create");
    let mut keys = vec![];
    for d in ["dir1", "dir2", "Z", "é"] {
        for f in 0..7 {
            keys.push(format!("{d}/f{f}"));
        }
    }
    keys.extend(["dir1", "top1", "top2", "~tilde", "dir1/sub/x", "dir1/sub/y"].map(String::from));
    for key in &keys {
        backend
            .put_object(
                &bucket,
                &k(key),
                Bytes::from(key.clone()).into(),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }
    keys.sort();
    // Plain pagination with every page size sees every key once, in order.
    for page_size in [1usize, 2, 3, 7, 1000] {
        let mut opts = ListOptions {
            max_keys: page_size,
            ..Default::default()
        };
        let mut seen = vec![];
        loop {
            let page = backend
                .list_objects(&bucket, opts.clone())
                .await
                .expect("list");
            assert!(page.objects.len() <= page_size);
            seen.extend(page.objects.into_iter().map(|o| o.key));
            if !page.is_truncated {
                break;
            }
            opts.start_after = Some(page.next_marker.clone().expect("next marker"));
        }
        assert_eq!(seen, keys, "{name}: pages of {page_size}");
    }
    // Delimiter at the top.
    let mut opts = ListOptions {
        delimiter: Some("/".into()),
        max_keys: 2,
        ..Default::default()
    };
    let (mut objs, mut prefixes) = (vec![], vec![]);
    loop {
        let page = backend
            .list_objects(&bucket, opts.clone())
            .await
            .expect("list");
        objs.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        if !page.is_truncated {
            break;
        }
        opts.start_after = page.next_marker;
    }
    assert_eq!(
        objs,
        ["dir1", "top1", "top2", "~tilde"],
        "{name}: top-level keys"
    );
    assert_eq!(
        prefixes,
        ["Z/", "dir1/", "dir2/", "é/"],
        "{name}: top-level prefixes"
    );
    // Prefix plus delimiter.
    let page = backend
        .list_objects(
            &bucket,
            ListOptions {
                prefix: "dir1/".into(),
                delimiter: Some("/".into()),
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.objects.len(), 7, "{name}: files in dir1/");
    assert_eq!(page.common_prefixes, ["dir1/sub/"]);
    empty_bucket(&*backend, &bucket).await;
}

/// CopyObject with COPY and REPLACE, onto itself and to another key.
pub async fn copy(backend: DynBackend, prefix: &str) {
    let name = backend.name().to_string();
    let bucket = b(&format!("{prefix}-copy"));
    backend.create_bucket(&bucket).await.expect("create");
    let data = pattern(300_000, 3);
    let mut meta = ObjectMetadata::default();
    meta.headers.content_type = Some("image/png".into());
    meta.user.insert("mode".into(), "33188".into());
    backend
        .put_object(
            &bucket,
            &k("src"),
            data.clone().into(),
            PutOptions {
                metadata: meta.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("put");
    backend
        .copy_object(
            &bucket,
            &k("src"),
            &bucket,
            &k("dst"),
            CopyOptions::default(),
        )
        .await
        .expect("copy");
    let head = backend
        .head_object(&bucket, &k("dst"), GetOptions::default())
        .await
        .expect("head");
    assert_eq!(head.metadata, meta, "{name}: COPY keeps metadata");
    assert_eq!(head.etag, md5_hex(&data));
    assert!(read_all(&*backend, &bucket, "dst").await.unwrap() == data);
    let mut new_meta = ObjectMetadata::default();
    new_meta.user.insert("mode".into(), "33261".into());
    backend
        .copy_object(
            &bucket,
            &k("src"),
            &bucket,
            &k("src"),
            CopyOptions {
                directive: MetadataDirective::Replace(new_meta.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("copy onto itself");
    let head = backend
        .head_object(&bucket, &k("src"), GetOptions::default())
        .await
        .expect("head");
    assert_eq!(head.metadata, new_meta, "{name}: REPLACE onto itself");
    assert!(read_all(&*backend, &bucket, "src").await.unwrap() == data);
    let failed = backend
        .copy_object(
            &bucket,
            &k("src"),
            &bucket,
            &k("dst2"),
            CopyOptions {
                source_conditions: Conditions {
                    if_match: Some("\"nope\"".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(failed, Err(Error::PreconditionFailed)),
        "{name}: copy-source-if-match"
    );
    let missing = backend
        .copy_object(
            &bucket,
            &k("nope"),
            &bucket,
            &k("dst3"),
            CopyOptions::default(),
        )
        .await;
    assert!(
        matches!(missing, Err(Error::NoSuchKey)),
        "{name}: copy of a missing source"
    );
    empty_bucket(&*backend, &bucket).await;
}

/// Multipart uploads: parts in any order, completion, errors, abort, listings.
pub async fn multipart(backend: DynBackend, prefix: &str) {
    let name = backend.name().to_string();
    let bucket = b(&format!("{prefix}-mpu"));
    backend.create_bucket(&bucket).await.expect("create");
    let key = k("big/object");
    let mut meta = ObjectMetadata::default();
    meta.headers.content_type = Some("application/zip".into());
    let id = backend
        .create_multipart_upload(
            &bucket,
            &key,
            MultipartOptions {
                metadata: meta.clone(),
            },
        )
        .await
        .expect("create upload");
    let part1 = pattern(MIN_PART_SIZE as usize, 1);
    let part2 = pattern(MIN_PART_SIZE as usize + 3, 2);
    let part3 = pattern(1234, 3);
    let mut etags = vec![];
    // Upload out of order, part 2 twice (the second replaces the first).
    for (n, data) in [(3u32, &part3), (2, &part1), (1, &part1), (2, &part2)] {
        let etag = backend
            .upload_part(
                &bucket,
                &key,
                &id,
                n,
                chunked(data.clone(), 65536, data.len() as u64),
                PartOptions::default(),
            )
            .await
            .expect("upload part");
        assert_eq!(etag, md5_hex(data), "{name}: part ETag");
        etags.push((n, etag));
    }
    let listed = backend
        .list_parts(&bucket, &key, &id, ListPartsOptions::default())
        .await
        .expect("list parts");
    assert_eq!(
        listed
            .parts
            .iter()
            .map(|p| p.part_number)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        listed.parts[1].size,
        part2.len() as u64,
        "{name}: replaced part"
    );
    let uploads = backend
        .list_multipart_uploads(&bucket, ListUploadsOptions::default())
        .await
        .expect("list uploads");
    assert!(
        uploads
            .uploads
            .iter()
            // By key: a replicated backend lists each replica's own upload ids.
            .any(|u| u.key == key.as_str())
    );
    // A key marker lists only later keys: the page after this key leaves it out.
    let after = backend
        .list_multipart_uploads(
            &bucket,
            ListUploadsOptions {
                key_marker: key.to_string(),
                ..Default::default()
            },
        )
        .await
        .expect("list uploads after a key marker");
    assert!(
        after.uploads.iter().all(|u| u.key.as_str() > key.as_str()),
        "{name}: key-marker"
    );
    let before = key.as_str()[..key.as_str().len() - 1].to_string();
    let from_before = backend
        .list_multipart_uploads(
            &bucket,
            ListUploadsOptions {
                key_marker: before,
                ..Default::default()
            },
        )
        .await
        .expect("list uploads after an earlier key marker");
    assert!(
        from_before.uploads.iter().any(|u| u.key == key.as_str()),
        "{name}: key-marker before the key"
    );
    let completed = |n: u32, data: &Bytes| CompletedPart {
        part_number: n,
        etag: ETag::new(md5_hex(data)),
    };
    // Errors leave the upload intact.
    let out_of_order = backend
        .complete_multipart_upload(
            &bucket,
            &key,
            &id,
            vec![completed(2, &part2), completed(1, &part1)],
        )
        .await;
    assert!(
        matches!(out_of_order, Err(Error::InvalidPartOrder)),
        "{name}: part order"
    );
    let wrong_etag = backend
        .complete_multipart_upload(&bucket, &key, &id, vec![completed(1, &part2)])
        .await;
    assert!(
        matches!(wrong_etag, Err(Error::InvalidPart)),
        "{name}: part ETag mismatch"
    );
    let too_small = backend
        .complete_multipart_upload(
            &bucket,
            &key,
            &id,
            vec![completed(3, &part3), completed(4, &part3)],
        )
        .await;
    assert!(too_small.is_err(), "{name}: missing part 4");
    let done = backend
        .complete_multipart_upload(
            &bucket,
            &key,
            &id,
            vec![
                completed(1, &part1),
                completed(2, &part2),
                completed(3, &part3),
            ],
        )
        .await
        .expect("complete");
    let want_etag = multipart_etag(
        [md5_hex(&part1), md5_hex(&part2), md5_hex(&part3)]
            .iter()
            .map(|s| s.as_str()),
    )
    .unwrap();
    assert_eq!(done.etag, want_etag, "{name}: multipart ETag");
    let head = backend
        .head_object(&bucket, &key, GetOptions::default())
        .await
        .expect("head");
    assert_eq!(head.size, (part1.len() + part2.len() + part3.len()) as u64);
    assert_eq!(head.etag, want_etag);
    assert_eq!(
        head.metadata.headers.content_type,
        meta.headers.content_type
    );
    let got = read_all(&*backend, &bucket, key.as_str())
        .await
        .expect("get");
    assert!(
        got.slice(..part1.len()) == part1
            && got.slice(part1.len()..part1.len() + part2.len()) == part2
            && got.slice(part1.len() + part2.len()..) == part3,
        "{name}: multipart data"
    );
    assert!(
        matches!(
            backend
                .list_parts(&bucket, &key, &id, ListPartsOptions::default())
                .await,
            Err(Error::NoSuchUpload)
        ),
        "{name}: upload gone after completion"
    );
    // Small parts are refused at completion; abort drops the upload.
    let id2 = backend
        .create_multipart_upload(&bucket, &key, MultipartOptions::default())
        .await
        .expect("create");
    for n in [1, 2] {
        backend
            .upload_part(
                &bucket,
                &key,
                &id2,
                n,
                part3.clone().into(),
                PartOptions::default(),
            )
            .await
            .expect("part");
    }
    let small = backend
        .complete_multipart_upload(
            &bucket,
            &key,
            &id2,
            vec![completed(1, &part3), completed(2, &part3)],
        )
        .await;
    assert!(
        matches!(small, Err(Error::EntityTooSmall)),
        "{name}: EntityTooSmall"
    );
    // UploadPartCopy of a range of the completed object.
    let etag = backend
        .upload_part_copy(
            &bucket,
            &key,
            &id2,
            3,
            &bucket,
            &key,
            GetOptions {
                range: Some(ByteRange::FromTo(10, 19)),
                ..Default::default()
            },
        )
        .await
        .expect("upload part copy");
    assert_eq!(
        etag,
        md5_hex(&part1.slice(10..20)),
        "{name}: part copy ETag"
    );
    backend
        .abort_multipart_upload(&bucket, &key, &id2)
        .await
        .expect("abort");
    assert!(
        matches!(
            backend
                .upload_part(
                    &bucket,
                    &key,
                    &id2,
                    1,
                    part3.clone().into(),
                    PartOptions::default()
                )
                .await,
            Err(Error::NoSuchUpload)
        ),
        "{name}: part after abort"
    );
    let bogus = UploadId::new("does-not-exist").unwrap();
    assert!(matches!(
        backend.abort_multipart_upload(&bucket, &key, &bogus).await,
        Err(Error::NoSuchUpload)
    ));
    empty_bucket(&*backend, &bucket).await;
}

/// Concurrent writers to one key and concurrent readers: every read returns one writer's
/// complete data, never a mix or a truncation.
pub async fn concurrent_writers(backend: DynBackend, prefix: &str) {
    let name = backend.name().to_string();
    let bucket = b(&format!("{prefix}-race"));
    backend.create_bucket(&bucket).await.expect("create");
    let size = 512 * 1024;
    backend
        .put_object(
            &bucket,
            &k("hot"),
            pattern(size, 0).into(),
            PutOptions::default(),
        )
        .await
        .expect("put");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = vec![];
    for w in 1..=4u8 {
        let backend = backend.clone();
        let bucket = bucket.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..8 {
                backend
                    .put_object(
                        &bucket,
                        &k("hot"),
                        chunked(pattern(size, w), 7919, size as u64),
                        PutOptions::default(),
                    )
                    .await
                    .expect("concurrent put");
            }
        }));
    }
    // Computed once: readers compare, they do not regenerate (which would starve writers).
    let expected: Arc<Vec<Bytes>> = Arc::new((0..=4u8).map(|s| pattern(size, s)).collect());
    let mut readers = vec![];
    for _ in 0..2 {
        let backend = backend.clone();
        let bucket = bucket.clone();
        let stop = stop.clone();
        let name = name.clone();
        let expected = expected.clone();
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let got = read_all(&*backend, &bucket, "hot")
                    .await
                    .expect("concurrent get");
                let seed = expected.iter().position(|e| *e == got);
                tokio::task::yield_now().await;
                assert!(
                    seed.is_some(),
                    "{name}: a read saw a mix of writes ({} bytes)",
                    got.len()
                );
                reads += 1;
            }
            reads
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.expect("reader") > 0);
    }
    empty_bucket(&*backend, &bucket).await;
}
