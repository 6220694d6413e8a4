"""The S3 wire protocol, request by request: addressing, buckets, objects, conditionals,
copies, listings, multipart, headers, and every way of signing, with their error cases.
Requests are built byte by byte (tests/s3wire.py) so status codes, error codes, headers and
bodies are asserted exactly as a client receives them; boto3 checks the same answers parse."""

import base64
import email.utils
import hashlib
import os
import re
import shutil
import tempfile
import time
import urllib.parse

import pytest
from botocore.exceptions import ClientError

import s3wire as w
from conftest import ACCESS_KEY, SECRET_KEY, Proxy, make_client

SECOND_ACCESS, SECOND_SECRET = "AKSECOND", "second/secret+key"
DOMAIN = "s3.test"
HTTP_DATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")
ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module")
def px():
    workdir = tempfile.mkdtemp(prefix="s3proxy-protocol-")
    config = f"""
virtual_host_domains = ["{DOMAIN}"]
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[[credentials]]
access_key = "{SECOND_ACCESS}"
secret_key = "{SECOND_SECRET}"
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'data')}"
"""
    p = Proxy(workdir, config)
    yield p
    alive = p.proc.poll() is None
    p.stop()
    log = p.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert alive, "s3proxy died during the tests"
    assert "panicked" not in log, log[-3000:]
    # 501 NotImplemented is deliberate; any other 5xx is a bug.
    server_errors = [l for l in log.splitlines() if re.search(r"-> 5(0[02-9]|[1-9]\d) ", l)]
    assert not server_errors, "\n".join(server_errors)


@pytest.fixture(scope="module")
def s3(px):
    return make_client(px.endpoint)


_n = [0]


@pytest.fixture
def bkt(px, s3):
    _n[0] += 1
    name = f"proto-{os.getpid()}-{_n[0]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=o["Key"])
    for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
    s3.delete_bucket(Bucket=name)


def put(px, bucket, key, data=b"", headers=None):
    r = w.v4(px.port, "PUT", f"/{bucket}/{w.quote(key)}", body=data, headers=headers)
    assert r.status == 200, r
    return r


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# ---------------------------------------------------------------- buckets


def test_bucket_operations_and_their_errors(px, s3):
    name = f"bops-{os.getpid()}"
    r = w.v4(px.port, "PUT", f"/{name}")
    assert r.status == 200 and r.headers["location"] == f"/{name}" and r.body == b""
    # The owner re-creating it: 200 in us-east-1 (S3's legacy behaviour).
    assert w.v4(px.port, "PUT", f"/{name}").status == 200
    # With a location body, as the aws cli sends outside us-east-1.
    body = b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>'
    assert w.v4(px.port, "PUT", f"/{name}-eu", body=body).status == 200
    s3.create_bucket(Bucket=f"{name}-boto", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    w.assert_error(w.v4(px.port, "PUT", f"/{name}-bad", body=b"<CreateBucketConfiguration>"), 400, "MalformedXML")
    w.assert_error(w.v4(px.port, "PUT", "/Bad_Name"), 400, "InvalidBucketName")
    w.assert_error(w.v4(px.port, "PUT", "/ab"), 400, "InvalidBucketName")
    # ListBuckets.
    r = w.v4(px.port, "GET", "/")
    assert r.status == 200 and r.headers["content-type"] == "application/xml"
    root = r.xml()
    assert root.tag == w.NS + "ListAllMyBucketsResult"
    listed = {b.findtext(w.NS + "Name"): b.findtext(w.NS + "CreationDate") for b in root.iter(w.NS + "Bucket")}
    assert {name, f"{name}-eu", f"{name}-boto"} <= set(listed)
    assert f"{name}-bad" not in listed
    assert all(ISO_DATE.match(d) for d in listed.values()), listed
    # HeadBucket and GetBucketLocation.
    r = w.v4(px.port, "HEAD", f"/{name}")
    assert r.status == 200 and r.body == b"" and r.headers["x-amz-bucket-region"] == "us-east-1"
    r = w.v4(px.port, "HEAD", f"/{name}-missing")
    assert r.status == 404 and r.body == b"" and r.headers["x-amz-request-id"]
    r = w.v4(px.port, "GET", f"/{name}", "location")
    assert r.status == 200 and r.xml().tag == w.NS + "LocationConstraint" and not (r.xml().text or "")
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    w.assert_error(w.v4(px.port, "GET", f"/{name}-missing", "location"), 404, "NoSuchBucket")
    # DeleteBucket: not empty, then empty, then missing.
    put(px, name, "k", b"v")
    w.assert_error(w.v4(px.port, "DELETE", f"/{name}"), 409, "BucketNotEmpty")
    assert w.v4(px.port, "DELETE", f"/{name}/k").status == 204
    r = w.v4(px.port, "DELETE", f"/{name}")
    assert r.status == 204 and r.body == b""
    w.assert_error(w.v4(px.port, "DELETE", f"/{name}"), 404, "NoSuchBucket")
    for b in (f"{name}-eu", f"{name}-boto"):
        s3.delete_bucket(Bucket=b)
    # Unsupported bucket sub-resources are refused, not mistaken for listings.
    r = w.v4(px.port, "GET", f"/{name}-x", "policy")
    w.assert_error(r, 501, "NotImplemented")
    assert "policy" in r.xml().findtext("Message")  # says what is missing, not "internal error"
    w.assert_error(w.v4(px.port, "PUT", "/"), 405, "MethodNotAllowed")


def test_virtual_hosted_style(px, s3):
    """bucket.<virtual_host_domains> addressing, for bucket- and object-level requests,
    signed with SigV4 and SigV2, beside path-style on the same server."""
    name = f"vhost-{os.getpid()}"
    host = f"{name}.{DOMAIN}:{px.port}"
    assert w.v4(px.port, "PUT", "/", host=host).status == 200
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    r = w.v4(px.port, "PUT", "/dir/a%20b.txt", body=b"hello", host=host, headers={"content-type": "text/plain"})
    assert r.status == 200
    r = w.v4(px.port, "GET", "/dir/a%20b.txt", host=host)
    assert r.status == 200 and r.body == b"hello"
    assert s3.get_object(Bucket=name, Key="dir/a b.txt")["Body"].read() == b"hello"
    r = w.v4(px.port, "GET", "/", "list-type=2&prefix=dir%2F", host=host)
    assert [k.text for k in r.xml().iter(w.NS + "Key")] == ["dir/a b.txt"]
    assert r.xml().findtext(w.NS + "Name") == name
    r = w.v4(px.port, "GET", "/", "location", host=host)
    assert r.status == 200 and r.xml().tag == w.NS + "LocationConstraint"
    assert w.v4(px.port, "HEAD", "/", host=host).status == 200
    # SigV2 signs the bucket from the Host header into the resource.
    r = w.v2(px.port, "GET", "/dir/a%20b.txt", host=host, vhost_bucket=name)
    assert r.status == 200 and r.body == b"hello"
    w.assert_error(w.v2(px.port, "GET", "/dir/a%20b.txt", host=host), 403, "SignatureDoesNotMatch")
    # A presigned URL on the virtual host.
    q = w.presign_v4("GET", "/dir/a%20b.txt", host=host)
    r = w.send(px.port, "GET", "/dir/a%20b.txt", q, headers={"host": host})
    assert r.status == 200 and r.body == b"hello"
    # The bare domain (and any other host) is path-style.
    r = w.v4(px.port, "GET", f"/{name}/dir/a%20b.txt", host=f"{DOMAIN}:{px.port}")
    assert r.status == 200 and r.body == b"hello"
    w.assert_error(w.v4(px.port, "GET", "/nokey", host=host), 404, "NoSuchKey")
    w.assert_error(w.v4(px.port, "GET", "/", host=f"missing-{name}.{DOMAIN}"), 404, "NoSuchBucket")
    assert w.v4(px.port, "DELETE", "/dir/a%20b.txt", host=host).status == 204
    assert w.v4(px.port, "DELETE", "/", host=host).status == 204
    w.assert_error(w.v4(px.port, "HEAD", "/", host=host), 404, "NoSuchBucket")


# ---------------------------------------------------------------- objects


def test_put_get_head_headers(px, bkt):
    data = os.urandom(3000)
    headers = {
        "content-type": "image/png", "content-encoding": "gzip",
        "content-disposition": 'attachment; filename="x.png"', "content-language": "de-CH",
        "cache-control": "max-age=3600", "expires": "Thu, 01 Dec 2044 16:00:00 GMT",
        "X-Amz-Meta-Mixed-Case": "Value One", "x-amz-meta-mode": "33188",
        "content-md5": md5_b64(data),
    }
    r = put(px, bkt, "obj", data, headers)
    etag = '"%s"' % hashlib.md5(data).hexdigest()
    assert r.headers["etag"] == etag
    for method in ("GET", "HEAD"):
        r = w.v4(px.port, method, f"/{bkt}/obj")
        assert r.status == 200, r
        h = r.headers
        assert r.body == (data if method == "GET" else b"")
        assert h["content-length"] == str(len(data))
        assert h["etag"] == etag
        assert h["content-type"] == "image/png"
        assert h["content-encoding"] == "gzip"
        assert h["content-disposition"] == 'attachment; filename="x.png"'
        assert h["content-language"] == "de-CH"
        assert h["cache-control"] == "max-age=3600"
        assert h["expires"] == "Thu, 01 Dec 2044 16:00:00 GMT"
        assert h["x-amz-meta-mixed-case"] == "Value One"
        assert h["x-amz-meta-mode"] == "33188"
        assert h["accept-ranges"] == "bytes"
        assert HTTP_DATE.match(h["last-modified"]), h["last-modified"]
        assert HTTP_DATE.match(h["date"]), h["date"]
        assert abs(email.utils.parsedate_to_datetime(h["last-modified"]).timestamp() - time.time()) < 120
        assert h["x-amz-request-id"]
    # Overwrite replaces data and headers.
    put(px, bkt, "obj", b"new")
    r = w.v4(px.port, "GET", f"/{bkt}/obj")
    assert r.body == b"new" and "content-encoding" not in r.headers and "x-amz-meta-mode" not in r.headers


def test_content_type_defaults(px, bkt):
    for key, want in [("page.html", "text/html"), ("data.json", "application/json"), ("noext", "application/octet-stream"),
                      ("dir/", "application/octet-stream"), ("photo.JPG", "image/jpeg")]:
        put(px, bkt, key, b"x")
        r = w.v4(px.port, "HEAD", f"/{bkt}/{w.quote(key)}")
        assert r.headers["content-type"] == want, key
    put(px, bkt, "page2.html", b"x", {"content-type": "application/x-directory"})
    assert w.v4(px.port, "HEAD", f"/{bkt}/page2.html").headers["content-type"] == "application/x-directory"


def test_content_md5_and_metadata_limits(px, bkt):
    data = b"some data"
    assert put(px, bkt, "md5", data, {"content-md5": md5_b64(data)}).status == 200
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/bad", body=data, headers={"content-md5": md5_b64(b"other")}), 400, "BadDigest")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/bad", body=data, headers={"content-md5": "bm90IGFuIG1kNQ=="}), 400, "InvalidDigest")
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}/bad"), 404, "NoSuchKey")
    # User metadata: names and values together up to 2 KB (2048 bytes) are kept.
    exact = {"x-amz-meta-a": "v" * 2047}
    put(px, bkt, "meta", b"x", exact)
    assert w.v4(px.port, "HEAD", f"/{bkt}/meta").headers["x-amz-meta-a"] == "v" * 2047
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/meta2", body=b"x", headers={"x-amz-meta-a": "v" * 2048}), 400, "MetadataTooLarge")
    many = {f"x-amz-meta-k{i:02}": "v" * 60 for i in range(32)}  # 32 * 63 = 2016 bytes
    put(px, bkt, "many", b"x", many)
    assert w.v4(px.port, "HEAD", f"/{bkt}/many").headers["x-amz-meta-k31"] == "v" * 60
    many["x-amz-meta-k32"] = "v" * 60
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/many2", body=b"x", headers=many), 400, "MetadataTooLarge")
    # PUT without a length (HTTP chunked transfer encoding, curl -T -): stored whole.
    h, _ = w.sign_v4("PUT", f"/{bkt}/nolen", host=f"127.0.0.1:{px.port}", payload_hash="UNSIGNED-PAYLOAD")
    head = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    with w.raw_connection(px.port) as sock:
        sock.sendall(f"PUT /{bkt}/nolen HTTP/1.1\r\n{head}transfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n".encode())
        reply = w.read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert w.v4(px.port, "GET", f"/{bkt}/nolen").body == b"abc"


