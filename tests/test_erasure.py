"""Erasure-coded placement through real processes: plain s3proxy fs servers are the S3
backends of an encrypting front proxy with [placement] kind = "erasure", 2 data + 1
parity shards over three (3 + 2 over five in one test). Backends are SIGKILLed for real; data is checked byte for byte, and the
bytes stored across backends are compared with the data (about (k+m)/k = 1.5)."""

import hashlib
import itertools
import os
import random
import shutil
import subprocess
import tempfile
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, BIN, SECRET_KEY, Proxy, free_port, make_client
from test_replication import BACKEND_KEY, BACKEND_SECRET, backend_config, data

MiB = 1024 * 1024


def erasure_config(state_dir, ports, k, m, repair_interval=5):
    backends = "".join(f"""
[[backends]]
name = "s{i}"
kind = "s3"
endpoint = "http://127.0.0.1:{port}"
access_key = "{BACKEND_KEY}"
secret_key = "{BACKEND_SECRET}"
timeout_ms = 2000
""" for i, port in enumerate(ports))
    return f"""
state_dir = "{state_dir}"
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[replication]
repair_interval_secs = {repair_interval}
[placement]
kind = "erasure"
data_shards = {k}
parity_shards = {m}
{backends}"""


class ErasureCluster:
    def __init__(self, k=2, m=1, repair_interval=5):
        self.root = tempfile.mkdtemp(prefix="erasure-e2e-")
        self.backends = [
            Proxy(os.path.join(self.root, f"b{i}"), backend_config(os.path.join(self.root, f"b{i}", "data")))
            for i in range(k + m)
        ]
        self.state = os.path.join(self.root, "front-state")
        config = erasure_config(self.state, [b.port for b in self.backends], k, m, repair_interval)
        self.front = Proxy(os.path.join(self.root, "front"), config)
        self.s3 = make_client(self.front.endpoint)
        self.direct = [make_client(b.endpoint, BACKEND_KEY, BACKEND_SECRET) for b in self.backends]

    def stored(self, bucket, key):
        """Bytes each backend stores for the object (its shard object's size)."""
        return [d.head_object(Bucket=bucket, Key=key)["ContentLength"] for d in self.direct]

    def wait_journal_drained(self, timeout=30):
        journal = os.path.join(self.state, "erasure-journal")
        deadline = time.time() + timeout
        while os.path.isdir(journal) and [f for f in os.listdir(journal) if f.endswith(".json")]:
            assert time.time() < deadline, "repair did not drain the journal"
            time.sleep(0.1)

    def close(self):
        for p in [self.front, *self.backends]:
            if p.proc.poll() is None:
                p.stop()
        log = self.front.log()
        shutil.rmtree(self.root, ignore_errors=True)
        assert "panicked" not in log, log[-3000:]


@pytest.fixture
def cluster():
    c = ErasureCluster()
    yield c
    c.close()


SIZES = [0, 1, 1000, MiB - 1, MiB + 1, 3 * MiB + 12345]
RANGES = [(0, 0), (5, 70_000), (MiB - 3, MiB + 3), (2 * MiB + 1, 3 * MiB + 100), (-1000, None)]


def ranged(s3, key, body, start, end):
    """A ranged GET checked against the same range of `body`."""
    if start < 0:  # a suffix range
        header, want = f"bytes={start}", body[start:]
    else:
        header, want = f"bytes={start}-{end}", body[start : end + 1]
    got = s3.get_object(Bucket="ecb", Key=key, Range=header)["Body"].read()
    assert got == want, (key, header, len(got), len(want))


def test_any_one_backend_killed_whole_and_ranged_gets_are_byte_exact(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="ecb")
    bodies = {f"obj-{n}": data(n, n % 251) for n in SIZES}
    for key, body in bodies.items():
        c.s3.put_object(Bucket="ecb", Key=key, Body=body)
    for gone in range(3):
        c.backends[gone].kill()
        try:
            for key, body in bodies.items():
                got = c.s3.get_object(Bucket="ecb", Key=key)
                assert got["ContentLength"] == len(body)
                assert got["Body"].read() == body, (key, gone)
                head = c.s3.head_object(Bucket="ecb", Key=key)
                assert head["ContentLength"] == len(body)
                for start, end in RANGES:
                    if len(body) > max(start, end or 0) and len(body) > -start:
                        ranged(c.s3, key, body, start, end)
            listed = {o["Key"]: o["Size"] for o in c.s3.list_objects_v2(Bucket="ecb")["Contents"]}
            assert listed == {k: len(b) for k, b in bodies.items()}
        finally:
            c.backends[gone].start()


