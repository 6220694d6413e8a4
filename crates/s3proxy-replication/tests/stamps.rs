//! Version stamps are the proxy's own: a stamp written straight into a backend (far in the
//! future, or copied from another key) never outranks one the proxy wrote, is never adopted
//! by the clock, and is repaired over; versions written before stamps were authenticated
//! stay readable and lose only to a newer write. Also the counters operators scrape.

mod common;

use bytes::Bytes;
use common::*;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

async fn put(r: &dyn Backend, k: &str, body: &'static str) {
    r.put_object(
        &bucket(),
        &key(k),
        Bytes::from(body).into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
}

/// Store `body` under `stamp` on one backend directly, as anyone who can write to it can.
async fn plant(b: &Faulty, k: &str, body: &'static str, stamp: &str) {
    let mut metadata = ObjectMetadata::default();
    metadata.internal.insert(VERSION_KEY.into(), stamp.into());
    b.inner
        .put_object(
            &bucket(),
            &key(k),
            Bytes::from(body).into(),
            PutOptions {
                metadata,
                content_md5: None,
            },
        )
        .await
        .unwrap();
}

/// Whether a stamp was issued within a few seconds of now (not in the future).
fn recent(stamp: &str) -> bool {
    stamp_time(stamp).unwrap() < SystemTime::now() + Duration::from_secs(5)
}

fn stats_of(r: &Replicated, backend: &str) -> ReplicaStats {
    r.stats().into_iter().find(|(n, _)| n == backend).unwrap().1
}

fn unauthenticated(s: &ReplicaStats, kind: Trust) -> u64 {
    s.unauthenticated_stamps
        .iter()
        .find(|(t, _)| *t == kind)
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_far_future_stamp_does_not_win_and_is_repaired_over() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    put(&s.replicated, "k", "v1").await;
    put(&s.replicated, "other", "o").await;
    settle(&s.replicated).await;
    let v1 = version_on(&s.backends[1], "k").await.unwrap();
    // Three forgeries on r1, each of which would have won before: a far-future stamp, one
    // with a made-up MAC, and the proxy's own (newer) stamp of another key.
    let other = version_on(&s.backends[1], "other").await.unwrap();
    let forgeries = [
        "ffffffffffff-ffffff-evil".to_string(),
        format!("fffffffffff0-000000-evil.{}", "ab".repeat(16)),
        other,
    ];
    for forged in &forgeries {
        plant(&s.backends[0], "k", "forged", forged).await;
        assert_eq!(read(&s.replicated, "k").await.unwrap(), "v1", "{forged}");
        let head = s
            .replicated
            .head_object(&bucket(), &key("k"), GetOptions::default())
            .await
            .unwrap();
        assert!(head.last_modified < SystemTime::now() + Duration::from_secs(5));
        // The read journaled r1 as stale; repair overwrites the forgery with v1.
        assert_eq!(s.replicated.journal().len(), 1);
        settle(&s.replicated).await;
        assert!(s.replicated.journal().is_empty());
        assert_eq!(read(&*s.backends[0].inner, "k").await.unwrap(), "v1");
        assert_eq!(version_on(&s.backends[0], "k").await.unwrap(), v1);
    }
    // The clock did not jump: the next write is stamped now, and wins.
    put(&s.replicated, "k", "v2").await;
    let v2 = version_on(&s.backends[0], "k").await.unwrap();
    assert!(recent(&v2), "{v2}");
    assert_eq!(read(&s.replicated, "k").await.unwrap(), "v2");
    // Each forgery was seen (by the read and by the repair) and counted against r1.
    assert!(unauthenticated(&stats_of(&s.replicated, "r1"), Trust::Invalid) >= 3);
    assert_eq!(
        unauthenticated(&stats_of(&s.replicated, "r2"), Trust::Invalid),
        0
    );
    // And listing, too, shows the proxy's version, not a forgery.
    plant(&s.backends[2], "k", "forged", &forgeries[0]).await;
    let listed = s
        .replicated
        .list_objects(
            &bucket(),
            ListOptions {
                max_keys: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let k = listed.objects.iter().find(|o| o.key == "k").unwrap();
    assert_eq!(k.size, 2);
    assert!(k.last_modified < SystemTime::now() + Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_versions_stay_readable_and_lose_only_to_a_newer_write() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    // Written before stamps were authenticated: r1 holds an older legacy version than the
    // others, and theirs is half an hour ahead of this clock (a skewed instance).
    let ahead = SystemTime::now() + Duration::from_secs(1800);
    let ms = ahead
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let newer = format!("{ms:012x}-000000-oldnode");
    plant(
        &s.backends[0],
        "k",
        "legacy-1",
        "000000000001-000000-oldnode",
    )
    .await;
    for b in &s.backends[1..] {
        plant(b, "k", "legacy-2", &newer).await;
    }
    // Legacy stamps compare among themselves as before: the newer one is served and
    // repaired onto r1.
    assert_eq!(read(&s.replicated, "k").await.unwrap(), "legacy-2");
    settle(&s.replicated).await;
    assert_eq!(read(&*s.backends[0].inner, "k").await.unwrap(), "legacy-2");
    assert!(unauthenticated(&stats_of(&s.replicated, "r2"), Trust::Legacy) >= 1);
    // An object with no stamp at all is readable too.
    for b in &s.backends {
        b.inner
            .put_object(
                &bucket(),
                &key("bare"),
                Bytes::from("b").into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    assert_eq!(read(&s.replicated, "bare").await.unwrap(), "b");
    // And one whose only stamps are garbage from past the year 9999: readable, with the
    // backend's own time (an HTTP date cannot say such a year).
    for b in &s.backends {
        plant(b, "far", "f", "ffffffffffff-ffffff-x").await;
    }
    assert_eq!(read(&s.replicated, "far").await.unwrap(), "f");
    let head = s
        .replicated
        .head_object(&bucket(), &key("far"), GetOptions::default())
        .await
        .unwrap();
    assert!(head.last_modified < SystemTime::now() + Duration::from_secs(5));
    // A write through the proxy beats the legacy version, although that one's stamp is
    // later: the clock did not adopt an unauthenticated stamp.
    put(&s.replicated, "k", "new").await;
    let stamp = version_on(&s.backends[0], "k").await.unwrap();
    assert!(recent(&stamp) && stamp < newer, "{stamp}");
    assert_eq!(read(&s.replicated, "k").await.unwrap(), "new");
    // Even on one replica only: it is the version served, and repaired onto the others.
    plant(&s.backends[1], "k", "legacy-3", &newer).await;
    plant(&s.backends[2], "k", "legacy-3", &newer).await;
    assert_eq!(read(&s.replicated, "k").await.unwrap(), "new");
    settle(&s.replicated).await;
    for b in &s.backends {
        assert_eq!(read(&*b.inner, "k").await.unwrap(), "new");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_the_secret_accept_each_others_stamps() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    put(&s.replicated, "k", "one").await;
    let other = replicated_over(
        &s.backends,
        WriteQuorum::All,
        Arc::new(Journal::in_memory()),
    );
    put(&other, "k", "two").await;
    assert_eq!(read(&s.replicated, "k").await.unwrap(), "two");
    put(&s.replicated, "k", "three").await;
    assert_eq!(read(&other, "k").await.unwrap(), "three");
    for (_, stats) in s.replicated.stats() {
        assert_eq!(unauthenticated(&stats, Trust::Invalid), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_tampering_and_journal_age_are_counted() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    assert_eq!(s.replicated.journal().oldest_age(), None);
    s.backends[2].set(DOWN);
    let body = "x".repeat(5000);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            Bytes::from(body.clone()).into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    settle(&s.replicated).await;
    assert!(s.replicated.journal().oldest_age().is_some());
    assert_eq!(stats_of(&s.replicated, "r3").repair_copies, 0);
    s.backends[2].set(UP);
    // The open circuit is probed and closes; then the entry is repaired.
    for _ in 0..50 {
        if settle(&s.replicated).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.replicated.journal().is_empty());
    assert_eq!(s.replicated.journal().oldest_age(), None);
    let r3 = stats_of(&s.replicated, "r3");
    assert_eq!((r3.repair_copies, r3.repair_bytes), (1, 5000));
    // A replica whose data failed authentication is counted and replaced.
    s.replicated
        .report_corrupt(&bucket(), &key("k"), "r2")
        .await;
    assert_eq!(stats_of(&s.replicated, "r2").tamper_detections, 1);
    settle(&s.replicated).await;
    assert_eq!(stats_of(&s.replicated, "r2").repair_copies, 1);
    assert_eq!(stats_of(&s.replicated, "r1").tamper_detections, 0);
    // And scrub's direct repair of one replica.
    assert!(
        s.replicated
            .repair_replica(&bucket(), &key("k"), "r1")
            .await
            .unwrap()
    );
    assert!(s.replicated.journal().is_empty());
    assert_eq!(stats_of(&s.replicated, "r1").repair_copies, 1);
    assert_eq!(read(&*s.backends[0].inner, "k").await.unwrap(), body);
}
