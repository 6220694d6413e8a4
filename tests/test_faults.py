"""Faults in the middle of the unhappy path, injected for real: a backend answering 503
SlowDown (through a fault injector in front of it), a backend whose data directory is
wiped while it is down, and the proxy SIGKILLed between the steps of a multipart
completion. Three s3proxy instances (filesystem, no encryption) serve as the S3 backends
of an encrypting front proxy; what each replica holds is checked directly."""

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import BIN, Proxy, make_client
from faultproxy import FaultProxy
from test_replication import BACKEND_KEY, BACKEND_SECRET, Cluster, backend_config, data, front_config

MIB = 1024 * 1024


class FaultCluster(Cluster):
    """Three backends, each reached by the front proxy through its own fault injector."""

    def __init__(self, quorum):  # noqa: super().__init__ would start a direct cluster
        self.root = tempfile.mkdtemp(prefix="s3proxy-faults-")
        self.backends = [Proxy(os.path.join(self.root, f"b{i + 1}"),
                               backend_config(os.path.join(self.root, f"b{i + 1}", "data")))
                         for i in range(3)]
        self.faults = [FaultProxy(b.port) for b in self.backends]
        self.state = os.path.join(self.root, "front-state")
        self.front_dir = os.path.join(self.root, "front")
        self.front = Proxy(self.front_dir, front_config(self.state, [f.port for f in self.faults], quorum))
        self.s3 = make_client(self.front.endpoint)
        self.direct = [make_client(b.endpoint, BACKEND_KEY, BACKEND_SECRET) for b in self.backends]

    def stored(self, i, bucket, key):
        """What backend i stores for the key (ciphertext), or None."""
        try:
            return self.direct[i].get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return None

    def close(self):
        for f in self.faults:
            f.close()
        super().close()


@pytest.fixture
def faults(request):
    c = FaultCluster(getattr(request, "param", '"majority"'))
    yield c
    c.close()


def upload_multipart(s3, bucket, key, parts):
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n,
                                                      Body=b)["ETag"]}
            for n, b in enumerate(parts, start=1)]
    return upload, done


def assert_converged(c, bucket, bodies):
    for key, body in bodies.items():
        assert c.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, key
        versions = [c.version(i, bucket, key) for i in range(3)]
        assert versions[0] and versions.count(versions[0]) == 3, (key, versions)
        stored = [hashlib.sha256(c.stored(i, bucket, key)).hexdigest() for i in range(3)]
        assert stored.count(stored[0]) == 3, (key, "replicas hold identical ciphertext")


def test_backend_answering_503_is_written_around_and_repaired(faults):
    c = faults
    c.s3.create_bucket(Bucket="faults")
    c.faults[2].mode = "503"
    bodies = {f"small{i}": data(10_000 + i, i) for i in range(4)}
    for k, v in bodies.items():
        c.s3.put_object(Bucket="faults", Key=k, Body=v)
    parts = [data(5 * MIB, 20), data(1234, 21)]
    upload, done = upload_multipart(c.s3, "faults", "multi", parts)
    c.s3.complete_multipart_upload(Bucket="faults", Key="multi", UploadId=upload, MultipartUpload={"Parts": done})
    bodies["multi"] = b"".join(parts)
    # Served whole while the backend keeps refusing; it holds none of it.
    for k, v in bodies.items():
        assert c.s3.get_object(Bucket="faults", Key=k)["Body"].read() == v
        assert c.s3.head_object(Bucket="faults", Key=k)["ContentLength"] == len(v)
        assert c.version(2, "faults", k) is None
    assert any(s == 503 for _, _, s in c.faults[2].seen), "the injector answered 503"
    c.faults[2].mode = "pass"
    c.wait_journal_empty(60)
    assert_converged(c, "faults", bodies)