def noise(size, seed):
    """Bytes without a period: a range served from the wrong offset cannot match."""
    return random.Random(seed).randbytes(size)


def test_three_plus_two_any_two_backends_killed_whole_and_ranged_gets_are_byte_exact():
    """3 data + 2 parity over five backends: for every pair of backends SIGKILLed (all
    ten), every object reads whole and ranged byte for byte, and a write goes on (its two
    missed shards rebuilt from the journal once the pair is back)."""
    c = ErasureCluster(k=3, m=2, repair_interval=1)
    try:
        c.s3.create_bucket(Bucket="ecb")
        bodies = {f"obj-{n}": noise(n, n) for n in SIZES}
        for key, body in bodies.items():
            c.s3.put_object(Bucket="ecb", Key=key, Body=body)
        shards = c.stored("ecb", f"obj-{MiB + 1}")
        # 3 + 2: each backend holds about a third of the object (plus checksums).
        assert len(set(shards)) == 1 and 5 / 3 <= sum(shards) / (MiB + 1) < 5 / 3 + 0.01, shards
        for pair in itertools.combinations(range(5), 2):
            for gone in pair:
                c.backends[gone].kill()
            try:
                for key, body in bodies.items():
                    got = c.s3.get_object(Bucket="ecb", Key=key)
                    assert got["ContentLength"] == len(body)
                    assert got["Body"].read() == body, (key, pair)
                    for start, end in RANGES:
                        if len(body) > max(start, end or 0) and len(body) > -start:
                            ranged(c.s3, key, body, start, end)
                listed = {o["Key"]: o["Size"] for o in c.s3.list_objects_v2(Bucket="ecb")["Contents"]}
                assert {k: listed.get(k) for k in bodies} == {k: len(b) for k, b in bodies.items()}
                # Three of five take a write; it reads back at once, whole and ranged.
                body = noise(2 * MiB + 7, sum(pair))
                key = "written-without-{}-{}".format(*pair)
                c.s3.put_object(Bucket="ecb", Key=key, Body=body)
                assert c.s3.get_object(Bucket="ecb", Key=key)["Body"].read() == body, pair
                ranged(c.s3, key, body, MiB - 5, MiB + 5)
            finally:
                for gone in pair:
                    c.backends[gone].start()
            # The two shards the write missed are rebuilt before the next pair goes.
            c.wait_journal_drained()
        # Three killed: an honest error, never wrong bytes.
        for gone in (0, 2, 4):
            c.backends[gone].kill()
        with pytest.raises(ClientError) as e:
            c.s3.get_object(Bucket="ecb", Key="obj-1000")["Body"].read()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        c.close()


def run_command(c, *args):
    """`s3proxy --config <the front's config> ARGS` (repair, scrub) while the front serves."""
    config = os.path.join(c.front.workdir, "s3proxy.toml")
    return subprocess.run([BIN, "--config", config, *args], cwd=c.front.workdir,
                          capture_output=True, text=True, timeout=120)


def shard_file(c, i, bucket, key):
    """Backend i's file of its shard object (the fs backend's layout)."""
    h = hashlib.sha256(key.encode()).hexdigest()
    return os.path.join(c.root, f"b{i}", "data", bucket, "objects", h[:2], h)


def all_byte_exact(c, bodies, why):
    for key, body in bodies.items():
        assert c.s3.get_object(Bucket="ecb", Key=key)["Body"].read() == body, (key, why)
        if len(body) > MiB + 10:
            ranged(c.s3, key, body, MiB - 10, MiB + 10)


