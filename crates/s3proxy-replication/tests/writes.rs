//! Writes under the quorum: what a backend that was down gets back, what a write
//! below the quorum leaves, concurrent writers, and a copy right after a write.

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
async fn w1_write_with_a_backend_down_is_repaired_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(
        WriteQuorum::One,
        Arc::new(Journal::open(dir.path()).unwrap()),
    );
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].set(DOWN);
    let data = conformance::pattern(3 << 20, 9);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            data.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert!(read(&s.replicated, "k").await.unwrap() == data);
    assert_eq!(version_on(&s.backends[2], "k").await, None);
    // Replicas that were still writing when the quorum was met are checked and cleared.
    settle(&s.replicated).await;
    let pending: Vec<String> = s
        .replicated
        .journal()
        .pending()
        .into_iter()
        .map(|e| e.backend)
        .collect();
    assert_eq!(pending, ["r3"]);
    // Still down: replay keeps the entry.
    assert_eq!(settle(&s.replicated).await, 1);
    s.backends[2].set(UP);
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    assert_eq!(settle(&s.replicated).await, 0);
    assert_eq!(
        version_on(&s.backends[2], "k").await,
        version_on(&s.backends[0], "k").await
    );
    assert!(read(&*s.backends[2].inner, "k").await.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w_all_with_a_backend_down_is_503_and_leaves_nothing_visible() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[1].set(DOWN);
    let r = s
        .replicated
        .put_object(
            &bucket(),
            &key("new"),
            Bytes::from("x").into(),
            PutOptions::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::ServiceUnavailable(_))), "{r:?}");
    assert_eq!(r.unwrap_err().status(), 503);
    for b in &s.backends {
        b.set(UP);
    }
    assert!(matches!(
        read(&s.replicated, "new").await,
        Err(Error::NoSuchKey)
    ));
    for b in &s.backends {
        assert_eq!(version_on(b, "new").await, None, "{}", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_converge() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let writers = (0..6u8).map(|w| {
        let r = s.replicated.clone();
        tokio::spawn(async move {
            for i in 0..5u8 {
                let body = conformance::pattern(100_000 + w as usize, i ^ w);
                r.put_object(&bucket(), &key("hot"), body.into(), PutOptions::default())
                    .await
                    .unwrap();
            }
        })
    });
    futures::future::join_all(writers).await;
    settle(&s.replicated).await;
    let versions: Vec<_> =
        futures::future::join_all(s.backends.iter().map(|b| version_on(b, "hot"))).await;
    assert!(versions[0].is_some());
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
    let bodies: Vec<_> =
        futures::future::join_all(s.backends.iter().map(|b| read(&*b.inner, "hot"))).await;
    assert!(
        bodies
            .iter()
            .all(|b| b.as_ref().unwrap() == bodies[0].as_ref().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_right_after_a_w1_put_waits_for_the_replica_still_writing() {
    // The encryption layer attaches its record to a PUT without Content-MD5 by copying the
    // object onto itself as soon as the PUT is acknowledged: at W=1 the slower replicas are
    // still writing then. The copy must reach them once their write is done, not fail
    // there and leave a repair that sends the whole object again.
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].slow_puts.store(true, Ordering::SeqCst);
    let body = conformance::pattern(10_000, 5);
    let put = s
        .replicated
        .put_object(
            &bucket(),
            &key("k"),
            body.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        version_on(&s.backends[2], "k").await,
        None,
        "r3 answered the PUT"
    );
    let mut metadata = ObjectMetadata::default();
    metadata.user.insert("attached".into(), "yes".into());
    s.replicated
        .copy_object(
            &bucket(),
            &key("k"),
            &bucket(),
            &key("k"),
            CopyOptions {
                directive: MetadataDirective::Replace(metadata),
                source_conditions: Conditions {
                    if_match: Some(put.etag.as_str().to_owned()),
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap();
    settle(&s.replicated).await;
    assert!(s.replicated.journal().is_empty());
    let versions: Vec<_> =
        futures::future::join_all(s.backends.iter().map(|b| version_on(b, "k"))).await;
    assert!(
        versions.iter().all(|v| v.is_some() && *v == versions[0]),
        "{versions:?}"
    );
    for b in &s.backends {
        let info = b
            .inner
            .head_object(&bucket(), &key("k"), GetOptions::default())
            .await
            .unwrap();
        assert_eq!(
            info.metadata.user.get("attached").map(String::as_str),
            Some("yes")
        );
        assert_eq!(read(&*b.inner, "k").await.unwrap(), body);
    }
    assert_eq!(
        s.backends[2].puts.load(Ordering::SeqCst),
        1,
        "the slow replica was written again by a repair"
    );
}