def test_ranges(px, bkt):
    data = bytes(range(256)) * 40  # 10240 bytes
    n = len(data)
    put(px, bkt, "r", data)
    for spec, (a, b) in {"bytes=0-9": (0, 9), "bytes=100-": (100, n - 1), "bytes=-10": (n - 10, n - 1),
                         "bytes=5000-99999": (5000, n - 1), "bytes=-99999": (0, n - 1), "bytes=10239-10239": (n - 1, n - 1)}.items():
        for method in ("GET", "HEAD"):
            r = w.v4(px.port, method, f"/{bkt}/r", headers={"range": spec})
            assert r.status == 206, (spec, r)
            assert r.headers["content-range"] == f"bytes {a}-{b}/{n}", spec
            assert r.headers["content-length"] == str(b - a + 1)
            assert r.headers["accept-ranges"] == "bytes"
            assert r.body == (data[a:b + 1] if method == "GET" else b"")
    for spec in ("bytes=10240-", "bytes=20000-30000", "bytes=-0"):
        w.assert_error(w.v4(px.port, "GET", f"/{bkt}/r", headers={"range": spec}), 416, "InvalidRange")
        assert w.v4(px.port, "HEAD", f"/{bkt}/r", headers={"range": spec}).status == 416
    # What S3 ignores (multiple ranges, other units, nonsense) serves the whole object.
    for spec in ("bytes=0-1,5-6", "items=0-1", "bytes=abc", "bytes=9-3"):
        r = w.v4(px.port, "GET", f"/{bkt}/r", headers={"range": spec})
        assert r.status == 200 and r.body == data, spec
    put(px, bkt, "empty", b"")
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}/empty", headers={"range": "bytes=0-"}), 416, "InvalidRange")
    assert w.v4(px.port, "GET", f"/{bkt}/empty").status == 200


