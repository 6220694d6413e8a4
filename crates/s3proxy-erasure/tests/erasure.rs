//! Erasure-coded placement over in-process backends: the conformance suite, and reads
//! rebuilt when a backend is gone or a shard is corrupt.

// The replication tests' switchable backends, shared rather than copied.
#[path = "../../s3proxy-replication/tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::{DOWN, Faulty, UP, bucket, key, read};
use s3proxy_backends::conformance;
use s3proxy_core::*;
use s3proxy_erasure::*;
use s3proxy_replication::Journal;
use std::sync::Arc;

struct Set {
    ec: Erasure,
    disks: Vec<Arc<Faulty>>,
}

/// k + m switchable backends, a small stripe so that objects span several.
fn set(k: usize, m: usize, stripe: u64) -> Set {
    let disks: Vec<Arc<Faulty>> = (0..k + m).map(|i| Faulty::new(&format!("d{i}"))).collect();
    let backends = disks.iter().map(|d| d.clone() as DynBackend).collect();
    let opts = ErasureOptions {
        stripe_size: stripe,
        timeout: std::time::Duration::from_secs(2),
        ..ErasureOptions::new(k, m)
    };
    let ec = Erasure::new("ec", backends, opts, Arc::new(Journal::in_memory())).unwrap();
    Set { ec, disks }
}

async fn put(ec: &Erasure, k: &str, data: &Bytes) -> PutResult {
    ec.put_object(
        &bucket(),
        &key(k),
        data.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap()
}

async fn ranged(ec: &Erasure, k: &str, r: ByteRange) -> Bytes {
    let opts = GetOptions {
        range: Some(r),
        ..Default::default()
    };
    let got = ec.get_object(&bucket(), &key(k), opts).await.unwrap();
    collect_body(got.body, 1 << 30).await.unwrap()
}

/// Flip one bit of the stored shard object `k` on `disk`, keeping its metadata; the
/// sound bytes.
async fn corrupt(disk: &Faulty, k: &str, at: usize) -> Bytes {
    let got = disk
        .inner
        .get_object(&bucket(), &key(k), GetOptions::default())
        .await
        .unwrap();
    let metadata = got.info.metadata.clone();
    let sound = collect_body(got.body, 1 << 30).await.unwrap();
    let mut raw = sound.to_vec();
    raw[at] ^= 0x40;
    let opts = PutOptions {
        metadata,
        content_md5: None,
    };
    disk.inner
        .put_object(&bucket(), &key(k), Bytes::from(raw).into(), opts)
        .await
        .unwrap();
    sound
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

#[tokio::test]
async fn conformance() {
    let s = set(2, 1, 64 * 1024);
    let b: DynBackend = Arc::new(s.ec.clone());
    conformance::buckets(b.clone(), "ec-b").await;
    conformance::objects(b.clone(), "ec-o").await;
    conformance::edge_keys(b.clone(), "ec-e").await;
    conformance::listing(b.clone(), "ec-l").await;
    conformance::copy(b.clone(), "ec-c").await;
    conformance::multipart(b.clone(), "ec-m").await;
}

#[tokio::test]
async fn stored_bytes_are_about_k_plus_m_over_k() {
    let s = set(2, 1, 64 * 1024);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(1_000_000, 3);
    put(&s.ec, "big", &data).await;
    let mut stored = 0;
    for d in &s.disks {
        let info = d
            .inner
            .head_object(&bucket(), &key("big"), GetOptions::default())
            .await
            .unwrap();
        stored += info.size;
    }
    let ratio = stored as f64 / data.len() as f64;
    assert!((1.5..1.51).contains(&ratio), "ratio {ratio}");
}

#[tokio::test]
async fn every_single_backend_may_be_gone() {
    let s = set(2, 1, 1000);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(10_001, 7);
    let put = put(&s.ec, "obj", &data).await;
    assert_eq!(put.etag, md5_hex(&data));
    for gone in 0..3 {
        s.disks[gone].set(DOWN);
        assert_eq!(
            read(&s.ec, "obj").await.unwrap(),
            data,
            "backend {gone} down"
        );
        for (a, b) in [
            (0, 0),
            (999, 1000),
            (1500, 7777),
            (10_000, 10_000),
            (0, 10_000),
        ] {
            let got = ranged(&s.ec, "obj", ByteRange::FromTo(a, b)).await;
            assert_eq!(
                got,
                data.slice(a as usize..=b as usize),
                "{a}-{b} with {gone} down"
            );
        }
        let info =
            s.ec.head_object(&bucket(), &key("obj"), GetOptions::default())
                .await
                .unwrap();
        assert_eq!(
            (info.size, info.etag.as_str()),
            (10_001, md5_hex(&data).as_str())
        );
        let page =
            s.ec.list_objects(&bucket(), ListOptions::default())
                .await
                .unwrap();
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.objects[0].size, 10_001);
        assert_eq!(page.objects[0].etag, md5_hex(&data));
        s.disks[gone].set(UP);
    }
    // Two of three gone: no read, and an honest 503, not a wrong answer.
    s.disks[0].set(DOWN);
    s.disks[1].set(DOWN);
    assert!(matches!(
        read(&s.ec, "obj").await,
        Err(Error::ServiceUnavailable(_))
    ));
}

#[tokio::test]
async fn writes_go_on_with_m_backends_down_and_are_journaled() {
    let s = set(3, 2, 1000);
    s.ec.create_bucket(&bucket()).await.unwrap();
    s.disks[1].set(DOWN);
    s.disks[4].set(DOWN);
    let data = conformance::pattern(5_555, 1);
    put(&s.ec, "obj", &data).await;
    let pending: Vec<String> =
        s.ec.journal()
            .pending()
            .into_iter()
            .map(|e| e.backend)
            .collect();
    assert_eq!(pending, vec!["d1", "d4"]);
    assert_eq!(read(&s.ec, "obj").await.unwrap(), data);
    // A third one down: below the quorum of k = 3, refused, and the old version stays.
    s.disks[0].set(DOWN);
    let refused =
        s.ec.put_object(
            &bucket(),
            &key("obj"),
            Bytes::from("new").into(),
            PutOptions::default(),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::ServiceUnavailable(_))),
        "{refused:?}"
    );
    s.disks[0].set(UP);
    assert_eq!(read(&s.ec, "obj").await.unwrap(), data);
}

