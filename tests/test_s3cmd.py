"""s3cmd (the Debian package) through s3proxy, with signature_v2 on (SigV2 header auth, as
s3cmd's legacy mode and older deployments use) and off (SigV4), and curl on the URLs its
signurl command makes (SigV2 presigned)."""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import ACCESS_KEY, SECRET_KEY, Proxy, fs_config, make_client

pytestmark = pytest.mark.skipif(shutil.which("s3cmd") is None, reason="s3cmd is not installed (apt-get install s3cmd)")


@pytest.fixture(scope="module")
def px():
    workdir = tempfile.mkdtemp(prefix="s3proxy-s3cmd-")
    p = Proxy(workdir, fs_config(os.path.join(workdir, "data")))
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


@pytest.fixture(scope="module")
def s3(px):
    return make_client(px.endpoint)


@pytest.fixture(params=[True, False], ids=["sigv2", "sigv4"])
def s3cmd(request, px, tmp_path):
    v2 = request.param
    cfg = tmp_path / "s3cfg"
    cfg.write_text(f"""[default]
access_key = {ACCESS_KEY}
secret_key = {SECRET_KEY}
host_base = 127.0.0.1:{px.port}
host_bucket = 127.0.0.1:{px.port}
use_https = False
signature_v2 = {v2}
bucket_location = us-east-1
check_ssl_certificate = False
progress_meter = False
multipart_chunk_size_mb = 5
""")

    def run(*args, check=True, secret=None):
        cmd = ["s3cmd", "-c", str(cfg), *( ["--secret_key", secret] if secret else []), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    run.v2 = v2
    run.bucket = f"s3cmd-{'v2' if v2 else 'v4'}-{os.getpid()}"
    return run


def test_bucket_lifecycle_and_errors(s3cmd, s3):
    b = s3cmd.bucket + "-life"
    assert f"Bucket 's3://{b}/' created" in s3cmd("mb", f"s3://{b}").stdout
    assert f"s3://{b}" in s3cmd("ls").stdout
    s3.put_object(Bucket=b, Key="keep", Body=b"1")
    r = s3cmd("rb", f"s3://{b}", check=False)
    assert r.returncode != 0 and "BucketNotEmpty" in r.stderr and "409" in r.stderr
    s3cmd("del", f"s3://{b}/keep")
    assert "removed" in s3cmd("rb", f"s3://{b}").stdout
    r = s3cmd("ls", f"s3://{b}", check=False)
    assert r.returncode != 0 and "NoSuchBucket" in r.stderr
    r = s3cmd("ls", check=False, secret="wrong-secret")
    assert r.returncode != 0 and "SignatureDoesNotMatch" in r.stderr and "403" in r.stderr


def test_put_get_info_and_metadata(s3cmd, s3, tmp_path):
    b = s3cmd.bucket + "-obj"
    s3cmd("mb", f"s3://{b}")
    small = tmp_path / "note.txt"
    small.write_bytes(b"hello from s3cmd\n")
    s3cmd("put", "--add-header=Cache-Control:max-age=60", "--add-header=x-amz-meta-color:blue", str(small), f"s3://{b}/dir/note.txt")
    head = s3.head_object(Bucket=b, Key="dir/note.txt")
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"]["color"] == "blue"
    assert "mode:" in head["Metadata"]["s3cmd-attrs"]  # s3cmd's own metadata, kept as sent
    assert head["ETag"] == '"%s"' % hashlib.md5(small.read_bytes()).hexdigest()
    info = s3cmd("info", f"s3://{b}/dir/note.txt").stdout
    assert "File size: 17" in info and hashlib.md5(small.read_bytes()).hexdigest() in info
    assert "MIME type: text/plain" in info
    # Multipart (5 MiB chunks): 12 MiB + 7 bytes in 3 parts, verified by s3cmd on download.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024 + 7))
    s3cmd("put", str(big), f"s3://{b}/big.bin")
    head = s3.head_object(Bucket=b, Key="big.bin")
    assert head["ContentLength"] == big.stat().st_size and head["ETag"].endswith('-3"')
    back = tmp_path / "back.bin"
    s3cmd("get", f"s3://{b}/big.bin", str(back))
    assert back.read_bytes() == big.read_bytes()
    listing = s3cmd("ls", f"s3://{b}").stdout
    assert f"{big.stat().st_size}  s3://{b}/big.bin" in listing and f"DIR  s3://{b}/dir/" in listing
    assert f"17  s3://{b}/dir/note.txt" in s3cmd("ls", "--recursive", f"s3://{b}").stdout
    assert str(big.stat().st_size + 17) in s3cmd("du", f"s3://{b}").stdout
    r = s3cmd("get", f"s3://{b}/missing", str(tmp_path / "missing"), check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert not (tmp_path / "missing").exists()


def test_copy_move_modify_delete(s3cmd, s3, tmp_path):
    b = s3cmd.bucket + "-cp"
    s3cmd("mb", f"s3://{b}")
    src = tmp_path / "src name.txt"
    src.write_bytes(b"copy me")
    s3cmd("put", str(src), f"s3://{b}/a dir/src name.txt")
    s3cmd("cp", f"s3://{b}/a dir/src name.txt", f"s3://{b}/copy+1.txt")
    assert s3.get_object(Bucket=b, Key="copy+1.txt")["Body"].read() == b"copy me"
    s3cmd("mv", f"s3://{b}/copy+1.txt", f"s3://{b}/moved ü.txt")
    assert s3.get_object(Bucket=b, Key="moved ü.txt")["Body"].read() == b"copy me"
    assert "Contents" not in s3.list_objects_v2(Bucket=b, Prefix="copy")
    # modify: CopyObject onto itself with REPLACE.
    before = s3.head_object(Bucket=b, Key="moved ü.txt")
    s3cmd("modify", "--add-header=Cache-Control:no-cache", "--mime-type=text/x-modified", f"s3://{b}/moved ü.txt")
    after = s3.head_object(Bucket=b, Key="moved ü.txt")
    assert after["CacheControl"] == "no-cache" and after["ContentType"] == "text/x-modified"
    assert after["ETag"] == before["ETag"]
    assert s3.get_object(Bucket=b, Key="moved ü.txt")["Body"].read() == b"copy me"
    s3cmd("del", f"s3://{b}/moved ü.txt")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["a dir/src name.txt"]
    s3cmd("del", "--recursive", "--force", f"s3://{b}")
    assert "Contents" not in s3.list_objects_v2(Bucket=b)


def test_sync_both_ways(s3cmd, s3, tmp_path):
    b = s3cmd.bucket + "-sync"
    s3cmd("mb", f"s3://{b}")
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(100_000), "sub/deeper/empty": b"", "with space.txt": b"s"}
    for rel, data in files.items():
        (tree / rel).write_bytes(data)
    s3cmd("sync", f"{tree}/", f"s3://{b}/tree/")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"])
    assert keys == sorted(f"tree/{k}" for k in files)
    # Nothing changed: nothing uploaded.
    assert "upload:" not in s3cmd("sync", f"{tree}/", f"s3://{b}/tree/").stdout
    (tree / "a.txt").write_bytes(b"alpha, changed")
    assert "a.txt" in s3cmd("sync", f"{tree}/", f"s3://{b}/tree/").stdout
    back = tmp_path / "back"
    s3cmd("sync", f"s3://{b}/tree/", f"{back}/")
    for rel, data in files.items():
        assert (back / rel).read_bytes() == (b"alpha, changed" if rel == "a.txt" else data), rel


def test_multipart_listing_and_abort(s3cmd, s3):
    b = s3cmd.bucket + "-mp"
    s3cmd("mb", f"s3://{b}")
    uid = s3.create_multipart_upload(Bucket=b, Key="pending")["UploadId"]
    s3.upload_part(Bucket=b, Key="pending", UploadId=uid, PartNumber=1, Body=b"part")
    out = s3cmd("multipart", f"s3://{b}").stdout
    assert uid in out and f"s3://{b}/pending" in out
    assert "part" not in s3cmd("listmp", f"s3://{b}/pending", uid).stderr
    s3cmd("abortmp", f"s3://{b}/pending", uid)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=b)
    r = s3cmd("abortmp", f"s3://{b}/pending", uid, check=False)
    assert r.returncode != 0 and "NoSuchUpload" in r.stderr


def test_signurl_with_curl(s3cmd, s3, tmp_path):
    b = s3cmd.bucket + "-url"
    s3cmd("mb", f"s3://{b}")
    s3.put_object(Bucket=b, Key="shared file.txt", Body=b"shared via signurl")
    url = s3cmd("signurl", f"s3://{b}/shared file.txt", f"+{300}").stdout.strip()
    assert "Signature=" in url and "Expires=" in url
    r = subprocess.run(["curl", "-sS", "-g", "-o", "-", "-w", "\n%{http_code}", url], capture_output=True, timeout=30)
    body, status = r.stdout.rsplit(b"\n", 1)
    assert status == b"200" and body == b"shared via signurl"
    expired = s3cmd("signurl", f"s3://{b}/shared file.txt", str(int(time.time()) - 10)).stdout.strip()
    r = subprocess.run(["curl", "-sS", "-g", "-w", "\n%{http_code}", expired], capture_output=True, timeout=30)
    body, status = r.stdout.rsplit(b"\n", 1)
    assert status == b"403" and b"<Code>AccessDenied</Code>" in body and b"shared via" not in body
