"""Raw S3 requests for the protocol tests: an independent SigV4/SigV2 signer (header,
presigned, aws-chunked) so tests control every byte, clock and header a client may send."""

import base64
import datetime
import hashlib
import hmac
import http.client
import socket
import struct
import time
import urllib.parse
import xml.etree.ElementTree as ET
import zlib

from conftest import ACCESS_KEY, SECRET_KEY

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def quote(s, safe="/"):
    """S3's URI encoding: RFC 3986 unreserved characters stay, everything else is %XX."""
    return urllib.parse.quote(s, safe=safe + "-_.~")


def amz_now(offset=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return t.strftime("%Y%m%dT%H%M%SZ")


def _hmac(key, msg):
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, hashlib.sha256).digest()


def signing_key(secret, date, region="us-east-1"):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, "s3")
    return _hmac(k, "aws4_request")


def canonical_query(query):
    pairs = sorted((quote(k, ""), quote(v, "")) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def parse_query(raw):
    out = []
    for part in filter(None, raw.split("&")):
        k, _, v = part.partition("=")
        out.append((urllib.parse.unquote(k), urllib.parse.unquote(v)))
    return out


def sign_v4(method, path, query="", headers=None, payload_hash=EMPTY_SHA256, access=ACCESS_KEY,
            secret=SECRET_KEY, amz_date=None, host="127.0.0.1", region="us-east-1"):
    """Headers for a SigV4-signed request. `path` is sent as given (already encoded)."""
    amz_date = amz_date or amz_now()
    headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
    headers.setdefault("host", host)
    headers["x-amz-date"] = amz_date
    headers["x-amz-content-sha256"] = payload_hash
    names = sorted(headers)
    canonical_headers = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names)
    signed = ";".join(names)
    creq = "\n".join([method, path, canonical_query(parse_query(query)), canonical_headers, signed, payload_hash])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = signing_key(secret, amz_date[:8], region)
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={access}/{scope},SignedHeaders={signed},Signature={signature}"
    return headers, (key, amz_date, scope, signature)