#[tokio::test]
async fn a_stale_shard_is_never_mixed_with_a_newer_version() {
    let s = set(2, 1, 100);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let old = conformance::pattern(1000, 1);
    let new = conformance::pattern(1000, 2);
    put(&s.ec, "obj", &old).await;
    s.disks[2].set(DOWN);
    put(&s.ec, "obj", &new).await;
    s.disks[2].set(UP);
    // Backend 2 still holds the old version's shard; reads must use 0 and 1.
    s.disks[0].set(DOWN);
    // Only one shard of the new version is reachable: no answer rather than a mix.
    assert!(read(&s.ec, "obj").await.is_err());
    s.disks[0].set(UP);
    assert_eq!(read(&s.ec, "obj").await.unwrap(), new);
}

#[tokio::test]
async fn a_corrupt_shard_is_found_by_its_checksum_and_rebuilt_around() {
    let s = set(2, 1, 1000);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(4_321, 9);
    put(&s.ec, "obj", &data).await;
    // Flip one byte of data shard 0 in stripe 2, keeping its metadata.
    corrupt(&s.disks[0], "obj", 2 * (500 + 4) + 10).await;
    assert_eq!(read(&s.ec, "obj").await.unwrap(), data);
    let got = ranged(&s.ec, "obj", ByteRange::FromTo(2000, 2100)).await;
    assert_eq!(got, data.slice(2000..=2100));
    // The bad shard is journaled for repair, marked as known bad.
    let pending = s.ec.journal().pending();
    assert!(
        pending.iter().any(|e| e.backend == "d0" && e.forced()),
        "{pending:?}"
    );
}

#[tokio::test]
async fn deletes_need_enough_backends_that_no_k_stale_shards_remain() {
    let s = set(2, 1, 1000);
    s.ec.create_bucket(&bucket()).await.unwrap();
    put(&s.ec, "obj", &Bytes::from("x".repeat(3000))).await;
    s.disks[1].set(DOWN);
    s.ec.delete_object(&bucket(), &key("obj")).await.unwrap();
    s.disks[1].set(UP);
    // d1 still has its shard, alone: the object stays deleted.
    assert!(matches!(read(&s.ec, "obj").await, Err(Error::NoSuchKey)));
    let page =
        s.ec.list_objects(&bucket(), ListOptions::default())
            .await
            .unwrap();
    assert!(page.objects.is_empty());
    assert!(
        s.ec.journal()
            .pending()
            .iter()
            .any(|e| e.tombstone.is_some())
    );
    // With two of three down, a delete is refused.
    put(&s.ec, "obj", &Bytes::from("y")).await;
    s.disks[0].set(DOWN);
    s.disks[2].set(DOWN);
    assert!(s.ec.delete_object(&bucket(), &key("obj")).await.is_err());
}