def test_conditional_get_and_head(px, bkt):
    r = put(px, bkt, "c", b"conditional")
    etag = r.headers["etag"]
    modified = email.utils.parsedate_to_datetime(w.v4(px.port, "HEAD", f"/{bkt}/c").headers["last-modified"]).timestamp()
    before = email.utils.formatdate(modified - 3600, usegmt=True)
    after = email.utils.formatdate(modified + 3600, usegmt=True)
    cases = [
        ({"if-match": etag}, 200), ({"if-match": '"nope"'}, 412), ({"if-match": "*"}, 200),
        ({"if-match": f'"x", {etag}'}, 200),
        ({"if-none-match": etag}, 304), ({"if-none-match": "*"}, 304), ({"if-none-match": '"nope"'}, 200),
        ({"if-modified-since": before}, 200), ({"if-modified-since": after}, 304),
        ({"if-unmodified-since": after}, 200), ({"if-unmodified-since": before}, 412),
        # RFC 7232 order, as S3: If-Match decides over If-Unmodified-Since, If-None-Match over
        # If-Modified-Since.
        ({"if-match": etag, "if-unmodified-since": before}, 200),
        ({"if-none-match": '"nope"', "if-modified-since": after}, 200),
        ({"if-none-match": etag, "if-modified-since": before}, 304),
        ({"if-match": '"nope"', "if-none-match": etag}, 412),
        ({"if-modified-since": "not a date"}, 200),
    ]
    for headers, status in cases:
        for method in ("GET", "HEAD"):
            r = w.v4(px.port, method, f"/{bkt}/c", headers=headers)
            assert r.status == status, (method, headers, r)
            if status == 200:
                assert r.body == (b"conditional" if method == "GET" else b"")
            elif status == 304:
                # Empty, with the current validators (RFC 9110), as S3 sends them.
                assert r.body == b"" and r.headers["etag"] == etag
                assert r.headers["last-modified"] == email.utils.formatdate(modified, usegmt=True)
            elif method == "GET":
                w.assert_error(r, 412, "PreconditionFailed")
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}/missing", headers={"if-match": etag}), 404, "NoSuchKey")


def test_response_overrides(px, bkt, s3):
    put(px, bkt, "o.txt", b"override", {"content-type": "text/plain", "cache-control": "no-cache"})
    params = {"response-content-type": "application/x-custom", "response-content-disposition": "attachment; filename=\"a b.txt\"",
              "response-content-encoding": "identity", "response-content-language": "fr",
              "response-cache-control": "max-age=5", "response-expires": "Wed, 21 Oct 2037 07:28:00 GMT"}
    q = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    for method in ("GET", "HEAD"):
        r = w.v4(px.port, method, f"/{bkt}/o.txt", q)
        assert r.status == 200
        for k, v in params.items():
            assert r.headers[k[len("response-"):]] == v, k
    got = s3.get_object(Bucket=bkt, Key="o.txt", ResponseContentType="text/csv", ResponseCacheControl="private")
    assert got["ContentType"] == "text/csv" and got["CacheControl"] == "private"
    # Overrides are per request: the stored headers are unchanged.
    r = w.v4(px.port, "GET", f"/{bkt}/o.txt")
    assert r.headers["content-type"] == "text/plain" and r.headers["cache-control"] == "no-cache"
    # And SigV2 signs them as part of the resource.
    r = w.v2(px.port, "GET", f"/{bkt}/o.txt", "response-content-type=text%2Fx-v2")
    assert r.status == 200 and r.headers["content-type"] == "text/x-v2"


def test_delete_object_and_objects(px, bkt, s3):
    put(px, bkt, "d", b"x")
    r = w.v4(px.port, "DELETE", f"/{bkt}/d")
    assert r.status == 204 and r.body == b""
    assert w.v4(px.port, "DELETE", f"/{bkt}/d").status == 204  # missing key: still 204
    w.assert_error(w.v4(px.port, "DELETE", f"/nobucket-{os.getpid()}/d"), 404, "NoSuchBucket")
    keys = [f"k{i:04}" for i in range(1000)]
    s3.put_object(Bucket=bkt, Key="k0000", Body=b"1")
    s3.put_object(Bucket=bkt, Key="k0999", Body=b"1")

    def doc(keys, quiet=False):
        body = "<Delete>" + ("<Quiet>true</Quiet>" if quiet else "") + "".join(
            f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>"
        return body.encode()

    body = doc(keys)
    r = w.v4(px.port, "POST", f"/{bkt}", "delete", body=body, headers={"content-md5": md5_b64(body)})
    assert r.status == 200, r
    deleted = [d.findtext(w.NS + "Key") for d in r.xml().iter(w.NS + "Deleted")]
    assert sorted(deleted) == keys and not list(r.xml().iter(w.NS + "Error"))
    assert "Contents" not in s3.list_objects_v2(Bucket=bkt)
    # Quiet: only failures are reported.
    s3.put_object(Bucket=bkt, Key="q", Body=b"1")
    body = doc(["q", "never"], quiet=True)
    r = w.v4(px.port, "POST", f"/{bkt}", "delete", body=body)
    assert r.status == 200 and not list(r.xml().iter(w.NS + "Deleted")) and not list(r.xml().iter(w.NS + "Error"))
    # Special characters in keys are XML-escaped both ways.
    s3.put_object(Bucket=bkt, Key="a&b<c>", Body=b"1")
    r = w.v4(px.port, "POST", f"/{bkt}", "delete", body=b"<Delete><Object><Key>a&amp;b&lt;c&gt;</Key></Object></Delete>")
    assert [d.findtext(w.NS + "Key") for d in r.xml().iter(w.NS + "Deleted")] == ["a&b<c>"]
    # An invalid key is reported per key, not for the whole request.
    r = w.v4(px.port, "POST", f"/{bkt}", "delete", body=doc(["ok", "k" * 1025]))
    errors = list(r.xml().iter(w.NS + "Error"))
    assert r.status == 200 and len(errors) == 1 and errors[0].findtext(w.NS + "Code") == "KeyTooLongError"
    # More than 1000 keys, none, or no document at all: MalformedXML, as S3.
    for body in (doc(keys + ["k1000"]), b"<Delete></Delete>", b"<Delete><Object>", b"not xml", b""):
        w.assert_error(w.v4(px.port, "POST", f"/{bkt}", "delete", body=body), 400, "MalformedXML")
    w.assert_error(w.v4(px.port, "POST", f"/{bkt}", "delete", body=doc(["x"]), headers={"content-md5": md5_b64(b"y")}), 400, "BadDigest")
    w.assert_error(w.v4(px.port, "POST", f"/nobucket-{os.getpid()}", "delete", body=doc(["x"])), 404, "NoSuchBucket")
    # boto3's view of a verbose delete.
    s3.put_object(Bucket=bkt, Key="b1", Body=b"1")
    out = s3.delete_objects(Bucket=bkt, Delete={"Objects": [{"Key": "b1"}, {"Key": "b2"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["b1", "b2"]


# ---------------------------------------------------------------- copy


def test_copy_object(px, bkt, s3):
    src_key = "dir/sp ace+ünï%.txt"
    data = os.urandom(70_000)
    put(px, bkt, src_key, data, {"content-type": "text/x-src", "x-amz-meta-mode": "33188", "cache-control": "no-store"})
    src_etag = '"%s"' % hashlib.md5(data).hexdigest()
    source = urllib.parse.quote(f"/{bkt}/{src_key}")
    # COPY (the default): data and headers come along.
    r = w.v4(px.port, "PUT", f"/{bkt}/copy1", headers={"x-amz-copy-source": source})
    assert r.status == 200, r
    root = r.xml()
    assert root.tag == w.NS + "CopyObjectResult"
    assert root.findtext(w.NS + "ETag") == src_etag and ISO_DATE.match(root.findtext(w.NS + "LastModified"))
    h = w.v4(px.port, "GET", f"/{bkt}/copy1")
    assert h.body == data and h.headers["content-type"] == "text/x-src" and h.headers["x-amz-meta-mode"] == "33188"
    assert h.headers["cache-control"] == "no-store" and h.headers["etag"] == src_etag
    # Without the leading slash, and with the key not encoded beyond what HTTP needs.
    r = w.v4(px.port, "PUT", f"/{bkt}/copy2", headers={"x-amz-copy-source": f"{bkt}/{urllib.parse.quote(src_key)}",
                                                         "x-amz-metadata-directive": "COPY"})
    assert r.status == 200
    # REPLACE: the request's headers, the source's data.
    r = w.v4(px.port, "PUT", f"/{bkt}/copy3", headers={"x-amz-copy-source": source, "x-amz-metadata-directive": "REPLACE",
                                                         "content-type": "text/x-new", "x-amz-meta-uid": "1000"})
    assert r.status == 200
    h = w.v4(px.port, "GET", f"/{bkt}/copy3").headers
    assert h["content-type"] == "text/x-new" and h["x-amz-meta-uid"] == "1000"
    assert "x-amz-meta-mode" not in h and "cache-control" not in h
    # Onto itself: refused without REPLACE, a metadata update with it (s3fs chmod/touch).
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/{w.quote(src_key)}", headers={"x-amz-copy-source": source}), 400, "InvalidRequest")
    r = w.v4(px.port, "PUT", f"/{bkt}/{w.quote(src_key)}", headers={"x-amz-copy-source": source, "x-amz-metadata-directive": "REPLACE",
                                                                   "x-amz-meta-mode": "33261", "content-type": "text/x-src"})
    assert r.status == 200 and r.xml().findtext(w.NS + "ETag") == src_etag
    g = w.v4(px.port, "GET", f"/{bkt}/{w.quote(src_key)}")
    assert g.body == data and g.headers["x-amz-meta-mode"] == "33261" and g.headers["etag"] == src_etag
    # Copy-source conditionals.
    head = w.v4(px.port, "HEAD", f"/{bkt}/{w.quote(src_key)}").headers
    modified = email.utils.parsedate_to_datetime(head["last-modified"]).timestamp()
    before = email.utils.formatdate(modified - 3600, usegmt=True)
    after = email.utils.formatdate(modified + 3600, usegmt=True)
    for cond, ok in [({"x-amz-copy-source-if-match": src_etag}, True), ({"x-amz-copy-source-if-match": '"no"'}, False),
                     ({"x-amz-copy-source-if-none-match": src_etag}, False), ({"x-amz-copy-source-if-none-match": '"no"'}, True),
                     ({"x-amz-copy-source-if-modified-since": before}, True), ({"x-amz-copy-source-if-modified-since": after}, False),
                     ({"x-amz-copy-source-if-unmodified-since": after}, True), ({"x-amz-copy-source-if-unmodified-since": before}, False)]:
        r = w.v4(px.port, "PUT", f"/{bkt}/cond", headers={"x-amz-copy-source": source, **cond})
        if ok:
            assert r.status == 200, (cond, r)
        else:
            w.assert_error(r, 412, "PreconditionFailed")
    # Missing source key, source bucket, target bucket; bad directive; bad source.
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/x", headers={"x-amz-copy-source": f"/{bkt}/missing"}), 404, "NoSuchKey")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/x", headers={"x-amz-copy-source": f"/nob-{os.getpid()}/k"}), 404, "NoSuchBucket")
    w.assert_error(w.v4(px.port, "PUT", f"/nob-{os.getpid()}/x", headers={"x-amz-copy-source": source}), 404, "NoSuchBucket")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/x", headers={"x-amz-copy-source": source, "x-amz-metadata-directive": "MERGE"}), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/x", headers={"x-amz-copy-source": "justabucket"}), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/x", headers={"x-amz-copy-source": f"/{bkt}/%ff"}), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/x", headers={"x-amz-copy-source": source, "x-amz-metadata-directive": "REPLACE",
                                                            "x-amz-meta-big": "v" * 2100}), 400, "MetadataTooLarge")
    # boto3 encodes the copy source its own way.
    s3.copy_object(Bucket=bkt, Key="copy4", CopySource={"Bucket": bkt, "Key": src_key})
    assert s3.get_object(Bucket=bkt, Key="copy4")["Body"].read() == data


