"""Bad input gets the right S3 error (status, code, XML body, request id), never a panic."""

import http.client
import os
import socket
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, BIN, SECRET_KEY, make_client


def send(proxy, method, path, body=b"", headers=None, sign=True, access=ACCESS_KEY, secret=SECRET_KEY):
    url = proxy.endpoint + path
    headers = dict(headers or {})
    if sign:
        req = AWSRequest(method=method, url=url, data=body, headers=headers)
        S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(req)
        headers = dict(req.prepare().headers)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.headers, data


def error_code(status, headers, body, want_status, want_code):
    assert status == want_status, body
    assert headers.get("x-amz-request-id")
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code") == want_code
    assert root.findtext("RequestId") == headers.get("x-amz-request-id")


def test_wrong_credentials(proxy, bucket):
    error_code(*send(proxy, "GET", f"/{bucket}", secret="wrong"), 403, "SignatureDoesNotMatch")
    error_code(*send(proxy, "GET", f"/{bucket}", access="NOBODY"), 403, "InvalidAccessKeyId")
    error_code(*send(proxy, "GET", f"/{bucket}", sign=False), 403, "AccessDenied")
    error_code(*send(proxy, "GET", f"/{bucket}", sign=False, headers={"Authorization": "AWS4-HMAC-SHA256 garbage"}), 400, "AuthorizationHeaderMalformed")
    with pytest.raises(ClientError) as e:
        make_client(proxy.endpoint, secret_key="nope").list_buckets()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_tampered_body_is_refused_and_not_stored(proxy, s3, bucket):
    req = AWSRequest(method="PUT", url=f"{proxy.endpoint}/{bucket}/t", data=b"original")
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    headers = dict(req.prepare().headers)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("PUT", f"/{bucket}/t", body=b"tampered", headers=headers)
    resp = conn.getresponse()
    error_code(resp.status, resp.headers, resp.read(), 400, "XAmzContentSHA256Mismatch")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="t")
    assert e.value.response["Error"]["Code"] == "404"


def test_missing_things(proxy, bucket):
    error_code(*send(proxy, "GET", "/no-such-bucket-here"), 404, "NoSuchBucket")
    error_code(*send(proxy, "PUT", "/no-such-bucket-here/k", body=b"x"), 404, "NoSuchBucket")
    error_code(*send(proxy, "GET", f"/{bucket}/missing"), 404, "NoSuchKey")
    status, headers, body = send(proxy, "HEAD", f"/{bucket}/missing")
    assert status == 404 and body == b""
    error_code(*send(proxy, "GET", "/Invalid_Bucket"), 400, "InvalidBucketName")


def test_bad_requests(proxy, bucket):
    long_key = "k" * 1025
    error_code(*send(proxy, "PUT", f"/{bucket}/{long_key}", body=b"x"), 400, "KeyTooLongError")
    error_code(*send(proxy, "POST", f"/{bucket}?delete", body=b"<Delete><Object>"), 400, "MalformedXML")
    error_code(*send(proxy, "POST", f"/{bucket}/k?uploadId=nope", body=b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"), 404, "NoSuchUpload")
    send(proxy, "PUT", f"/{bucket}/small", body=b"0123456789")
    error_code(*send(proxy, "GET", f"/{bucket}/small", headers={"Range": "bytes=10-20"}), 416, "InvalidRange")
    error_code(*send(proxy, "PUT", f"/{bucket}/md5", body=b"abc", headers={"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="}), 400, "BadDigest")
    error_code(*send(proxy, "PUT", f"/{bucket}/md5", body=b"abc", headers={"Content-MD5": "nope"}), 400, "InvalidDigest")
    error_code(*send(proxy, "PUT", f"/{bucket}/k?partNumber=0&uploadId=x", body=b"x"), 400, "InvalidArgument")
    error_code(*send(proxy, "GET", f"/{bucket}?max-keys=-1"), 400, "InvalidArgument")
    error_code(*send(proxy, "GET", f"/{bucket}?list-type=2&continuation-token=%25%25"), 400, "InvalidArgument")
    error_code(*send(proxy, "PATCH", f"/{bucket}/k"), 405, "MethodNotAllowed")
    error_code(*send(proxy, "PUT", f"/{bucket}/copy", headers={"x-amz-copy-source": "nobucket"}), 400, "InvalidArgument")
    error_code(*send(proxy, "PUT", f"/{bucket}/meta", body=b"x", headers={"x-amz-meta-big": "v" * 2100}), 400, "MetadataTooLarge")


def test_garbage_on_the_wire_does_not_hurt_the_server(proxy, s3, bucket):
    for raw in [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n",
                b"PUT /b/k HTTP/1.1\r\nContent-Length: nope\r\n\r\n", b"\x00\x01\x02\xff" * 100]:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            try:
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
                reply = sock.recv(4096)
            except OSError:  # the server may close first (e.g. 431 for huge headers)
                reply = b""
            assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:100]
    # Truncated body: the client promises 1000 bytes and sends 10.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        req = AWSRequest(method="PUT", url=f"{proxy.endpoint}/{bucket}/trunc", data=b"x" * 1000,
                         headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
        head = "".join(f"{k}: {v}\r\n" for k, v in req.prepare().headers.items())
        sock.sendall(f"PUT /{bucket}/trunc HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nContent-Length: 1000\r\n{head}\r\n".encode() + b"x" * 10)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="trunc")
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


def run_bin(args, cwd, timeout=10):
    return subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("toml,key", [
    ("listen = 12", "listen"),
    ("[[backends]]\nname = \"x\"\nkind = \"fs\"\n", "backends.0.path"),
    ("[[backends]]\nname = \"x\"\nkind = \"nfs\"\npath = \"/tmp\"\n", "backends.0.kind"),
    ("unknown_key = 1", "unknown_key"),
    ("[[credentials]]\naccess_key = \"a\"\nsecret_key = \"b\"\n[[credentials]]\naccess_key = \"a\"\nsecret_key = \"c\"\n", "credentials.1.access_key"),
    ("not = toml = at all", "TOML"),
    # A state directory where it could be created (and deleted) as a bucket, nested fs roots.
    ("state_dir = \"./data/state\"\n", "state_dir"),
    ("[[backends]]\nname = \"a\"\nkind = \"fs\"\npath = \"./d\"\n"
     "[[backends]]\nname = \"b\"\nkind = \"fs\"\npath = \"./d/inner\"\n", "backends.1.path"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, toml, key):
    (tmp_path / "c.toml").write_text(toml)
    r = run_bin(["--config", str(tmp_path / "c.toml")], tmp_path)
    assert r.returncode == 2, r
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and key in lines[0], r.stderr


def test_embedded_default_generates_credentials(tmp_path):
    from conftest import free_port, wait_for_port
    port = free_port()
    proc = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for_port(port, proc)
        creds = tmp_path / "data" / ".s3proxy" / "credentials.toml"
        assert oct(creds.stat().st_mode & 0o777) == "0o600"
        text = creds.read_text()
        access = text.split('access_key = "')[1].split('"')[0]
        secret = text.split('secret_key = "')[1].split('"')[0]
        s3 = make_client(f"http://127.0.0.1:{port}", access, secret)
        s3.create_bucket(Bucket="firstrun")
        s3.put_object(Bucket="firstrun", Key="k", Body=b"v")
        assert (tmp_path / "data" / "firstrun").is_dir()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert access in out and secret in out and "aws --endpoint-url" in out
