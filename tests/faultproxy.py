"""An HTTP fault injector that sits between s3proxy and one of its S3 backends.

It forwards every request unchanged (the Host header included, so signatures still hold)
and, on command, answers 503 SlowDown instead, or holds the requests a predicate picks
until it is released. Bodies are small in the tests that use it, so requests are read
whole before they are forwarded."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection"}

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FaultProxy:
    """`mode` is "pass" (forward), "503" (answer SlowDown to everything) or "hold"
    (requests `hold_if(method, path, headers)` picks wait until `release()`, then are
    answered 503; the rest are forwarded)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.hold_if = lambda method, path, headers: False
        self.held = threading.Event()  # set once a request was held
        self.released = threading.Event()
        self.seen = []  # (method, path, status) of every request, in order
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                body = self._body()
                method, path, headers = self.command, self.path, self.headers
                if proxy.mode == "503":
                    proxy._record(method, path, 503)
                    return self._answer(503, SLOW_DOWN, [("Content-Type", "application/xml")])
                if proxy.mode == "hold" and proxy.hold_if(method, path, headers):
                    proxy.held.set()
                    proxy.released.wait(120)
                    proxy._record(method, path, 503)
                    return self._answer(503, SLOW_DOWN, [("Content-Type", "application/xml")])
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                    for k, v in headers.items():
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                            conn.putheader(k, v)
                    conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    data = resp.read()
                    out = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
                    proxy._record(method, path, resp.status)
                    self.send_response(resp.status)
                    for k, v in out:
                        self.send_header(k, v)
                    # A HEAD answer keeps the upstream's length: it describes the object.
                    length = resp.getheader("Content-Length") if method == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(data)))
                    self.end_headers()
                    if method != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, method, path, status):
        with self.lock:
            self.seen.append((method, path, status))

    def release(self):
        self.released.set()

    def close(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()