# ---------------------------------------------------------------- listings


def list_xml(px, bkt, query):
    r = w.v4(px.port, "GET", f"/{bkt}", query)
    assert r.status == 200, r
    root = r.xml()
    assert root.tag == w.NS + "ListBucketResult"
    return root


def texts(root, path):
    return [e.text or "" for e in root.findall(path)]


def test_list_objects_v1_and_v2(px, bkt):
    keys = ["a/1", "a/2", "a/b/3", "b", "c d", "c+d", "é/x", "z"]
    for k in keys:
        put(px, bkt, k, b"12345")
    C = w.NS + "Contents/" + w.NS
    P = w.NS + "CommonPrefixes/" + w.NS
    # v1: everything, with owner and the fields S3 sends.
    root = list_xml(px, bkt, "")
    assert texts(root, C + "Key") == sorted(keys, key=str.encode)
    assert root.findtext(w.NS + "Name") == bkt and root.findtext(w.NS + "MaxKeys") == "1000"
    assert root.findtext(w.NS + "IsTruncated") == "false" and root.findtext(w.NS + "Marker") == ""
    assert set(texts(root, C + "Size")) == {"5"} and set(texts(root, C + "StorageClass")) == {"STANDARD"}
    assert set(texts(root, C + "ETag")) == {'"%s"' % hashlib.md5(b"12345").hexdigest()}
    assert all(ISO_DATE.match(d) for d in texts(root, C + "LastModified"))
    assert len(root.findall(w.NS + "Contents/" + w.NS + "Owner")) == len(keys)
    # Prefix and delimiter.
    root = list_xml(px, bkt, "prefix=a%2F&delimiter=%2F")
    assert texts(root, C + "Key") == ["a/1", "a/2"] and texts(root, P + "Prefix") == ["a/b/"]
    assert root.findtext(w.NS + "Prefix") == "a/" and root.findtext(w.NS + "Delimiter") == "/"
    root = list_xml(px, bkt, "delimiter=%2F")
    assert texts(root, C + "Key") == ["b", "c d", "c+d", "z"] and texts(root, P + "Prefix") == ["a/", "é/"]
    # Marker and max-keys (v1).
    root = list_xml(px, bkt, "marker=b&max-keys=2")
    assert texts(root, C + "Key") == ["c d", "c+d"] and root.findtext(w.NS + "IsTruncated") == "true"
    assert root.findtext(w.NS + "Marker") == "b"
    nxt = root.findtext(w.NS + "NextMarker") or texts(root, C + "Key")[-1]
    root = list_xml(px, bkt, f"marker={w.quote(nxt, '')}&max-keys=100")
    assert texts(root, C + "Key") == ["z", "é/x"] and root.findtext(w.NS + "IsTruncated") == "false"
    root = list_xml(px, bkt, "max-keys=0")
    assert texts(root, C + "Key") == [] and root.findtext(w.NS + "IsTruncated") == "false"
    assert list_xml(px, bkt, "max-keys=5000").findtext(w.NS + "MaxKeys") == "1000"
    # v2: start-after, continuation tokens, KeyCount, fetch-owner.
    root = list_xml(px, bkt, "list-type=2&max-keys=3")
    assert texts(root, C + "Key") == ["a/1", "a/2", "a/b/3"] and root.findtext(w.NS + "KeyCount") == "3"
    assert not root.findall(w.NS + "Contents/" + w.NS + "Owner")
    token = root.findtext(w.NS + "NextContinuationToken")
    assert token and root.findtext(w.NS + "IsTruncated") == "true"
    root = list_xml(px, bkt, f"list-type=2&max-keys=3&continuation-token={w.quote(token, '')}&fetch-owner=true")
    assert texts(root, C + "Key") == ["b", "c d", "c+d"] and root.findtext(w.NS + "ContinuationToken") == token
    assert len(root.findall(w.NS + "Contents/" + w.NS + "Owner")) == 3
    root = list_xml(px, bkt, "list-type=2&start-after=c%2Bd")
    assert texts(root, C + "Key") == ["z", "é/x"] and root.findtext(w.NS + "StartAfter") == "c+d"
    root = list_xml(px, bkt, "list-type=2&delimiter=%2F&max-keys=2")
    assert root.findtext(w.NS + "KeyCount") == "2" and texts(root, P + "Prefix") == ["a/"] and texts(root, C + "Key") == ["b"]
    # encoding-type=url: keys, prefixes, delimiter, markers come URL-encoded, on v1 and v2.
    root = list_xml(px, bkt, "encoding-type=url&prefix=c&marker=c")
    assert root.findtext(w.NS + "EncodingType") == "url"
    assert [urllib.parse.unquote_plus(k) for k in texts(root, C + "Key")] == ["c d", "c+d"]
    assert texts(root, C + "Key") in (["c%20d", "c%2Bd"], ["c+d", "c%2Bd"])
    root = list_xml(px, bkt, "list-type=2&encoding-type=url&delimiter=%2F&start-after=%C3%A0")
    assert [urllib.parse.unquote_plus(p) for p in texts(root, P + "Prefix")] == ["é/"]
    assert texts(root, P + "Prefix") == ["%C3%A9/"]
    assert urllib.parse.unquote_plus(root.findtext(w.NS + "StartAfter")) == "à"
    root = list_xml(px, bkt, "list-type=2&encoding-type=url&prefix=c%20")
    assert texts(root, C + "Key") in (["c%20d"], ["c+d"])
    # Errors.
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}", "encoding-type=base64"), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}", "max-keys=abc"), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}", "list-type=2&continuation-token=%21%21"), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "GET", f"/nob-{os.getpid()}", "list-type=2"), 404, "NoSuchBucket")


