"""The MinIO Python client's own functional suite through the encrypting proxy.

`tests/functional/tests.py` of the minio sdist is what MinIO's mint runs against S3
servers. It is downloaded once (pip download of the pinned sdist) into a cache under the
repo's gitignored target/. Each of its test functions is one pytest case with its own time
limit, run by a child process (one per stack) against the filesystem stack, the
replicated fs+S3 stack and the S3-only stack (moto and another s3proxy), the last
encrypted and not, all conftest's `proxy`. Every function of the file is accounted for below:
run and must pass, run and must end NotImplemented (mint's "NA"), or left out with the
reason. A missing tool skips with a warning, so that -q runs show it too.
"""

import importlib.metadata
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings

import pytest
from botocore.exceptions import ClientError

from conftest import (
    ACCESS_KEY,
    ROOT,
    SECRET_KEY,
)

pytestmark = pytest.mark.stacks("fs", "replicated", "s3only", "s3only-plain")

# Keep in step with scripts/test.sh, which installs this version of the library: the
# suite is the one shipped with the library it tests. 7.2.20 is the newest release and
# supports Python >= 3.9.
MINIO_VERSION = "7.2.20"
CACHE = os.path.join(ROOT, "target", "minio-functional", MINIO_VERSION)

# Run, and must end PASS. The suite runs over plain HTTP (ENABLE_HTTPS=0), so its main()
# would pass no SSE-C key: the *_with_SSE-C variants are not run (SSE-C is out of scope,
# s3proxy encrypts with its own keys).
PASSING = [
    "test_make_bucket_default_region",
    "test_negative_make_bucket_invalid_name",
    "test_list_buckets",
    "test_fput_object_small_file",
    "test_fput_object_large_file",  # 11 MiB: a multipart upload
    "test_fput_object_with_content_type",
    "test_copy_object_no_copy_condition",
    "test_copy_object_with_metadata",
    "test_copy_object_etag_match",
    "test_copy_object_negative_etag_match",
    "test_copy_object_modified_since",
    "test_copy_object_unmodified_since",
    "test_put_object",
    "test_negative_put_object_with_path_segment",  # not on the fs+S3 stack: EMPTY_SEGMENT
    "test_stat_object",
    "test_remove_object",
    "test_get_object",
    "test_fget_object",
    "test_get_object_with_default_length",
    "test_get_partial_object",
    "test_list_objects_v1",
    "test_list_objects_with_prefix",
    # 2,000 objects listed in pages: minio-py sends start-after (set to the token) beside
    # continuation-token, and S3 ignores start-after then.
    "test_list_objects_with_1001_files",
    "test_list_objects",
    "test_presigned_get_object_default_expiry",
    "test_presigned_get_object_expiry",
    "test_presigned_get_object_response_headers",
    "test_presigned_put_object_default_expiry",
    "test_presigned_put_object_expiry",
    "test_presigned_post_policy",  # builds the form client-side; creates, removes a bucket
    "test_thread_safe",
    "test_remove_objects",
    "test_remove_bucket",
]

# The key "/a/b/c/<uuid>" has an empty segment, which s3s-fs cannot store: it answers 500
# to the PUT and to every HEAD of that key. The other replicas' repair-journal entries for
# the key (a straggler's, a missed delete's) then wait for s3s-fs to answer, by design (an
# unreachable replica may hold the only copy of a version), so conftest's replicated stack
# would end its session with replicas "still behind". The S3-only stack has no s3s-fs,
# so the test runs there.
EMPTY_SEGMENT = "s3s-fs cannot store a key with an empty segment (see EMPTY_SEGMENT)"

