//! The client connection under hyper: a TCP stream shared between hyper and the server, so
//! that a client whose request headers stall can still be told so (hyper itself only drops
//! the connection), and a response the client stops reading is abandoned instead of holding
//! the connection open forever.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// One client connection as hyper reads and writes it.
pub(crate) struct ClientIo {
    stream: Arc<TcpStream>,
    /// Set when the client sent bytes after the last response bytes went out: it has
    /// started a request.
    request_started: Arc<AtomicBool>,
    /// How long a write may wait for the client to read.
    write_idle: Duration,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

/// What the server keeps of a connection once hyper is done with it.
pub(crate) struct ConnHandle {
    stream: Arc<TcpStream>,
    request_started: Arc<AtomicBool>,
}

impl ClientIo {
    pub(crate) fn new(stream: TcpStream, write_idle: Duration) -> (ClientIo, ConnHandle) {
        let stream = Arc::new(stream);
        let request_started = Arc::new(AtomicBool::new(false));
        let handle = ConnHandle {
            stream: stream.clone(),
            request_started: request_started.clone(),
        };
        let io = ClientIo {
            stream,
            request_started,
            write_idle,
            write_deadline: None,
        };
        (io, handle)
    }

    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let idle = self.write_idle;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading the response",
        )))
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            let dst = buf.initialize_unfilled();
            let room = dst.len();
            let mut got = None;
            // A read that did not fill the buffer has drained the socket: its readiness
            // is cleared then (the closure's WouldBlock does that, as tokio's own
            // `poll_read` does), so the next read waits for the kernel's next event
            // instead of costing a system call that can only answer EAGAIN (one per
            // request otherwise). Readiness that arrived during the read is kept.
            let read = self.stream.try_io(Interest::READABLE, || {
                let n = self.stream.try_read(dst)?;
                got = Some(n);
                if n > 0 && n < room {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            });
            match (got, read) {
                (Some(n), _) => {
                    buf.advance(n);
                    if n > 0 {
                        self.request_started.store(true, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(()));
                }
                (None, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (None, Err(e)) => return Poll::Ready(Err(e)),
                (None, Ok(_)) => unreachable!("a successful read records its length"),
            }
        }
    }
}

impl ClientIo {
    /// One write attempt with `write`, timing out while the client does not read.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.stream.poll_write_ready(cx).is_pending() {
                return self.write_stalled(cx);
            }
            match write(&self.stream) {
                Ok(n) => {
                    self.write_deadline = None;
                    if n > 0 {
                        self.request_started.store(false, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket closes (FIN) when the last handle to it is dropped, right after hyper
        // and the server are done with the connection.
        Poll::Ready(Ok(()))
    }
}

impl ConnHandle {
    /// Whether the client had started a request that hyper never saw whole.
    pub(crate) fn request_started(&self) -> bool {
        self.request_started.load(Ordering::Relaxed)
    }

    /// Send a complete response (status line, headers, body); the connection closes when
    /// the handle is dropped. Gives up after `limit` if the client does not read it.
    pub(crate) async fn send_and_close(&self, response: &[u8], limit: Duration) {
        let send = async {
            let mut sent = 0;
            while sent < response.len() {
                self.stream.writable().await?;
                match self.stream.try_write(&response[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(limit, send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("could not send the timeout response: {e}"),
            Err(_) => log::debug!("the client did not read the timeout response"),
        }
    }
}