def test_every_backend_answering_503_refuses_the_write_and_keeps_the_old_version(faults):
    c = faults
    c.s3.create_bucket(Bucket="faults")
    c.s3.put_object(Bucket="faults", Key="doc", Body=b"acknowledged v1")
    c.wait_journal_empty()
    v1 = c.version(0, "faults", "doc")
    for f in c.faults:
        f.mode = "503"
    with pytest.raises(ClientError) as e:
        c.s3.put_object(Bucket="faults", Key="doc", Body=b"refused v2")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] in ("ServiceUnavailable", "SlowDown")
    for f in c.faults:
        f.mode = "pass"
    assert [c.version(i, "faults", "doc") for i in range(3)] == [v1] * 3
    deadline = time.time() + 30  # circuits opened by the refusals close again
    while True:
        try:
            assert c.s3.get_object(Bucket="faults", Key="doc")["Body"].read() == b"acknowledged v1"
            break
        except ClientError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def test_backend_answering_503_in_the_middle_of_an_upload(faults):
    c = faults
    c.s3.create_bucket(Bucket="faults")
    upload = c.s3.create_multipart_upload(Bucket="faults", Key="mid")["UploadId"]
    p1, p2, p3 = data(5 * MIB, 30), data(5 * MIB, 31), data(4321, 32)
    etags = [c.s3.upload_part(Bucket="faults", Key="mid", UploadId=upload, PartNumber=1, Body=p1)["ETag"]]
    c.faults[1].mode = "503"
    etags.append(c.s3.upload_part(Bucket="faults", Key="mid", UploadId=upload, PartNumber=2, Body=p2)["ETag"])
    c.faults[1].mode = "pass"
    etags.append(c.s3.upload_part(Bucket="faults", Key="mid", UploadId=upload, PartNumber=3, Body=p3)["ETag"])
    parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
    c.s3.complete_multipart_upload(Bucket="faults", Key="mid", UploadId=upload, MultipartUpload={"Parts": parts})
    assert c.s3.get_object(Bucket="faults", Key="mid")["Body"].read() == p1 + p2 + p3
    c.wait_journal_empty(60)
    assert_converged(c, "faults", {"mid": p1 + p2 + p3})