# ---------------------------------------------------------------- multipart

MIB = 1024 * 1024


def create_upload(px, bkt, key, headers=None):
    r = w.v4(px.port, "POST", f"/{bkt}/{key}", "uploads", headers=headers)
    assert r.status == 200, r
    assert r.xml().findtext(w.NS + "Key") == key and r.xml().findtext(w.NS + "Bucket") == bkt
    return r.xml().findtext(w.NS + "UploadId")


def upload_part(px, bkt, key, upload_id, n, data, headers=None):
    return w.v4(px.port, "PUT", f"/{bkt}/{key}", f"partNumber={n}&uploadId={w.quote(upload_id, '')}", body=data, headers=headers)


def complete_doc(parts):
    return ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts) + "</CompleteMultipartUpload>").encode()


def complete(px, bkt, key, upload_id, parts):
    return w.v4(px.port, "POST", f"/{bkt}/{key}", f"uploadId={w.quote(upload_id, '')}", body=complete_doc(parts))


def test_multipart_upload(px, bkt, s3):
    p1, p2, p3 = os.urandom(5 * MIB), os.urandom(5 * MIB + 1), os.urandom(1000)
    uid = create_upload(px, bkt, "mp", {"content-type": "video/x-test", "x-amz-meta-mode": "33188"})
    etags = {}
    for n, data in ((1, p1), (3, p3), (2, p2)):
        r = upload_part(px, bkt, "mp", uid, n, data, {"content-md5": md5_b64(data)})
        assert r.status == 200 and r.headers["etag"] == '"%s"' % hashlib.md5(data).hexdigest()
        etags[n] = r.headers["etag"]
    w.assert_error(upload_part(px, bkt, "mp", uid, 4, b"x", {"content-md5": md5_b64(b"y")}), 400, "BadDigest")
    # ListParts: sorted, sizes, ETags; paged with max-parts.
    r = w.v4(px.port, "GET", f"/{bkt}/mp", f"uploadId={w.quote(uid, '')}")
    root = r.xml()
    assert root.tag == w.NS + "ListPartsResult" and root.findtext(w.NS + "UploadId") == uid
    assert texts(root, w.NS + "Part/" + w.NS + "PartNumber") == ["1", "2", "3"]
    assert texts(root, w.NS + "Part/" + w.NS + "Size") == [str(5 * MIB), str(5 * MIB + 1), "1000"]
    assert texts(root, w.NS + "Part/" + w.NS + "ETag") == [etags[1], etags[2], etags[3]]
    root = w.v4(px.port, "GET", f"/{bkt}/mp", f"uploadId={w.quote(uid, '')}&max-parts=2").xml()
    assert root.findtext(w.NS + "IsTruncated") == "true" and root.findtext(w.NS + "NextPartNumberMarker") == "2"
    root = w.v4(px.port, "GET", f"/{bkt}/mp", f"uploadId={w.quote(uid, '')}&part-number-marker=2").xml()
    assert texts(root, w.NS + "Part/" + w.NS + "PartNumber") == ["3"]
    # ListMultipartUploads.
    root = w.v4(px.port, "GET", f"/{bkt}", "uploads").xml()
    assert root.tag == w.NS + "ListMultipartUploadsResult"
    assert [(u.findtext(w.NS + "Key"), u.findtext(w.NS + "UploadId")) for u in root.iter(w.NS + "Upload")] == [("mp", uid)]
    assert ISO_DATE.match(root.find(w.NS + "Upload").findtext(w.NS + "Initiated"))
    root = w.v4(px.port, "GET", f"/{bkt}", "uploads&prefix=zz").xml()
    assert not list(root.iter(w.NS + "Upload"))
    # Complete errors: order, unknown part, wrong ETag, small non-last part, empty list.
    w.assert_error(complete(px, bkt, "mp", uid, [(2, etags[2]), (1, etags[1])]), 400, "InvalidPartOrder")
    w.assert_error(complete(px, bkt, "mp", uid, [(1, etags[1]), (7, etags[2])]), 400, "InvalidPart")
    w.assert_error(complete(px, bkt, "mp", uid, [(1, etags[1]), (2, '"0123456789abcdef0123456789abcdef"')]), 400, "InvalidPart")
    w.assert_error(complete(px, bkt, "mp", uid, [(1, etags[1]), (3, etags[3]), (2, etags[2])]), 400, "InvalidPartOrder")
    w.assert_error(w.v4(px.port, "POST", f"/{bkt}/mp", f"uploadId={w.quote(uid, '')}", body=b"<CompleteMultipartUpload/>"), 400, "MalformedXML")
    w.assert_error(w.v4(px.port, "POST", f"/{bkt}/mp", f"uploadId={w.quote(uid, '')}", body=b"<oops"), 400, "MalformedXML")
    # Complete parts 1 and 3 (a gap is allowed), unquoted ETags accepted.
    r = complete(px, bkt, "mp", uid, [(1, etags[1].strip('"')), (3, etags[3])])
    assert r.status == 200, r
    root = r.xml()
    want = '"%s-2"' % hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p3).digest()).hexdigest()
    assert root.tag == w.NS + "CompleteMultipartUploadResult" and root.findtext(w.NS + "ETag") == want
    assert root.findtext(w.NS + "Key") == "mp" and root.findtext(w.NS + "Bucket") == bkt
    g = w.v4(px.port, "GET", f"/{bkt}/mp")
    assert g.body == p1 + p3 and g.headers["etag"] == want and g.headers["content-type"] == "video/x-test"
    assert g.headers["x-amz-meta-mode"] == "33188" and g.headers["content-length"] == str(len(p1) + len(p3))
    r = w.v4(px.port, "GET", f"/{bkt}/mp", headers={"range": f"bytes={5 * MIB - 2}-{5 * MIB + 1}"})
    assert r.status == 206 and r.body == p1[-2:] + p3[:2]
    listed = s3.list_objects_v2(Bucket=bkt, Prefix="mp")["Contents"][0]
    assert listed["ETag"] == want and listed["Size"] == len(p1) + len(p3)
    # The upload is gone.
    w.assert_error(complete(px, bkt, "mp", uid, [(1, etags[1])]), 404, "NoSuchUpload")
    w.assert_error(upload_part(px, bkt, "mp", uid, 1, b"x"), 404, "NoSuchUpload")
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}/mp", f"uploadId={w.quote(uid, '')}"), 404, "NoSuchUpload")


