//! The repair scan and the scrub: a wiped backend refilled, corrupt shards found and
//! rebuilt, with another backend then gone and every object still byte-exact.

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

fn set(k: usize, m: usize) -> Set {
    let disks: Vec<Arc<Faulty>> = (0..k + m).map(|i| Faulty::new(&format!("d{i}"))).collect();
    let backends = disks.iter().map(|d| d.clone() as DynBackend).collect();
    let opts = ErasureOptions {
        stripe_size: 1000,
        timeout: std::time::Duration::from_secs(2),
        ..ErasureOptions::new(k, m)
    };
    let ec = Erasure::new("ec", backends, opts, Arc::new(Journal::in_memory())).unwrap();
    Set { ec, disks }
}

/// Objects of 0 to several stripes, and an upload in progress (its hidden state).
async fn fill(ec: &Erasure) -> Vec<(String, Bytes)> {
    ec.create_bucket(&bucket()).await.unwrap();
    let mut objects = vec![];
    for (n, size) in [0usize, 1, 999, 1000, 4321, 20_000].into_iter().enumerate() {
        let (k, data) = (format!("obj-{n}"), conformance::pattern(size, n as u8));
        let body = data.clone().into();
        ec.put_object(&bucket(), &key(&k), body, PutOptions::default())
            .await
            .unwrap();
        objects.push((k, data));
    }
    objects
}

/// Remove everything backend `d` holds, its bucket included (a wiped data directory).
async fn wipe(d: &Faulty) {
    let page = d
        .inner
        .list_objects(&bucket(), ListOptions::default())
        .await
        .unwrap();
    for o in page.objects {
        d.inner
            .delete_object(&bucket(), &key(&o.key))
            .await
            .unwrap();
    }
    d.inner.delete_bucket(&bucket()).await.unwrap();
}

async fn all_read(ec: &Erasure, objects: &[(String, Bytes)], why: &str) {
    for (k, data) in objects {
        assert_eq!(&read(ec, k).await.unwrap(), data, "{k}: {why}");
    }
}

#[tokio::test]
async fn a_wiped_backend_is_refilled_by_the_repair_scan() {
    let s = set(2, 1);
    let objects = fill(&s.ec).await;
    let upload =
        s.ec.create_multipart_upload(&bucket(), &key("mp"), MultipartOptions::default())
            .await
            .unwrap();
    wipe(&s.disks[1]).await;
    let dry = ScanOptions {
        dry_run: true,
        ..Default::default()
    };
    let seen = s.ec.scan(&dry, &|_| {}).await.unwrap();
    assert_eq!(
        (seen.missing, seen.rebuilt, seen.buckets_created),
        (7, 0, 1),
        "{seen:?}"
    );
    assert!(
        s.disks[1].inner.head_bucket(&bucket()).await.is_err(),
        "a dry run changes nothing"
    );
    let done = s.ec.scan(&ScanOptions::default(), &|_| {}).await.unwrap();
    assert_eq!(
        (
            done.objects,
            done.missing,
            done.rebuilt,
            done.failed,
            done.buckets_created
        ),
        (7, 7, 7, 0, 1),
        "{done:?}"
    );
    // Backend 1 alone with one other: everything reads, the upload goes on.
    s.disks[0].set(DOWN);
    all_read(&s.ec, &objects, "backend 0 down after the refill").await;
    s.ec.list_parts(&bucket(), &key("mp"), &upload, ListPartsOptions::default())
        .await
        .unwrap();
    s.disks[0].set(UP);
    let again = s.ec.scan(&ScanOptions::default(), &|_| {}).await.unwrap();
    assert_eq!((again.missing, again.rebuilt), (0, 0), "{again:?}");
}

