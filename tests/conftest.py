"""Fixtures for s3proxy's end-to-end tests: the real binary, real clients."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import boto3
import botocore.config
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("S3PROXY_BIN", os.path.join(ROOT, "target", "release", "s3proxy"))
ACCESS_KEY = "AKEXAMPLE"
SECRET_KEY = "secretexample"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"s3proxy exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("s3proxy did not start listening")


class Proxy:
    """A running s3proxy process with its own data directory."""

    def __init__(self, workdir, config_text=None, args=(), port=None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.stderr_path = os.path.join(workdir, "stderr.log")
        cmd = [BIN, "--listen", f"127.0.0.1:{self.port}", *args]
        if config_text is not None:
            path = os.path.join(workdir, "s3proxy.toml")
            with open(path, "w") as f:
                f.write(config_text)
            cmd += ["--config", path]
        self.cmd = cmd
        self.start()

    def start(self):
        self.stdout = open(os.path.join(self.workdir, "stdout.log"), "a")
        self.stderr = open(self.stderr_path, "a")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdout=self.stdout, stderr=self.stderr, env=env)
        wait_for_port(self.port, self.proc)

    def kill(self):
        """SIGKILL: a crash, nothing flushed."""
        self.proc.kill()
        self.proc.wait()
        self.stdout.close()
        self.stderr.close()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def log(self):
        with open(self.stderr_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()
        self.stderr.close()


def fs_config(data_dir):
    return f"""
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[[backends]]
name = "local"
kind = "fs"
path = "{data_dir}"
"""


def find_tool(name):
    """A server the test command installs: on PATH, or in cargo's bin directory."""
    found = shutil.which(name) or shutil.which(name, path=os.path.expanduser("~/.cargo/bin"))
    if not found:
        raise RuntimeError(f"{name} is not installed (./scripts/test.sh installs it)")
    return found


class Server:
    """An S3 server process used as a backend (moto_server, s3s-fs), on a loopback port."""

    def __init__(self, name, cmd, workdir, port):
        self.name, self.port = name, port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"{name}: {e}; log: {open(self.log_path).read()[-2000:]}") from None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def start_moto(workdir):
    port = free_port()
    return Server("moto", [find_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], workdir, port)


S3S_KEY, S3S_SECRET = "AKS3SFS", "s3s-fs-secret"


def start_s3s_fs(workdir):
    port = free_port()
    data = os.path.join(workdir, "s3s-data")
    os.makedirs(data, exist_ok=True)
    cmd = [find_tool("s3s-fs"), "--host", "127.0.0.1", "--port", str(port),
           "--access-key", S3S_KEY, "--secret-key", S3S_SECRET, data]
    return Server("s3s-fs", cmd, workdir, port)


def replicated_config(workdir, moto, s3s):
    """Three replicas of mixed kinds behind the encrypting proxy (encryption is on by
    default, with a key generated under state_dir), write quorum 1."""
    return f"""
state_dir = "{workdir}/state"
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[replication]
write_quorum = 1
repair_interval_secs = 1
[[backends]]
name = "disk"
kind = "fs"
path = "{workdir}/data"
[[backends]]
name = "moto"
kind = "s3"
endpoint = "{moto.endpoint}"
access_key = "moto"
secret_key = "moto"
[[backends]]
name = "s3s-fs"
kind = "s3"
endpoint = "{s3s.endpoint}"
access_key = "{S3S_KEY}"
secret_key = "{S3S_SECRET}"
"""


PLAIN_KEY, PLAIN_SECRET = "AKPLAINS3", "plain-s3-secret"


def start_plain_s3proxy(workdir):
    """An unencrypted s3proxy over a filesystem, serving as an S3 server that stores every
    key S3 accepts (s3s-fs cannot hold some)."""
    d = os.path.join(workdir, "plain-s3")
    return Proxy(d, f"""
[[credentials]]
access_key = "{PLAIN_KEY}"
secret_key = "{PLAIN_SECRET}"
[[backends]]
name = "disk"
kind = "fs"
path = "{d}/data"
[encryption]
enabled = false
[admin]
enabled = false
""")


def s3_only_config(workdir, moto, plain):
    """The deployment operators run most: the encrypting proxy in front of S3 services
    only (moto and another s3proxy), write quorum 1."""
    return f"""
state_dir = "{workdir}/state"
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[replication]
write_quorum = 1
repair_interval_secs = 1
[[backends]]
name = "moto"
kind = "s3"
endpoint = "{moto.endpoint}"
access_key = "moto"
secret_key = "moto"
[[backends]]
name = "plain-s3"
kind = "s3"
endpoint = "{plain.endpoint}"
access_key = "{PLAIN_KEY}"
secret_key = "{PLAIN_SECRET}"
"""


def unencrypted(config_text):
    """The same stack without encryption: what a client sees must not depend on it."""
    return config_text + "[encryption]\nenabled = false\n"


# The stacks an end-to-end module can run against: the plain filesystem one, the encrypted
# fs + moto + s3s-fs replicas, the encrypted S3-only one (moto and another s3proxy), and the
# last two unencrypted ("-plain"). A module opts into more than "fs" with
# `pytestmark = pytest.mark.stacks("fs", "replicated")`.
STACKS = ("fs", "replicated", "s3only", "replicated-plain", "s3only-plain")


