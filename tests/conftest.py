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


@pytest.fixture(scope="session")
def proxy():
    workdir = tempfile.mkdtemp(prefix="s3proxy-e2e-")
    p = Proxy(workdir, fs_config(os.path.join(workdir, "data")))
    yield p
    alive = p.proc.poll() is None
    p.stop()
    log = p.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert alive, "s3proxy died during the tests"
    assert "panicked" not in log, "s3proxy panicked:\n" + log[-3000:]


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