def presign_v4(method, path, query="", expires=300, access=ACCESS_KEY, secret=SECRET_KEY, amz_date=None,
               host="127.0.0.1", region="us-east-1"):
    """The query string of a presigned SigV4 URL."""
    amz_date = amz_date or amz_now()
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    q = parse_query(query) + [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", f"{access}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    cq = canonical_query(q)
    creq = "\n".join([method, path, cq, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(signing_key(secret, amz_date[:8], region), sts.encode(), hashlib.sha256).hexdigest()
    return cq + "&X-Amz-Signature=" + sig


V2_SUBRESOURCES = {"acl", "delete", "location", "partNumber", "uploadId", "uploads", "versionId", "versioning",
                   "response-cache-control", "response-content-disposition", "response-content-encoding",
                   "response-content-language", "response-content-type", "response-expires"}


def _v2_resource(path, query, vhost_bucket):
    res = (f"/{vhost_bucket}" if vhost_bucket else "") + path
    subs = sorted((k, v) for k, v in parse_query(query) if k in V2_SUBRESOURCES)
    if subs:
        res += "?" + "&".join(k if v == "" and k not in ("uploadId", "partNumber", "versionId") else f"{k}={v}" for k, v in subs)
    return res


def sign_v2(method, path, query="", headers=None, access=ACCESS_KEY, secret=SECRET_KEY, date=None,
            vhost_bucket=None):
    headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
    if "x-amz-date" in headers:
        date_line = ""  # x-amz-date is signed among the x-amz-* headers instead
    else:
        headers.setdefault("date", date or time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        date_line = headers["date"]
    amz = "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers) if k.startswith("x-amz-"))
    sts = "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""), date_line, amz + _v2_resource(path, query, vhost_bucket)])
    sig = base64.b64encode(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest()).decode()
    headers["authorization"] = f"AWS {access}:{sig}"
    return headers


def presign_v2(method, path, expires_at, query="", access=ACCESS_KEY, secret=SECRET_KEY, vhost_bucket=None):
    sts = f"{method}\n\n\n{expires_at}\n{_v2_resource(path, query, vhost_bucket)}"
    sig = base64.b64encode(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest()).decode()
    extra = (query + "&") if query else ""
    return f"{extra}AWSAccessKeyId={access}&Expires={expires_at}&Signature={quote(sig, '')}"


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def xml(self):
        return ET.fromstring(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def send(port, method, path, query="", body=b"", headers=None, timeout=30):
    """Send one request as given (no signing) and read the whole response."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    url = path + (("?" + query) if query else "")
    conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
    headers = dict(headers or {})
    if not any(k.lower() == "host" for k in headers):
        headers["host"] = f"127.0.0.1:{port}"
    if body or method in ("PUT", "POST"):
        if not any(k.lower() == "content-length" for k in headers):
            headers["content-length"] = str(len(body))
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body:
        conn.send(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return Response(resp.status, resp.headers, data)


def send_pairs(port, method, path, pairs, body=b""):
    """Send headers exactly as listed, repeated names included (no signing)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in pairs:
        conn.putheader(k, v)
    conn.putheader("content-length", str(len(body)))
    conn.endheaders()
    if body:
        conn.send(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return Response(resp.status, resp.headers, data)


def v4(port, method, path, query="", body=b"", headers=None, payload_hash=None, host=None, **kw):
    """A SigV4-signed request (the payload's SHA-256 signed unless `payload_hash` says otherwise)."""
    host = host or f"127.0.0.1:{port}"
    ph = payload_hash or hashlib.sha256(body).hexdigest()
    h, _ = sign_v4(method, path, query, headers, ph, host=host, **kw)
    return send(port, method, path, query, body, h)


def v2(port, method, path, query="", body=b"", headers=None, host=None, vhost_bucket=None, **kw):
    h = sign_v2(method, path, query, headers, vhost_bucket=vhost_bucket, **kw)
    h["host"] = host or f"127.0.0.1:{port}"
    return send(port, method, path, query, body, h)


def assert_error(resp, status, code):
    """An S3 error document with this status and code, and the request id in body and header."""
    assert resp.status == status, resp
    rid = resp.headers.get("x-amz-request-id")
    assert rid, resp.headers
    if status == 304 or not resp.body:
        return
    assert resp.headers.get("content-type") == "application/xml", resp.headers
    root = resp.xml()
    assert root.tag == "Error", resp
    assert root.findtext("Code") == code, resp
    assert root.findtext("Message"), resp
    assert root.findtext("RequestId") == rid


def chunked_signed(data, chunk_size, key, amz_date, scope, seed, tamper=None):
    """An aws-chunked body with signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)."""
    out, prev = b"", seed
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for i, chunk in enumerate(chunks):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256,
                         hashlib.sha256(chunk).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        sent = chunk
        if tamper == i and chunk:
            sent = bytes([chunk[0] ^ 1]) + chunk[1:]
        out += f"{len(chunk):x};chunk-signature={sig}\r\n".encode() + sent + b"\r\n"
        prev = sig
    return out


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def checksum(algorithm, data):
    """The base64 value of an x-amz-checksum-<algorithm> header."""
    if algorithm == "crc32":
        raw = struct.pack(">I", zlib.crc32(data))
    elif algorithm == "crc32c":
        raw = struct.pack(">I", _crc32c(data))
    elif algorithm == "sha256":
        raw = hashlib.sha256(data).digest()
    elif algorithm == "sha1":
        raw = hashlib.sha1(data).digest()
    else:
        raise ValueError(algorithm)
    return base64.b64encode(raw).decode()


def chunked_trailer(data, chunk_size, trailer_name, trailer_value):
    """An aws-chunked body with unsigned chunks and a checksum trailer."""
    out = b""
    for i in range(0, len(data), chunk_size):
        chunk = data[i:i + chunk_size]
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    out += f"0\r\n{trailer_name}:{trailer_value}\r\n\r\n".encode()
    return out


def raw_connection(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_closed(sock, limit=1 << 20):
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data
