//! Reads: failover in the middle of a body, read repair of a stale replica, missing keys
//! with a backend down, and reads racing a write.

mod common;

use bytes::Bytes;
use common::*;
use s3proxy_backends::conformance;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_replica_mid_get_fails_over() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(1 << 20, 3);
    s.replicated
        .put_object(
            &bucket(),
            &key("big"),
            data.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    s.backends[0].set(STALL_BODIES);
    let started = std::time::Instant::now();
    let got = read(&s.replicated, "big").await.unwrap();
    assert!(
        got == data,
        "the body continued byte-exact from another replica"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_replica_found_by_a_read_is_repaired() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated
        .put_object(
            &bucket(),
            &key("s"),
            Bytes::from("old").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    // Let the replicas still finishing when the quorum was met finish and be checked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle(&s.replicated).await;
    assert!(s.replicated.journal().is_empty());
    // Another instance (same secret) writes the new version on two replicas only.
    let other = replicated_over(
        &s.backends[1..],
        WriteQuorum::All,
        Arc::new(Journal::in_memory()),
    );
    other
        .put_object(
            &bucket(),
            &key("s"),
            Bytes::from("new").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(read(&s.replicated, "s").await.unwrap(), "new");
    assert_eq!(s.replicated.journal().len(), 1);
    settle(&s.replicated).await;
    assert_eq!(read(&*s.backends[0].inner, "s").await.unwrap(), "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_with_a_backend_down_is_404_unless_a_reachable_replica_missed_it() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].set(DOWN);
    // s3fs looks up every new name before creating it: one backend down must not turn
    // those lookups into errors.
    assert!(matches!(
        s.replicated
            .head_object(&bucket(), &key("new-name"), GetOptions::default())
            .await,
        Err(Error::NoSuchKey)
    ));
    assert!(matches!(
        read(&s.replicated, "new-name").await,
        Err(Error::NoSuchKey)
    ));
    // But when the journal says a replica that answered missed a write of the key, the
    // only copy may be on the one that is down: that is not a 404.
    s.replicated
        .journal()
        .record(Entry::new(
            "rep",
            Target::Object("written-while-r1-was-down".into()),
            "r1",
            "01",
            Missed::Write,
        ))
        .unwrap();
    assert!(matches!(
        s.replicated
            .head_object(
                &bucket(),
                &key("written-while-r1-was-down"),
                GetOptions::default()
            )
            .await,
        Err(Error::ServiceUnavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_racing_a_write_on_every_replica_locates_again() {
    // Every holder replaced the located version before the read reached it (a write
    // landed in between): the read locates the object again instead of answering the
    // client 412, which it never asked for.
    let s = stack(WriteQuorum::Majority, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let body = conformance::pattern(5_000, 2);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            body.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    settle(&s.replicated).await;
    for b in &s.backends {
        b.replaced_for_gets.store(1, Ordering::SeqCst);
    }
    assert_eq!(read(&s.replicated, "k").await.unwrap(), body);
    // A key that keeps changing ends in 503 (retryable), still not 412.
    for b in &s.backends {
        b.replaced_for_gets.store(100, Ordering::SeqCst);
    }
    let err = read(&s.replicated, "k").await.unwrap_err();
    assert!(matches!(err, Error::ServiceUnavailable(_)), "{err:?}");
}

/// A backend that drops the connection on one key (s3s-fs does on `..`) but answers every
/// other request keeps its circuit closed however often that key is read: a W=all write of
/// another key then reaches it at once. One that is down for everything fails the probe
/// the failures lead to, and its circuit opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_one_key_do_not_open_the_circuit_of_a_backend_that_answers() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated
        .put_object(
            &bucket(),
            &key("odd"),
            Bytes::from("x").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    *s.backends[1].unreadable_key.lock().unwrap() = Some("odd".into());
    for i in 0..8 {
        assert_eq!(read(&s.replicated, "odd").await.unwrap(), "x");
        tokio::time::sleep(Duration::from_millis(20)).await; // the probe answers meanwhile
        if i % 4 == 3 {
            // What the backend serves meanwhile (a W=all write reaches every replica).
            let other = key(&format!("other-{i}"));
            let body = Bytes::from("o").into();
            s.replicated
                .put_object(&bucket(), &other, body, PutOptions::default())
                .await
                .unwrap();
        }
    }
    let open = |s: &Stack| {
        s.replicated
            .health()
            .into_iter()
            .filter(|(_, h)| h.open)
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    };
    assert!(open(&s).is_empty(), "circuits open: {:?}", open(&s));
    s.replicated
        .put_object(
            &bucket(),
            &key("plain"),
            Bytes::from("p").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();

    s.backends[1].set(DOWN);
    for _ in 0..8 {
        let _ = read(&s.replicated, "odd").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open(&s), ["r2"]);
}