def pytest_configure(config):
    config.addinivalue_line("markers", "stacks(*names): run the module's tests against these stacks")


def pytest_generate_tests(metafunc):
    if "proxy" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("stacks")
    names = marker.args if marker else ("fs",)
    wanted = os.environ.get("S3PROXY_E2E_STACKS")
    if wanted:
        names = [n for n in names if n in wanted.split(",")] or names[:1]
    metafunc.parametrize("proxy", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def proxy(request):
    stack = getattr(request, "param", "fs")
    assert stack in STACKS, stack
    workdir = tempfile.mkdtemp(prefix=f"s3proxy-e2e-{stack}-")
    servers = []
    try:
        if stack == "fs":
            p = Proxy(workdir, fs_config(os.path.join(workdir, "data")))
        elif stack.startswith("s3only"):
            servers = [start_moto(workdir), start_plain_s3proxy(workdir)]
            cfg = s3_only_config(workdir, *servers)
            p = Proxy(workdir, unencrypted(cfg) if stack.endswith("-plain") else cfg)
        else:
            servers = [start_moto(workdir), start_s3s_fs(workdir)]
            cfg = replicated_config(workdir, *servers)
            p = Proxy(workdir, unencrypted(cfg) if stack.endswith("-plain") else cfg)
        p.stack = stack
        p.servers = servers
    except Exception:
        for s in servers:
            s.stop()
        raise
    yield p
    alive = p.proc.poll() is None
    pending = []
    if servers and alive:
        s3s_data = os.path.join(workdir, "s3s-data")
        unstorable = lambda backend, bucket, key: (backend == "s3s-fs" and s3s_fs_cannot_hold(
            s3s_data, bucket, key)) or (backend == "moto" and moto_cannot_hold(key))
        pending = wait_journal_drained(os.path.join(workdir, "state", "journal"), unstorable)
    p.stop()
    for s in servers:
        s.stop()
    log = p.log()
    if os.environ.get("S3PROXY_E2E_KEEP"):
        print(f"\nwork dir of the {stack} stack kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    assert alive, "s3proxy died during the tests"
    assert "panicked" not in log, "s3proxy panicked:\n" + log[-3000:]
    # Every replica got every write: nothing is left for repair once the tests are done.
    assert not pending, f"replicas still behind after the tests: {pending[:10]}"


def wait_journal_drained(journal_dir, excused, timeout=60):
    """The repair journal's entries still pending after `timeout` seconds, as
    (backend, bucket/key) pairs, but for those `excused(backend, bucket, key)`; empty when
    every replica caught up."""
    import json

    deadline = time.time() + timeout
    while True:
        found = []
        for name in os.listdir(journal_dir) if os.path.isdir(journal_dir) else []:
            if name.endswith(".json"):
                try:
                    with open(os.path.join(journal_dir, name)) as f:
                        e = json.load(f)
                except (OSError, ValueError):
                    continue
                found.append((e["backend"], e["bucket"], e["key"]))
        # The entry of a backend that cannot hold the key is excused, and so are the other
        # backends' entries for that key beside it: when writes to the key overlapped, each
        # replica's entry is cleared only once repair knows what every replica holds, and
        # that backend can never say.
        unholdable = {(b, k) for backend, b, k in found if excused(backend, b, k)}
        entries = sorted((backend, f"{b}/{k}") for backend, b, k in found if (b, k) not in unholdable)
        if not entries or time.time() > deadline:
            return entries
        time.sleep(0.5)


def moto_cannot_hold(key):
    """moto's server routes on the decoded path, so a key with a line break in it answers
    404 NoSuchBucket (AWS stores it). Such keys stay in the journal for moto, by design."""
    return "\n" in key or "\r" in key


def s3s_fs_cannot_hold(data_dir, bucket, key):
    """s3s-fs stores an object as the file <data>/<bucket>/<key>, so it cannot hold a key
    ending in '/' (the proxy's encrypted directory markers are never empty), with an empty,
    '.' or '..' segment or one over 255 bytes, or a key whose path another key already
    occupies ('a' beside 'a/b'). Those stay in the journal for s3s-fs, by design."""
    segments = key.split("/")
    if key.endswith("/") or any(s in ("", ".", "..") or len(s.encode()) > 255 for s in segments):
        return True
    path = os.path.join(data_dir, bucket)
    for s in segments[:-1]:
        path = os.path.join(path, s)
        if os.path.isfile(path):
            return True
    return os.path.isdir(os.path.join(path, segments[-1]))


def make_client(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **cfg):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **cfg
        ),
    )


@pytest.fixture(scope="session")
def s3(proxy):
    return make_client(proxy.endpoint)


_bucket_counter = [0]


@pytest.fixture
def bucket(s3):
    _bucket_counter[0] += 1
    name = f"test-{os.getpid()}-{_bucket_counter[0]}"
    s3.create_bucket(Bucket=name)
    yield name
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=o["Key"])
    for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
    s3.delete_bucket(Bucket=name)


def aws_env(proxy_endpoint=None):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.pop("AWS_PROFILE", None)
    return env


@pytest.fixture
def aws(proxy):
    """Run the real aws cli against the proxy; returns CompletedProcess."""

    def run(*args, check=True):
        cmd = ["aws", "--endpoint-url", proxy.endpoint, *args]
        r = subprocess.run(cmd, env=aws_env(), capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    return run
