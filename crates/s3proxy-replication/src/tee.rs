//! Teeing one streaming body into several, for concurrent writes to every backend.

use bytes::Bytes;
use futures::StreamExt;
use s3proxy_core::{Body, Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Chunks buffered per backend: a slow backend holds up the others by at most this much
/// plus the stall timeout, after which it is cut off (and its write recorded for repair).
const BUFFERED_CHUNKS: usize = 8;

/// What the error sent to every copy says when the write is withdrawn before any backend
/// could commit it.
pub(crate) const WITHDRAWN: &str = "write withdrawn before commit: write quorum not reachable";

/// One copy's progress, as the pump sees it.
#[derive(Default)]
struct Progress {
    /// The backend asked for data at least once (it is connected and reading).
    polled: AtomicBool,
    /// Chunks it has taken.
    taken: AtomicU64,
    /// It dropped its body (its write ended, normally in failure).
    gone: AtomicBool,
}

/// Held by a copy's stream: reports its progress to the pump, and its end when dropped.
struct Reporter {
    progress: Arc<Progress>,
    wake: Arc<Notify>,
}

impl Reporter {
    fn report(&self, f: impl FnOnce(&Progress)) {
        f(&self.progress);
        self.wake.notify_one();
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.report(|p| p.gone.store(true, Ordering::SeqCst));
    }
}

/// The copies of a teed body, and what the pump decided about them.
pub(crate) struct Teed {
    /// One body per backend.
    pub bodies: Vec<Body>,
    /// Drives the copy; yields the source's own error, if it failed.
    pub pump: tokio::task::JoinHandle<Result<()>>,
    /// Set when the pump withdrew the write: every copy was ended with an error before its
    /// last bytes, so no backend committed it. Their failures are the proxy's doing.
    pub withdrawn: Arc<AtomicBool>,
}

/// Split `source` into `n` bodies of the same length.
///
/// The last chunk is held back until the source has ended cleanly, so a source that fails
/// at its very end (a checksum or signature verified after the last byte) leaves every
/// copy short: no backend can commit it.
///
/// With `commit_quorum` above 1 the last chunk is also held until that many copies have
/// taken every chunk before it (their backends are connected and reading): a backend
/// commits a write only once it has the whole body, so when fewer copies than that are
/// still alive, the write is withdrawn (every copy ends with an error) and no backend
/// replaces the version it holds by one the quorum will not acknowledge.
pub(crate) fn tee(source: Body, n: usize, stall: Duration, commit_quorum: usize) -> Teed {
    let mut senders = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut progress = Vec::with_capacity(n);
    let wake = Arc::new(Notify::new());
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(BUFFERED_CHUNKS);
        senders.push(Some(tx));
        let p = Arc::new(Progress::default());
        progress.push(p.clone());
        let reporter = Reporter {
            progress: p,
            wake: wake.clone(),
        };
        let stream = futures::stream::unfold((rx, reporter), |(mut rx, reporter)| async move {
            reporter.report(|p| p.polled.store(true, Ordering::SeqCst));
            let item = rx.recv().await?;
            reporter.report(|p| {
                p.taken.fetch_add(1, Ordering::SeqCst);
            });
            Some((item, (rx, reporter)))
        });
        bodies.push(Body {
            stream: Box::pin(stream),
            length: source.length,
        });
    }
    let withdrawn = Arc::new(AtomicBool::new(false));
    let gate = Gate {
        progress,
        wake,
        quorum: commit_quorum,
        stall,
        withdrawn: withdrawn.clone(),
    };
    let mut stream = source.stream;
    let pump = tokio::spawn(async move {
        let mut held: Option<Bytes> = None;
        let mut sent = 0u64;
        loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    if let Some(previous) = held.replace(chunk) {
                        send_all(&mut senders, previous, stall).await;
                        sent += 1;
                    }
                    if senders.iter().all(Option::is_none) {
                        // Every backend gave up: stop reading the client.
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {
                    if !gate.open(&senders, sent).await {
                        gate.withdraw(&mut senders).await;
                        return Ok(());
                    }
                    if let Some(last) = held.take() {
                        send_all(&mut senders, last, stall).await;
                    }
                    return Ok(());
                }
            }
        }
    });
    Teed {
        bodies,
        pump,
        withdrawn,
    }
}

/// Holds the end of the body until enough backends are ready to commit it.
struct Gate {
    progress: Vec<Arc<Progress>>,
    wake: Arc<Notify>,
    quorum: usize,
    stall: Duration,
    withdrawn: Arc<AtomicBool>,
}

