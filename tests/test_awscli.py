"""The aws cli (s3 and s3api) through s3proxy: on its filesystem backend, through three
replicas of mixed kinds (fs, moto, s3s-fs) and over S3 backends only, encrypted and not."""

import hashlib
import json
import os
import filecmp
import time

import pytest

pytestmark = pytest.mark.stacks("fs", "replicated", "s3only", "replicated-plain", "s3only-plain")


def write_random(path, size):
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            f.write(os.urandom(n))
            remaining -= n


def test_cp_round_trips_byte_exact_and_ls_shows_sizes(aws, tmp_path, s3):
    aws("s3", "mb", "s3://cli-roundtrip")
    sizes = {"zero": 0, "one": 1, "fifty-mib": 50 * 1024 * 1024}
    for name, size in sizes.items():
        src = tmp_path / name
        write_random(src, size)
        aws("s3", "cp", str(src), f"s3://cli-roundtrip/{name}")
    listing = aws("s3", "ls", "s3://cli-roundtrip/").stdout
    listed = {line.split()[3]: int(line.split()[2]) for line in listing.splitlines()}
    assert listed == sizes
    for name in sizes:
        back = tmp_path / f"back-{name}"
        aws("s3", "cp", f"s3://cli-roundtrip/{name}", str(back))
        assert filecmp.cmp(tmp_path / name, back, shallow=False), name
    # The 50 MiB upload went multipart: its ETag has the part count.
    head = s3.head_object(Bucket="cli-roundtrip", Key="fifty-mib")
    assert head["ETag"].strip('"').endswith("-7")
    assert head["ContentLength"] == sizes["fifty-mib"]
    aws("s3", "rm", "--recursive", "s3://cli-roundtrip/")
    aws("s3", "rb", "s3://cli-roundtrip")
    assert "cli-roundtrip" not in aws("s3", "ls").stdout


def test_sync_mv_rm(aws, tmp_path, bucket):
    src = tmp_path / "tree"
    (src / "sub" / "deeper").mkdir(parents=True)
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(70000), "sub/deeper/c": b"", "with space.txt": b"s"}
    # moto lists LastModified truncated to the second, and over S3-only replicas the
    # listing carries the backend's time: a file written in the same second as its upload
    # would look newer than the object to the second sync (see test_clients.py).
    back = time.time() - 2
    for rel, data in files.items():
        (src / rel).write_bytes(data)
        os.utime(src / rel, (back, back))
    aws("s3", "sync", str(src), f"s3://{bucket}/tree")
    listing = aws("s3", "ls", "--recursive", f"s3://{bucket}/").stdout
    assert sorted(l.split(None, 3)[3] for l in listing.splitlines()) == sorted(f"tree/{k}" for k in files)
    # A second sync has nothing to do.
    assert aws("s3", "sync", str(src), f"s3://{bucket}/tree").stdout.strip() == ""
    dst = tmp_path / "back"
    aws("s3", "sync", f"s3://{bucket}/tree", str(dst))
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data
    aws("s3", "mv", f"s3://{bucket}/tree/a.txt", f"s3://{bucket}/moved.txt")
    out = aws("s3", "ls", f"s3://{bucket}/").stdout
    assert "moved.txt" in out
    assert aws("s3", "ls", f"s3://{bucket}/tree/a.txt", check=False).stdout.strip() == ""
    aws("s3", "rm", f"s3://{bucket}/moved.txt")
    assert "moved.txt" not in aws("s3", "ls", f"s3://{bucket}/").stdout


def test_s3api_calls(aws, tmp_path, bucket):
    body = tmp_path / "body.txt"
    body.write_bytes(b"hello s3api")
    put = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "dir/file.txt",
                         "--body", str(body), "--metadata", "mode=33188,uid=0").stdout)
    assert put["ETag"] == '"%s"' % hashlib.md5(b"hello s3api").hexdigest()
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "dir/file.txt").stdout)
    assert head["ContentLength"] == 11
    assert head["ETag"] == put["ETag"]
    assert head["Metadata"] == {"mode": "33188", "uid": "0"}
    assert head["ContentType"] == "text/plain"  # from the extension
    assert head["AcceptRanges"] == "bytes"
    out = tmp_path / "out.txt"
    got = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "dir/file.txt",
                         "--range", "bytes=6-", str(out)).stdout)
    assert got["ContentRange"] == "bytes 6-10/11"
    assert out.read_bytes() == b"s3api"
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "dir/",
                            "--delimiter", "/").stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["dir/file.txt"]
    assert listed["Contents"][0]["Size"] == 11
    missing = aws("s3api", "head-object", "--bucket", bucket, "--key", "nope", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr
