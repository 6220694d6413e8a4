"""Limits against bad input: oversized header sections and XML bodies, idle, slow and
stalled clients. Each gets its S3 error (or, with nothing to answer, a closed connection),
promptly, and the server keeps serving everyone else. The proxy here runs with 1-second
timeouts ([limits] in the configuration) to keep the tests short."""

import os
import re
import shutil
import socket
import tempfile
import threading
import time

import pytest

import s3wire as w
from conftest import ACCESS_KEY, SECRET_KEY, Proxy, make_client

TIMEOUT = 1.0  # header_timeout_ms and idle_timeout_ms below


@pytest.fixture(scope="module")
def px():
    workdir = tempfile.mkdtemp(prefix="s3proxy-limits-")
    config = f"""
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'data')}"
[limits]
header_timeout_ms = {int(TIMEOUT * 1000)}
idle_timeout_ms = {int(TIMEOUT * 1000)}
"""
    p = Proxy(workdir, config)
    yield p
    alive = p.proc.poll() is None
    p.stop()
    log = p.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert alive, "s3proxy died during the tests"
    assert "panicked" not in log, log[-3000:]
    server_errors = [l for l in log.splitlines() if re.search(r"-> 5\d\d ", l)]
    assert not server_errors, "\n".join(server_errors)


@pytest.fixture(scope="module")
def s3(px):
    return make_client(px.endpoint)


@pytest.fixture(scope="module")
def bkt(s3):
    s3.create_bucket(Bucket="limits")
    return "limits"


def still_serving(s3):
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


def signed_head(px, method, path, headers=None, payload_hash="UNSIGNED-PAYLOAD", query=""):
    h, _ = w.sign_v4(method, path, query, headers=headers, payload_hash=payload_hash, host=f"127.0.0.1:{px.port}")
    target = path + (f"?{query}" if query else "")
    return f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"


# ---------------------------------------------------------------- sizes


def test_header_section_size(px, s3, bkt):
    s3.put_object(Bucket=bkt, Key="k", Body=b"v")
    # Just under S3's 8 KB: served.
    r = w.v4(px.port, "GET", f"/{bkt}/k", headers={"x-padding": "p" * 7000})
    assert r.status == 200 and r.body == b"v"
    # Over it, in one header or in many: RequestHeaderSectionTooLarge, signed or not.
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}/k", headers={"x-padding": "p" * 9000}), 400, "RequestHeaderSectionTooLarge")
    many = {f"x-pad-{i}": "p" * 100 for i in range(90)}
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}/k", headers=many), 400, "RequestHeaderSectionTooLarge")
    w.assert_error(w.send(px.port, "PUT", f"/{bkt}/k", body=b"x", headers={"x-padding": "p" * 9000}), 400, "RequestHeaderSectionTooLarge")
    assert s3.get_object(Bucket=bkt, Key="k")["Body"].read() == b"v"
    # Far over it (beyond what is buffered at all): a 4xx and a closed connection.
    with w.raw_connection(px.port) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n")
        except OSError:
            pass  # the server may close before everything is sent
        reply = w.read_until_closed(sock)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:100]
    still_serving(s3)


def test_xml_body_size(px, s3, bkt):
    big = b"<Delete>" + b"<Object><Key>k</Key></Object>" * (2 * 1024 * 1024 // 29 + 1) + b"</Delete>"
    assert len(big) > 2 * 1024 * 1024
    w.assert_error(w.v4(px.port, "POST", f"/{bkt}", "delete", body=big), 400, "MaxMessageLengthExceeded")
    uid = s3.create_multipart_upload(Bucket=bkt, Key="mp")["UploadId"]
    w.assert_error(w.v4(px.port, "POST", f"/{bkt}/mp", f"uploadId={w.quote(uid, '')}", body=b" " * (2 * 1024 * 1024 + 1)),
                   400, "MaxMessageLengthExceeded")
    w.assert_error(w.v4(px.port, "PUT", "/limits-new", body=b" " * (2 * 1024 * 1024 + 1)), 400, "MaxMessageLengthExceeded")
    # A huge declared length is refused at once, without reading (or waiting for) the body.
    with w.raw_connection(px.port) as sock:
        head = signed_head(px, "POST", f"/{bkt}", {"content-length": str(1 << 30)}, query="delete")
        sock.sendall(head.encode() + b"<Delete>")
        started = time.monotonic()
        reply = w.read_until_closed(sock)
    assert time.monotonic() - started < TIMEOUT * 0.9
    status, _, body = parse_response(reply)
    assert status == 400 and b"<Code>MaxMessageLengthExceeded</Code>" in body
    # The upload is intact; 1000 keys are still fine.
    assert s3.list_parts(Bucket=bkt, Key="mp", UploadId=uid)["UploadId"] == uid
    s3.abort_multipart_upload(Bucket=bkt, Key="mp", UploadId=uid)
    out = s3.delete_objects(Bucket=bkt, Delete={"Objects": [{"Key": f"x{i}"} for i in range(1000)], "Quiet": True})
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    still_serving(s3)


# ---------------------------------------------------------------- slow and idle clients


def test_idle_connection_is_closed(px, s3):
    with w.raw_connection(px.port, timeout=TIMEOUT * 5) as sock:
        started = time.monotonic()
        reply = w.read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert reply == b"" and TIMEOUT * 0.8 < elapsed < TIMEOUT * 4, elapsed
    # Also after a complete request on a keep-alive connection.
    with w.raw_connection(px.port, timeout=TIMEOUT * 5) as sock:
        sock.sendall(signed_head(px, "GET", "/").encode())
        first = b""
        while b"</ListAllMyBucketsResult>" not in first:
            first += sock.recv(65536)
        started = time.monotonic()
        rest = w.read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert first.startswith(b"HTTP/1.1 200") and rest == b""
    assert elapsed < TIMEOUT * 4
    still_serving(s3)


@pytest.mark.parametrize("trickle", [False, True])
def test_stalled_or_trickled_headers_get_request_timeout(px, s3, trickle):
    head = signed_head(px, "GET", "/").encode()
    with w.raw_connection(px.port, timeout=TIMEOUT * 6) as sock:
        started = time.monotonic()
        if trickle:
            # Slowloris: a byte every 0.2 s never finishes the headers in time.
            try:
                for b in head[:40]:
                    sock.sendall(bytes([b]))
                    time.sleep(0.2)
            except OSError:
                pass
        else:
            sock.sendall(head[:30])
        reply = w.read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT * 5 + (8 if trickle else 0), elapsed
    status, head_text, body = parse_response(reply)
    assert status == 400, reply
    assert "x-amz-request-id" in head_text.lower()
    assert b"<Code>RequestTimeout</Code>" in body
    still_serving(s3)


def test_stalled_body_gets_request_timeout_and_nothing_is_stored(px, s3, bkt):
    for name, headers, payload_hash, first in [
        ("plain", {"content-length": "1000"}, "UNSIGNED-PAYLOAD", b"x" * 10),
        ("chunked", {"content-length": "1000", "content-encoding": "aws-chunked", "x-amz-decoded-content-length": "900",
                     "x-amz-trailer": "x-amz-checksum-crc32"}, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", b"384\r\nabc"),
    ]:
        with w.raw_connection(px.port, timeout=TIMEOUT * 6) as sock:
            sock.sendall(signed_head(px, "PUT", f"/{bkt}/stalled-{name}", headers, payload_hash).encode() + first)
            started = time.monotonic()
            reply = w.read_until_closed(sock)
            elapsed = time.monotonic() - started
        assert TIMEOUT * 0.8 < elapsed < TIMEOUT * 5, (name, elapsed)
        status, _, body = parse_response(reply)
        assert status == 400 and b"<Code>RequestTimeout</Code>" in body, (name, reply)
        w.assert_error(w.v4(px.port, "GET", f"/{bkt}/stalled-{name}"), 404, "NoSuchKey")
    # A multipart part, stalled: the upload stays usable.
    uid = s3.create_multipart_upload(Bucket=bkt, Key="stalled-part")["UploadId"]
    head = signed_head(px, "PUT", f"/{bkt}/stalled-part", {"content-length": "100"}, query=f"partNumber=1&uploadId={w.quote(uid, '')}")
    with w.raw_connection(px.port, timeout=TIMEOUT * 6) as sock:
        sock.sendall(head.encode() + b"y" * 5)
        status, _, body = parse_response(w.read_until_closed(sock))
    assert status == 400 and b"RequestTimeout" in body
    assert "Parts" not in s3.list_parts(Bucket=bkt, Key="stalled-part", UploadId=uid)
    s3.upload_part(Bucket=bkt, Key="stalled-part", UploadId=uid, PartNumber=1, Body=b"ok")
    s3.abort_multipart_upload(Bucket=bkt, Key="stalled-part", UploadId=uid)
    still_serving(s3)


def test_client_that_stops_reading_is_dropped(px, s3, bkt):
    size = 64 * 1024 * 1024
    s3.upload_fileobj(_Zeros(size), bkt, "big")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT * 6)
    sock.connect(("127.0.0.1", px.port))
    with sock:
        sock.sendall(signed_head(px, "GET", f"/{bkt}/big").encode())
        got = sock.recv(4096)
        assert got.startswith(b"HTTP/1.1 200")
        # Stop reading; meanwhile others are served.
        time.sleep(TIMEOUT * 3)
        still_serving(s3)
        got += w.read_until_closed(sock, limit=size * 2)
    # The server gave up on this response: the connection ended short of the object.
    assert len(got) < size, len(got)
    still_serving(s3)


def test_many_idle_connections_do_not_block_others(px, s3):
    socks = [w.raw_connection(px.port) for _ in range(64)]
    try:
        for s in socks[:32]:
            s.sendall(b"GET / HTTP/1.1\r\n")  # half a request each
        started = time.monotonic()
        threads = [threading.Thread(target=still_serving, args=(s3,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.monotonic() - started < TIMEOUT
    finally:
        for s in socks:
            s.close()


class _Zeros:
    """A file-like object of n zero bytes, without holding them in memory."""

    def __init__(self, n):
        self.left = n

    def read(self, size=-1):
        size = self.left if size is None or size < 0 else min(size, self.left)
        self.left -= size
        return b"\0" * size