# Out of scope: s3proxy answers NotImplemented for these features, and mint counts a
# NotImplemented as "NA", not a failure. They run (on the filesystem stack only: the
# answer comes from the router, before any backend) and must end NA, so that s3proxy
# never pretends to support them.
NOT_IMPLEMENTED = [
    "test_select_object_content",  # SelectObjectContent
    "test_get_bucket_policy",  # bucket policies
    "test_set_bucket_policy_readonly",
    "test_set_bucket_policy_readwrite",
    "test_get_bucket_notification",  # bucket notifications
    # Versioning: buckets served by s3proxy are unversioned; PutBucketVersioning is
    # NotImplemented (it used to be taken for a CreateBucket and answer 200).
    "test_set_get_bucket_versioning",
    "test_stat_object_version",
    "test_remove_object_version",
    "test_get_object_version",
    "test_fget_object_version",
    "test_list_object_v1_versions",
    "test_list_object_versions",
    "test_presigned_get_object_version",
    "test_remove_object_versions",
]

# Not run, and why.
LEFT_OUT = {
    # Does nothing unless the endpoint is *.amazonaws.com.
    "test_make_bucket_with_region": "runs only against AWS",
    # Asserts status 200 for a GET with a Range header, where S3 (and s3proxy) answer 206
    # Partial Content with the range; minio's own main() never runs it.
    "test_presigned_get_object_range": "expects 200 for a ranged GET (S3 answers 206)",
    # A MinIO extension: a tar PUT with X-Amz-Meta-Snowball-Auto-Extract that the MinIO
    # server unpacks into objects. S3 stores the tar as one object, so the test's listing
    # counts 1 object, not 3, and its cleanup then fails on the non-empty bucket.
    "test_upload_snowball_objects": "MinIO-only snowball auto-extract",
    "test_upload_snowball_objects_with_staging": "MinIO-only snowball auto-extract",
}

# Seconds a test may take (on the slowest stack, on a shared 2-core machine).
TIMEOUT = 60
TIMEOUTS = {"test_list_objects_with_1001_files": 180, "test_thread_safe": 120}

# The child that runs the suite. It sets the suite up as its main() does from
# SERVER_ENDPOINT, ACCESS_KEY, SECRET_KEY, ENABLE_HTTPS and DATA_DIR (the mint data files),
# then runs each test named on its stdin through the suite's own _call_test, which prints
# the test's JSON log entry (status PASS, NA or FAIL), and prints DONE after it. One child
# serves a whole stack: importing the suite takes longer than most of its tests.
WORKER = r"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("minio_functional", sys.argv[1])
t = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)
t._client = t.Minio(os.environ["SERVER_ENDPOINT"], os.environ["ACCESS_KEY"],
                    os.environ["SECRET_KEY"], secure=os.environ["ENABLE_HTTPS"] == "1")
t._is_aws = False
t._test_file = os.path.join(os.environ["DATA_DIR"], "datafile-1-MB")
t._large_file = os.path.join(os.environ["DATA_DIR"], "datafile-11-MB")
# The suite makes its object data by shuffling a list of as many letters as the object
# has bytes (6 s for its 11 MiB objects here); random lowercase letters of the same
# length, made at once, test the same.
LETTERS = bytes(97 + i % 26 for i in range(256))
t._get_random_string = lambda size: os.urandom(size).translate(LETTERS).decode()
for line in sys.stdin:
    try:
        t._call_test(getattr(t, line.strip()))
    except t.TestFailed:
        pass
    print("DONE", flush=True)