#[tokio::test]
async fn a_scrub_rebuilds_corrupt_shards_and_leaves_sound_ones() {
    let s = set(3, 2);
    let objects = fill(&s.ec).await;
    // One flipped byte in a stripe of obj-5 on backend 3 (parity), one in the trailer of
    // obj-4 on backend 0.
    for (disk, k) in [(3, "obj-5"), (0, "obj-4")] {
        let d = &s.disks[disk].inner;
        let got = d
            .get_object(&bucket(), &key(k), GetOptions::default())
            .await
            .unwrap();
        let metadata = got.info.metadata.clone();
        let mut raw = collect_body(got.body, 1 << 20).await.unwrap().to_vec();
        let at = if k == "obj-4" { raw.len() - 10 } else { 700 };
        raw[at] ^= 1;
        let opts = PutOptions {
            metadata,
            content_md5: None,
        };
        d.put_object(&bucket(), &key(k), Bytes::from(raw).into(), opts)
            .await
            .unwrap();
    }
    // A copy onto itself (s3fs's chmod) gives the shards a new stamp, not new trailers:
    // still sound.
    let chmod = CopyOptions {
        directive: MetadataDirective::Replace(ObjectMetadata::default()),
        source_conditions: Conditions::default(),
    };
    s.ec.copy_object(&bucket(), &key("obj-3"), &bucket(), &key("obj-3"), chmod)
        .await
        .unwrap();
    let plain = s.ec.scan(&ScanOptions::default(), &|_| {}).await.unwrap();
    assert_eq!(plain.corrupt, 0, "without verify no shard is read");
    let verify = ScanOptions {
        verify: true,
        ..Default::default()
    };
    let done = s.ec.scan(&verify, &|_| {}).await.unwrap();
    assert_eq!(
        (done.verified, done.corrupt, done.rebuilt, done.failed),
        (6 * 5, 2, 2, 0),
        "{done:?}"
    );
    // The rebuilt shards serve: the two other backends gone (one of them is 1, so that
    // backends 0 and 3 are among the three read).
    s.disks[1].set(DOWN);
    s.disks[2].set(DOWN);
    all_read(&s.ec, &objects, "backends 1 and 2 down after the scrub").await;
    s.disks[1].set(UP);
    s.disks[2].set(UP);
    let clean = s.ec.scan(&verify, &|_| {}).await.unwrap();
    assert_eq!((clean.corrupt, clean.rebuilt), (0, 0), "{clean:?}");
}

#[tokio::test]
async fn a_scan_with_a_backend_down_reports_it_and_rebuilds_the_rest() {
    let s = set(3, 2);
    let objects = fill(&s.ec).await;
    wipe(&s.disks[4]).await;
    s.disks[0].set(DOWN);
    let done = s.ec.scan(&ScanOptions::default(), &|_| {}).await.unwrap();
    // Each object's shard on the backend that is down could not be looked at.
    assert_eq!((done.rebuilt, done.failed), (6, 6), "{done:?}");
    s.disks[0].set(UP);
    s.disks[1].set(DOWN);
    s.disks[2].set(DOWN);
    all_read(&s.ec, &objects, "backends 1 and 2 down after the scan").await;
}

#[tokio::test]
async fn a_bucket_too_few_backends_hold_is_not_recreated() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    // What a delete that reached two of three backends leaves.
    s.disks[0].inner.delete_bucket(&bucket()).await.unwrap();
    s.disks[1].inner.delete_bucket(&bucket()).await.unwrap();
    let done = s.ec.scan(&ScanOptions::default(), &|_| {}).await.unwrap();
    assert_eq!((done.buckets_created, done.failed), (0, 0), "{done:?}");
    assert!(s.disks[0].inner.head_bucket(&bucket()).await.is_err());
}

/// A backend holding a newer version than the readable one, written moments ago (another
/// instance's write still committing, here one that reached a single backend so far), is
/// not rebuilt over by a scan: the older version would undo it once acknowledged.
#[tokio::test]
async fn a_scan_leaves_a_newer_version_written_moments_ago() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let v1 = conformance::pattern(3000, 1);
    s.ec.put_object(
        &bucket(),
        &key("k"),
        v1.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    // Backend 2's shard relabelled with a stamp taken now: what backend 2 holds while
    // another instance's write of the key has committed there and not yet elsewhere.
    let got = s.disks[2]
        .inner
        .get_object(&bucket(), &key("k"), GetOptions::default())
        .await
        .unwrap();
    let mut metadata = got.info.metadata.clone();
    let meta = ShardMeta::from_metadata(&metadata).unwrap();
    let ver = s3proxy_replication::Hlc::new("other").next().to_string();
    ShardMeta { ver, ..meta }.store(&mut metadata);
    let body = collect_body(got.body, 1 << 20).await.unwrap();
    let opts = PutOptions {
        metadata,
        content_md5: None,
    };
    s.disks[2]
        .inner
        .put_object(&bucket(), &key("k"), body.into(), opts)
        .await
        .unwrap();
    let stamp = |i: usize| {
        let d = s.disks[i].inner.clone();
        async move {
            let info = d
                .head_object(&bucket(), &key("k"), GetOptions::default())
                .await;
            ShardMeta::from_metadata(&info.unwrap().metadata)
                .unwrap()
                .ver
        }
    };
    let newer = stamp(2).await;
    assert!(newer > stamp(0).await);
    let done = s.ec.scan(&ScanOptions::default(), &|_| {}).await.unwrap();
    assert_eq!((done.rebuilt, done.failed), (0, 1), "{done:?}");
    assert_eq!(stamp(2).await, newer, "the newer shard is left");
    assert_eq!(read(&s.ec, "k").await.unwrap(), v1);
}

