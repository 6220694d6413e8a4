//! Deletes that stay deleted: tombstones for replicas that missed them or raced a repair,
//! and bucket deletions.

mod common;

use bytes::Bytes;
use common::*;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_down_is_not_undone_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(
        WriteQuorum::One,
        Arc::new(Journal::open(dir.path()).unwrap()),
    );
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated
        .put_object(
            &bucket(),
            &key("gone"),
            Bytes::from("v1").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    s.backends[0].set(DOWN);
    s.replicated
        .delete_object(&bucket(), &key("gone"))
        .await
        .unwrap();
    s.backends[0].set(UP);
    // Before the journal replays, reads and listings already honour the delete.
    assert!(matches!(
        read(&s.replicated, "gone").await,
        Err(Error::NoSuchKey)
    ));
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
    assert!(listed.objects.is_empty());
    // A full repair scan must not copy it back; it applies the delete instead.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let summary = s
        .replicated
        .repair_scan(None, false, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(summary.copies, 0);
    for b in &s.backends {
        assert_eq!(version_on(b, "gone").await, None, "{}", b.name());
    }
    settle(&s.replicated).await;
    assert!(s.replicated.journal().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_during_a_repair_is_not_undone_by_it() {
    let s = written_while_down(&[2], "k", "old").await;
    settle(&s.replicated).await;
    s.backends[2].set(UP);
    s.backends[2].slow_puts.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    // The repair reads the old version, then its write to r3 lands late; the client's
    // delete runs in between.
    let repair = {
        let r = s.replicated.clone();
        tokio::spawn(async move { r.replay_journal().await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.replicated
        .delete_object(&bucket(), &key("k"))
        .await
        .unwrap();
    repair.await.unwrap();
    s.backends[2].slow_puts.store(false, Ordering::SeqCst);
    // The late copy is hidden at once, and the next repair pass deletes it.
    assert!(matches!(
        read(&s.replicated, "k").await,
        Err(Error::NoSuchKey)
    ));
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
    assert!(listed.objects.is_empty(), "{:?}", listed.objects);
    assert_eq!(settle(&s.replicated).await, 0);
    for b in &s.backends {
        assert_eq!(version_on(b, "k").await, None, "{}", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_listing_objects_is_refused_before_any_replica_deletes_it() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    // One replica alone holds an object (the others missed its write): the bucket lists
    // it, so it is not empty, although two replicas would delete theirs.
    s.backends[0]
        .inner
        .put_object(
            &bucket(),
            &key("only-here"),
            Bytes::from("x").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.replicated.delete_bucket(&bucket()).await,
        Err(Error::BucketNotEmpty)
    ));
    for b in &s.backends {
        b.inner
            .head_bucket(&bucket())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    }
    s.replicated
        .delete_object(&bucket(), &key("only-here"))
        .await
        .unwrap();
    s.replicated.delete_bucket(&bucket()).await.unwrap();
    for b in &s.backends {
        assert!(matches!(
            b.inner.head_bucket(&bucket()).await,
            Err(Error::NoSuchBucket)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_deleted_while_a_backend_is_down_stays_deleted() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            Bytes::from("v").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    s.replicated
        .delete_object(&bucket(), &key("k"))
        .await
        .unwrap();
    s.backends[2].set(DOWN);
    s.replicated.delete_bucket(&bucket()).await.unwrap();
    // r3 still has the bucket, but the client never sees it again.
    s.backends[2].set(UP);
    let names: Vec<String> = s
        .replicated
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(names.is_empty(), "{names:?}");
    assert!(matches!(
        s.replicated.head_bucket(&bucket()).await,
        Err(Error::NoSuchBucket)
    ));
    assert!(matches!(
        s.replicated
            .put_object(
                &bucket(),
                &key("k2"),
                Bytes::from("v").into(),
                PutOptions::default()
            )
            .await,
        Err(Error::NoSuchBucket)
    ));
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    assert_eq!(settle(&s.replicated).await, 0);
    assert!(matches!(
        s.backends[2].inner.head_bucket(&bucket()).await,
        Err(Error::NoSuchBucket)
    ));
    // And it can be created again.
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated.head_bucket(&bucket()).await.unwrap();
}

/// A DeleteBucket that one replica would refuse (it still holds an upload the others lack)
/// deletes the bucket nowhere: refused with BucketNotEmpty, the bucket still on every
/// replica, writable as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bucket_delete_leaves_the_bucket_on_every_replica() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[1]
        .inner
        .create_multipart_upload(&bucket(), &key("left"), MultipartOptions::default())
        .await
        .unwrap();
    let r = s.replicated.delete_bucket(&bucket()).await;
    assert!(matches!(r, Err(Error::BucketNotEmpty)), "{r:?}");
    for b in &s.backends {
        b.inner
            .head_bucket(&bucket())
            .await
            .unwrap_or_else(|e| panic!("{} lost the bucket: {e}", b.inner.name()));
    }
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            Bytes::from("v").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
}

/// A repair copy that failed on its target (a call that timed out) may still land there
/// later; a delete made meanwhile is not undone by it: the key stays in flight for a while
/// after the failure, so the delete is checked against what lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_a_failed_repair_copy_is_not_undone_when_it_lands() {
    let s = written_while_down(&[2], "k", "old").await;
    settle(&s.replicated).await;
    s.backends[2].set(UP);
    s.backends[2]
        .late_failing_writes
        .store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    // The repair's copy to r3 fails at once, and lands 300 ms later.
    s.replicated.replay_journal().await;
    s.backends[2]
        .late_failing_writes
        .store(false, Ordering::SeqCst);
    s.replicated
        .delete_object(&bucket(), &key("k"))
        .await
        .unwrap();
    // The check the delete journaled is tried a second after the failure, whatever
    // backoff the failed copy put r3's entry in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        settle(&s.replicated).await;
    }
    assert!(matches!(
        read(&s.replicated, "k").await,
        Err(Error::NoSuchKey)
    ));
    for b in &s.backends {
        assert_eq!(version_on(b, "k").await, None, "{}", b.name());
    }
}

/// A copy that failed on one replica (a call that timed out) may still land there; a delete
/// of the destination made meanwhile is not undone by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_a_failed_copy_is_not_undone_when_it_lands() {
    let s = written_while_down(&[], "src", "payload").await;
    s.backends[2]
        .late_failing_writes
        .store(true, Ordering::SeqCst);
    s.replicated
        .copy_object(
            &bucket(),
            &key("src"),
            &bucket(),
            &key("dst"),
            CopyOptions::default(),
        )
        .await
        .unwrap();
    s.backends[2]
        .late_failing_writes
        .store(false, Ordering::SeqCst);
    s.replicated
        .delete_object(&bucket(), &key("dst"))
        .await
        .unwrap();
    // Past the late copy and a failed repair's one-second retry.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        settle(&s.replicated).await;
    }
    assert!(matches!(
        read(&s.replicated, "dst").await,
        Err(Error::NoSuchKey)
    ));
    for b in &s.backends {
        assert_eq!(version_on(b, "dst").await, None, "{}", b.name());
    }
}

/// An acknowledged write that only an unreachable replica holds (W=1, the others were down
/// when it was written and their copies are still owed) keeps its bucket: DeleteBucket is
/// refused while that replica cannot be asked, not answered from the empty ones, and once the
/// replica is back the object is served and repaired onto the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_delete_waits_for_an_unreachable_replica_holding_the_only_copy() {
    let s = written_while_down(&[1, 2], "only", "acked").await;
    s.backends[1].set(UP);
    s.backends[2].set(UP);
    s.backends[0].set(DOWN);
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    let r = s.replicated.delete_bucket(&bucket()).await;
    assert!(matches!(r, Err(Error::ServiceUnavailable(_))), "{r:?}");
    for b in &s.backends {
        b.inner
            .head_bucket(&bucket())
            .await
            .unwrap_or_else(|e| panic!("{} lost the bucket: {e}", b.inner.name()));
    }
    s.backends[0].set(UP);
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    settle(&s.replicated).await;
    assert_eq!(read(&s.replicated, "only").await.unwrap(), "acked");
    for b in &s.backends {
        assert!(version_on(b, "only").await.is_some(), "{}", b.name());
    }
    // With every replica reachable, the bucket is not empty, and says so.
    let r = s.replicated.delete_bucket(&bucket()).await;
    assert!(matches!(r, Err(Error::BucketNotEmpty)), "{r:?}");
}

/// A write owed to the unreachable replica itself (it missed it) says nothing of what that
/// replica holds: with the others empty, DeleteBucket goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_delete_is_not_held_up_by_writes_owed_to_the_unreachable_replica() {
    let s = written_while_down(&[2], "owed", "v").await;
    // The object went away on the replicas that hold it (as a key r3 can never store
    // leaves its entry behind after the object is deleted).
    for b in &s.backends[..2] {
        b.inner
            .delete_object(&bucket(), &key("owed"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    let r = s.replicated.delete_bucket(&bucket()).await;
    assert!(r.is_ok(), "{r:?}");
    for b in &s.backends[..2] {
        assert!(matches!(
            b.inner.head_bucket(&bucket()).await,
            Err(Error::NoSuchBucket)
        ));
    }
}