#[tokio::test]
async fn a_large_put_records_its_etag_in_the_trailer_and_a_copy_in_the_metadata() {
    let s = set(2, 1, 1000);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(5000, 4);
    put(&s.ec, "obj", &data).await;
    let info =
        s.ec.head_object(&bucket(), &key("obj"), GetOptions::default())
            .await
            .unwrap();
    assert_eq!(info.etag, md5_hex(&data));
    // Metadata replaced in place (s3fs's chmod; the encryption layer's info record).
    let mut meta = ObjectMetadata::default();
    meta.user.insert("mode".into(), "33188".into());
    let opts = CopyOptions {
        directive: MetadataDirective::Replace(meta),
        ..Default::default()
    };
    s.ec.copy_object(&bucket(), &key("obj"), &bucket(), &key("obj"), opts)
        .await
        .unwrap();
    let page =
        s.ec.list_objects(&bucket(), ListOptions::default())
            .await
            .unwrap();
    assert_eq!(page.objects[0].etag, md5_hex(&data));
    let info =
        s.ec.head_object(&bucket(), &key("obj"), GetOptions::default())
            .await
            .unwrap();
    assert_eq!(
        info.metadata.user.get("mode").map(String::as_str),
        Some("33188")
    );
    assert!(
        info.metadata.internal.is_empty(),
        "{:?}",
        info.metadata.internal
    );
    assert_eq!(read(&s.ec, "obj").await.unwrap(), data);
}

#[tokio::test]
async fn a_config_that_does_not_fit_the_backends_is_refused() {
    let backends: Vec<DynBackend> = (0..3)
        .map(|i| Faulty::new(&format!("x{i}")) as DynBackend)
        .collect();
    let j = Arc::new(Journal::in_memory());
    assert!(Erasure::new("ec", backends.clone(), ErasureOptions::new(3, 1), j.clone()).is_err());
    assert!(Erasure::new("ec", backends.clone(), ErasureOptions::new(3, 0), j.clone()).is_err());
    assert!(Erasure::new("ec", backends, ErasureOptions::new(2, 1), j).is_ok());
}

#[tokio::test]
async fn a_multipart_upload_survives_a_backend_gone_and_hides_its_state() {
    let s = set(2, 1, 64 * 1024);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let (b, k) = (bucket(), key("mp"));
    let id =
        s.ec.create_multipart_upload(&b, &k, MultipartOptions::default())
            .await
            .unwrap();
    let p1 = conformance::pattern(MIN_PART_SIZE as usize, 1);
    let p2 = conformance::pattern(1234, 2);
    let e1 =
        s.ec.upload_part(&b, &k, &id, 1, p1.clone().into(), PartOptions::default())
            .await
            .unwrap();
    s.disks[2].set(DOWN);
    let e2 =
        s.ec.upload_part(&b, &k, &id, 2, p2.clone().into(), PartOptions::default())
            .await
            .unwrap();
    let uploads =
        s.ec.list_multipart_uploads(&b, ListUploadsOptions::default())
            .await
            .unwrap();
    assert_eq!(uploads.uploads.len(), 1);
    assert_eq!(uploads.uploads[0].key, "mp");
    let parts = vec![
        CompletedPart {
            part_number: 1,
            etag: e1.clone(),
        },
        CompletedPart {
            part_number: 2,
            etag: e2.clone(),
        },
    ];
    // Part 2 missed d2; the completion rebuilds it from the others as it re-stripes.
    s.disks[2].set(UP);
    let done =
        s.ec.complete_multipart_upload(&b, &k, &id, parts)
            .await
            .unwrap();
    assert_eq!(
        done.etag,
        multipart_etag([e1.as_str(), e2.as_str()]).unwrap()
    );
    s.disks[0].set(DOWN);
    let whole = [p1.clone(), p2.clone()].concat();
    assert_eq!(read(&s.ec, "mp").await.unwrap(), whole);
    s.disks[0].set(UP);
    let page = s.ec.list_objects(&b, ListOptions::default()).await.unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["mp"], "no upload state listed");
    assert_eq!(page.objects[0].etag, done.etag);
    assert!(page.common_prefixes.is_empty());
    let put =
        s.ec.put_object(
            &b,
            &key(".s3proxy-ec-uploads/x"),
            Bytes::new().into(),
            PutOptions::default(),
        )
        .await;
    assert!(matches!(put, Err(Error::InvalidArgument(_))));
}

