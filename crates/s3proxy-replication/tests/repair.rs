//! The repair journal and repair: a restart, a holder that cannot be reached, and repairs
//! that keep failing.

mod common;

use bytes::Bytes;
use common::*;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<Arc<Faulty>> = ["r1", "r2", "r3"].iter().map(|n| Faulty::new(n)).collect();
    {
        let first = replicated_over(
            &backends,
            WriteQuorum::One,
            Arc::new(Journal::open(dir.path()).unwrap()),
        );
        first.create_bucket(&bucket()).await.unwrap();
        backends[1].set(DOWN);
        first
            .put_object(
                &bucket(),
                &key("j"),
                Bytes::from("journaled").into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        // A replica still finishing when the quorum was met is journaled until checked.
        settle(&first).await;
        let pending: Vec<String> = first
            .journal()
            .pending()
            .into_iter()
            .map(|e| e.backend)
            .collect();
        assert_eq!(pending, ["r2"]);
    }
    backends[1].set(UP);
    let second = replicated_over(
        &backends,
        WriteQuorum::One,
        Arc::new(Journal::open(dir.path()).unwrap()),
    );
    assert_eq!(second.journal().len(), 1, "the entry was on disk");
    let bg = second.start_background(Duration::from_millis(100));
    for _ in 0..50 {
        if second.journal().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bg.abort();
    assert!(second.journal().is_empty());
    assert_eq!(read(&*backends[1].inner, "j").await.unwrap(), "journaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_does_not_decide_deleted_while_the_only_holder_is_unreachable() {
    let s = written_while_down(&[1, 2], "only", "on r1").await;
    // r1, the only holder, goes; r2 returns. r2's entry must not be dropped as "deleted".
    s.backends[0].set(DOWN);
    s.backends[1].set(UP);
    for _ in 0..3 {
        settle(&s.replicated).await;
    }
    let pending: Vec<String> = s
        .replicated
        .journal()
        .pending()
        .into_iter()
        .map(|e| e.backend)
        .collect();
    assert!(pending.contains(&"r2".to_string()), "{pending:?}");
    for b in &s.backends {
        b.set(UP);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuits may probe again
    for _ in 0..3 {
        settle(&s.replicated).await;
    }
    for b in &s.backends {
        assert!(
            read(&*b.inner, "only").await.unwrap() == "on r1",
            "{}",
            b.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_repairs_are_reported() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].set(DOWN);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            Bytes::from("x").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert!(s.replicated.failing_repairs().is_empty());
    settle(&s.replicated).await;
    let failing = s.replicated.failing_repairs();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(
        (failing[0].0.backend.as_str(), failing[0].0.target.key()),
        ("r3", Some("k"))
    );
    assert!(failing[0].1 >= 1);
}

/// A forced repair (scrub, or a read that found a replica corrupt) replaces a replica's copy
/// from the others: it never deletes the only copy, and never puts an older version over
/// the newest one. A second instance, whose journal knows nothing of the writes, does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_repair_never_deletes_the_only_copy_nor_rolls_back() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    put(&s, "newest", "v1").await;
    settle(&s.replicated).await;
    s.backends[1].set(DOWN);
    s.backends[2].set(DOWN);
    put(&s, "only", "on r1").await;
    put(&s, "newest", "v2").await;
    for b in &s.backends {
        b.set(UP);
    }
    let other = replicated_over(
        &s.backends,
        WriteQuorum::One,
        Arc::new(Journal::in_memory()),
    );
    other
        .repair_replica(&bucket(), &key("only"), "r1")
        .await
        .unwrap();
    other
        .repair_replica(&bucket(), &key("newest"), "r1")
        .await
        .unwrap();
    assert!(read(&*s.backends[0].inner, "only").await.unwrap() == "on r1");
    assert!(read(&*s.backends[0].inner, "newest").await.unwrap() == "v2");
}

async fn put(s: &Stack, k: &str, v: &'static str) {
    s.replicated
        .put_object(
            &bucket(),
            &key(k),
            Bytes::from(v).into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
}