def test_a_wiped_backend_is_refilled_by_repair_and_a_corrupt_shard_rebuilt_by_scrub(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="ecb")
    bodies = {f"w-{n}": noise(n, n) for n in [0, 1000, MiB + 1, 3 * MiB + 12345]}
    for key, body in bodies.items():
        c.s3.put_object(Bucket="ecb", Key=key, Body=body)
    sizes = {key: c.stored("ecb", key) for key in bodies}
    # Backend 1's data directory is lost: it comes back empty, without the bucket.
    c.backends[1].kill()
    shutil.rmtree(os.path.join(c.root, "b1", "data"))
    c.backends[1].start()
    # Beside a serving front, repair of an erasure placement refuses unless told.
    r = run_command(c, "repair")
    assert r.returncode == 1 and "--while-serving" in r.stderr, r.stdout + r.stderr
    r = run_command(c, "scrub")
    assert r.returncode == 1 and "--while-serving" in r.stderr, r.stdout + r.stderr
    r = run_command(c, "repair", "--dry-run")  # writes nothing: no lock needed
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dry run: 4 objects scanned" in r.stdout and "4 missing or stale" in r.stdout, r.stdout
    assert "4 to rebuild, 1 buckets to create" in r.stdout, r.stdout
    r = run_command(c, "repair", "--while-serving")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 rebuilt, 1 buckets created, 0 failed" in r.stdout, r.stdout
    assert {key: c.stored("ecb", key) for key in bodies} == sizes
    # Another backend SIGKILLed: the refilled one is read.
    c.backends[0].kill()
    try:
        all_byte_exact(c, bodies, "backend 0 killed after the refill")
    finally:
        c.backends[0].start()
    # One byte of backend 2's (parity) shard flipped on disk: scrub finds it and rebuilds it.
    path = shard_file(c, 2, "ecb", "w-3158073")
    with open(path, "r+b") as f:
        f.seek(700_000)
        b = f.read(1)
        f.seek(700_000)
        f.write(bytes([b[0] ^ 0x20]))
    r = run_command(c, "scrub", "--while-serving")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "12 shards verified, 0 missing or stale, 1 corrupt, 1 rebuilt" in r.stdout, r.stdout
    r = run_command(c, "scrub", "--while-serving")
    assert r.returncode == 0 and "12 shards verified, 0 missing or stale, 0 corrupt, 0 rebuilt" in r.stdout, r.stdout
    c.backends[0].kill()
    try:
        all_byte_exact(c, bodies, "backend 0 killed after the scrub")
    finally:
        c.backends[0].start()


def test_writes_and_deletes_go_on_with_a_backend_killed(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="ecb")
    c.s3.put_object(Bucket="ecb", Key="old", Body=b"to be deleted")
    c.backends[1].kill()
    try:
        body = data(2 * MiB + 77, 5)
        c.s3.put_object(Bucket="ecb", Key="while-down", Body=body)
        assert c.s3.get_object(Bucket="ecb", Key="while-down")["Body"].read() == body
        ranged(c.s3, "while-down", body, MiB, MiB + 999)
        c.s3.delete_object(Bucket="ecb", Key="old")
        with pytest.raises(ClientError) as e:
            c.s3.head_object(Bucket="ecb", Key="old")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        # chmod as s3fs does it: a copy onto itself with new metadata.
        c.s3.copy_object(
            Bucket="ecb", Key="while-down", CopySource={"Bucket": "ecb", "Key": "while-down"},
            Metadata={"mode": "33188"}, MetadataDirective="REPLACE",
        )
        head = c.s3.head_object(Bucket="ecb", Key="while-down")
        assert head["Metadata"] == {"mode": "33188"} and head["ContentLength"] == len(body)
    finally:
        c.backends[1].start()
    # The restarted backend still holds the deleted object's shard: alone, it is not shown.
    with pytest.raises(ClientError):
        c.s3.head_object(Bucket="ecb", Key="old")
    assert "old" not in [o["Key"] for o in c.s3.list_objects_v2(Bucket="ecb").get("Contents", [])]
    # Two of three down: an honest error, never wrong bytes.
    c.backends[0].kill()
    c.backends[2].kill()
    with pytest.raises(ClientError) as e:
        c.s3.get_object(Bucket="ecb", Key="while-down")["Body"].read()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_multipart_upload_and_copy_with_a_backend_killed(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="ecb")
    body = data(13 * MiB + 5, 11)
    parts = [body[i : i + 5 * MiB] for i in range(0, len(body), 5 * MiB)]
    up = c.s3.create_multipart_upload(Bucket="ecb", Key="mp", Metadata={"a": "b"})["UploadId"]
    etags = [c.s3.upload_part(Bucket="ecb", Key="mp", UploadId=up, PartNumber=1, Body=parts[0])["ETag"]]
    c.backends[2].kill()
    try:
        for n, p in enumerate(parts[1:], start=2):
            etags.append(c.s3.upload_part(Bucket="ecb", Key="mp", UploadId=up, PartNumber=n, Body=p)["ETag"])
        listed = c.s3.list_parts(Bucket="ecb", Key="mp", UploadId=up)["Parts"]
        assert [p["Size"] for p in listed] == [len(p) for p in parts]
        assert [u["Key"] for u in c.s3.list_multipart_uploads(Bucket="ecb").get("Uploads", [])] == ["mp"]
        done = c.s3.complete_multipart_upload(
            Bucket="ecb", Key="mp", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
        )
        assert done["ETag"].endswith('-3"')
        assert c.s3.get_object(Bucket="ecb", Key="mp")["Body"].read() == body
        ranged(c.s3, "mp", body, 5 * MiB - 10, 10 * MiB + 10)
        c.s3.copy_object(Bucket="ecb", Key="mp-copy", CopySource={"Bucket": "ecb", "Key": "mp"})
        assert c.s3.get_object(Bucket="ecb", Key="mp-copy")["Body"].read() == body
        head = c.s3.head_object(Bucket="ecb", Key="mp")
        assert head["ContentLength"] == len(body) and head["Metadata"] == {"a": "b"}
        keys = [o["Key"] for o in c.s3.list_objects_v2(Bucket="ecb")["Contents"]]
        assert keys == ["mp", "mp-copy"], "no upload state listed"
    finally:
        c.backends[2].start()


