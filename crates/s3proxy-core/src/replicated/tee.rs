//! Teeing one streaming body into several, for concurrent writes to every backend.

use crate::{Body, Result};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks buffered per backend: a slow backend holds up the others by at most this much
/// plus the stall timeout, after which it is cut off (and its write recorded for repair).
const BUFFERED_CHUNKS: usize = 8;

/// Split `source` into `n` bodies of the same length. The returned task drives the copy
/// and yields the source's own error, if it failed.
///
/// The last chunk is held back until the source has ended cleanly, so a source that fails
/// at its very end (a checksum or signature verified after the last byte) leaves every
/// copy short: no backend can commit it.
pub(crate) fn tee(
    source: Body,
    n: usize,
    stall: Duration,
) -> (Vec<Body>, tokio::task::JoinHandle<Result<()>>) {
    let mut senders = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(BUFFERED_CHUNKS);
        senders.push(Some(tx));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        bodies.push(Body {
            stream: Box::pin(stream),
            length: source.length,
        });
    }
    let mut stream = source.stream;
    let pump = tokio::spawn(async move {
        let mut held: Option<Bytes> = None;
        loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    if let Some(previous) = held.replace(chunk) {
                        send_all(&mut senders, previous, stall).await;
                    }
                    if senders.iter().all(Option::is_none) {
                        // Every backend gave up: stop reading the client.
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {
                    if let Some(last) = held.take() {
                        send_all(&mut senders, last, stall).await;
                    }
                    return Ok(());
                }
            }
        }
    });
    (bodies, pump)
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
    use crate::{ByteStream, Error, collect_body};

    fn source(chunks: Vec<Result<Bytes>>, length: u64) -> Body {
        let s: ByteStream = Box::pin(futures::stream::iter(chunks));
        Body { stream: s, length }
    }

    #[tokio::test]
    async fn every_copy_gets_every_byte() {
        let chunks: Vec<Result<Bytes>> =
            (0..100u8).map(|i| Ok(Bytes::from(vec![i; 1000]))).collect();
        let (bodies, pump) = tee(source(chunks, 100_000), 3, Duration::from_secs(5));
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
        let (bodies, pump) = tee(source(chunks, 6), 2, Duration::from_secs(5));
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
        let (mut bodies, pump) = tee(source(chunks, 500), 2, Duration::from_millis(100));
        let _stalled = bodies.pop().unwrap(); // never read
        let fast = bodies.pop().unwrap();
        let data = collect_body(fast.stream, 1000).await.unwrap();
        assert_eq!(data.len(), 500);
        pump.await.unwrap().unwrap();
    }
}