def test_multipart_small_parts_abort_and_bad_ids(px, bkt):
    uid = create_upload(px, bkt, "small")
    e1 = upload_part(px, bkt, "small", uid, 1, b"a" * 100).headers["etag"]
    e2 = upload_part(px, bkt, "small", uid, 2, b"b" * 100).headers["etag"]
    w.assert_error(complete(px, bkt, "small", uid, [(1, e1), (2, e2)]), 400, "EntityTooSmall")
    # A single small part is a valid (last) part.
    r = complete(px, bkt, "small", uid, [(1, e1)])
    assert r.status == 200, r
    assert w.v4(px.port, "GET", f"/{bkt}/small").body == b"a" * 100
    # Abort.
    uid = create_upload(px, bkt, "aborted")
    upload_part(px, bkt, "aborted", uid, 1, b"x")
    r = w.v4(px.port, "DELETE", f"/{bkt}/aborted", f"uploadId={w.quote(uid, '')}")
    assert r.status == 204 and r.body == b""
    w.assert_error(w.v4(px.port, "DELETE", f"/{bkt}/aborted", f"uploadId={w.quote(uid, '')}"), 404, "NoSuchUpload")
    w.assert_error(w.v4(px.port, "GET", f"/{bkt}/aborted"), 404, "NoSuchKey")
    assert not list(w.v4(px.port, "GET", f"/{bkt}", "uploads").xml().iter(w.NS + "Upload"))
    # Forged, garbage and foreign upload ids; bad part numbers.
    for bad in ("nope", "A" * 300, uid + "x"):
        r = upload_part(px, bkt, "aborted", bad, 1, b"x")
        assert r.status in (400, 404), r
        w.assert_error(r, r.status, "NoSuchUpload" if r.status == 404 else r.xml().findtext("Code"))
    other = create_upload(px, bkt, "other")
    r = upload_part(px, bkt, "aborted", other, 1, b"x")
    assert r.status == 404, r
    for n in ("0", "10001", "x", "-1"):
        w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/other", f"partNumber={n}&uploadId={w.quote(other, '')}", body=b"x"), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "POST", f"/nob-{os.getpid()}/k", "uploads"), 404, "NoSuchBucket")


def test_upload_part_copy(px, bkt):
    src = os.urandom(6 * MIB + 10)
    put(px, bkt, "src", src)
    uid = create_upload(px, bkt, "pc")
    q = lambda n: f"partNumber={n}&uploadId={w.quote(uid, '')}"
    r = w.v4(px.port, "PUT", f"/{bkt}/pc", q(1), headers={"x-amz-copy-source": f"/{bkt}/src", "x-amz-copy-source-range": f"bytes=0-{5 * MIB - 1}"})
    assert r.status == 200, r
    assert r.xml().tag == w.NS + "CopyPartResult"
    e1 = r.xml().findtext(w.NS + "ETag")
    assert e1 == '"%s"' % hashlib.md5(src[:5 * MIB]).hexdigest()
    r = w.v4(px.port, "PUT", f"/{bkt}/pc", q(3), headers={"x-amz-copy-source": f"/{bkt}/src", "x-amz-copy-source-range": f"bytes={5 * MIB}-{len(src) - 1}"})
    e3 = r.xml().findtext(w.NS + "ETag")
    assert e3 == '"%s"' % hashlib.md5(src[5 * MIB:]).hexdigest()
    # Whole-object part copy, with a matching source condition.
    r = w.v4(px.port, "PUT", f"/{bkt}/pc", q(2), headers={"x-amz-copy-source": f"/{bkt}/src",
                                                             "x-amz-copy-source-if-match": '"%s"' % hashlib.md5(src).hexdigest()})
    e2 = r.xml().findtext(w.NS + "ETag")
    assert e2 == '"%s"' % hashlib.md5(src).hexdigest()
    # Errors: range past the end, malformed ranges, failed condition, missing source.
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/pc", q(4), headers={"x-amz-copy-source": f"/{bkt}/src", "x-amz-copy-source-range": f"bytes=0-{len(src)}"}), 400, "InvalidArgument")
    for bad in ("bytes=5-", "bytes=-5", "bytes=9-3", "pages=1-2"):
        w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/pc", q(4), headers={"x-amz-copy-source": f"/{bkt}/src", "x-amz-copy-source-range": bad}), 400, "InvalidArgument")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/pc", q(4), headers={"x-amz-copy-source": f"/{bkt}/src", "x-amz-copy-source-if-match": '"no"'}), 412, "PreconditionFailed")
    w.assert_error(w.v4(px.port, "PUT", f"/{bkt}/pc", q(4), headers={"x-amz-copy-source": f"/{bkt}/nosrc"}), 404, "NoSuchKey")
    r = complete(px, bkt, "pc", uid, [(1, e1), (2, e2), (3, e3)])
    assert r.status == 200, r
    assert w.v4(px.port, "GET", f"/{bkt}/pc").body == src[:5 * MIB] + src + src[5 * MIB:]


# ---------------------------------------------------------------- authentication