def test_a_shard_missed_while_a_backend_was_killed_is_rebuilt_when_it_returns(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="ecb")
    body = data(3 * MiB + 3, 21)
    c.backends[1].kill()
    c.s3.put_object(Bucket="ecb", Key="healed", Body=body)
    journal = os.path.join(c.state, "erasure-journal")
    assert [f for f in os.listdir(journal) if f.endswith(".json")], "the missed shard is journaled"
    c.backends[1].start()
    deadline = time.time() + 30
    while [f for f in os.listdir(journal) if f.endswith(".json")]:
        assert time.time() < deadline, "repair did not drain the journal"
        time.sleep(0.2)
    assert c.stored("ecb", "healed")[1] == c.stored("ecb", "healed")[0]
    # The rebuilt shard serves: with another backend killed the object still reads.
    c.backends[0].kill()
    try:
        assert c.s3.get_object(Bucket="ecb", Key="healed")["Body"].read() == body
    finally:
        c.backends[0].start()


def test_stored_bytes_are_about_one_and_a_half_times_the_data(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="ecb")
    report = []
    for size in [64 * 1024, MiB, 4 * MiB, 16 * MiB]:
        key = f"ratio-{size}"
        c.s3.put_object(Bucket="ecb", Key=key, Body=data(size, 9))
        shards = c.stored("ecb", key)
        assert len(set(shards)) == 1, "every shard object has the same size"
        ratio = sum(shards) / size
        report.append(f"{size // 1024} KiB: {ratio:.4f}")
        # 1.5 for 2 + 1, plus the encryption's tags (16 bytes per 64 KiB) and this layer's
        # checksums (4 bytes per shard per stripe) and trailer (20 bytes per shard).
        assert 1.5 <= ratio < 1.5 * (1 + 16 / 65536) + 0.002, report
    print("stored bytes / data, 2+1 encrypted: " + "; ".join(report))


def test_backend_bytes_are_shards_of_ciphertext(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="ecb")
    body = b"plain text that must not be on any backend " * 1000
    c.s3.put_object(Bucket="ecb", Key="secret", Body=body)
    for d in c.direct:
        raw = d.get_object(Bucket="ecb", Key="secret")["Body"].read()
        assert b"plain text that must not" not in raw
        assert len(raw) < len(body)


def test_a_placement_that_does_not_fit_the_backends_is_a_config_error():
    root = tempfile.mkdtemp(prefix="erasure-cfg-")
    try:
        path = os.path.join(root, "s3proxy.toml")
        with open(path, "w") as f:
            f.write(erasure_config(os.path.join(root, "state"), [1, 2, 3], 2, 2))
        out = subprocess.run(
            [BIN, "--listen", f"127.0.0.1:{free_port()}", "--config", path],
            capture_output=True, text=True, timeout=20,
        )
        assert out.returncode == 2, out
        assert "placement.data_shards" in out.stderr and "number of backends" in out.stderr, out.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
