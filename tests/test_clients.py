"""Sync tools that nobody here wrote, through the proxy, on the filesystem stack, on three
encrypted replicas of mixed kinds, and on the S3-only stack encrypted and not: rclone (sync, check with zero differences, a second
sync that transfers nothing), the aws cli's `s3 sync` of a tree with multipart files ten
times over, then `--dryrun` with nothing left to do, and s3cmd sync."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import ACCESS_KEY, SECRET_KEY, aws_env

pytestmark = pytest.mark.stacks("fs", "replicated", "s3only", "s3only-plain")


def make_tree(root, files, big=()):
    """Small files in nested directories, plus `big` (name, size) files."""
    for i in range(files):
        d = os.path.join(root, f"dir{i % 4}", f"sub{i % 3}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file {i}.txt"), "wb") as f:
            f.write(os.urandom(100 + i * 37))
    for name, size in big:
        with open(os.path.join(root, name), "wb") as f:
            f.write(os.urandom(size))


def test_rclone_sync_check_and_resync(proxy, s3, tmp_path):
    if shutil.which("rclone") is None:
        pytest.skip("SKIPPED: rclone is not installed (./scripts/test.sh installs it)")
    src = tmp_path / "src"
    make_tree(str(src), 24, big=[("big-a.bin", 12 << 20), ("big-b.bin", 7_000_001)])
    s3.create_bucket(Bucket="rclone-sync")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(RCLONE_CONFIG_PX_TYPE="s3", RCLONE_CONFIG_PX_PROVIDER="Other",
               RCLONE_CONFIG_PX_ACCESS_KEY_ID=ACCESS_KEY, RCLONE_CONFIG_PX_SECRET_ACCESS_KEY=SECRET_KEY,
               RCLONE_CONFIG_PX_ENDPOINT=proxy.endpoint, RCLONE_CONFIG_PX_REGION="us-east-1",
               RCLONE_CONFIG_PX_FORCE_PATH_STYLE="true")
    # Multipart above 5 MiB, so both big files go in parts.
    common = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--retries", "1", "--low-level-retries", "1"]

    def rclone(*args):
        r = subprocess.run(["rclone", *args, *common], env=env, capture_output=True, text=True, timeout=300)
        return r

    r = rclone("sync", str(src), "px:rclone-sync", "-v")
    assert r.returncode == 0, r.stderr[-3000:]
    r = rclone("check", str(src), "px:rclone-sync")
    assert r.returncode == 0 and "0 differences found" in r.stderr, r.stderr[-3000:]
    # Checksums agree too: the listing's ETags are the plaintext MD5s HEAD shows.
    r = rclone("check", str(src), "px:rclone-sync", "--checksum")
    assert r.returncode == 0, r.stderr[-3000:]
    r = rclone("sync", str(src), "px:rclone-sync", "-v", "--checksum")
    assert r.returncode == 0, r.stderr[-3000:]
    copied = [line for line in r.stderr.splitlines() if ": Copied" in line]
    assert not copied, copied
    # A change is found and sent, and only that.
    with open(src / "dir0" / "sub0" / "file 0.txt", "ab") as f:
        f.write(b"more")
    r = rclone("sync", str(src), "px:rclone-sync", "-v")
    copied = [line for line in r.stderr.splitlines() if ": Copied" in line]
    assert r.returncode == 0 and len(copied) == 1, r.stderr[-3000:]
    back = tmp_path / "back"
    r = rclone("copy", "px:rclone-sync", str(back))
    assert r.returncode == 0
    assert subprocess.run(["diff", "-r", str(src), str(back)]).returncode == 0


def test_aws_s3_sync_with_multipart_files_ten_times(aws, s3, tmp_path):
    aws("s3", "mb", "s3://cli-sync-multi")
    for run in range(10):
        src = tmp_path / f"tree{run}"
        # 9 MB and 17 MB: two and three parts at the cli's 8 MB threshold.
        make_tree(str(src), 6, big=[("a.bin", 9_000_000), ("b.bin", 17_000_000)])
        # moto lists LastModified truncated to the second, and over S3-only replicas the
        # listing carries the backend's time: a file written in the same second as its
        # upload would look newer than the object and be sent again by the --dryrun.
        # Files a second older than their upload, as real trees are.
        back = time.time() - 2
        for root, _, files in os.walk(src):
            for name in files:
                os.utime(os.path.join(root, name), (back, back))
        r = aws("s3", "sync", str(src), f"s3://cli-sync-multi/run{run}/", check=False)
        assert r.returncode == 0 and "failed" not in r.stderr, (run, r.stdout[-2000:], r.stderr[-2000:])
        r = aws("s3", "sync", str(src), f"s3://cli-sync-multi/run{run}/", "--dryrun")
        assert r.stdout.strip() == "", (run, r.stdout)
    listed = aws("s3", "ls", "--recursive", "s3://cli-sync-multi/").stdout.splitlines()
    assert len(listed) == 10 * 8


def test_s3cmd_sync(proxy, s3, tmp_path):
    if shutil.which("s3cmd") is None:
        pytest.skip("SKIPPED: s3cmd is not installed (./scripts/test.sh installs it)")
    port = proxy.endpoint.rsplit(":", 1)[1]
    cfg = tmp_path / "s3cfg"
    cfg.write_text(f"""[default]
access_key = {ACCESS_KEY}
secret_key = {SECRET_KEY}
host_base = 127.0.0.1:{port}
host_bucket = 127.0.0.1:{port}
use_https = False
bucket_location = us-east-1
progress_meter = False
multipart_chunk_size_mb = 5
""")
    src = tmp_path / "s3cmd-src"
    make_tree(str(src), 12, big=[("big.bin", 11 << 20)])
    s3.create_bucket(Bucket="s3cmd-sync")

    def s3cmd(*args):
        return subprocess.run(["s3cmd", "-c", str(cfg), *args], capture_output=True, text=True, timeout=300,
                              env=aws_env())

    r = s3cmd("sync", f"{src}/", "s3://s3cmd-sync/")
    assert r.returncode == 0, r.stderr[-2000:]
    r = s3cmd("sync", "--dry-run", f"{src}/", "s3://s3cmd-sync/")
    assert r.returncode == 0 and "upload:" not in r.stdout, r.stdout
    back = tmp_path / "s3cmd-back"
    r = s3cmd("sync", "s3://s3cmd-sync/", f"{back}/")
    assert r.returncode == 0, r.stderr[-2000:]
    assert subprocess.run(["diff", "-r", str(src), str(back)]).returncode == 0