"""


def skip_loudly(why):
    warnings.warn(pytest.PytestWarning(f"SKIPPED: {why}"))
    pytest.skip(f"SKIPPED: {why}")


def _download_suite():
    """tests.py of the pinned sdist, from the cache or fetched into it; None if neither."""
    path = os.path.join(CACHE, "tests.py")
    if os.path.exists(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="minio-sdist-", dir=CACHE)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--no-binary", ":all:", "--no-deps", f"minio=={MINIO_VERSION}", "-d", work],
            capture_output=True, text=True, timeout=180)
        sdist = os.path.join(work, f"minio-{MINIO_VERSION}.tar.gz")
        if r.returncode != 0 or not os.path.exists(sdist):
            print(f"pip download minio=={MINIO_VERSION} failed:\n{r.stdout}\n{r.stderr}", file=sys.stderr)
            return None
        with tarfile.open(sdist) as tar:
            data = tar.extractfile(f"minio-{MINIO_VERSION}/tests/functional/tests.py").read()
        with open(path + ".part", "wb") as f:
            f.write(data)
        os.replace(path + ".part", path)  # whole or absent
        return path
    except (OSError, subprocess.TimeoutExpired, KeyError, tarfile.TarError) as e:
        print(f"fetching minio=={MINIO_VERSION}'s functional tests failed: {e}", file=sys.stderr)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def suite():
    """(path of tests.py, DATA_DIR with the mint data files)."""
    try:
        installed = importlib.metadata.version("minio")
    except importlib.metadata.PackageNotFoundError:
        skip_loudly(f"the minio package is not installed (./scripts/test.sh installs minio=={MINIO_VERSION})")
    if installed != MINIO_VERSION:
        skip_loudly(f"minio {installed} is installed, the suite is pinned to {MINIO_VERSION} "
                    f"(./scripts/test.sh installs it)")
    path = _download_suite()
    if path is None:
        skip_loudly(f"could not download minio=={MINIO_VERSION}'s sdist for its functional tests")
    data = os.path.join(CACHE, "data")
    os.makedirs(data, exist_ok=True)
    for name, size in (("datafile-1-MB", 1 << 20), ("datafile-11-MB", 11 << 20)):
        f = os.path.join(data, name)
        if not os.path.exists(f) or os.path.getsize(f) != size:
            with open(f + ".part", "wb") as out:
                out.write(os.urandom(size))
            os.replace(f + ".part", f)
    return path, data


class Worker:
    """The child process that runs the suite's tests against one proxy."""

    def __init__(self, suite, px):
        path, data = suite
        self.cwd = tempfile.mkdtemp(prefix="s3proxy-minio-functional-")  # its scratch files
        env = dict(os.environ, SERVER_ENDPOINT=f"127.0.0.1:{px.port}", ACCESS_KEY=ACCESS_KEY,
                   SECRET_KEY=SECRET_KEY, ENABLE_HTTPS="0", DATA_DIR=data, PYTHONUNBUFFERED="1")
        self.stderr = open(os.path.join(self.cwd, "stderr.log"), "w+")
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, path], cwd=self.cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        self.buffer = b""

    def run(self, name, timeout):
        """The lines the test printed, or None if it did not finish within `timeout`
        seconds (the child is then killed)."""
        self.proc.stdin.write(name.encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while b"DONE\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.stop()
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the minio suite's process died running {name}:\n{self.errors()}")
            self.buffer += chunk
        out, self.buffer = self.buffer.split(b"DONE\n", 1)
        return out.decode(errors="replace").splitlines()

    def errors(self):
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.cwd, ignore_errors=True)


@pytest.fixture(scope="module")
def workers():
    """One Worker per proxy, started when first needed, again after a timeout."""
    running = {}
    yield running
    for w in running.values():
        w.stop()


def run_functional(suite, workers, px, name):
    """Run one function of the suite against `px`; returns its JSON log entry."""
    worker = workers.get(px.port)
    if worker is None or worker.proc.poll() is not None:
        worker = workers[px.port] = Worker(suite, px)
    log_start = len(px.log())
    timeout = TIMEOUTS.get(name, TIMEOUT)
    lines = worker.run(name, timeout)
    if lines is None:
        del workers[px.port]
        pytest.fail(f"{name} did not finish in {timeout}s\n{px.log()[log_start:][-3000:]}")
    entry = None
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("name") == f"minio-py:{name}":
            entry = obj
    assert entry is not None, f"{name} printed no result:\n" + "\n".join(lines) + worker.errors()
    entry["proxy_log"] = px.log()[log_start:]
    # A 501 NotImplemented is deliberate; any other 5xx is a bug, even one the client
    # retried past.
    server_errors = [l for l in entry["proxy_log"].splitlines() if re.search(r"-> 5(0[02-9]|[1-9]\d) ", l)]
    assert not server_errors, "\n".join(server_errors[:20])
    return entry


