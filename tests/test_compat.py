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

pytestmark = pytest.mark.stacks("fs", "replicated", "s3only", "replicated-plain", "s3only-plain")
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


# ---- Issue #15 item 6 and the bugs found with it, on every stack of the module. They
# use `client` and `bkt` (one bucket per test), not the module's shared `s3` bucket.

MIB = 1024 * 1024


@pytest.fixture
def client(proxy):
    return make_client(proxy.endpoint)


_bkt_counter = [0]


@pytest.fixture
def bkt(client):
    _bkt_counter[0] += 1
    name = f"compat-{os.getpid()}-{_bkt_counter[0]}"
    client.create_bucket(Bucket=name)
    yield name
    for o in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=o["Key"])
    for u in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
    client.delete_bucket(Bucket=name)


def multipart(client, bucket, key, parts):
    up = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for n, data in enumerate(parts, 1):
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=data)["ETag"]
        done.append({"PartNumber": n, "ETag": etag})
    return client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                            MultipartUpload={"Parts": done})["ETag"]


def error_of(call):
    with pytest.raises(ClientError) as e:
        call()
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def test_get_and_head_part_number(client, bkt):
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB + 7), os.urandom(1234)]
    whole = b"".join(parts)
    etag = multipart(client, bkt, "mp", parts)
    start = 0
    for n, data in enumerate(parts, 1):
        end = start + len(data) - 1
        got = client.get_object(Bucket=bkt, Key="mp", PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {start}-{end}/{len(whole)}"
        assert got["PartsCount"] == 3 and got["ETag"] == etag
        assert got["ContentLength"] == len(data)
        assert got["Body"].read() == data
        head = client.head_object(Bucket=bkt, Key="mp", PartNumber=n)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert head["ContentLength"] == len(data) and head["PartsCount"] == 3
        assert head["ContentRange"] == f"bytes {start}-{end}/{len(whole)}"
        start = end + 1
    # Without partNumber, no parts count (as S3).
    assert "PartsCount" not in client.head_object(Bucket=bkt, Key="mp")
    assert error_of(lambda: client.get_object(Bucket=bkt, Key="mp", PartNumber=4)) == (416, "InvalidPartNumber")
    assert error_of(lambda: client.get_object(Bucket=bkt, Key="mp", PartNumber=1, Range="bytes=0-9")) == (
        400, "InvalidRequest")
    # An object not uploaded in parts is its own part 1, without a parts count.
    small = os.urandom(3000)
    client.put_object(Bucket=bkt, Key="one", Body=small)
    got = client.get_object(Bucket=bkt, Key="one", PartNumber=1)
    assert got["Body"].read() == small and "PartsCount" not in got
    assert got["ContentRange"] == f"bytes 0-2999/3000"
    assert error_of(lambda: client.get_object(Bucket=bkt, Key="one", PartNumber=2)) == (416, "InvalidPartNumber")
    assert error_of(lambda: client.head_object(Bucket=bkt, Key="one", PartNumber=2))[0] == 416
    # curl: the raw answer.
    url = client.generate_presigned_url("get_object", Params={"Bucket": bkt, "Key": "mp", "PartNumber": 3})
    out = subprocess.run(["curl", "-sS", "-D", "-", "-o", "-", url], capture_output=True, timeout=60)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206"), head
    assert b"\r\nx-amz-mp-parts-count: 3" in head.lower()
    assert body == parts[2]
    for bad in ("0", "10001", "x"):
        url = client.generate_presigned_url("get_object", Params={"Bucket": bkt, "Key": "one"})
        out = subprocess.run(["curl", "-sS", "-w", "%{http_code}", "-o", "/dev/null", url + f"&partNumber={bad}"],
                             capture_output=True, timeout=60)
        # partNumber is signed with the rest of the query: an added one breaks the signature.
        assert out.stdout in (b"400", b"403"), out.stdout


def checks_part_etags(proxy, concurrent=False):
    """Whether a completion naming a superseded upload of a part is refused. Not on the
    unencrypted fs+S3 stack: s3s-fs lists parts without ETags and completes whatever it
    holds, and at write quorum 1 its success is the answer. Nor, for uploads of one part
    that ran at the same time, on any unencrypted replicated stack: the backends' own part
    lists are the only record there, and two replicas may finish concurrent uploads in
    different orders, so the upload that is the last on one is superseded on the other; the
    replica that accepts the completion answers and repair brings the other to that object.
    The encrypting layer checks the part list itself, and moto and the fs backend check it
    alone (every S3 service does)."""
    if concurrent:
        return not proxy.stack.endswith("-plain")
    return proxy.stack != "replicated-plain"


def test_same_part_uploaded_twice(proxy, client, bkt):
    up = client.create_multipart_upload(Bucket=bkt, Key="twice")["UploadId"]
    first, second = os.urandom(1000), os.urandom(1000)
    e1 = client.upload_part(Bucket=bkt, Key="twice", UploadId=up, PartNumber=1, Body=first)["ETag"]
    e2 = client.upload_part(Bucket=bkt, Key="twice", UploadId=up, PartNumber=1, Body=second)["ETag"]
    assert [p["ETag"] for p in client.list_parts(Bucket=bkt, Key="twice", UploadId=up)["Parts"]] == [e2]
    complete = lambda e: client.complete_multipart_upload(  # noqa: E731
        Bucket=bkt, Key="twice", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
    if checks_part_etags(proxy):
        assert error_of(lambda: complete(e1)) == (400, "InvalidPart")
    complete(e2)
    assert client.get_object(Bucket=bkt, Key="twice")["Body"].read() == second


def test_same_part_uploaded_concurrently(proxy, client, bkt):
    import concurrent.futures

    up = client.create_multipart_upload(Bucket=bkt, Key="race")["UploadId"]
    bodies = [os.urandom(2 * MIB) for _ in range(4)]
    by_etag = {'"%s"' % hashlib.md5(b).hexdigest(): b for b in bodies}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        etags = list(pool.map(lambda b: make_client(client.meta.endpoint_url).upload_part(
            Bucket=bkt, Key="race", UploadId=up, PartNumber=1, Body=b)["ETag"], bodies))
    assert sorted(etags) == sorted(by_etag)
    listed = client.list_parts(Bucket=bkt, Key="race", UploadId=up)["Parts"]
    assert len(listed) == 1 and listed[0]["ETag"] in by_etag
    last = listed[0]["ETag"]
    for other in set(by_etag) - {last} if checks_part_etags(proxy, concurrent=True) else ():
        assert error_of(lambda: client.complete_multipart_upload(
            Bucket=bkt, Key="race", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": other}]})) == (400, "InvalidPart")
    client.complete_multipart_upload(Bucket=bkt, Key="race", UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": last}]})
    got = client.get_object(Bucket=bkt, Key="race")
    assert got["Body"].read() == by_etag[last]


def test_upload_part_copy_ranges(client, bkt):
    client.put_object(Bucket=bkt, Key="src", Body=b"0123456789")
    up = client.create_multipart_upload(Bucket=bkt, Key="dst")["UploadId"]
    copy = lambda r: client.upload_part_copy(  # noqa: E731
        Bucket=bkt, Key="dst", UploadId=up, PartNumber=1, CopySource={"Bucket": bkt, "Key": "src"},
        CopySourceRange=r)
    # What AWS answers: a range past the source's end is 400 InvalidArgument ("Range specified
    # is not valid for source object of size: N"), not a GET's 416; so is a malformed one.
    for bad in ("bytes=0-10", "bytes=10-12", "bytes=5-", "bytes=-3", "0-3", "bytes=a-b", "bytes=4-2"):
        assert error_of(lambda: copy(bad)) == (400, "InvalidArgument"), bad
    etag = copy("bytes=2-5")["CopyPartResult"]["ETag"]
    assert etag == '"%s"' % hashlib.md5(b"2345").hexdigest()
    client.complete_multipart_upload(Bucket=bkt, Key="dst", UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert client.get_object(Bucket=bkt, Key="dst")["Body"].read() == b"2345"


def test_copy_answers_the_new_objects_etag(client, bkt):
    multipart(client, bkt, "mp", [os.urandom(5 * MIB), os.urandom(100)])
    client.put_object(Bucket=bkt, Key="single", Body=b"single")
    for src in ("mp", "single"):
        for directive in ("COPY", "REPLACE"):
            dst = f"{src}-{directive}"
            r = client.copy_object(Bucket=bkt, Key=dst, CopySource={"Bucket": bkt, "Key": src},
                                   MetadataDirective=directive)
            head = client.head_object(Bucket=bkt, Key=dst)
            assert r["CopyObjectResult"]["ETag"] == head["ETag"], (src, directive)
            listed = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bkt)["Contents"]}
            assert listed[dst] == head["ETag"]
            assert client.get_object(Bucket=bkt, Key=dst)["Body"].read() == \
                client.get_object(Bucket=bkt, Key=src)["Body"].read()


def test_presigned_put_applies_signed_metadata_parameters(proxy, client, bkt):
    def curl_put(url, *headers, body=b"hello"):
        args = ["curl", "-sS", "-w", "%{http_code}", "-o", "/dev/null", "-T", "-"]
        for h in headers:
            args += ["-H", h]
        return subprocess.run(args + [url], input=body, capture_output=True, timeout=60).stdout

    # boto3 signs the metadata as headers the uploader must send.
    signer = make_client(proxy.endpoint, signature_version="s3v4")
    url = signer.generate_presigned_url("put_object", Params={
        "Bucket": bkt, "Key": "boto", "Metadata": {"color": "dark blue"}})
    assert curl_put(url, "x-amz-meta-color: dark blue") == b"200"
    assert client.head_object(Bucket=bkt, Key="boto")["Metadata"] == {"color": "dark blue"}
    # Other presigners put them in the query, signed with it: S3 applies them as headers.
    host = f"127.0.0.1:{proxy.port}"
    meta = "x-amz-meta-color=dark%20blue&x-amz-meta-n=1&x-amz-meta-utf=%C3%A9t%C3%A9"
    url = f"{proxy.endpoint}/{bkt}/meta?" + w.presign_v4("PUT", f"/{bkt}/meta", meta, host=host)
    assert curl_put(url) == b"200"
    head = client.head_object(Bucket=bkt, Key="meta")
    # (A non-ASCII value comes back as S3 sends it: an RFC 2047 encoded word.)
    assert head["Metadata"] == {"color": "dark blue", "n": "1", "utf": "=?UTF-8?B?w6l0w6k=?="}
    assert client.get_object(Bucket=bkt, Key="meta")["Body"].read() == b"hello"
    # An x-amz-* header the URL did not sign is still refused, and nothing is stored.
    url2 = f"{proxy.endpoint}/{bkt}/meta2?" + w.presign_v4("PUT", f"/{bkt}/meta2", meta, host=host)
    assert curl_put(url2, "x-amz-meta-evil: 1") == b"403"
    # So is a parameter added to the URL: the whole query is signed.
    assert curl_put(url2 + "&x-amz-meta-evil=1") == b"403"
    assert error_of(lambda: client.head_object(Bucket=bkt, Key="meta2"))[0] == 404
    # The query's value is the one applied.
    q = w.presign_v4("PUT", f"/{bkt}/meta3", "x-amz-meta-color=query", host=host)
    assert curl_put(f"{proxy.endpoint}/{bkt}/meta3?{q}") == b"200"
    assert client.head_object(Bucket=bkt, Key="meta3")["Metadata"] == {"color": "query"}
    # A parameter given twice, both copies signed, is refused as a repeated header is:
    # nothing is stored under either value.
    q = w.presign_v4("PUT", f"/{bkt}/meta4", "x-amz-meta-color=a&x-amz-meta-color=b", host=host)
    assert curl_put(f"{proxy.endpoint}/{bkt}/meta4?{q}") == b"400"
    assert error_of(lambda: client.head_object(Bucket=bkt, Key="meta4"))[0] == 404


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_w_all_copy_of_a_multipart_object_over_mixed_s3_backends(encrypted):
    """moto and s3s-fs give the same multipart bytes different ETags: each replica's copy
    must be held to its own (it was held to the first's, and W=all answered 503)."""
    from conftest import replicated_config, start_moto, start_s3s_fs

    workdir = tempfile.mkdtemp(prefix="s3proxy-compat-wall-")
    servers = [start_moto(workdir), start_s3s_fs(workdir)]
    try:
        cfg = replicated_config(workdir, *servers).replace("write_quorum = 1", 'write_quorum = "all"')
        if not encrypted:
            cfg = cfg.replace("[replication]", "[encryption]\nenabled = false\n[replication]")
        p = Proxy(workdir, cfg)
        try:
            c = make_client(p.endpoint)
            c.create_bucket(Bucket="wall")
            parts = [os.urandom(5 * MIB), os.urandom(4321)]
            multipart(c, "wall", "mp", parts)
            for directive in ("COPY", "REPLACE"):
                r = c.copy_object(Bucket="wall", Key=f"copy-{directive}", CopySource={"Bucket": "wall", "Key": "mp"},
                                  MetadataDirective=directive)
                assert r["CopyObjectResult"]["ETag"] == c.head_object(Bucket="wall", Key=f"copy-{directive}")["ETag"]
                assert c.get_object(Bucket="wall", Key=f"copy-{directive}")["Body"].read() == b"".join(parts)
            got = c.get_object(Bucket="wall", Key="copy-COPY", PartNumber=2)
            assert got["Body"].read() == parts[1] and got["PartsCount"] == 2
        finally:
            p.stop()
            assert "panicked" not in p.log()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