impl Gate {
    /// Wait until `quorum` live copies have taken all `sent` chunks; false when too few
    /// copies are left alive, or they did not get there within the stall timeout.
    async fn open(&self, senders: &[Option<mpsc::Sender<Result<Bytes>>>], sent: u64) -> bool {
        if self.quorum <= 1 {
            return true;
        }
        let deadline = tokio::time::Instant::now() + self.stall;
        loop {
            let notified = self.wake.notified();
            let mut alive = 0;
            let mut ready = 0;
            for (tx, p) in senders.iter().zip(&self.progress) {
                if tx.as_ref().is_none_or(|tx| tx.is_closed()) || p.gone.load(Ordering::SeqCst) {
                    continue;
                }
                alive += 1;
                if p.polled.load(Ordering::SeqCst) && p.taken.load(Ordering::SeqCst) >= sent {
                    ready += 1;
                }
            }
            if ready >= self.quorum {
                return true;
            }
            if alive < self.quorum {
                return false;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// End every copy with an error before its last bytes: no backend commits.
    async fn withdraw(&self, senders: &mut [Option<mpsc::Sender<Result<Bytes>>>]) {
        self.withdrawn.store(true, Ordering::SeqCst);
        for tx in senders.iter_mut() {
            if let Some(tx) = tx.take() {
                let failed = Err(Error::ServiceUnavailable(WITHDRAWN.into()));
                let _ = tokio::time::timeout(self.stall, tx.send(failed)).await;
            }
        }
    }
}

async fn send_all(
    senders: &mut [Option<mpsc::Sender<Result<Bytes>>>],
    chunk: Bytes,
    stall: Duration,
) {
    let sends = senders.iter().map(|tx| {
        let chunk = chunk.clone();
        async move {
            match tx {
                Some(tx) => tokio::time::timeout(stall, tx.send(Ok(chunk)))
                    .await
                    .is_ok_and(|r| r.is_ok()),
                None => false,
            }
        }
    });
    let delivered = futures::future::join_all(sends).await;
    for (tx, ok) in senders.iter_mut().zip(delivered) {
        if !ok {
            // A closed or stalled backend: dropping its sender ends its body short.
            *tx = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3proxy_core::{ByteStream, collect_body};

    fn source(chunks: Vec<Result<Bytes>>, length: u64) -> Body {
        let s: ByteStream = Box::pin(futures::stream::iter(chunks));
        Body { stream: s, length }
    }

    #[tokio::test]
    async fn every_copy_gets_every_byte() {
        let chunks: Vec<Result<Bytes>> =
            (0..100u8).map(|i| Ok(Bytes::from(vec![i; 1000]))).collect();
        let Teed { bodies, pump, .. } = tee(source(chunks, 100_000), 3, Duration::from_secs(5), 1);
        let reads = bodies
            .into_iter()
            .map(|b| tokio::spawn(collect_body(b.stream, 200_000)));
        let all = futures::future::join_all(reads).await;
        pump.await.unwrap().unwrap();
        for r in all {
            let data = r.unwrap().unwrap();
            assert_eq!(data.len(), 100_000);
            assert_eq!(data[99_999], 99);
        }
    }

    #[tokio::test]
    async fn a_failing_source_leaves_every_copy_short() {
        let chunks = vec![
            Ok(Bytes::from("abc")),
            Ok(Bytes::from("def")),
            Err(Error::BadDigest),
        ];
        let Teed { bodies, pump, .. } = tee(source(chunks, 6), 2, Duration::from_secs(5), 1);
        let reads = bodies
            .into_iter()
            .map(|b| tokio::spawn(collect_body(b.stream, 100)));
        let all = futures::future::join_all(reads).await;
        assert!(matches!(pump.await.unwrap(), Err(Error::BadDigest)));
        for r in all {
            assert!(r.unwrap().unwrap().len() < 6);
        }
    }

    #[tokio::test]
    async fn a_stalled_copy_is_cut_off_and_the_others_finish() {
        let chunks: Vec<Result<Bytes>> = (0..50u8).map(|i| Ok(Bytes::from(vec![i; 10]))).collect();
        let Teed {
            mut bodies, pump, ..
        } = tee(source(chunks, 500), 2, Duration::from_millis(100), 1);
        let _stalled = bodies.pop().unwrap(); // never read
        let fast = bodies.pop().unwrap();
        let data = collect_body(fast.stream, 1000).await.unwrap();
        assert_eq!(data.len(), 500);
        pump.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn below_the_commit_quorum_no_copy_gets_its_last_byte() {
        // Three copies, two needed; two backends fail before reading (a dead backend):
        // the one left must not get the whole body, or it would commit alone.
        let chunks = vec![Ok(Bytes::from("only chunk"))];
        let Teed {
            mut bodies,
            pump,
            withdrawn,
        } = tee(source(chunks, 10), 3, Duration::from_secs(5), 2);
        drop(bodies.pop());
        drop(bodies.pop());
        let got = collect_body(bodies.pop().unwrap().stream, 100).await;
        assert!(got.is_err(), "{got:?}");
        pump.await.unwrap().unwrap();
        assert!(withdrawn.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn at_the_commit_quorum_the_ready_copies_finish() {
        let chunks: Vec<Result<Bytes>> = (0..5u8).map(|i| Ok(Bytes::from(vec![i; 10]))).collect();
        let Teed {
            mut bodies,
            pump,
            withdrawn,
        } = tee(source(chunks, 50), 3, Duration::from_secs(5), 2);
        drop(bodies.pop()); // one backend down
        let reads = bodies
            .into_iter()
            .map(|b| tokio::spawn(collect_body(b.stream, 100)));
        for r in futures::future::join_all(reads).await {
            assert_eq!(r.unwrap().unwrap().len(), 50);
        }
        pump.await.unwrap().unwrap();
        assert!(!withdrawn.load(Ordering::SeqCst));
        // An empty body is held the same way, and released the same way.
        let Teed { bodies, pump, .. } = tee(source(vec![], 0), 2, Duration::from_secs(5), 2);
        let reads = bodies
            .into_iter()
            .map(|b| tokio::spawn(collect_body(b.stream, 100)));
        for r in futures::future::join_all(reads).await {
            assert!(r.unwrap().unwrap().is_empty());
        }
        pump.await.unwrap().unwrap();
    }
}