def describe(entry):
    return (f"{entry.get('status')}: {entry.get('message', '')}\n{entry.get('error', '')}\n"
            f"proxy log:\n{entry['proxy_log'][-3000:]}")


@pytest.mark.parametrize("name", PASSING)
def test_passes(suite, workers, proxy, name):
    if name == "test_negative_put_object_with_path_segment" and proxy.stack.startswith("replicated"):
        pytest.skip(EMPTY_SEGMENT)
    entry = run_functional(suite, workers, proxy, name)
    assert entry["status"] == "PASS", describe(entry)


@pytest.mark.stacks("fs")
@pytest.mark.parametrize("name", NOT_IMPLEMENTED)
def test_not_implemented(suite, workers, proxy, name):
    entry = run_functional(suite, workers, proxy, name)
    assert entry["status"] == "NA", describe(entry)
    assert " -> 501 " in entry["proxy_log"], entry["proxy_log"][-3000:]


def test_every_function_is_accounted_for(suite):
    """A new minio version's new tests are seen, not silently skipped."""
    with open(suite[0]) as f:
        names = set(re.findall(r"^def (test_\w+)\(", f.read(), re.M))
    listed = PASSING + NOT_IMPLEMENTED + list(LEFT_OUT)
    assert len(listed) == len(set(listed)), "a test is listed twice"
    assert names == set(listed), (sorted(names - set(listed)), sorted(set(listed) - names))


# ---------------------------------------------------------------- defects the suite found
# Focused, deterministic versions of what the suite caught (its own tests catch them only
# now and then, or only indirectly).


def test_list_v2_continuation_token_beats_start_after(s3):
    """minio-py pages with continuation-token=T&start-after=T. S3 ignores start-after
    beside a token; s3proxy used to start after the greater of the two, and as T (base64)
    sorts after keys that begin with a digit, the suite's 2,000-object listing stopped at
    1,000 whenever its uuid began with a digit."""
    b = f"minio-token-{os.getpid()}"
    s3.create_bucket(Bucket=b)
    try:
        for k in ("0a", "1b", "2c"):
            s3.put_object(Bucket=b, Key=k, Body=b"x")
        first = s3.list_objects_v2(Bucket=b, MaxKeys=1)
        assert [o["Key"] for o in first["Contents"]] == ["0a"] and first["IsTruncated"]
        token = first["NextContinuationToken"]
        for start_after in ("zzz", token, ""):
            r = s3.list_objects_v2(Bucket=b, ContinuationToken=token, StartAfter=start_after)
            assert [o["Key"] for o in r.get("Contents", [])] == ["1b", "2c"], start_after
            assert r["ContinuationToken"] == token
        # Without a token, start-after still places the first page.
        r = s3.list_objects_v2(Bucket=b, StartAfter="1b")
        assert [o["Key"] for o in r["Contents"]] == ["2c"] and r["StartAfter"] == "1b"
    finally:
        for k in ("0a", "1b", "2c"):
            s3.delete_object(Bucket=b, Key=k)
        s3.delete_bucket(Bucket=b)


def test_put_bucket_versioning_is_not_implemented(s3):
    """PUT /bucket?versioning used to be routed as a CreateBucket of the existing bucket
    and answer 200: the client believed versioning was on while every overwrite replaced
    the object for good."""
    b = f"minio-versioning-{os.getpid()}"
    s3.create_bucket(Bucket=b)
    try:
        for status in ("Enabled", "Suspended"):
            with pytest.raises(ClientError) as e:
                s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": status})
            assert e.value.response["Error"]["Code"] == "NotImplemented"
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
        assert s3.get_bucket_versioning(Bucket=b).get("Status") is None
    finally:
        s3.delete_bucket(Bucket=b)
