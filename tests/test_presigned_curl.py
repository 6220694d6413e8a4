"""Presigned URLs made by boto3 (SigV4 and SigV2, path-style and virtual-hosted), fetched
with curl: what a browser, a download script or a CI job does with a shared link."""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import boto3
import botocore.config
import pytest

from conftest import ACCESS_KEY, SECRET_KEY, Proxy

DOMAIN = "s3.test"
BUCKET = "presigned"


@pytest.fixture(scope="module")
def px():
    workdir = tempfile.mkdtemp(prefix="s3proxy-presign-")
    p = Proxy(workdir, f"""
virtual_host_domains = ["{DOMAIN}"]
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'data')}"
""")
    yield p
    alive = p.proc.poll() is None
    p.stop()
    log = p.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert alive and "panicked" not in log, log[-3000:]
    # 501 NotImplemented is deliberate (s3cmd info asks for ACLs, policies...); any other
    # 5xx is a bug.
    server_errors = [l for l in log.splitlines() if re.search(r"-> 5(0[02-9]|[1-9]\d) ", l)]
    assert not server_errors, "\n".join(server_errors)


def client(endpoint, signature_version="s3v4", style="path"):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name="us-east-1",
                        config=botocore.config.Config(signature_version=signature_version, s3={"addressing_style": style},
                                                      retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def s3(px):
    c = client(px.endpoint)
    c.create_bucket(Bucket=BUCKET)
    c.put_object(Bucket=BUCKET, Key="file.txt", Body=b"0123456789abcdef", ContentType="text/plain")
    c.put_object(Bucket=BUCKET, Key="dir/ün i+code %.txt", Body=b"unicode key")
    return c


def curl(*args, resolve=None):
    """Run curl; returns (status, headers dict, body)."""
    extra = ["--resolve", resolve] if resolve else []
    r = subprocess.run(["curl", "-sS", "-g", "-D", "-", "-o", "/dev/stdout", *extra, *args], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, headers, body


def error_code(body):
    import xml.etree.ElementTree as ET
    return ET.fromstring(body).findtext("Code")


@pytest.mark.parametrize("sig", ["s3v4", "s3"])
def test_get_head_range_and_overrides(px, s3, sig):
    c = client(px.endpoint, sig)
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}, ExpiresIn=300)
    assert ("X-Amz-Signature=" in url) == (sig == "s3v4") and ("AWSAccessKeyId=" in url) == (sig == "s3")
    status, h, body = curl(url)
    assert status == 200 and body == b"0123456789abcdef"
    assert h["etag"] == '"%s"' % hashlib.md5(b"0123456789abcdef").hexdigest()
    assert h["content-type"] == "text/plain" and h["content-length"] == "16" and h["accept-ranges"] == "bytes"
    status, h, body = curl("-r", "4-7", url)
    assert status == 206 and body == b"4567" and h["content-range"] == "bytes 4-7/16"
    status, h, body = curl("-r", "100-", url)
    assert status == 416 and error_code(body) == "InvalidRange"
    status, h, body = curl("-H", 'If-None-Match: "%s"' % hashlib.md5(b"0123456789abcdef").hexdigest(), url)
    assert status == 304 and body == b""
    # Response overrides are part of the signed URL.
    url = c.generate_presigned_url("get_object", Params={
        "Bucket": BUCKET, "Key": "file.txt", "ResponseContentDisposition": 'attachment; filename="report.csv"',
        "ResponseContentType": "text/csv", "ResponseCacheControl": "no-store"}, ExpiresIn=300)
    status, h, body = curl(url)
    assert status == 200 and h["content-disposition"] == 'attachment; filename="report.csv"'
    assert h["content-type"] == "text/csv" and h["cache-control"] == "no-store"
    url = c.generate_presigned_url("head_object", Params={"Bucket": BUCKET, "Key": "file.txt"}, ExpiresIn=300)
    status, h, body = curl("-I", url)
    assert status == 200 and h["content-length"] == "16" and h["etag"]  # curl -I: headers only
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "dir/ün i+code %.txt"}, ExpiresIn=300)
    assert curl(url)[2] == b"unicode key"
    url = c.generate_presigned_url("list_objects_v2", Params={"Bucket": BUCKET, "Prefix": "dir/"}, ExpiresIn=300)
    status, _, body = curl(url)
    assert status == 200
    import xml.etree.ElementTree as ET
    import urllib.parse
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    root = ET.fromstring(body)
    keys = [k.text for k in root.iter(ns + "Key")]
    if root.findtext(ns + "EncodingType") == "url":  # boto3 asks for it
        keys = [urllib.parse.unquote_plus(k) for k in keys]
    assert keys == ["dir/ün i+code %.txt"]


