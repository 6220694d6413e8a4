"""What clients beyond s3fs ask of an S3 server and get from a plain one: the answer to
`Expect: 100-continue` at once, uploads without a Content-Length (curl -T - from a pipe),
the sub-resources tools read on any bucket (ACLs, versions of an unversioned bucket,
tags), S3's CreateBucket answers, and listing details."""

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from botocore.exceptions import ClientError

import s3wire as w

pytestmark = pytest.mark.stacks("fs", "replicated", "s3only")
from conftest import ACCESS_KEY, SECRET_KEY, Proxy, make_client


def config(workdir, region="us-east-1"):
    return f"""
region = "{region}"
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[admin]
enabled = false
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'data')}"
"""


@pytest.fixture(scope="module")
def px(proxy):
    """conftest's proxy, once per stack this module runs on."""
    return proxy


@pytest.fixture(scope="module")
def s3(px):
    c = make_client(px.endpoint)
    c.create_bucket(Bucket="compat")
    return c


def read_response_head(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_expect_100_continue_is_answered_before_the_body(px, s3):
    data = os.urandom(1 << 20)
    up = s3.create_multipart_upload(Bucket="compat", Key="mp")["UploadId"]
    for path, query in (("/compat/put", ""), ("/compat/mp", f"partNumber=1&uploadId={w.quote(up, '')}")):
        headers, _ = w.sign_v4("PUT", path, query, payload_hash=hashlib.sha256(data).hexdigest(),
                               headers={"expect": "100-continue", "content-length": str(len(data))},
                               host=f"127.0.0.1:{px.port}")
        sock = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        target = path + (f"?{query}" if query else "")
        sock.sendall(f"PUT {target} HTTP/1.1\r\n".encode()
                     + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n")
        started = time.time()
        head = read_response_head(sock, 5)
        assert head.startswith(b"HTTP/1.1 100"), head
        assert time.time() - started < 1.0  # botocore sends the body unasked after 1 s
        sock.sendall(data)
        final = read_response_head(sock, 30)
        assert final.startswith(b"HTTP/1.1 200"), final
        sock.close()
    parts = s3.list_parts(Bucket="compat", Key="mp", UploadId=up)["Parts"]
    assert [p["Size"] for p in parts] == [len(data)]
    s3.abort_multipart_upload(Bucket="compat", Key="mp", UploadId=up)
    assert s3.get_object(Bucket="compat", Key="put")["Body"].read() == data
    # A request that is refused gets its answer, never a 100 that invites the body.
    sock = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    sock.sendall(b"PUT /compat/nope HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 10\r\n\r\n")
    head = read_response_head(sock, 5)
    assert head.startswith(b"HTTP/1.1 403"), head
    sock.close()


def test_upload_without_content_length_from_a_pipe(px, s3):
    size = 7 * 1024 * 1024 + 123
    data = os.urandom(size)
    url = make_client(px.endpoint, signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "compat", "Key": "piped"})
    # curl -T - sends Transfer-Encoding: chunked, no length.
    out = subprocess.run(["curl", "-sS", "-T", "-", "-H", "Content-Type:", "-w", "\n%{http_code}", url],
                         input=data, capture_output=True, timeout=120)
    assert out.stdout.rstrip().endswith(b"200"), out.stdout[-500:]
    head = s3.head_object(Bucket="compat", Key="piped")
    assert head["ContentLength"] == size
    assert head["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    assert s3.get_object(Bucket="compat", Key="piped")["Body"].read() == data
    # A header-signed chunked PUT whose signed hash does not match is refused, nothing stored.
    headers, _ = w.sign_v4("PUT", "/compat/piped-bad", payload_hash=hashlib.sha256(b"other").hexdigest(),
                           headers={"transfer-encoding": "chunked"}, host=f"127.0.0.1:{px.port}")
    sock = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    sock.sendall(b"PUT /compat/piped-bad HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
                 + b"\r\n" + b"5\r\nhello\r\n0\r\n\r\n")
    head = read_response_head(sock, 10)
    assert head.startswith(b"HTTP/1.1 400"), head
    sock.close()
    with pytest.raises(ClientError):
        s3.head_object(Bucket="compat", Key="piped-bad")


def test_sub_resources_of_a_plain_bucket(px, s3):
    s3.put_object(Bucket="compat", Key="v/a", Body=b"a")
    s3.put_object(Bucket="compat", Key="v/b", Body=b"bb")
    assert s3.get_bucket_versioning(Bucket="compat").get("Status") is None
    # Versions of an unversioned bucket: each object once, version "null", paged.
    pages = list(s3.get_paginator("list_object_versions").paginate(Bucket="compat", Prefix="v/", MaxKeys=1))
    versions = [v for p in pages for v in p.get("Versions", [])]
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in versions] == [
        ("v/a", "null", True, 1), ("v/b", "null", True, 2)]
    assert len(pages) == 2
    # GET and DELETE of version "null" are the object; any other version does not exist.
    assert s3.get_object(Bucket="compat", Key="v/a", VersionId="null")["Body"].read() == b"a"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="compat", Key="v/a", VersionId="3HL4kqtJlcpXroDTDmJ")
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    # ACLs: the owner with FULL_CONTROL; private accepted, anything public refused.
    for acl in (s3.get_bucket_acl(Bucket="compat"), s3.get_object_acl(Bucket="compat", Key="v/a")):
        assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
        assert acl["Owner"]["ID"]
    s3.put_bucket_acl(Bucket="compat", ACL="private")
    s3.put_object_acl(Bucket="compat", Key="v/a", ACL="private")
    s3.put_object(Bucket="compat", Key="v/c", Body=b"c", ACL="private")
    s3.put_object(Bucket="compat", Key="v/d", Body=b"d", ACL="bucket-owner-full-control")
    for call in (lambda: s3.put_object(Bucket="compat", Key="v/pub", Body=b"x", ACL="public-read"),
                 lambda: s3.put_object_acl(Bucket="compat", Key="v/a", ACL="public-read"),
                 lambda: s3.put_bucket_acl(Bucket="compat", ACL="public-read-write"),
                 lambda: s3.put_object(Bucket="compat", Key="v/pub", Body=b"x", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "NotImplemented"
        assert "private" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        s3.head_object(Bucket="compat", Key="v/pub")
    # Tags: none; changing them is a clear NotImplemented.
    assert s3.get_object_tagging(Bucket="compat", Key="v/a")["TagSet"] == []
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket="compat", Key="v/a", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert e.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(ClientError) as e:
        s3.get_object_acl(Bucket="compat", Key="v/absent")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    # boto3's resource API walks versions too.
    import boto3
    res = boto3.resource("s3", endpoint_url=px.endpoint, aws_access_key_id=ACCESS_KEY,
                         aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
    assert sorted(v.object_key for v in res.Bucket("compat").object_versions.filter(Prefix="v/")) == [
        "v/a", "v/b", "v/c", "v/d"]


def test_listing_details(px, s3):
    s3.put_object(Bucket="compat", Key="l/1", Body=b"1")
    for v2 in (True, False):
        r = w.v4(px.port, "GET", "/compat", ("list-type=2&" if v2 else "") + "max-keys=0&prefix=l%2F")
        assert r.status == 200, r
        assert r.xml().findtext(w.NS + "IsTruncated") == "false", r.body
    # The prefix comes back exactly as sent when no encoding is asked for.
    s3.put_object(Bucket="compat", Key="nl\n/x", Body=b"x")
    r = w.v4(px.port, "GET", "/compat", "list-type=2&prefix=nl%0A")
    assert r.xml().findtext(w.NS + "Prefix") == "nl\n", r.body


def test_create_bucket_answers_as_s3(px, s3):
    s3.create_bucket(Bucket="twice")
    s3.create_bucket(Bucket="twice")  # us-east-1: 200 for the owner
    workdir = tempfile.mkdtemp(prefix="s3proxy-compat-eu-")
    p = Proxy(workdir, config(workdir, region="eu-west-1"))
    try:
        eu = make_client(p.endpoint)
        eu.create_bucket(Bucket="twice", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        with pytest.raises(ClientError) as e:
            eu.create_bucket(Bucket="twice", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        assert e.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    finally:
        p.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_content_encoding_and_non_ascii_metadata_as_s3_returns_them(px, s3):
    s3.put_object(Bucket="compat", Key="enc", Body=b"x", ContentEncoding="deflate, gzip")
    assert s3.head_object(Bucket="compat", Key="enc")["ContentEncoding"] == "deflate, gzip"
    # Non-ASCII metadata sent as raw UTF-8 comes back RFC 2047-encoded, as from S3.
    value = "Grüße 東京"
    headers, _ = w.sign_v4("PUT", "/compat/meta", payload_hash=hashlib.sha256(b"m").hexdigest(),
                           headers={"x-amz-meta-greeting": value, "content-length": "1"},
                           host=f"127.0.0.1:{px.port}")
    sock = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    sock.sendall(b"PUT /compat/meta HTTP/1.1\r\n"
                 + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\nm")
    head = read_response_head(sock, 10)
    sock.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    got = w.v4(px.port, "HEAD", "/compat/meta")
    import base64
    assert got.headers["x-amz-meta-greeting"] == "=?UTF-8?B?%s?=" % base64.b64encode(value.encode()).decode()
    # ASCII values, and values a client already encoded, come back as stored.
    encoded = "=?UTF-8?B?%s?=" % base64.b64encode(value.encode()).decode()
    s3.put_object(Bucket="compat", Key="meta2", Body=b"m", Metadata={"greeting": encoded, "plain": "a b"})
    assert s3.head_object(Bucket="compat", Key="meta2")["Metadata"] == {"greeting": encoded, "plain": "a b"}
