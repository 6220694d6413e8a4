//! The accept loop: plain TCP or TLS, connection and request limits, and a graceful stop
//! that lets requests in flight finish.

use crate::dispatch::S3Server;
use crate::response::timeout_response;
use crate::tls::TlsFiles;
use crate::{conn, error, time};
use s3proxy_core::Error;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

/// How [`S3Server::serve_with`] runs: TLS, limits, and how long a stop waits.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Serve HTTPS with these certificate and key files (reloadable).
    pub tls: Option<Arc<TlsFiles>>,
    /// Most connections open at once; one more is answered `503 SlowDown` and closed.
    /// `None`: no limit.
    pub max_connections: Option<usize>,
    /// How long a stop waits for requests in flight before it drops them.
    pub shutdown_grace: Duration,
}

/// How a graceful stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished its request within the grace period.
    Drained,
    /// The grace period ran out with this many connections still busy; they were dropped.
    GraceExpired(usize),
}

/// A raw `503 SlowDown` for a connection over the limit, written before the connection
/// is closed (no request has been read, so no request id of a request can be named).
fn slow_down_response() -> Vec<u8> {
    let request_id = hex::encode(rand::random::<[u8; 8]>()).to_uppercase();
    let body = error::error_document(&Error::SlowDown, "", &request_id);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nx-amz-request-id: {request_id}\r\nretry-after: 1\r\nconnection: close\r\nserver: s3proxy\r\ndate: {}\r\n\r\n{body}",
        body.len(),
        time::http_date(SystemTime::now()),
    )
    .into_bytes()
}

impl S3Server {
    /// Accept connections on `listener` until `shutdown` completes, then stop accepting
    /// and let the requests in flight finish, for up to `options.shutdown_grace`.
    ///
    /// ```no_run
    /// # async fn run(server: s3proxy_http::S3Server) -> std::io::Result<()> {
    /// use s3proxy_http::server::ServeOptions;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
    /// let options = ServeOptions {
    ///     shutdown_grace: std::time::Duration::from_secs(30),
    ///     ..Default::default()
    /// };
    /// let stopped = server
    ///     .serve_with(listener, options, async { tokio::signal::ctrl_c().await.ok(); })
    ///     .await?;
    /// println!("{stopped:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        options: ServeOptions,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<Stopped> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let connections = options
            .max_connections
            .map(|n| Arc::new(Semaphore::new(n.max(1))));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let permit = match &connections {
                None => None,
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        log::warn!("connection from {peer} refused: too many connections");
                        let (_, handle) =
                            conn::ClientIo::new(stream, self.config.body_idle_timeout);
                        tokio::spawn(async move {
                            handle
                                .send_and_close(&slow_down_response(), Duration::from_secs(5))
                                .await;
                        });
                        continue;
                    }
                },
            };
            let server = self.clone();
            let tls = options.tls.as_ref().map(|t| t.acceptor());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                server.serve_connection(stream, peer, tls, watcher).await;
            });
        }
        drop(listener);
        log::info!(
            "stopped accepting; waiting up to {:?} for requests in flight",
            options.shutdown_grace
        );
        let busy = graceful.count();
        tokio::select! {
            _ = graceful.shutdown() => Ok(Stopped::Drained),
            _ = tokio::time::sleep(options.shutdown_grace) => {
                log::warn!("shutdown grace expired with connections busy (of {busy} open at the stop)");
                Ok(Stopped::GraceExpired(busy))
            }
        }
    }

    async fn serve_connection(
        self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let config = self.config.clone();
        let server = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, std::convert::Infallible>(server.handle(req).await) }
        });
        let (io, handle) = conn::ClientIo::new(stream, config.body_idle_timeout);
        let is_tls = tls.is_some();
        // hyper answers a header section above its buffer with a bare 431; the buffer
        // leaves room for S3's limit, which `handle` enforces with the S3 error.
        let buffer = (config.max_header_bytes + 16 * 1024).max(64 * 1024);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_buf_size(buffer)
            .max_headers((config.max_header_bytes / 16).max(100));
        let result = match tls {
            None => {
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
                watcher.watch(conn).await
            }
            Some(acceptor) => {
                let handshake = tokio::time::timeout(config.header_timeout, acceptor.accept(io));
                match handshake.await {
                    Ok(Ok(tls_stream)) => {
                        let conn = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tls_stream), service);
                        watcher.watch(conn).await
                    }
                    Ok(Err(e)) => {
                        log::debug!("connection from {peer}: TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        log::debug!("connection from {peer}: TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        match result {
            Ok(()) => {}
            // Over TLS the raw answer cannot be written beside the encrypted stream; the
            // connection is only dropped.
            Err(e) if e.is_timeout() && handle.request_started() && !is_tls => {
                // hyper drops a connection whose headers stall; tell the client why.
                log::info!("connection from {peer}: request headers timed out");
                handle
                    .send_and_close(&timeout_response(), Duration::from_secs(5))
                    .await;
            }
            Err(e) => log::debug!("connection from {peer}: {e}"),
        }
    }
}