#[tokio::test]
async fn repair_rebuilds_missed_and_corrupt_shards_and_drops_deleted_ones() {
    let s = set(2, 1, 1000);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(3_333, 5);
    let small = Bytes::from("small");
    s.disks[1].set(DOWN);
    put(&s.ec, "obj", &data).await;
    put(&s.ec, "small", &small).await;
    put(&s.ec, "doomed", &small).await;
    s.disks[1].set(UP);
    s.disks[2].set(DOWN);
    s.ec.delete_object(&bucket(), &key("doomed")).await.unwrap();
    s.disks[2].set(UP);
    // d1 missed three writes (one since deleted), d2 the delete.
    assert_eq!(s.ec.journal().len(), 3 + 1);
    let done = s.ec.replay_journal().await;
    assert_eq!(
        (done.rebuilt, done.deleted, done.failed),
        (2, 2, 0),
        "{done:?}"
    );
    assert!(s.ec.journal().is_empty());
    // d1's shards are back: reads work with d0 gone.
    s.disks[0].set(DOWN);
    assert_eq!(read(&s.ec, "obj").await.unwrap(), data);
    assert_eq!(read(&s.ec, "small").await.unwrap(), small);
    s.disks[0].set(UP);
    let stale = s.disks[2]
        .inner
        .head_object(&bucket(), &key("doomed"), GetOptions::default())
        .await;
    assert!(
        matches!(stale, Err(Error::NoSuchKey)),
        "the deleted object's shard is gone"
    );
    // A corrupt data shard, found by a read, is rewritten sound.
    let sound = corrupt(&s.disks[1], "obj", 3).await;
    let disk = &s.disks[1].inner;
    assert_eq!(read(&s.ec, "obj").await.unwrap(), data);
    assert_eq!(s.ec.replay_journal().await.rebuilt, 1);
    let got = disk
        .get_object(&bucket(), &key("obj"), GetOptions::default())
        .await
        .unwrap();
    assert_eq!(collect_body(got.body, 1 << 20).await.unwrap(), sound);
}

/// E3: with m >= k, an older version k backends still hold is not served while a holder
/// of the newest is merely unreachable, and repair does not settle the newer entries.
#[tokio::test]
async fn an_unreachable_holder_of_the_newest_version_is_not_read_around() {
    let s = set(2, 2, 64);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let v1 = Bytes::from(vec![b'1'; 100]);
    let v2 = Bytes::from(vec![b'2'; 100]);
    put(&s.ec, "obj", &v1).await;
    // v2 lands on backends 0 and 1 only (a write quorum of 2).
    s.disks[2].set(DOWN);
    s.disks[3].set(DOWN);
    put(&s.ec, "obj", &v2).await;
    s.disks[2].set(UP);
    s.disks[3].set(UP);
    // Backend 0 becomes unreachable: 1 holds v2, 2 and 3 hold v1.
    s.disks[0].set(DOWN);
    let got = read(&s.ec, "obj").await;
    assert!(
        matches!(got, Err(Error::ServiceUnavailable(_))),
        "an older version served: {:?}",
        got.map(|b| b.len())
    );
    // Repair cannot settle the entries for v2 on backends 2 and 3 from v1.
    let done = s.ec.replay_journal().await;
    assert_eq!(done.settled, 0, "{done:?}");
    s.disks[0].set(UP);
    s.ec.replay_journal().await;
    assert_eq!(read(&s.ec, "obj").await.unwrap(), v2);
    s.disks[0].set(DOWN);
    s.disks[1].set(DOWN);
    assert_eq!(read(&s.ec, "obj").await.unwrap(), v2);
}

/// E4: a delete that misses its quorum after some backends deleted their shard journals
/// every backend, so repair restores the redundancy of the version still readable.
#[tokio::test]
async fn a_delete_short_of_its_quorum_is_journaled() {
    let s = set(2, 1, 64);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let v1 = Bytes::from(vec![b'1'; 100]);
    put(&s.ec, "obj", &v1).await;
    s.disks[1].set(DOWN);
    s.disks[2].set(DOWN);
    assert!(s.ec.delete_object(&bucket(), &key("obj")).await.is_err());
    s.disks[1].set(UP);
    s.disks[2].set(UP);
    let done = s.ec.replay_journal().await;
    assert_eq!(done.rebuilt, 1, "{done:?}");
    s.disks[1].set(DOWN);
    assert_eq!(read(&s.ec, "obj").await.unwrap(), v1);
}

/// E5: a DeleteBucket one backend refuses (a stale shard only it holds) leaves the
/// bucket on every backend, not on that one only.
#[tokio::test]
async fn delete_bucket_refused_by_one_backend_deletes_it_nowhere() {
    let s = set(2, 1, 64);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let stray = Bytes::from_static(b"stray");
    s.disks[2]
        .inner
        .put_object(
            &bucket(),
            &key("stray"),
            stray.into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let refused = s.ec.delete_bucket(&bucket()).await;
    assert!(matches!(refused, Err(Error::BucketNotEmpty)), "{refused:?}");
    for d in &s.disks {
        d.inner.head_bucket(&bucket()).await.unwrap();
    }
}