/// A multipart object's ETag is no MD5 to check a shard's trailer against: scrub compares
/// the holders' trailers, and one with a flipped byte is found corrupt and rebuilt.
/// A fresh bucket and, in it, `k` completed from one part: a multipart object whose
/// trailers carry no plain MD5. Its data.
async fn one_part_object(ec: &Erasure, k: &ObjectKey) -> Bytes {
    ec.create_bucket(&bucket()).await.unwrap();
    let b = bucket();
    let id = ec
        .create_multipart_upload(&b, k, MultipartOptions::default())
        .await
        .unwrap();
    let data = conformance::pattern(4321, 3);
    let etag = ec
        .upload_part(&b, k, &id, 1, data.clone().into(), PartOptions::default())
        .await
        .unwrap();
    let parts = vec![CompletedPart {
        part_number: 1,
        etag,
    }];
    ec.complete_multipart_upload(&b, k, &id, parts)
        .await
        .unwrap();
    data
}

#[tokio::test]
async fn scrub_finds_a_corrupt_trailer_of_a_multipart_object() {
    let s = set(2, 1);
    let (b, k) = (bucket(), key("mp"));
    let data = one_part_object(&s.ec, &k).await;
    // The last byte of backend 1's shard object (its trailer's checksum) flipped.
    let got = s.disks[1]
        .inner
        .get_object(&b, &k, GetOptions::default())
        .await
        .unwrap();
    let metadata = got.info.metadata.clone();
    let mut bytes = collect_body(got.body, 1 << 20).await.unwrap().to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    let opts = PutOptions {
        metadata,
        content_md5: None,
    };
    s.disks[1]
        .inner
        .put_object(&b, &k, Bytes::from(bytes).into(), opts)
        .await
        .unwrap();
    let scrub = ScanOptions {
        verify: true,
        ..Default::default()
    };
    let done = s.ec.scan(&scrub, &|_| {}).await.unwrap();
    assert_eq!(
        (done.corrupt, done.rebuilt, done.failed),
        (1, 1, 0),
        "{done:?}"
    );
    let again = s.ec.scan(&scrub, &|_| {}).await.unwrap();
    assert_eq!((again.corrupt, again.rebuilt), (0, 0), "{again:?}");
    s.disks[0].set(DOWN);
    assert_eq!(read(&s.ec, "mp").await.unwrap(), data);
}

/// A multipart object copied onto itself (a new stamp, the trailers still bound to the
/// completion's), then one shard lost and rebuilt (its trailer bound to the new stamp):
/// every shard is sound, and a scrub says so rather than taking the rebuilt trailer as
/// the only good one.
#[tokio::test]
async fn scrub_after_a_copy_and_a_rebuild_finds_a_multipart_object_sound() {
    let s = set(2, 1);
    let (b, k) = (bucket(), key("mp"));
    let data = one_part_object(&s.ec, &k).await;
    let chmod = CopyOptions {
        directive: MetadataDirective::Replace(ObjectMetadata::default()),
        source_conditions: Conditions::default(),
    };
    s.ec.copy_object(&b, &k, &b, &k, chmod).await.unwrap();
    s.disks[2].inner.delete_object(&b, &k).await.unwrap();
    let rebuilt = s.ec.scan(&ScanOptions::default(), &|_| {}).await.unwrap();
    assert_eq!(rebuilt.rebuilt, 1, "{rebuilt:?}");
    let scrub = ScanOptions {
        verify: true,
        ..Default::default()
    };
    let done = s.ec.scan(&scrub, &|_| {}).await.unwrap();
    assert_eq!(
        (done.corrupt, done.rebuilt, done.failed),
        (0, 0, 0),
        "{done:?}"
    );
    for down in 0..3 {
        s.disks[down].set(DOWN);
        assert_eq!(
            read(&s.ec, "mp").await.unwrap(),
            data,
            "backend {down} down"
        );
        s.disks[down].set(UP);
    }
}
