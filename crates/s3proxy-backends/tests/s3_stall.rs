//! A backend that stalls in the middle of a GET body (it sent the headers and part of the
//! body, then nothing, the connection kept open) fails the read after the idle timeout
//! instead of holding the request forever; a body that keeps moving, however slowly, is
//! not cut. The backend here is a scripted HTTP server on loopback.

use futures::StreamExt;
use s3proxy_backends::{S3, S3Options};
use s3proxy_core::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serve every connection: read one request's headers, send the response headers for a
/// `total`-byte body, then `pieces` of it, `gap` apart, and hold the connection.
async fn scripted_server(total: usize, pieces: Vec<usize>, gap: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let pieces = pieces.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {total}\r\netag: \"0123456789abcdef0123456789abcdef\"\r\n\
                     last-modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n"
                );
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for n in pieces {
                    tokio::time::sleep(gap).await;
                    if conn.write_all(&vec![b'x'; n]).await.is_err() {
                        return;
                    }
                }
                // Stall: keep the connection open, send nothing more.
                tokio::time::sleep(Duration::from_secs(600)).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn backend(endpoint: String, idle_ms: u64) -> S3 {
    backend_via(endpoint, idle_ms, false).await
}

/// The backend over the lean client, or with `sdk_only` over the SDK (what an `https://`
/// endpoint, AWS's included, uses).
async fn backend_via(endpoint: String, idle_ms: u64, sdk_only: bool) -> S3 {
    let opts = S3Options {
        endpoint: Some(endpoint),
        access_key: Some("AKSTALLTEST".into()),
        secret_key: Some("stall-test-secret".into()),
        connect_timeout_secs: 2,
        idle_timeout_ms: idle_ms,
        sdk_only,
        ..Default::default()
    };
    S3::new("stalling", opts).await.unwrap()
}

/// Read the body: the bytes, the error it ended with, and how long it took.
async fn read_body(s3: &S3) -> (usize, Option<Error>, Duration) {
    let bucket = BucketName::new("bucket").unwrap();
    let key = ObjectKey::new("key").unwrap();
    let started = Instant::now();
    let got = s3
        .get_object(&bucket, &key, GetOptions::default())
        .await
        .expect("the headers arrive");
    let mut body = got.body;
    let mut n = 0;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => n += c.len(),
            Err(e) => return (n, Some(e), started.elapsed()),
        }
    }
    (n, None, started.elapsed())
}

/// Over the lean client and over the SDK (what an `https://` endpoint, AWS's included,
/// uses).
#[tokio::test]
async fn a_body_that_stalls_fails_after_the_idle_timeout() {
    for sdk_only in [false, true] {
        let server = scripted_server(1000, vec![100], Duration::ZERO).await;
        let s3 = backend_via(server, 300, sdk_only).await;
        // Without the idle timeout this read waits for as long as the server holds it.
        let read = tokio::time::timeout(Duration::from_secs(20), read_body(&s3)).await;
        let (n, err, took) = read.expect("the stalled read must end by itself");
        assert_eq!(n, 100, "the bytes sent before the stall are delivered");
        let err = err.expect("a stalled body is an error, not a short object");
        assert!(
            err.is_backend(BackendErrorKind::Unavailable) && err.status() == 503,
            "sdk_only={sdk_only}: {err:?}"
        );
        assert!(err.to_string().contains("stalled"), "{err}");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}

#[tokio::test]
async fn a_slow_body_that_keeps_moving_is_not_cut() {
    // Ten pieces 150 ms apart: 1.5 s in all, each gap under the 500 ms limit.
    let s3 = backend(
        scripted_server(1000, vec![100; 10], Duration::from_millis(150)).await,
        500,
    )
    .await;
    let (n, err, took) = read_body(&s3).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(n, 1000);
    assert!(took >= Duration::from_millis(1400), "{took:?}");
}