@pytest.mark.parametrize("sig", ["s3v4", "s3"])
def test_put_and_delete(px, s3, sig, tmp_path):
    c = client(px.endpoint, sig)
    data = os.urandom(300_000)
    (tmp_path / "up").write_bytes(data)
    key = f"uploaded-{sig}"
    url = c.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
    status, h, _ = curl("-T", str(tmp_path / "up"), url)
    assert status == 200 and h["etag"] == '"%s"' % hashlib.md5(data).hexdigest()
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    # The same URL cannot be used for another key or method.
    status, _, body = curl("-X", "DELETE", url)
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"
    url = c.generate_presigned_url("delete_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
    status, _, body = curl("-X", "DELETE", url)
    assert status == 204 and body == b""
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
    status, _, body = curl(url)
    assert status == 404 and error_code(body) == "NoSuchKey"


@pytest.mark.parametrize("sig", ["s3v4", "s3"])
def test_expired_tampered_and_wrong_key(px, s3, sig):
    c = client(px.endpoint, sig)
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}, ExpiresIn=1)
    time.sleep(2.1)
    status, _, body = curl(url)
    assert status == 403 and error_code(body) == "AccessDenied" and b"0123" not in body
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}, ExpiresIn=300)
    for tampered in (url.replace("file.txt", "file.txu"), url.replace("Signature=", "Signature=0"),
                     url.replace("Expires=", "Expires=1") if sig == "s3" else url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000")):
        status, _, body = curl(tampered)
        assert status == 403 and error_code(body) == "SignatureDoesNotMatch", tampered
    wrong = boto3.client("s3", endpoint_url=px.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key="wrong",
                         region_name="us-east-1", config=botocore.config.Config(signature_version=sig, s3={"addressing_style": "path"}))
    status, _, body = curl(wrong.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}))
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"
    nobody = boto3.client("s3", endpoint_url=px.endpoint, aws_access_key_id="NOBODY", aws_secret_access_key="x",
                          region_name="us-east-1", config=botocore.config.Config(signature_version=sig, s3={"addressing_style": "path"}))
    status, _, body = curl(nobody.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}))
    assert status == 403 and error_code(body) == "InvalidAccessKeyId"
    url = c.generate_presigned_url("get_object", Params={"Bucket": "no-such-bucket-x", "Key": "k"}, ExpiresIn=300)
    status, _, body = curl(url)
    assert status == 404 and error_code(body) == "NoSuchBucket"


@pytest.mark.parametrize("sig", ["s3v4", "s3"])
def test_virtual_hosted_urls(px, s3, sig):
    c = client(f"http://{DOMAIN}:{px.port}", sig, style="virtual")
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}, ExpiresIn=300)
    assert url.startswith(f"http://{BUCKET}.{DOMAIN}:{px.port}/file.txt?")
    resolve = f"{BUCKET}.{DOMAIN}:{px.port}:127.0.0.1"
    status, _, body = curl(url, resolve=resolve)
    assert status == 200 and body == b"0123456789abcdef"
    url = c.generate_presigned_url("list_objects", Params={"Bucket": BUCKET}, ExpiresIn=300)
    status, _, body = curl(url, resolve=resolve)
    assert status == 200 and b"<Key>file.txt</Key>" in body
    # The same URL sent to another bucket's host does not verify.
    other = url.replace(f"//{BUCKET}.", "//other.")
    status, _, body = curl(other, resolve=f"other.{DOMAIN}:{px.port}:127.0.0.1")
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"


def test_bad_query_parameters_are_authorization_query_parameters_errors(px, s3):
    """A SigV4 link valid for more than a week, or missing a parameter, gets AWS's
    AuthorizationQueryParametersError (400) before any signature check, and no data."""
    c = client(px.endpoint)
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}, ExpiresIn=604_801)
    status, _, body = curl(url)
    assert status == 400 and error_code(body) == "AuthorizationQueryParametersError" and b"0123" not in body
    assert b"604800" in body
    url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "file.txt"}, ExpiresIn=604_800)
    status, _, body = curl(url)
    assert status == 200 and body == b"0123456789abcdef"
    for drop in ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Date"):
        broken = re.sub(drop + r"=[^&]*&?", "", url)
        status, _, body = curl(broken)
        assert status == 400 and error_code(body) == "AuthorizationQueryParametersError", (drop, body)
        assert drop.encode() in body
    status, _, body = curl(url.replace("X-Amz-Expires=604800", "X-Amz-Expires=soon"))
    assert status == 400 and error_code(body) == "AuthorizationQueryParametersError"
