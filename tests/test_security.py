"""Attacks on s3proxy's front door, sent exactly as an attacker would (raw HTTP with an
independent signer, botocore's own signer, curl), each asserting that nothing was read or
changed: presigned URLs stretched into copies, unsigned headers slipped into signed
requests, bodies swapped under a signed hash, dates and queries read two ways, and one
credential reaching another's buckets."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import boto3
import botocore.config
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import s3wire as w
from conftest import ACCESS_KEY, SECRET_KEY, Proxy, aws_env, make_client

# Two tenants with grants, beside the unrestricted ACCESS_KEY.
ALICE, ALICE_SECRET = "AKALICE", "alice-secret-key"
BOB, BOB_SECRET = "AKBOB", "bob-secret-key"
READER, READER_SECRET = "AKREADER", "reader-secret-key"
SECRET_DATA = b"the launch codes are 0000"


@pytest.fixture(scope="module")
def px():
    workdir = tempfile.mkdtemp(prefix="s3proxy-security-")
    p = Proxy(workdir, f"""
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[[credentials]]
access_key = "{ALICE}"
secret_key = "{ALICE_SECRET}"
buckets = {{ "alice-*" = "owner", "shared" = "write" }}
[[credentials]]
access_key = "{BOB}"
secret_key = "{BOB_SECRET}"
buckets = {{ "bob-*" = "owner", "shared" = "read" }}
[[credentials]]
access_key = "{READER}"
secret_key = "{READER_SECRET}"
buckets = {{ "alice-data" = "read" }}
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'data')}"
""")
    p.workdir = workdir
    yield p
    alive = p.proc.poll() is None
    p.stop()
    log = p.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert alive and "panicked" not in log, log[-3000:]
    # No secret and no presigned signature ever reaches the log.
    for secret in (SECRET_KEY, ALICE_SECRET, BOB_SECRET, READER_SECRET):
        assert secret not in log
    assert "X-Amz-Signature=" not in log and "Signature=" not in log
    server_errors = [l for l in log.splitlines() if re.search(r"-> 5(0[02-9]|[1-9]\d) ", l)]
    assert not server_errors, "\n".join(server_errors)


@pytest.fixture(scope="module")
def s3(px):
    return make_client(px.endpoint)


@pytest.fixture(scope="module")
def vault(s3):
    """A bucket holding a secret object, and one the attacker may write to."""
    s3.create_bucket(Bucket="vault")
    s3.put_object(Bucket="vault", Key="secret.txt", Body=SECRET_DATA)
    s3.put_object(Bucket="vault", Key="doc.txt", Body=b"original", Metadata={"owner": "me"})
    s3.create_bucket(Bucket="uploads")
    return "vault"


def host(px):
    return f"127.0.0.1:{px.port}"


def assert_untouched(s3, bucket, key, body, metadata=None):
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    if metadata is not None:
        assert got["Metadata"] == metadata


def assert_absent(s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchKey")


# ------------------------------------------------------------- 1. presigned PUT into a copy


def test_presigned_put_cannot_be_turned_into_a_copy(px, s3, vault):
    q = w.presign_v4("PUT", "/uploads/innocent.txt", host=host(px))
    for extra in ({"x-amz-copy-source": "/vault/secret.txt"},
                  {"x-amz-copy-source": "vault/secret.txt", "x-amz-metadata-directive": "REPLACE"}):
        r = w.send(px.port, "PUT", "/uploads/innocent.txt", q, headers=extra)
        w.assert_error(r, 403, "AccessDenied")
        assert SECRET_DATA not in r.body
        assert_absent(s3, "uploads", "innocent.txt")
    # The same through botocore's own presigner and curl.
    signer = make_client(px.endpoint, signature_version="s3v4")
    url = signer.generate_presigned_url("put_object", Params={"Bucket": "uploads", "Key": "via-curl.txt"})
    out = subprocess.run(["curl", "-s", "-X", "PUT", "-H", "x-amz-copy-source: /vault/secret.txt",
                          "--data-binary", "", "-w", "\n%{http_code}", url], capture_output=True, timeout=30)
    assert out.stdout.rstrip().endswith(b"403"), out.stdout
    assert_absent(s3, "uploads", "via-curl.txt")
    # An UploadPartCopy through a presigned UploadPart link: refused the same way.
    up = s3.create_multipart_upload(Bucket="uploads", Key="mp.txt")["UploadId"]
    q = w.presign_v4("PUT", "/uploads/mp.txt", f"partNumber=1&uploadId={w.quote(up, '')}", host=host(px))
    r = w.send(px.port, "PUT", "/uploads/mp.txt", q, headers={"x-amz-copy-source": "/vault/secret.txt"})
    w.assert_error(r, 403, "AccessDenied")
    assert s3.list_parts(Bucket="uploads", Key="mp.txt", UploadId=up).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket="uploads", Key="mp.txt", UploadId=up)
    # The link still works for what it was made for.
    q = w.presign_v4("PUT", "/uploads/innocent.txt", host=host(px))
    assert w.send(px.port, "PUT", "/uploads/innocent.txt", q, body=b"mine").status == 200
    assert_untouched(s3, "uploads", "innocent.txt", b"mine")


# ------------------------------------------------- 2. unsigned x-amz-* on header-signed requests


def test_unsigned_amz_headers_are_refused(px, s3, vault):
    # A correctly signed PUT, then headers added after signing.
    for extra in ({"x-amz-copy-source": "/vault/secret.txt"},
                  {"x-amz-meta-owner": "attacker"},
                  {"x-amz-metadata-directive": "REPLACE"},
                  {"x-amz-acl": "public-read"}):
        h, _ = w.sign_v4("PUT", "/vault/doc.txt", payload_hash=hashlib.sha256(b"replaced").hexdigest(), host=host(px))
        h.update(extra)
        r = w.send(px.port, "PUT", "/vault/doc.txt", body=b"replaced", headers=h)
        w.assert_error(r, 403, "AccessDenied")
        assert "not signed" in r.xml().findtext("Message")
    assert_untouched(s3, "vault", "doc.txt", b"original", {"owner": "me"})
    # A signed copy whose metadata directive was added afterwards.
    h, _ = w.sign_v4("PUT", "/uploads/copy.txt", headers={"x-amz-copy-source": "/vault/doc.txt"}, host=host(px))
    h["x-amz-metadata-directive"] = "REPLACE"
    h["x-amz-meta-owner"] = "attacker"
    w.assert_error(w.send(px.port, "PUT", "/uploads/copy.txt", headers=h), 403, "AccessDenied")
    assert_absent(s3, "uploads", "copy.txt")
    # A second copy-source header beside the signed one is refused.
    h, _ = w.sign_v4("PUT", "/uploads/copy2.txt", headers={"x-amz-copy-source": "/vault/doc.txt"}, host=host(px))
    conn_headers = list(h.items()) + [("x-amz-copy-source", "/vault/secret.txt")]
    r = w.send_pairs(px.port, "PUT", "/uploads/copy2.txt", conn_headers)
    assert r.status in (400, 403), r
    assert_absent(s3, "uploads", "copy2.txt")
    # A signed "a,b" split into two headers signs the same (values join with a comma):
    # refused, over SigV4 and SigV2 alike, rather than copying "a".
    s3.put_object(Bucket="vault", Key="q,b", Body=b"comma")
    h, _ = w.sign_v4("PUT", "/uploads/split.txt", headers={"x-amz-copy-source": "/vault/secret.txt,b"}, host=host(px))
    pairs = [(k, v) for k, v in h.items() if k != "x-amz-copy-source"]
    pairs += [("x-amz-copy-source", "/vault/secret.txt"), ("x-amz-copy-source", "b")]
    w.assert_error(w.send_pairs(px.port, "PUT", "/uploads/split.txt", pairs), 400, "InvalidArgument")
    h = w.sign_v2("PUT", "/uploads/split.txt", headers={"x-amz-copy-source": "/vault/secret.txt,b"})
    h["host"] = host(px)
    pairs = [(k, v) for k, v in h.items() if k != "x-amz-copy-source"]
    pairs += [("x-amz-copy-source", "/vault/secret.txt"), ("x-amz-copy-source", "b")]
    w.assert_error(w.send_pairs(px.port, "PUT", "/uploads/split.txt", pairs), 400, "InvalidArgument")
    assert_absent(s3, "uploads", "split.txt")
    # Whitespace the signature collapses cannot name another key: "q 1" signed, "q\t1" sent.
    s3.put_object(Bucket="vault", Key="q\t1", Body=SECRET_DATA)
    s3.put_object(Bucket="vault", Key="q 1", Body=b"public")
    h, _ = w.sign_v4("PUT", "/uploads/ws.txt", headers={"x-amz-copy-source": "/vault/q 1"}, host=host(px))
    for variant in ("/vault/q\t1", "/vault/q  1"):
        h2 = dict(h, **{"x-amz-copy-source": variant})
        w.assert_error(w.send(px.port, "PUT", "/uploads/ws.txt", headers=h2), 400, "InvalidArgument")
    assert_absent(s3, "uploads", "ws.txt")
    # Signed x-amz-* headers are of course accepted.
    h, _ = w.sign_v4("PUT", "/uploads/signed-meta.txt", headers={"x-amz-meta-owner": "me"},
                     payload_hash=hashlib.sha256(b"x").hexdigest(), host=host(px))
    assert w.send(px.port, "PUT", "/uploads/signed-meta.txt", body=b"x", headers=h).status == 200
    # SigV2 signs every x-amz-* header by construction: one added later breaks it.
    h = w.sign_v2("PUT", "/vault/doc.txt")
    h["host"] = host(px)
    h["x-amz-meta-owner"] = "attacker"
    w.assert_error(w.send(px.port, "PUT", "/vault/doc.txt", body=b"v2", headers=h), 403, "SignatureDoesNotMatch")
    # Presigned GET with an unsigned x-amz-* header.
    q = w.presign_v4("GET", "/vault/doc.txt", host=host(px))
    w.assert_error(w.send(px.port, "GET", "/vault/doc.txt", q, headers={"x-amz-meta-x": "1"}), 403, "AccessDenied")
    assert_untouched(s3, "vault", "doc.txt", b"original", {"owner": "me"})


# ----------------------------------------------------- 3. a body swapped under a signed hash


def test_signed_payload_hash_cannot_be_bypassed_with_aws_chunked(px, s3, vault):
    real = b"original"
    evil = b"attacker's bytes"
    framed = f"{len(evil):x}\r\n".encode() + evil + b"\r\n0\r\n\r\n"
    # Headers added to a captured request (unsigned): refused outright.
    h, _ = w.sign_v4("PUT", "/vault/doc.txt", payload_hash=hashlib.sha256(real).hexdigest(), host=host(px))
    h.update({"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(evil))})
    r = w.send(px.port, "PUT", "/vault/doc.txt", body=framed, headers=h)
    assert r.status in (400, 403), r
    # Even signed, the framing is not decoded for a non-streaming payload: the signed hash
    # is checked over the bytes that arrive, and they do not match.
    h, _ = w.sign_v4("PUT", "/vault/doc.txt", headers={"content-encoding": "aws-chunked",
                                                       "x-amz-decoded-content-length": str(len(evil))},
                     payload_hash=hashlib.sha256(real).hexdigest(), host=host(px))
    r = w.send(px.port, "PUT", "/vault/doc.txt", body=framed, headers=h)
    w.assert_error(r, 400, "XAmzContentSHA256Mismatch")
    assert_untouched(s3, "vault", "doc.txt", b"original", {"owner": "me"})
    # SigV2 (no payload signature) with aws-chunked framing stores the bytes as sent.
    h = w.sign_v2("PUT", "/uploads/v2-chunked", headers={"content-encoding": "aws-chunked"})
    h["host"] = host(px)
    assert w.send(px.port, "PUT", "/uploads/v2-chunked", body=framed, headers=h).status == 200
    assert s3.get_object(Bucket="uploads", Key="v2-chunked")["Body"].read() == framed


# ----------------------------------------------------------------- 4. expired presigned PUT


def test_expired_presigned_requests_get_403(px, s3, vault):
    for method in ("PUT", "GET", "DELETE"):
        q = w.presign_v4(method, "/vault/doc.txt", expires=60, amz_date=w.amz_now(-3600), host=host(px))
        r = w.send(px.port, method, "/vault/doc.txt", q, body=b"overwritten" if method == "PUT" else b"")
        w.assert_error(r, 403, "AccessDenied")
        assert "expired" in r.xml().findtext("Message")
    # botocore's presigner with a one-second lifetime, used late, through curl.
    for version in ("s3v4", "s3"):
        signer = make_client(px.endpoint, signature_version=version)
        url = signer.generate_presigned_url("put_object", Params={"Bucket": "vault", "Key": "doc.txt"}, ExpiresIn=1)
        time.sleep(2.1)
        out = subprocess.run(["curl", "-s", "-X", "PUT", "-H", "Content-Type:", "--data-binary", "overwritten",
                              "-w", "\n%{http_code}", url], capture_output=True, timeout=30)
        assert out.stdout.rstrip().endswith(b"403") and b"AccessDenied" in out.stdout, (version, out.stdout)
    assert_untouched(s3, "vault", "doc.txt", b"original", {"owner": "me"})


# ------------------------------------------------------------------ 5. dates, two ways


def test_dates_read_as_s3_reads_them(px, s3, vault):
    # SigV2 with x-amz-date: its time is the one checked; skew is RequestTimeTooSkewed.
    old = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 3600))
    now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    w.assert_error(w.v2(px.port, "GET", "/vault/doc.txt", headers={"x-amz-date": old}), 403, "RequestTimeTooSkewed")
    # A fresh Date does not rescue a stale x-amz-date.
    h = w.sign_v2("GET", "/vault/doc.txt", headers={"x-amz-date": old})
    h.update({"host": host(px), "date": now})
    w.assert_error(w.send(px.port, "GET", "/vault/doc.txt", headers=h), 403, "RequestTimeTooSkewed")
    assert w.v2(px.port, "GET", "/vault/doc.txt", headers={"x-amz-date": now}).body == b"original"
    # SigV4 with both Date and X-Amz-Date, signed or not, or an empty Date: accepted.
    assert w.v4(px.port, "GET", "/vault/doc.txt", headers={"date": now}).body == b"original"
    h, _ = w.sign_v4("GET", "/vault/doc.txt", host=host(px))
    h["date"] = now
    assert w.send(px.port, "GET", "/vault/doc.txt", headers=h).body == b"original"
    h, _ = w.sign_v4("GET", "/vault/doc.txt", host=host(px))
    h["date"] = ""
    assert w.send(px.port, "GET", "/vault/doc.txt", headers=h).body == b"original"
    # No usable date at all: AccessDenied, as S3.
    h, _ = w.sign_v4("GET", "/vault/doc.txt", host=host(px))
    del h["x-amz-date"]
    w.assert_error(w.send(px.port, "GET", "/vault/doc.txt", headers=h), 403, "AccessDenied")


# ------------------------------------------------------------------ 6. the query, one way


def test_query_is_parsed_and_signed_one_way(px, s3, vault):
    s3.put_object(Bucket="uploads", Key="a b/1", Body=b"1")
    s3.put_object(Bucket="uploads", Key="a+b/2", Body=b"2")
    # A raw '+' is a space to the signature and to the listing alike.
    h, _ = w.sign_v4("GET", "/uploads", "list-type=2&prefix=a b", host=host(px))
    r = w.send(px.port, "GET", "/uploads", "list-type=2&prefix=a+b", headers=h)
    assert r.status == 200, r
    keys = [k.text for k in r.xml().iter(w.NS + "Key")]
    assert keys == ["a b/1"], keys
    # '%2B' is a plus.
    r = w.v4(px.port, "GET", "/uploads", "list-type=2&prefix=a%2Bb")
    assert [k.text for k in r.xml().iter(w.NS + "Key")] == ["a+b/2"]
    # Signed as a literal plus but sent raw: the two readings differ, so it is refused.
    h, _ = w.sign_v4("GET", "/uploads", "list-type=2&prefix=a%2Bb", host=host(px))
    w.assert_error(w.send(px.port, "GET", "/uploads", "list-type=2&prefix=a+b", headers=h), 403, "SignatureDoesNotMatch")
    # X-Amz-Signature outside a presigned URL is an ordinary, signed parameter: adding one
    # to a header-signed request breaks its signature.
    h, _ = w.sign_v4("GET", "/vault/doc.txt", host=host(px))
    w.assert_error(w.send(px.port, "GET", "/vault/doc.txt", "X-Amz-Signature=abc", headers=h), 403, "SignatureDoesNotMatch")
    # A presigned URL repeating an authentication parameter is refused.
    q = w.presign_v4("GET", "/vault/doc.txt", host=host(px))
    w.assert_error(w.send(px.port, "GET", "/vault/doc.txt", q + "&X-Amz-Credential=x"), 400, "AuthorizationQueryParametersError")


# ------------------------------------------------------------------ more ways in


def test_presigned_urls_are_bound_to_method_key_and_bucket(px, s3, vault):
    q = w.presign_v4("GET", "/uploads/innocent-get.txt", host=host(px))
    for method, path in (("GET", "/vault/secret.txt"), ("PUT", "/uploads/innocent-get.txt"),
                         ("DELETE", "/uploads/innocent-get.txt"), ("GET", "/vault/../vault/secret.txt")):
        r = w.send(px.port, method, path, q)
        assert r.status == 403, (method, path, r)
        assert SECRET_DATA not in r.body
    # Query parameters added to a presigned URL are outside the signature: refused.
    q = w.presign_v4("GET", "/vault", host=host(px))
    w.assert_error(w.send(px.port, "GET", "/vault", q + "&prefix=secret"), 403, "SignatureDoesNotMatch")
    # A SigV2 presigned GET cannot be replayed as a PUT.
    q = w.presign_v2("GET", "/vault/doc.txt", int(time.time()) + 60)
    w.assert_error(w.send(px.port, "PUT", "/vault/doc.txt", q, body=b"x"), 403, "SignatureDoesNotMatch")
    # A SigV2 Expires too large for the clock never panics.
    q = w.presign_v2("GET", "/vault/doc.txt", 2 ** 64 - 1)
    assert w.send(px.port, "GET", "/vault/doc.txt", q).status in (200, 403)
    assert_untouched(s3, "vault", "doc.txt", b"original", {"owner": "me"})


def test_odd_bytes_in_auth_inputs_get_clear_errors(px, vault):
    good, _ = w.sign_v4("GET", "/vault/doc.txt", host=host(px))
    cases = [
        {"authorization": good["authorization"] + ",Signature=" + "0" * 64},
        {"authorization": good["authorization"].replace("Credential=", "Credential= ")},
        {"authorization": "AWS4-HMAC-SHA256 " + "Credential=" + "A" * 5000},
        {"authorization": "AWS " + ":" * 10},
        {"authorization": "AWS4-HMAC-SHA256 Credential=AKEXAMPLE/20260101/us-east-1/s3/aws4_request,SignedHeaders=,Signature="},
        {"x-amz-content-sha256": "STREAMING-NONSENSE"},
        {"x-amz-date": "99999999T999999Z"},
    ]
    for change in cases:
        r = w.send(px.port, "GET", "/vault/doc.txt", headers={**good, **change})
        assert 400 <= r.status < 500, (change, r)
        assert b"original" not in r.body
    for query in ("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Credential=%ff%fe", "AWSAccessKeyId=AKEXAMPLE&Signature=x&Expires=-1",
                  "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKEXAMPLE/20260101/us-east-1/s3/aws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=99999999999999999999999&X-Amz-SignedHeaders=host&X-Amz-Signature=0"):
        r = w.send(px.port, "GET", "/vault/doc.txt", query)
        assert 400 <= r.status < 500, (query, r)
        assert b"original" not in r.body


# ------------------------------------------------------------------ per-key bucket grants


def tenant(px, access, secret):
    return make_client(px.endpoint, access, secret)


def test_two_tenants_see_only_their_buckets(px, s3, vault):
    alice, bob = tenant(px, ALICE, ALICE_SECRET), tenant(px, BOB, BOB_SECRET)
    alice.create_bucket(Bucket="alice-data")
    alice.put_object(Bucket="alice-data", Key="diary.txt", Body=b"dear diary")
    bob.create_bucket(Bucket="bob-data")
    s3.create_bucket(Bucket="shared")
    alice.put_object(Bucket="shared", Key="note.txt", Body=b"for bob")
    # ListBuckets shows each key only its own buckets.
    assert sorted(b["Name"] for b in alice.list_buckets()["Buckets"]) == ["alice-data", "shared"]
    assert sorted(b["Name"] for b in bob.list_buckets()["Buckets"]) == ["bob-data", "shared"]
    assert {"vault", "alice-data", "bob-data"} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}

    def denied(call, code="AccessDenied"):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == code, e.value.response
        return e.value

    # Bob reaches nothing of Alice's, nor the unrestricted key's vault.
    denied(lambda: bob.get_object(Bucket="alice-data", Key="diary.txt"))
    denied(lambda: bob.list_objects_v2(Bucket="alice-data"))
    denied(lambda: bob.put_object(Bucket="alice-data", Key="x", Body=b"x"))
    denied(lambda: bob.delete_object(Bucket="alice-data", Key="diary.txt"))
    denied(lambda: bob.delete_objects(Bucket="alice-data", Delete={"Objects": [{"Key": "diary.txt"}]}))
    denied(lambda: bob.delete_bucket(Bucket="alice-data"))
    denied(lambda: bob.get_object(Bucket="vault", Key="secret.txt"))
    denied(lambda: bob.list_multipart_uploads(Bucket="alice-data"))
    denied(lambda: bob.create_multipart_upload(Bucket="alice-data", Key="m"))
    # Creating a bucket that exists and is not yours: 409 BucketAlreadyExists; a free
    # name outside your grants: 403.
    denied(lambda: bob.create_bucket(Bucket="alice-data"), "BucketAlreadyExists")
    denied(lambda: bob.create_bucket(Bucket="vault"), "BucketAlreadyExists")
    denied(lambda: bob.create_bucket(Bucket="carol-data"))
    # Copying from a bucket you cannot read is 403, into one you own or not.
    denied(lambda: bob.copy_object(Bucket="bob-data", Key="stolen", CopySource={"Bucket": "alice-data", "Key": "diary.txt"}))
    denied(lambda: bob.copy_object(Bucket="bob-data", Key="stolen", CopySource={"Bucket": "vault", "Key": "secret.txt"}))
    up = bob.create_multipart_upload(Bucket="bob-data", Key="big")["UploadId"]
    denied(lambda: bob.upload_part_copy(Bucket="bob-data", Key="big", UploadId=up, PartNumber=1,
                                        CopySource={"Bucket": "alice-data", "Key": "diary.txt"}))
    bob.abort_multipart_upload(Bucket="bob-data", Key="big", UploadId=up)
    assert bob.list_objects_v2(Bucket="bob-data").get("KeyCount") == 0
    # "shared": Alice writes, Bob only reads.
    assert bob.get_object(Bucket="shared", Key="note.txt")["Body"].read() == b"for bob"
    denied(lambda: bob.put_object(Bucket="shared", Key="x", Body=b"x"))
    denied(lambda: bob.delete_object(Bucket="shared", Key="note.txt"))
    denied(lambda: alice.delete_bucket(Bucket="shared"))
    # Copying into your own bucket from one you may read works.
    bob.copy_object(Bucket="bob-data", Key="copied", CopySource={"Bucket": "shared", "Key": "note.txt"})
    assert bob.get_object(Bucket="bob-data", Key="copied")["Body"].read() == b"for bob"
    # Nothing of Alice's changed.
    assert alice.get_object(Bucket="alice-data", Key="diary.txt")["Body"].read() == b"dear diary"
    # A read-only key reads, and writes nothing.
    reader = tenant(px, READER, READER_SECRET)
    assert reader.get_object(Bucket="alice-data", Key="diary.txt")["Body"].read() == b"dear diary"
    assert [b["Name"] for b in reader.list_buckets()["Buckets"]] == ["alice-data"]
    denied(lambda: reader.put_object(Bucket="alice-data", Key="diary.txt", Body=b"overwritten"))
    denied(lambda: reader.delete_object(Bucket="alice-data", Key="diary.txt"))
    assert alice.get_object(Bucket="alice-data", Key="diary.txt")["Body"].read() == b"dear diary"
    # Owners re-creating their own bucket get 200 in us-east-1, as on S3.
    alice.create_bucket(Bucket="alice-data")
    assert alice.get_object(Bucket="alice-data", Key="diary.txt")["Body"].read() == b"dear diary"


def test_grants_through_the_aws_cli(px, s3, vault):
    def cli(access, secret, *args):
        env = dict(aws_env(), AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
        return subprocess.run(["aws", "--endpoint-url", px.endpoint, *args], env=env, capture_output=True,
                              text=True, timeout=120)

    src = os.path.join(px.workdir, "cli-src")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "f.txt"), "w") as f:
        f.write("alice's file")
    assert cli(ALICE, ALICE_SECRET, "s3", "mb", "s3://alice-cli").returncode == 0
    r = cli(ALICE, ALICE_SECRET, "s3", "sync", src, "s3://alice-cli/")
    assert r.returncode == 0, r.stderr
    ls = cli(BOB, BOB_SECRET, "s3", "ls")
    assert ls.returncode == 0 and "alice-cli" not in ls.stdout, ls.stdout
    r = cli(BOB, BOB_SECRET, "s3", "cp", "s3://alice-cli/f.txt", "-")
    assert r.returncode != 0 and ("AccessDenied" in r.stderr or "403" in r.stderr), r.stderr
    r = cli(BOB, BOB_SECRET, "s3", "rm", "s3://alice-cli/f.txt")
    assert r.returncode != 0
    r = cli(BOB, BOB_SECRET, "s3", "rb", "s3://alice-cli", "--force")
    assert r.returncode != 0
    r = cli(ALICE, ALICE_SECRET, "s3", "cp", "s3://alice-cli/f.txt", "-")
    assert r.returncode == 0 and r.stdout == "alice's file"
