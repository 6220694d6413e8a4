//! Hedged reads: a replica that hangs on reads holds up no GET beyond the hedge delay,
//! a slow replica holding the only copy of the newest version is still waited for, and
//! on healthy replicas hedging costs few extra backend requests.

mod common;

use common::*;
use s3proxy_backends::conformance;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Three replicas with a backend timeout far above what a hedged read may take.
fn slow_timeout_stack(quorum: WriteQuorum, hedge: Hedge) -> Stack {
    let backends: Vec<_> = ["r1", "r2", "r3"].iter().map(|n| Faulty::new(n)).collect();
    let replicated = replicated_with(
        &backends,
        quorum,
        Arc::new(Journal::in_memory()),
        Duration::from_secs(5),
        hedge,
    );
    Stack {
        backends,
        replicated,
    }
}

async fn put(s: &Stack, k: &str, data: &[u8]) {
    s.replicated
        .put_object(
            &bucket(),
            &key(k),
            bytes::Bytes::copy_from_slice(data).into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
}

fn requests(s: &Stack) -> usize {
    s.backends
        .iter()
        .map(|b| b.gets.load(Ordering::SeqCst) + b.heads.load(Ordering::SeqCst))
        .sum()
}

/// 40 GETs with the first replica in read order hanging: each well under a second.
async fn forty_fast_gets(s: &Stack) {
    let data = conformance::pattern(64 * 1024, 5);
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        let started = Instant::now();
        let got = read(&s.replicated, &format!("k{}", i % 4)).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert!(got == data, "GET {i} returned the right bytes");
    }
    assert!(
        slowest < Duration::from_millis(400),
        "slowest GET: {slowest:?}"
    );
}

async fn four_keys(s: &Stack) {
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(64 * 1024, 5);
    for i in 0..4 {
        put(s, &format!("k{i}"), &data).await;
    }
    assert_eq!(settle(&s.replicated).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_hanging_on_reads_holds_up_no_get() {
    let s = slow_timeout_stack(WriteQuorum::Majority, Hedge::Adaptive);
    four_keys(&s).await;
    s.backends[0].set(HANG_READS);
    forty_fast_gets(&s).await;
    let stats = s.replicated.stats();
    assert!(stats[0].1.hedged_reads >= 40, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_hanging_on_get_bodies_is_raced_also_with_w1() {
    let s = slow_timeout_stack(WriteQuorum::One, Hedge::Adaptive);
    four_keys(&s).await;
    s.backends[0].set(HANG_GETS);
    forty_fast_gets(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hedging_off_a_hung_replica_costs_the_timeout() {
    let s = slow_timeout_stack(WriteQuorum::One, Hedge::Off);
    four_keys(&s).await;
    s.backends[0].set(HANG_GETS);
    let started = Instant::now();
    read(&s.replicated, "k0").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// With W = 1 the newest version may be on one replica only: a slow answer from it is
/// waited for, not hedged away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_waits_for_a_slow_replica_that_may_hold_the_newest() {
    let s = slow_timeout_stack(WriteQuorum::One, Hedge::Adaptive);
    s.replicated.create_bucket(&bucket()).await.unwrap();
    put(&s, "k", b"old").await;
    assert_eq!(settle(&s.replicated).await, 0);
    // Warm up the hedge delays (a few ms of samples: the 20 ms floor).
    for _ in 0..20 {
        read(&s.replicated, "k").await.unwrap();
    }
    s.backends[1].set(DOWN);
    s.backends[2].set(DOWN);
    put(&s, "k", b"new").await;
    s.backends[1].set(UP);
    s.backends[2].set(UP);
    s.backends[0].read_delay_ms.store(300, Ordering::SeqCst);
    assert_eq!(&read(&s.replicated, "k").await.unwrap()[..], b"new");
}

/// With a majority quorum, a slow replica is not waited for beyond its hedge delay, and
/// the version chosen is still the newest acknowledged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_reads_do_not_wait_for_a_slow_replica() {
    let s = slow_timeout_stack(
        WriteQuorum::Majority,
        Hedge::After(Duration::from_millis(30)),
    );
    s.replicated.create_bucket(&bucket()).await.unwrap();
    put(&s, "k", b"old").await;
    assert_eq!(settle(&s.replicated).await, 0);
    s.backends[2].set(DOWN);
    put(&s, "k", b"new").await;
    s.backends[2].set(UP);
    // r1 holds "new" and is slow; r2 holds "new", r3 "old": N - W + 1 = 2 answers settle it.
    s.backends[0].read_delay_ms.store(2000, Ordering::SeqCst);
    let started = Instant::now();
    assert_eq!(&read(&s.replicated, "k").await.unwrap()[..], b"new");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

/// A replica that lost its data (a wiped disk answers "missing", with no journal entry to
/// explain it) does not settle a lookup early: the slow replica holding the newest version
/// is waited for, and its version is served, not the stale one a third replica holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_does_not_settle_a_lookup_early() {
    let s = slow_timeout_stack(
        WriteQuorum::Majority,
        Hedge::After(Duration::from_millis(30)),
    );
    s.replicated.create_bucket(&bucket()).await.unwrap();
    put(&s, "k", b"old").await;
    assert_eq!(settle(&s.replicated).await, 0);
    s.backends[2].set(DOWN);
    put(&s, "k", b"new").await;
    s.backends[2].set(UP);
    // The write reached r1 and r2; r2's disk is then replaced (its copy gone, no journal
    // entry says so), r3 still holds the old version (journaled), r1 is slow.
    s.backends[1]
        .inner
        .delete_object(&bucket(), &key("k"))
        .await
        .unwrap();
    s.backends[0].read_delay_ms.store(300, Ordering::SeqCst);
    assert_eq!(&read(&s.replicated, "k").await.unwrap()[..], b"new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_replicas_see_few_hedged_requests() {
    let s = slow_timeout_stack(WriteQuorum::Majority, Hedge::Adaptive);
    four_keys(&s).await;
    let before = requests(&s);
    const GETS: usize = 200;
    for i in 0..GETS {
        read(&s.replicated, &format!("k{}", i % 4)).await.unwrap();
    }
    // Without hedging: a HEAD to each of the three replicas and one GET.
    let plain = GETS * 4;
    let made = requests(&s) - before;
    assert!(made >= plain, "{made}");
    assert!(
        (made - plain) * 100 <= plain * 5,
        "{made} backend requests for {GETS} GETs, {plain} without hedging"
    );
}