def test_sigv4_header_auth_errors(px, bkt):
    put(px, bkt, "a", b"auth")
    p = f"/{bkt}/a"
    w.assert_error(w.v4(px.port, "GET", p, secret="wrong"), 403, "SignatureDoesNotMatch")
    w.assert_error(w.v4(px.port, "GET", p, access="NOBODY"), 403, "InvalidAccessKeyId")
    w.assert_error(w.send(px.port, "GET", p), 403, "AccessDenied")
    # The second configured credential pair works; mixing the pairs does not.
    assert w.v4(px.port, "GET", p, access=SECOND_ACCESS, secret=SECOND_SECRET).body == b"auth"
    w.assert_error(w.v4(px.port, "GET", p, access=SECOND_ACCESS, secret=SECRET_KEY), 403, "SignatureDoesNotMatch")
    assert make_client(px.endpoint, SECOND_ACCESS, SECOND_SECRET).get_object(Bucket=bkt, Key="a")["Body"].read() == b"auth"
    # Clock skew: 15 minutes either way.
    assert w.v4(px.port, "GET", p, amz_date=w.amz_now(-600)).status == 200
    w.assert_error(w.v4(px.port, "GET", p, amz_date=w.amz_now(-1200)), 403, "RequestTimeTooSkewed")
    w.assert_error(w.v4(px.port, "GET", p, amz_date=w.amz_now(1200)), 403, "RequestTimeTooSkewed")
    # A signed header changed after signing, or the query changed.
    h, _ = w.sign_v4("GET", p, headers={"range": "bytes=0-1"}, host=f"127.0.0.1:{px.port}")
    h["range"] = "bytes=0-2"
    w.assert_error(w.send(px.port, "GET", p, headers=h), 403, "SignatureDoesNotMatch")
    h, _ = w.sign_v4("GET", f"/{bkt}", "prefix=a", host=f"127.0.0.1:{px.port}")
    w.assert_error(w.send(px.port, "GET", f"/{bkt}", "prefix=b", headers=h), 403, "SignatureDoesNotMatch")
    # Malformed Authorization headers.
    good, _ = w.sign_v4("GET", p, host=f"127.0.0.1:{px.port}")
    for auth in ("AWS4-HMAC-SHA256 garbage", "AWS4-HMAC-SHA256 Credential=a/b/c,SignedHeaders=host,Signature=00",
                 good["authorization"].replace("SignedHeaders=host;", "SignedHeaders="), "Bearer token", "AWS4-HMAC-SHA256 "):
        r = w.send(px.port, "GET", p, headers={**good, "authorization": auth})
        assert 400 <= r.status < 500, (auth, r)
        w.assert_error(r, r.status, r.xml().findtext("Code"))
    bad_date = dict(good, **{"x-amz-date": "yesterday"})
    # As S3: an unreadable date is AccessDenied, naming the headers it needs.
    w.assert_error(w.send(px.port, "GET", p, headers=bad_date), 403, "AccessDenied")
    nohash = {k: v for k, v in good.items() if k != "x-amz-content-sha256"}
    w.assert_error(w.send(px.port, "GET", p, headers=nohash), 400, "InvalidRequest")
    # Errors reveal nothing: no object data in any of these bodies.
    assert b"auth" not in w.v4(px.port, "GET", p, secret="wrong").body