@pytest.mark.parametrize("faults", ["1"], indirect=True)
def test_wiped_backend_is_rebuilt_by_the_repair_tool(faults):
    c = faults
    c.s3.create_bucket(Bucket="faults")
    bodies = {f"k{i}": data(20_000 + i, i) for i in range(6)}
    parts = [data(5 * MIB, 40), data(99, 41)]
    for k, v in bodies.items():
        c.s3.put_object(Bucket="faults", Key=k, Body=v)
    upload, done = upload_multipart(c.s3, "faults", "multi", parts)
    c.s3.complete_multipart_upload(Bucket="faults", Key="multi", UploadId=upload, MultipartUpload={"Parts": done})
    bodies["multi"] = b"".join(parts)
    c.wait_journal_empty()
    # The disk of backend 2 is replaced: it comes back empty, with no bucket at all.
    c.backends[1].kill()
    shutil.rmtree(os.path.join(c.root, "b2", "data"))
    c.backends[1].start()
    for k, v in bodies.items():  # served from the others meanwhile
        assert c.s3.get_object(Bucket="faults", Key=k)["Body"].read() == v
    listed = [o["Key"] for o in c.s3.list_objects_v2(Bucket="faults")["Contents"]]
    assert sorted(listed) == sorted(bodies)
    # The operator runs the repair tool beside the running server.
    r = subprocess.run([BIN, "--config", os.path.join(c.front_dir, "s3proxy.toml"), "repair"],
                       cwd=c.front_dir, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    c.wait_journal_empty(60)
    assert_converged(c, "faults", bodies)


def is_object_copy(method, path, headers):
    """A CopyObject (not an UploadPartCopy): the step that attaches the sealed records."""
    return method == "PUT" and "x-amz-copy-source" in headers and "uploadId=" not in path


def is_complete(method, path, headers):
    return method == "POST" and "uploadId=" in path


@pytest.mark.parametrize("step", [is_complete, is_object_copy], ids=["before-complete", "after-complete"])
def test_proxy_killed_between_the_steps_of_a_completion(faults, step):
    """SIGKILL of the proxy while a CompleteMultipartUpload waits on its backends, at each
    step. After the restart the key serves a whole version, the acknowledged old one or
    the new one, never an unreadable object; a client retrying the completion gets the
    new object."""
    c = faults
    c.s3.create_bucket(Bucket="faults")
    c.s3.put_object(Bucket="faults", Key="doc", Body=b"acknowledged v1")
    parts = [data(5 * MIB, 50), data(777, 51)]
    upload, done = upload_multipart(c.s3, "faults", "doc", parts)
    c.wait_journal_empty()
    for f in c.faults:
        f.hold_if = step
        f.mode = "hold"
    outcome = []

    def complete():
        try:
            outcome.append(make_client(c.front.endpoint, read_timeout=120).complete_multipart_upload(
                Bucket="faults", Key="doc", UploadId=upload, MultipartUpload={"Parts": done}))
        except Exception as e:  # noqa: BLE001 - the proxy dies under it
            outcome.append(e)

    t = threading.Thread(target=complete)
    t.start()
    deadline = time.time() + 30
    while not any(f.held.is_set() for f in c.faults) and time.time() < deadline:
        time.sleep(0.05)
    assert any(f.held.is_set() for f in c.faults), ("the completion reached the held step", outcome)
    c.front.kill()
    for f in c.faults:
        f.mode = "pass"
        f.release()
    t.join(60)
    c.front.start()
    new = b"".join(parts)
    got = c.s3.get_object(Bucket="faults", Key="doc")["Body"].read()
    assert got in (b"acknowledged v1", new), f"{len(got)} bytes served"
    head = c.s3.head_object(Bucket="faults", Key="doc")
    assert head["ContentLength"] == len(got)
    # The client, whose answer was lost, retries the completion.
    retried = c.s3.complete_multipart_upload(Bucket="faults", Key="doc", UploadId=upload,
                                             MultipartUpload={"Parts": done})
    assert retried["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert c.s3.get_object(Bucket="faults", Key="doc")["Body"].read() == new
    c.wait_journal_empty(60)
    assert_converged(c, "faults", {"doc": new})


def is_part_upload(method, path, headers):
    return method == "PUT" and "partNumber=" in path and "x-amz-copy-source" not in headers


def test_every_backend_refusing_the_manifest_part_leaves_a_whole_version(faults):
    """The completion's own write, the manifest part, refused by every backend (503): the
    key then serves a whole version, the acknowledged old one or the new object, and a
    completion answered 200 means the new object."""
    c = faults
    c.s3.create_bucket(Bucket="faults")
    c.s3.put_object(Bucket="faults", Key="doc", Body=b"acknowledged v1")
    parts = [data(5 * MIB, 60), data(777, 61)]
    upload, done = upload_multipart(c.s3, "faults", "doc", parts)
    c.wait_journal_empty(60)
    for f in c.faults:
        f.hold_if = is_part_upload
        f.release()  # held requests are answered 503 at once
        f.mode = "hold"
    try:
        answer = c.s3.complete_multipart_upload(Bucket="faults", Key="doc", UploadId=upload,
                                                MultipartUpload={"Parts": done})
    except ClientError as e:
        answer = e.response
    assert any(s == 503 for f in c.faults for _, _, s in f.seen), "the manifest part was refused"
    for f in c.faults:
        f.mode = "pass"
    new = b"".join(parts)
    got = c.s3.get_object(Bucket="faults", Key="doc")["Body"].read()
    if answer["ResponseMetadata"]["HTTPStatusCode"] == 200:
        assert got == new
    else:
        assert got in (b"acknowledged v1", new), f"{len(got)} bytes served"
    assert c.s3.head_object(Bucket="faults", Key="doc")["ContentLength"] == len(got)
    c.wait_journal_empty(60)
