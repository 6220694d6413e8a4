"""Replication through real processes: three s3proxy instances (filesystem, no encryption)
serve as S3 backends of an encrypting front proxy. Backends are killed, paused and
corrupted for real; data is checked byte for byte."""

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, BIN, SECRET_KEY, Proxy, free_port, make_client

BACKEND_KEY, BACKEND_SECRET = "AKBACKEND", "backendsecret"


def backend_config(data_dir):
    return f"""
[[credentials]]
access_key = "{BACKEND_KEY}"
secret_key = "{BACKEND_SECRET}"
[[backends]]
name = "disk"
kind = "fs"
path = "{data_dir}"
[encryption]
enabled = false
"""


def front_config(state_dir, ports, quorum):
    backends = "".join(f"""
[[backends]]
name = "r{i + 1}"
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
write_quorum = {quorum}
repair_interval_secs = 1
{backends}"""


class Cluster:
    def __init__(self, quorum="1"):
        self.root = tempfile.mkdtemp(prefix="s3proxy-rep-")
        self.backends = []
        for i in range(3):
            d = os.path.join(self.root, f"b{i + 1}")
            self.backends.append(Proxy(d, backend_config(os.path.join(d, "data"))))
        self.state = os.path.join(self.root, "front-state")
        self.front_dir = os.path.join(self.root, "front")
        self.front = Proxy(self.front_dir, front_config(self.state, [b.port for b in self.backends], quorum))
        self.s3 = make_client(self.front.endpoint)
        self.direct = [make_client(b.endpoint, BACKEND_KEY, BACKEND_SECRET) for b in self.backends]

    def journal(self):
        return glob.glob(os.path.join(self.state, "journal", "*.json"))

    def wait_journal_empty(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.journal():
                return
            time.sleep(0.2)
        raise AssertionError(f"journal still has {len(self.journal())} entries")

    def version(self, i, bucket, key):
        try:
            head = self.direct[i].head_object(Bucket=bucket, Key=key)
        except ClientError:
            return None
        return head["Metadata"].get("s3proxy-version")

    def object_file(self, i, bucket, key):
        h = hashlib.sha256(key.encode()).hexdigest()
        return os.path.join(self.backends[i].workdir, "data", bucket, "objects", h[:2], h)

    def stored_data(self, i, bucket, key):
        """The object bytes a backend holds on disk (its file without its header)."""
        raw = open(self.object_file(i, bucket, key), "rb").read()
        header_len = int.from_bytes(raw[-12:-8], "little")
        return raw[: len(raw) - 12 - header_len]

    def close(self):
        for p in [self.front, *self.backends]:
            if p.proc.poll() is None:
                p.resume()
                p.stop()
        log = self.front.log()
        shutil.rmtree(self.root, ignore_errors=True)
        assert "panicked" not in log, log[-3000:]


@pytest.fixture
def cluster(request):
    c = Cluster(getattr(request, "param", "1"))
    yield c
    c.close()


def data(size, seed):
    return hashlib.sha256(bytes([seed])).digest() * (size // 32) + b"x" * (size % 32)


@pytest.mark.parametrize("cluster", ["1", '"majority"'], indirect=True)
def test_backend_killed_before_put_is_repaired_from_the_journal(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.backends[2].kill()
    body = data(12 * 1024 * 1024 + 5, 1)
    c.s3.put_object(Bucket="rep", Key="big", Body=body)
    assert c.s3.get_object(Bucket="rep", Key="big")["Body"].read() == body
    assert c.journal(), "the missed write is journaled"
    c.backends[2].start()
    c.wait_journal_empty()
    assert c.version(2, "rep", "big") == c.version(0, "rep", "big") is not None
    raw = [c.stored_data(i, "rep", "big") for i in range(3)]
    assert len({hashlib.sha256(r).hexdigest() for r in raw}) == 1, "replicas hold identical ciphertext"
    assert body[:4096] not in raw[0], "no plaintext on the backend"


@pytest.mark.parametrize("cluster", ["1", '"majority"'], indirect=True)
def test_backend_killed_during_a_large_put(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    body = data(60 * 1024 * 1024, 2)
    killer = threading.Timer(0.3, c.backends[1].kill)
    killer.start()
    c.s3.put_object(Bucket="rep", Key="during", Body=body)
    killer.join()
    assert c.s3.get_object(Bucket="rep", Key="during")["Body"].read() == body
    c.backends[1].start()
    c.wait_journal_empty(60)
    assert c.version(1, "rep", "during") == c.version(0, "rep", "during") is not None


@pytest.mark.parametrize("cluster", ['"all"'], indirect=True)
def test_w_all_with_a_backend_down_is_503_and_nothing_visible(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.backends[0].kill()
    with pytest.raises(ClientError) as e:
        c.s3.put_object(Bucket="rep", Key="partial", Body=b"half written")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    with pytest.raises(ClientError):
        c.s3.head_object(Bucket="rep", Key="partial")
    for i in (1, 2):
        assert c.version(i, "rep", "partial") is None
    c.backends[0].start()


def test_paused_backend_mid_get_fails_over(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    body = data(16 * 1024 * 1024, 3)
    c.s3.put_object(Bucket="rep", Key="read", Body=body)
    c.wait_journal_empty()
    stream = c.s3.get_object(Bucket="rep", Key="read")["Body"]
    first = stream.read(1024 * 1024)
    c.backends[0].pause()  # the preferred replica stops mid-body
    try:
        started = time.time()
        rest = stream.read()
        assert first + rest == body
        assert time.time() - started < 20
    finally:
        c.backends[0].resume()


@pytest.mark.parametrize("cluster", ['"majority"'], indirect=True)
def test_paused_backend_holds_up_no_get(cluster):
    """Hedged reads (#18): with the first replica paused (SIGSTOP), no GET waits for its
    timeout (2 s here). A majority quorum, for with W = 1 the lookup must wait for every
    replica (the newest version may be on the paused one only)."""
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    bodies = {f"hedge{i}": data(100_000 + i, 40 + i) for i in range(4)}
    for k, b in bodies.items():
        c.s3.put_object(Bucket="rep", Key=k, Body=b)
    c.wait_journal_empty()
    for k in bodies:  # samples for the hedge delays
        c.s3.get_object(Bucket="rep", Key=k)["Body"].read()
    c.backends[0].pause()
    try:
        slowest = 0.0
        for i in range(40):
            k = f"hedge{i % 4}"
            started = time.time()
            got = c.s3.get_object(Bucket="rep", Key=k)["Body"].read()
            slowest = max(slowest, time.time() - started)
            assert got == bodies[k]
            time.sleep(0.5)
        assert slowest < 1, f"slowest GET took {slowest:.2f} s"
    finally:
        c.backends[0].resume()
    assert c.s3.get_object(Bucket="rep", Key="hedge0")["Body"].read() == bodies["hedge0"]


def test_corrupt_replica_is_served_around_and_repaired(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    body = data(3 * 1024 * 1024, 4)
    c.s3.put_object(Bucket="rep", Key="c", Body=body)
    c.wait_journal_empty()
    path = c.object_file(0, "rep", "c")
    good = c.stored_data(1, "rep", "c")
    with open(path, "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0x40]))
    assert c.s3.get_object(Bucket="rep", Key="c")["Body"].read() == body
    deadline = time.time() + 30
    while time.time() < deadline and c.stored_data(0, "rep", "c") != good:
        time.sleep(0.2)
    assert hashlib.sha256(c.stored_data(0, "rep", "c")).digest() == hashlib.sha256(good).digest(), "the corrupt replica was repaired"


def test_delete_while_down_is_not_resurrected_by_repair(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.s3.put_object(Bucket="rep", Key="gone", Body=b"soon deleted")
    c.wait_journal_empty()
    c.backends[2].kill()
    c.s3.delete_object(Bucket="rep", Key="gone")
    c.front.kill()  # no chance for the journal to drain in the background
    c.backends[2].start()
    assert c.version(2, "rep", "gone") is not None, "the down replica still has it"
    r = subprocess.run([BIN, "--config", os.path.join(c.front_dir, "s3proxy.toml"), "repair"],
                       cwd=c.front_dir, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "deletes applied" in r.stdout
    for i in range(3):
        assert c.version(i, "rep", "gone") is None
    c.front.start()
    with pytest.raises(ClientError):
        c.s3.head_object(Bucket="rep", Key="gone")


def test_proxy_restarted_with_a_pending_journal_drains_it(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.backends[1].kill()
    bodies = {f"k{i}": data(100_000 + i, i) for i in range(5)}
    for k, v in bodies.items():
        c.s3.put_object(Bucket="rep", Key=k, Body=v)
    c.front.kill()
    assert len(c.journal()) >= 5  # the missed writes, plus stragglers not yet checked
    c.backends[1].start()
    c.front.start()
    c.wait_journal_empty()
    for k in bodies:
        assert c.version(1, "rep", k) == c.version(0, "rep", k) is not None


def test_concurrent_writers_converge(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    errors = []

    def writer(w):
        client = make_client(c.front.endpoint)
        try:
            for i in range(6):
                client.put_object(Bucket="rep", Key=f"hot{i % 2}", Body=data(200_000, w * 10 + i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    c.wait_journal_empty()
    for k in ("hot0", "hot1"):
        versions = [c.version(i, "rep", k) for i in range(3)]
        assert versions[0] and versions.count(versions[0]) == 3, versions
        digests = [hashlib.sha256(c.stored_data(i, "rep", k)).hexdigest() for i in range(3)]
        assert digests.count(digests[0]) == 3, digests


def kill_all(c, indexes):
    for i in indexes:
        c.backends[i].kill()


def restart_all(c, indexes):
    for i in indexes:
        c.backends[i].start()


# W=all with one backend down, W=majority with two of three down: the quorum is out of
# reach, but the backends' circuits are still closed, so the write reaches the live ones.
REFUSED = [('"all"', [0]), ('"majority"', [0, 1])]


@pytest.mark.parametrize("cluster,down", [(q, d) for q, d in REFUSED], indirect=["cluster"])
def test_refused_overwrite_leaves_the_acknowledged_version(cluster, down):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.s3.put_object(Bucket="rep", Key="doc.txt", Body=b"acknowledged v1")
    c.wait_journal_empty()
    v1 = c.version(0, "rep", "doc.txt")
    assert v1 and all(c.version(i, "rep", "doc.txt") == v1 for i in range(3))
    kill_all(c, down)
    with pytest.raises(ClientError) as e:
        c.s3.put_object(Bucket="rep", Key="doc.txt", Body=b"refused v2")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # The live replicas still hold, and the proxy still serves, the acknowledged version.
    live = [i for i in range(3) if i not in down]
    for i in live:
        assert c.version(i, "rep", "doc.txt") == v1
    assert c.s3.get_object(Bucket="rep", Key="doc.txt")["Body"].read() == b"acknowledged v1"
    listed = c.s3.list_objects_v2(Bucket="rep")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("doc.txt", 15)]
    restart_all(c, down)
    c.wait_journal_empty()
    assert [c.version(i, "rep", "doc.txt") for i in range(3)] == [v1] * 3
    assert c.s3.get_object(Bucket="rep", Key="doc.txt")["Body"].read() == b"acknowledged v1"


@pytest.mark.parametrize("cluster,down", [(q, d) for q, d in REFUSED], indirect=["cluster"])
def test_refused_upload_part_leaves_the_object_alone(cluster, down):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.s3.put_object(Bucket="rep", Key="doc.txt", Body=b"acknowledged v1")
    upload = c.s3.create_multipart_upload(Bucket="rep", Key="doc.txt")["UploadId"]
    c.wait_journal_empty()
    v1 = c.version(0, "rep", "doc.txt")
    kill_all(c, down)
    with pytest.raises(ClientError) as e:
        c.s3.upload_part(Bucket="rep", Key="doc.txt", UploadId=upload, PartNumber=1, Body=data(100_000, 9))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    for i in range(3):
        if i not in down:
            assert c.version(i, "rep", "doc.txt") == v1
    assert c.s3.get_object(Bucket="rep", Key="doc.txt")["Body"].read() == b"acknowledged v1"
    restart_all(c, down)
    c.wait_journal_empty()
    assert c.s3.get_object(Bucket="rep", Key="doc.txt")["Body"].read() == b"acknowledged v1"


# Keys S3 accepts that HTTP clients, SDKs and file layouts trip on.
ODD_KEYS = [" ", "   ", " lead", "trail ", "\t", "a\nb", "tab\tin", "%2F", "a%2Fb", "+", "a+b c",
            "ü/日本語 ☃", "x" * 1024, "\u3000"]


@pytest.mark.parametrize("cluster", ['"all"'], indirect=True)
def test_odd_keys_reach_every_s3_backend_and_keep_circuits_closed(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    for round_ in range(2):  # twice: a backend refusing each would open its circuit
        for n, key in enumerate(ODD_KEYS):
            body = data(1000 + n, n) + bytes([round_])
            c.s3.put_object(Bucket="rep", Key=key, Body=body)  # W=all: every backend stored it
            assert c.s3.get_object(Bucket="rep", Key=key)["Body"].read() == body, repr(key)
    for key in ODD_KEYS:
        versions = [c.version(i, "rep", key) for i in range(3)]
        assert versions[0] and versions.count(versions[0]) == 3, (key, versions)
    listed = []
    for page in c.s3.get_paginator("list_objects_v2").paginate(Bucket="rep"):
        listed += [o["Key"] for o in page.get("Contents", [])]
    assert sorted(listed) == sorted(ODD_KEYS)
    # Every circuit is still closed: a W=all write of a plain key goes through at once.
    c.s3.put_object(Bucket="rep", Key="plain", Body=b"p")
    c.s3.delete_objects(Bucket="rep", Delete={"Objects": [{"Key": k} for k in ODD_KEYS]})
    assert "Contents" not in c.s3.list_objects_v2(Bucket="rep", Prefix=" ")
    c.wait_journal_empty()
    assert "circuit opened" not in c.front.log()


def test_whitespace_keys_on_a_stack_of_moto_servers(tmp_path):
    from conftest import start_moto
    motos = [start_moto(str(tmp_path)) for _ in range(3)]
    try:
        backends = "".join(f"""
[[backends]]
name = "moto{i}"
kind = "s3"
endpoint = "{m.endpoint}"
access_key = "moto"
secret_key = "moto"
""" for i, m in enumerate(motos))
        config = f"""
state_dir = "{tmp_path}/state"
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[replication]
write_quorum = "all"
repair_interval_secs = 1
{backends}"""
        front = Proxy(str(tmp_path / "front"), config)
        try:
            s3 = make_client(front.endpoint)
            s3.create_bucket(Bucket="wsk")
            # (moto itself cannot hold a key with a newline: its web server answers 404.)
            keys = [" ", "  ", " x ", "\t", "\u3000"]
            for _ in range(4):  # more than enough refusals to open every circuit
                for key in keys:
                    s3.put_object(Bucket="wsk", Key=key, Body=key.encode() + b"!")
            for key in keys:
                assert s3.get_object(Bucket="wsk", Key=key)["Body"].read() == key.encode() + b"!"
            for m in motos:
                direct = make_client(m.endpoint, "moto", "moto")
                for key in keys:
                    direct.head_object(Bucket="wsk", Key=key)  # stored on every backend
            s3.put_object(Bucket="wsk", Key="plain", Body=b"p")  # W=all: no circuit open
            assert "circuit opened" not in front.log()
            assert not glob.glob(os.path.join(str(tmp_path), "state", "journal", "*.json"))
        finally:
            front.stop()
    finally:
        for m in motos:
            m.stop()


@pytest.mark.parametrize("cluster", ['"all"'], indirect=True)
def test_listed_upload_ids_are_the_created_ones_and_work_on_every_replica(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    created = {}
    for key in ["big", "big", "other"]:
        created.setdefault(key, []).append(c.s3.create_multipart_upload(Bucket="rep", Key=key)["UploadId"])
        time.sleep(0.05)
    listed = c.s3.list_multipart_uploads(Bucket="rep")["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in listed) == sorted(
        (k, i) for k, ids in created.items() for i in ids)
    # Resume an upload from the listing (W=all: every replica must take the part).
    by_key = {}
    for u in listed:
        by_key.setdefault(u["Key"], []).append(u["UploadId"])
    upload = by_key["big"][0]
    part1, part2 = data(5 * 1024 * 1024, 5), data(1000, 6)
    etags = [c.s3.upload_part(Bucket="rep", Key="big", UploadId=upload, PartNumber=n, Body=b)["ETag"]
             for n, b in [(1, part1), (2, part2)]]
    c.s3.complete_multipart_upload(Bucket="rep", Key="big", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    assert c.s3.get_object(Bucket="rep", Key="big")["Body"].read() == part1 + part2
    # Clean up from the listing: every replica's upload goes.
    for u in c.s3.list_multipart_uploads(Bucket="rep")["Uploads"]:
        c.s3.abort_multipart_upload(Bucket="rep", Key=u["Key"], UploadId=u["UploadId"])
    assert "Uploads" not in c.s3.list_multipart_uploads(Bucket="rep")
    for d in c.direct:
        assert "Uploads" not in d.list_multipart_uploads(Bucket="rep")
    assert "circuit opened" not in c.front.log()


def test_retried_complete_after_success_answers_the_same(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    upload = c.s3.create_multipart_upload(Bucket="rep", Key="mp")["UploadId"]
    part1, part2 = data(5 * 1024 * 1024, 7), data(777, 8)
    parts = [{"PartNumber": n, "ETag": c.s3.upload_part(Bucket="rep", Key="mp", UploadId=upload, PartNumber=n,
                                                         Body=b)["ETag"]} for n, b in [(1, part1), (2, part2)]]
    first = c.s3.complete_multipart_upload(Bucket="rep", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    again = c.s3.complete_multipart_upload(Bucket="rep", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    assert again["ETag"] == first["ETag"]
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert c.s3.get_object(Bucket="rep", Key="mp")["Body"].read() == part1 + part2
    # A different parts list for the finished upload is still NoSuchUpload.
    with pytest.raises(ClientError) as e:
        c.s3.complete_multipart_upload(Bucket="rep", Key="mp", UploadId=upload,
                                       MultipartUpload={"Parts": parts[:1]})
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"


@pytest.mark.parametrize("cluster", ['"all"'], indirect=True)
def test_empty_objects_pass_the_commit_gate(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    started = time.time()
    for key in ["empty", "dir/"]:
        c.s3.put_object(Bucket="rep", Key=key, Body=b"")
        assert [c.version(i, "rep", key) is not None for i in range(3)] == [True] * 3
        assert c.s3.get_object(Bucket="rep", Key=key)["Body"].read() == b""
    assert time.time() - started < 2, "no write waited for the stall timeout"


@pytest.mark.parametrize("cluster", ['"all"'], indirect=True)
def test_backend_paused_during_a_refused_overwrite_keeps_the_acknowledged_version(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    v1_body = data(3 * 1024 * 1024, 11)
    c.s3.put_object(Bucket="rep", Key="doc", Body=v1_body)
    c.wait_journal_empty()
    v1 = c.version(0, "rep", "doc")
    c.backends[2].pause()  # stops mid-write: it never takes the whole body
    try:
        # Larger than what the kernel's socket buffers take for a stopped process.
        with pytest.raises(ClientError) as e:
            c.s3.put_object(Bucket="rep", Key="doc", Body=data(48 * 1024 * 1024, 12))
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        for i in (0, 1):
            assert c.version(i, "rep", "doc") == v1
        assert c.s3.get_object(Bucket="rep", Key="doc")["Body"].read() == v1_body
    finally:
        c.backends[2].resume()
    c.wait_journal_empty()
    assert [c.version(i, "rep", "doc") for i in range(3)] == [v1] * 3


@pytest.mark.parametrize("cluster", ['"all"'], indirect=True)
def test_backend_paused_after_taking_the_whole_body_never_leaves_a_key_unreadable(cluster):
    """The case the commit gate cannot cover: a small body fits in the socket buffers of a
    stopped process, so every backend "took" it and the others commit before the stopped
    one can answer. The 503 then means "outcome unknown" (as on S3): the key is served
    from whichever version the live replicas hold, never missing, and all replicas
    converge once the backend resumes."""
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.s3.put_object(Bucket="rep", Key="doc", Body=b"v1")
    c.wait_journal_empty()
    c.backends[2].pause()
    try:
        with pytest.raises(ClientError) as e:
            c.s3.put_object(Bucket="rep", Key="doc", Body=b"v2")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert c.s3.get_object(Bucket="rep", Key="doc")["Body"].read() in (b"v1", b"v2")
    finally:
        c.backends[2].resume()
    c.wait_journal_empty()
    versions = [c.version(i, "rep", "doc") for i in range(3)]
    assert versions[0] and versions.count(versions[0]) == 3, versions
    assert c.s3.get_object(Bucket="rep", Key="doc")["Body"].read() in (b"v1", b"v2")


def test_server_and_repair_tool_share_the_journal(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    c.backends[2].kill()
    bodies = {f"k{i:02}": data(50_000 + i, i) for i in range(20)}
    for k, v in list(bodies.items())[:10]:
        c.s3.put_object(Bucket="rep", Key=k, Body=v)
    c.backends[2].start()
    # The repair tool runs while the server keeps writing (and journaling) other keys.
    tool = subprocess.Popen([BIN, "--config", os.path.join(c.front_dir, "s3proxy.toml"), "repair"],
                            cwd=c.front_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    c.backends[1].kill()
    for k, v in list(bodies.items())[10:]:
        c.s3.put_object(Bucket="rep", Key=k, Body=v)
    out, err = tool.communicate(timeout=120)
    c.backends[1].start()
    c.wait_journal_empty(60)
    for k in bodies:
        versions = [c.version(i, "rep", k) for i in range(3)]
        assert versions[0] and versions.count(versions[0]) == 3, (k, versions, out, err[-2000:])
        assert c.s3.get_object(Bucket="rep", Key=k)["Body"].read() == bodies[k]
    assert not glob.glob(os.path.join(c.state, "journal", "*.corrupt"))


def stamp_ms(stamp):
    """The milliseconds of a version stamp's clock reading."""
    return int(stamp.split("-")[0], 16)


def plant(c, i, bucket, key, body, metadata, stamp):
    """Store `body` with `metadata` on backend i directly, under a stamp of our choosing, as
    anyone who can write to that backend can."""
    c.direct[i].put_object(Bucket=bucket, Key=key, Body=body, Metadata=dict(metadata, **{"s3proxy-version": stamp}))


def test_a_forged_far_future_stamp_on_one_backend_does_not_win(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    v1, v2 = data(300_000, 21), data(300_000, 22)
    c.s3.put_object(Bucket="rep", Key="k", Body=v1)
    c.wait_journal_empty()
    # What backend r1 held for v1: its ciphertext and metadata, which still authenticate.
    old = c.direct[0].get_object(Bucket="rep", Key="k")
    old_body, old_meta = old["Body"].read(), old["Metadata"]
    c.s3.put_object(Bucket="rep", Key="k", Body=v2)
    c.wait_journal_empty()
    good = c.version(1, "rep", "k")
    # A rollback: v1 put back on r1 under a stamp from far in the future (a bare one, and
    # one with a made-up MAC). Before stamps were authenticated it won every comparison.
    for forged in ["ffffffffffff-000000-evil", "fffffffffff0-000000-evil." + "ab" * 16]:
        plant(c, 0, "rep", "k", old_body, old_meta, forged)
        assert c.version(0, "rep", "k") == forged
        assert c.s3.get_object(Bucket="rep", Key="k")["Body"].read() == v2
        # The read found r1 behind; repair puts v2 back there.
        deadline = time.time() + 30
        while time.time() < deadline and c.version(0, "rep", "k") != good:
            time.sleep(0.2)
        assert c.version(0, "rep", "k") == good
        assert c.stored_data(0, "rep", "k") == c.stored_data(1, "rep", "k")
    # The front's clock did not jump to the forged time: its next stamp is now.
    c.s3.put_object(Bucket="rep", Key="k", Body=v1)
    assert abs(stamp_ms(c.version(1, "rep", "k")) / 1000 - time.time()) < 60
    assert c.s3.get_object(Bucket="rep", Key="k")["Body"].read() == v1
    assert "does not verify" in c.front.log()


def run_scrub(c):
    return subprocess.run([BIN, "--config", os.path.join(c.front_dir, "s3proxy.toml"), "scrub"],
                          cwd=c.front_dir, capture_output=True, text=True, timeout=120)


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))


def test_scrub_repairs_corrupt_and_missing_replicas(cluster):
    c = cluster
    c.s3.create_bucket(Bucket="rep")
    bodies = {f"s{i}": data(200_000 + i, 30 + i) for i in range(3)}
    for k, v in bodies.items():
        c.s3.put_object(Bucket="rep", Key=k, Body=v)
    c.wait_journal_empty()
    r = run_scrub(c)
    assert r.returncode == 0 and "scrubbed 9 object replica(s): 0 failed" in r.stdout, r.stdout + r.stderr
    good = c.stored_data(1, "rep", "s0")
    # r1's stored bytes of s0 flipped on disk; r3 lost s1 altogether.
    flip(c.object_file(0, "rep", "s0"), 100_000)
    c.direct[2].delete_object(Bucket="rep", Key="s1")
    assert c.stored_data(0, "rep", "s0") != good
    r = run_scrub(c)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "1 failed" in r.stdout and "repaired r1 rep/s0" in r.stdout, out
    assert "repaired 1 failing replica(s); 1 missing or stale replica(s) brought up to date" in r.stdout, out
    assert c.stored_data(0, "rep", "s0") == good, "the corrupt replica is byte-identical to the others"
    assert c.stored_data(2, "rep", "s1") == c.stored_data(0, "rep", "s1")
    r = run_scrub(c)
    assert r.returncode == 0 and "scrubbed 9 object replica(s): 0 failed" in r.stdout, r.stdout + r.stderr
    # Every replica of s2 corrupt: nothing good to repair from, so scrub says so and fails.
    for i in range(3):
        flip(c.object_file(i, "rep", "s2"), 50_000)
    r = run_scrub(c)
    assert r.returncode == 1 and "NOT repaired" in r.stdout and "rep/s2" in r.stdout, r.stdout + r.stderr
    for k in ["s0", "s1"]:
        assert c.s3.get_object(Bucket="rep", Key=k)["Body"].read() == bodies[k]