def test_payload_modes(px, bkt):
    port, host = px.port, f"127.0.0.1:{px.port}"
    data = os.urandom(200_000)
    # UNSIGNED-PAYLOAD.
    r = w.v4(port, "PUT", f"/{bkt}/unsigned", body=data, payload_hash="UNSIGNED-PAYLOAD")
    assert r.status == 200 and w.v4(port, "GET", f"/{bkt}/unsigned").body == data
    # A signed SHA-256 that does not match the body.
    w.assert_error(w.v4(port, "PUT", f"/{bkt}/wrongsha", body=data, payload_hash=hashlib.sha256(b"x").hexdigest()), 400, "XAmzContentSHA256Mismatch")
    w.assert_error(w.v4(port, "PUT", f"/{bkt}/wrongsha", body=data, payload_hash="NOT-A-HASH"), 400, "InvalidArgument")
    # aws-chunked with signed chunks.
    for size in (0, 1, 64 * 1024, 200_000):
        part = data[:size]
        headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(size)}
        h, (key, amz_date, scope, seed) = w.sign_v4("PUT", f"/{bkt}/signed", headers=headers, host=host,
                                                     payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        body = w.chunked_signed(part, 65536, key, amz_date, scope, seed)
        r = w.send(port, "PUT", f"/{bkt}/signed", body=body, headers=h)
        assert r.status == 200 and r.headers["etag"] == '"%s"' % hashlib.md5(part).hexdigest(), (size, r)
        g = w.v4(port, "GET", f"/{bkt}/signed")
        assert g.body == part and "content-encoding" not in g.headers
    # A tampered chunk, a wrong declared length: refused, nothing stored.
    headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    h, (key, amz_date, scope, seed) = w.sign_v4("PUT", f"/{bkt}/tampered", headers=headers, host=host,
                                                 payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    w.assert_error(w.send(port, "PUT", f"/{bkt}/tampered", body=w.chunked_signed(data, 65536, key, amz_date, scope, seed, tamper=1), headers=h),
                   403, "SignatureDoesNotMatch")
    w.assert_error(w.v4(port, "GET", f"/{bkt}/tampered"), 404, "NoSuchKey")
    headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data) + 5)}
    h, (key, amz_date, scope, seed) = w.sign_v4("PUT", f"/{bkt}/short", headers=headers, host=host,
                                                 payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    r = w.send(port, "PUT", f"/{bkt}/short", body=w.chunked_signed(data, 65536, key, amz_date, scope, seed), headers=h)
    assert r.status == 400, r
    w.assert_error(w.v4(port, "GET", f"/{bkt}/short"), 404, "NoSuchKey")
    # Unsigned chunks with checksum trailers, as current boto3 and aws cli send.
    for algorithm in ("crc32", "crc32c", "sha256", "sha1"):
        name = f"x-amz-checksum-{algorithm}"
        headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": name}
        h, _ = w.sign_v4("PUT", f"/{bkt}/trailer", headers=headers, host=host, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        r = w.send(port, "PUT", f"/{bkt}/trailer", body=w.chunked_trailer(data, 8192, name, w.checksum(algorithm, data)), headers=h)
        assert r.status == 200 and r.headers["etag"] == '"%s"' % hashlib.md5(data).hexdigest(), (algorithm, r)
        assert w.v4(port, "GET", f"/{bkt}/trailer").body == data
        h, _ = w.sign_v4("PUT", f"/{bkt}/badtrailer", headers=headers, host=host, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        r = w.send(port, "PUT", f"/{bkt}/badtrailer", body=w.chunked_trailer(data, 8192, name, w.checksum(algorithm, b"other")), headers=h)
        w.assert_error(r, 400, "BadDigest")
        w.assert_error(w.v4(port, "GET", f"/{bkt}/badtrailer"), 404, "NoSuchKey")
        # The same checksum as a plain header.
        r = w.v4(port, "PUT", f"/{bkt}/hdr", body=data, headers={name: w.checksum(algorithm, data)})
        assert r.status == 200, (algorithm, r)
        w.assert_error(w.v4(port, "PUT", f"/{bkt}/badhdr", body=data, headers={name: w.checksum(algorithm, b"x")}), 400, "BadDigest")
        w.assert_error(w.v4(port, "GET", f"/{bkt}/badhdr"), 404, "NoSuchKey")
    # Garbage framing.
    headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": "10"}
    h, _ = w.sign_v4("PUT", f"/{bkt}/garbage", headers=headers, host=host, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    for body in (b"zz\r\nabc\r\n", b"a\r\n0123456789XX0\r\n\r\n", b"ffffffffffffffffff\r\n"):
        r = w.send(port, "PUT", f"/{bkt}/garbage", body=body, headers=h)
        assert r.status == 400, (body, r)
    w.assert_error(w.v4(port, "GET", f"/{bkt}/garbage"), 404, "NoSuchKey")


def test_presigned_v4_and_sigv2(px, bkt):
    port, host = px.port, f"127.0.0.1:{px.port}"
    put(px, bkt, "p", b"presigned")
    q = w.presign_v4("GET", f"/{bkt}/p", host=host)
    assert w.send(port, "GET", f"/{bkt}/p", q).body == b"presigned"
    # With a response override inside the signature.
    q = w.presign_v4("GET", f"/{bkt}/p", "response-content-type=text%2Fx-pre", host=host)
    r = w.send(port, "GET", f"/{bkt}/p", q)
    assert r.status == 200 and r.headers["content-type"] == "text/x-pre"
    # Expired, not yet valid, tampered, too long, unknown key, wrong secret.
    q = w.presign_v4("GET", f"/{bkt}/p", expires=60, amz_date=w.amz_now(-120), host=host)
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", q), 403, "AccessDenied")
    q = w.presign_v4("GET", f"/{bkt}/p", expires=60, amz_date=w.amz_now(3600), host=host)
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", q), 403, "AccessDenied")
    q = w.presign_v4("GET", f"/{bkt}/p", host=host)
    w.assert_error(w.send(port, "GET", f"/{bkt}/other", q), 403, "SignatureDoesNotMatch")
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", q.replace("X-Amz-Expires=300", "X-Amz-Expires=301")), 403, "SignatureDoesNotMatch")
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", w.presign_v4("GET", f"/{bkt}/p", expires=604801, host=host)), 400, "AuthorizationQueryParametersError")
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", w.presign_v4("GET", f"/{bkt}/p", access="NOBODY", host=host)), 403, "InvalidAccessKeyId")
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", w.presign_v4("GET", f"/{bkt}/p", secret="bad", host=host)), 403, "SignatureDoesNotMatch")
    # A presigned PUT.
    q = w.presign_v4("PUT", f"/{bkt}/pput", host=host)
    assert w.send(port, "PUT", f"/{bkt}/pput", q, body=b"uploaded").status == 200
    assert w.v4(port, "GET", f"/{bkt}/pput").body == b"uploaded"
    # SigV2, header: Date or x-amz-date, metadata among the signed headers, sub-resources.
    assert w.v2(port, "GET", f"/{bkt}/p").body == b"presigned"
    r = w.v2(port, "PUT", f"/{bkt}/v2", body=b"v2 body", headers={"content-type": "text/x-v2", "x-amz-meta-who": "v2",
                                                                   "content-md5": md5_b64(b"v2 body")})
    assert r.status == 200, r
    g = w.v2(port, "GET", f"/{bkt}/v2")
    assert g.body == b"v2 body" and g.headers["x-amz-meta-who"] == "v2" and g.headers["content-type"] == "text/x-v2"
    now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    assert w.v2(port, "GET", f"/{bkt}/p", headers={"x-amz-date": now}, date="").status == 200
    assert w.v2(port, "GET", f"/{bkt}", "uploads").status == 200
    w.assert_error(w.v2(port, "GET", f"/{bkt}/p", secret="wrong"), 403, "SignatureDoesNotMatch")
    w.assert_error(w.v2(port, "GET", f"/{bkt}/p", access="NOBODY"), 403, "InvalidAccessKeyId")
    old = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 3600))
    w.assert_error(w.v2(port, "GET", f"/{bkt}/p", date=old), 403, "RequestTimeTooSkewed")
    h = w.sign_v2("GET", f"/{bkt}/p")
    h["host"] = host
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", "acl", headers=h), 403, "SignatureDoesNotMatch")
    assert w.v2(port, "GET", f"/{bkt}/p", access=SECOND_ACCESS, secret=SECOND_SECRET).status == 200
    # SigV2 presigned.
    q = w.presign_v2("GET", f"/{bkt}/p", int(time.time()) + 60)
    assert w.send(port, "GET", f"/{bkt}/p", q).body == b"presigned"
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", w.presign_v2("GET", f"/{bkt}/p", int(time.time()) - 1)), 403, "AccessDenied")
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", w.presign_v2("GET", f"/{bkt}/p", int(time.time()) + 60, secret="x")), 403, "SignatureDoesNotMatch")
    w.assert_error(w.send(port, "GET", f"/{bkt}/p", "AWSAccessKeyId=x&Expires=soon&Signature=y"), 403, "AccessDenied")


def test_boto3_sees_the_same_errors(px, s3, bkt):
    def code(fn, **kw):
        with pytest.raises(ClientError) as e:
            fn(**kw)
        return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]

    s3.put_object(Bucket=bkt, Key="k", Body=b"0123456789")
    assert code(s3.get_object, Bucket=bkt, Key="k", Range="bytes=20-") == ("InvalidRange", 416)
    assert code(s3.get_object, Bucket=bkt, Key="k", IfMatch='"x"') == ("PreconditionFailed", 412)
    assert code(s3.head_object, Bucket=bkt, Key="nope") == ("404", 404)
    assert code(s3.get_object, Bucket=bkt, Key="nope") == ("NoSuchKey", 404)
    assert code(s3.list_objects_v2, Bucket="nope-" + bkt) == ("NoSuchBucket", 404)
    assert code(s3.put_object, Bucket=bkt, Key="k", Body=b"x", ContentMD5=md5_b64(b"y")) == ("BadDigest", 400)
    assert code(s3.copy_object, Bucket=bkt, Key="c", CopySource={"Bucket": bkt, "Key": "k"}, CopySourceIfMatch='"x"') == ("PreconditionFailed", 412)
    assert code(s3.complete_multipart_upload, Bucket=bkt, Key="k", UploadId="nope",
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})[0] == "NoSuchUpload"
    assert code(make_client(px.endpoint, secret_key="wrong").get_object, Bucket=bkt, Key="k") == ("SignatureDoesNotMatch", 403)
    r = s3.get_object(Bucket=bkt, Key="k", Range="bytes=2-4")
    assert r["Body"].read() == b"234" and r["ContentRange"] == "bytes 2-4/10"
    assert s3.head_object(Bucket=bkt, Key="k", IfNoneMatch='"x"')["ContentLength"] == 10


def test_boto3_with_sigv2(px):
    """botocore's SigV2 (HmacV1) client: bucket-level requests are signed as `/bucket/`."""
    import botocore.config
    import boto3
    c = boto3.client("s3", endpoint_url=px.endpoint, aws_access_key_id=SECOND_ACCESS, aws_secret_access_key=SECOND_SECRET,
                     region_name="us-east-1", config=botocore.config.Config(signature_version="s3", s3={"addressing_style": "path"},
                                                                           retries={"max_attempts": 1}))
    name = f"sigv2-boto-{os.getpid()}"
    c.create_bucket(Bucket=name)
    c.head_bucket(Bucket=name)
    c.put_object(Bucket=name, Key="a b/c+d", Body=b"v2", Metadata={"k": "v"}, ContentType="text/x-v2")
    assert c.get_object(Bucket=name, Key="a b/c+d", Range="bytes=1-")["Body"].read() == b"2"
    assert c.head_object(Bucket=name, Key="a b/c+d")["Metadata"] == {"k": "v"}
    assert [o["Key"] for o in c.list_objects_v2(Bucket=name, Prefix="a ")["Contents"]] == ["a b/c+d"]
    c.copy_object(Bucket=name, Key="copy", CopySource={"Bucket": name, "Key": "a b/c+d"})
    uid = c.create_multipart_upload(Bucket=name, Key="mp")["UploadId"]
    e = c.upload_part(Bucket=name, Key="mp", UploadId=uid, PartNumber=1, Body=b"part")["ETag"]
    assert [p["PartNumber"] for p in c.list_parts(Bucket=name, Key="mp", UploadId=uid)["Parts"]] == [1]
    c.complete_multipart_upload(Bucket=name, Key="mp", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
    assert c.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    out = c.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in ("a b/c+d", "copy", "mp")]})
    assert len(out["Deleted"]) == 3
    c.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        c.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
