"""What an operator runs s3proxy with, against the real binary: a Prometheus scrape of
/metrics before and after requests, /health and /ready as a load balancer reads them
(with a backend process killed), HTTPS with a real TLS client checking the certificate
and a certificate reloaded on SIGHUP, a SIGTERM in the middle of a 200 MiB upload,
connection limits answered with 503 SlowDown, and the replication metrics (repairs,
tampering, the journal's age, unauthenticated stamps) moved by the events they count."""

import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import boto3
import botocore.config
import pytest

import s3wire as w
from conftest import ACCESS_KEY, SECRET_KEY, Proxy, free_port, make_client, start_moto


def creds():
    return f"""
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
"""


def fetch(url, timeout=10, context=None):
    """(status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name, **labels):
    """The value of one sample of the exposition, or 0 when it is absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z0-9_:]+)(\{([^}]*)\})? ([0-9.e+-]+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return 0.0


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="s3proxy-ops-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_metrics_health_and_ready_through_a_backend_outage(workdir):
    moto = start_moto(workdir)
    admin = free_port()
    try:
        p = Proxy(os.path.join(workdir, "proxy"), creds() + f"""
[admin]
listen = "127.0.0.1:{admin}"
[replication]
write_quorum = "all"
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'fs')}"
[[backends]]
name = "moto"
kind = "s3"
endpoint = "{moto.endpoint}"
access_key = "test"
secret_key = "test"
timeout_ms = 2000
""")
        base = f"http://127.0.0.1:{admin}"
        try:
            assert fetch(base + "/health") == (200, "ok\n")
            status, body = fetch(base + "/ready")
            assert status == 200 and "2 backend(s) up, 2 needed" in body, body
            before = fetch(base + "/metrics")[1]
            s3 = make_client(p.endpoint)
            s3.create_bucket(Bucket="mtr")
            for i in range(3):
                s3.put_object(Bucket="mtr", Key=f"k{i}", Body=b"x" * 1000)
            s3.get_object(Bucket="mtr", Key="k0")["Body"].read()
            with pytest.raises(Exception):
                s3.get_object(Bucket="mtr", Key="absent")
            after = fetch(base + "/metrics")[1]
            # A real scrape: counters moved by exactly what was sent.
            put = lambda t: metric(t, "s3proxy_requests_total", operation="PutObject", status="200")
            assert put(after) - put(before) == 3, after
            assert metric(after, "s3proxy_requests_total", operation="GetObject", status="404") >= 1
            assert metric(after, "s3proxy_request_duration_seconds_count", operation="PutObject") >= 3
            assert metric(after, "s3proxy_request_bytes_total", operation="PutObject") >= 3000
            assert metric(after, "s3proxy_response_bytes_total", operation="GetObject") >= 1000
            assert metric(after, "s3proxy_backend_requests_total", backend="moto", outcome="ok") > 0
            assert metric(after, "s3proxy_backend_circuit_open", backend="moto") == 0
            assert "# TYPE s3proxy_request_duration_seconds histogram" in after
            # The backend dies: writes at quorum "all" fail, and /ready says so.
            moto.stop()
            deadline = time.time() + 60
            while fetch(base + "/ready")[0] == 200 and time.time() < deadline:
                try:
                    s3.put_object(Bucket="mtr", Key="during", Body=b"y")
                except Exception:
                    pass
            status, body = fetch(base + "/ready")
            assert status == 503 and "1 backend(s) up, 2 needed" in body, body
            assert fetch(base + "/health")[0] == 200
            scrape = fetch(base + "/metrics")[1]
            assert metric(scrape, "s3proxy_backend_circuit_open", backend="moto") == 1
            assert metric(scrape, "s3proxy_backends_available") == 1
        finally:
            p.stop()
    finally:
        moto.stop()



def test_repair_tamper_and_stamp_metrics_move_with_their_events():
    from test_replication import Cluster, data, plant
    c = Cluster("1")
    admin = free_port()
    try:
        c.front.stop()
        with open(os.path.join(c.front_dir, "s3proxy.toml"), "a") as f:
            f.write(f'\n[admin]\nlisten = "127.0.0.1:{admin}"\n')
        c.front.start()
        scrape = lambda: fetch(f"http://127.0.0.1:{admin}/metrics")[1]
        age = lambda t: metric(t, "s3proxy_repair_journal_oldest_seconds")
        copies = lambda t, b: metric(t, "s3proxy_repair_copies_total", backend=b)
        copied = lambda t, b: metric(t, "s3proxy_repair_bytes_total", backend=b)
        tampered = lambda t, b: metric(t, "s3proxy_tamper_detections_total", backend=b)
        c.s3.create_bucket(Bucket="met")
        body = data(400_000, 9)
        c.s3.put_object(Bucket="met", Key="k", Body=body)
        c.wait_journal_empty()
        before = scrape()
        assert age(before) == 0 and "s3proxy_repair_journal_oldest_seconds" in before, before
        # A backend down with writes pending: the oldest entry's age is above 0, and rises.
        c.backends[2].kill()
        c.s3.put_object(Bucket="met", Key="k2", Body=body)
        time.sleep(1.2)
        first = age(scrape())
        time.sleep(1.5)
        second = age(scrape())
        assert 0 < first < second, (first, second)
        # It comes back and is repaired around: copies and bytes go up for it alone.
        c.backends[2].start()
        c.wait_journal_empty(60)
        after = scrape()
        assert copies(after, "r3") - copies(before, "r3") >= 1, after
        assert copied(after, "r3") - copied(before, "r3") >= 400_000, after
        assert copies(after, "r1") == copies(before, "r1")
        assert age(after) == 0
        # A corrupt replica read: the tamper counter of that backend goes up, and the
        # replica is repaired.
        flip = c.object_file(0, "met", "k")
        with open(flip, "r+b") as f:
            f.seek(200_000)
            b = f.read(1)
            f.seek(200_000)
            f.write(bytes([b[0] ^ 1]))
        assert c.s3.get_object(Bucket="met", Key="k")["Body"].read() == body
        c.wait_journal_empty()
        deadline = time.time() + 30
        while time.time() < deadline and copies(scrape(), "r1") == copies(after, "r1"):
            time.sleep(0.2)
        late = scrape()
        assert tampered(late, "r1") - tampered(after, "r1") == 1, late
        assert tampered(late, "r2") == tampered(before, "r2")
        assert copies(late, "r1") - copies(after, "r1") == 1
        # A stamp written straight into a backend is seen and counted as unauthenticated.
        meta = c.direct[1].head_object(Bucket="met", Key="k")["Metadata"]
        raw = c.direct[1].get_object(Bucket="met", Key="k")["Body"].read()
        plant(c, 1, "met", "k", raw, meta, "ffffffffffff-000000-evil")
        assert c.s3.get_object(Bucket="met", Key="k")["Body"].read() == body
        forged = scrape()
        assert metric(forged, "s3proxy_unauthenticated_stamps_total", backend="r2", kind="invalid") >= 1, forged
        assert metric(forged, "s3proxy_unauthenticated_stamps_total", backend="r1", kind="invalid") == 0
    finally:
        c.close()

def make_cert(directory, name, cn="127.0.0.1"):
    cert, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={cn}", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def served_cert(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def test_https_with_a_checked_certificate_reloaded_on_sighup(workdir):
    cert, key = make_cert(workdir, "one")
    live_cert, live_key = os.path.join(workdir, "live.crt"), os.path.join(workdir, "live.key")
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    p = Proxy(os.path.join(workdir, "proxy"), creds() + f"""
[admin]
enabled = false
[tls]
cert_file = "{live_cert}"
key_file = "{live_key}"
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'fs')}"
""")
    try:
        endpoint = f"https://127.0.0.1:{p.port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name="us-east-1", verify=live_cert,
                          config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        s3.create_bucket(Bucket="tls")
        data = os.urandom(3 << 20)
        s3.put_object(Bucket="tls", Key="obj", Body=data)
        assert s3.get_object(Bucket="tls", Key="obj")["Body"].read() == data
        # curl checks the chain and the name, as any client does.
        q = w.presign_v4("GET", "/tls/obj", host=f"127.0.0.1:{p.port}")
        out = subprocess.run(["curl", "-sS", "--cacert", live_cert, "-o", os.path.join(workdir, "got"),
                              "-w", "%{http_code}", f"{endpoint}/tls/obj?{q}"], capture_output=True, text=True, timeout=30)
        assert out.stdout == "200", out.stderr
        with open(os.path.join(workdir, "got"), "rb") as f:
            assert f.read() == data
        # A client that does not trust the certificate refuses it; plain HTTP gets nothing.
        out = subprocess.run(["curl", "-sS", f"{endpoint}/"], capture_output=True, text=True, timeout=30)
        assert out.returncode != 0
        with pytest.raises(Exception):
            w.send(p.port, "GET", "/", timeout=5)
        # A new certificate, then SIGHUP: new connections get it, without a restart.
        first = served_cert(p.port)
        cert2, key2 = make_cert(workdir, "two")
        shutil.copy(cert2, live_cert)
        shutil.copy(key2, live_key)
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while served_cert(p.port) == first and time.time() < deadline:
            time.sleep(0.1)
        assert served_cert(p.port) != first
        s3b = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                           aws_secret_access_key=SECRET_KEY, region_name="us-east-1", verify=live_cert,
                           config=botocore.config.Config(s3={"addressing_style": "path"}))
        assert s3b.get_object(Bucket="tls", Key="obj")["Body"].read() == data
        # A broken file is refused at reload; the certificate in use stays.
        with open(live_key, "w") as f:
            f.write("not a key")
        p.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert p.proc.poll() is None
        assert s3b.head_object(Bucket="tls", Key="obj")["ContentLength"] == len(data)
        assert "TLS reload failed" in p.log()
    finally:
        p.stop()


def test_sigterm_lets_an_upload_in_flight_finish(workdir):
    conf = "shutdown_grace_secs = 30\n" + creds() + f"""
[admin]
enabled = false
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'fs')}"
"""
    p = Proxy(os.path.join(workdir, "proxy"), conf)
    s3 = make_client(p.endpoint)
    s3.create_bucket(Bucket="drain")
    size, chunk = 200 << 20, 1 << 20
    piece = os.urandom(chunk)
    digest = hashlib.sha256()
    for _ in range(size // chunk):
        digest.update(piece)
    headers, _ = w.sign_v4("PUT", "/drain/big", payload_hash="UNSIGNED-PAYLOAD", host=f"127.0.0.1:{p.port}")
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)
    conn.putrequest("PUT", "/drain/big", skip_host=True, skip_accept_encoding=True)
    for k, v in dict(headers, **{"content-length": str(size)}).items():
        conn.putheader(k, v)
    conn.endheaders()
    sent = 0
    for i in range(size // chunk):
        conn.send(piece)
        sent += chunk
        if i == 20:
            # A fifth of the way in: stop the proxy as systemd or Kubernetes would.
            p.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            # New connections are no longer accepted...
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", p.port), timeout=2).recv(1)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, body
    # ...and the process exits 0 once the upload is done.
    assert p.proc.wait(30) == 0
    p.stdout.close()
    p.stderr.close()
    p.start()
    try:
        got = hashlib.sha256()
        obj = make_client(p.endpoint).get_object(Bucket="drain", Key="big")
        for block in iter(lambda: obj["Body"].read(1 << 20), b""):
            got.update(block)
        assert obj["ContentLength"] == size and got.hexdigest() == digest.hexdigest()
    finally:
        p.stop()


def test_connection_limit_answers_slow_down(workdir):
    p = Proxy(os.path.join(workdir, "proxy"), creds() + f"""
[admin]
enabled = false
[limits]
max_connections = 2
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'fs')}"
""")
    try:
        # The start-up probe's connection may still hold a slot for a moment.
        time.sleep(0.5)
        held = [socket.create_connection(("127.0.0.1", p.port), timeout=5) for _ in range(2)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        answer = b""
        while b"</Error>" not in answer:
            try:
                chunk = extra.recv(4096)
            except OSError as e:
                raise AssertionError(f"{e}: {answer!r}\n{p.log()[-3000:]}")
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 503") and b"<Code>SlowDown</Code>" in answer, answer[:300]
        assert b"reduce your request rate" in answer, p.log()[-2000:]
        for s in held:
            s.close()
        time.sleep(0.3)
        # Once connections close, requests are served again.
        assert w.v4(p.port, "GET", "/").status == 200
    finally:
        p.stop()


def test_log_lines_name_their_request_and_json_logs_parse(workdir):
    import json
    p = Proxy(os.path.join(workdir, "proxy"), creds() + f"""
[admin]
enabled = false
[[backends]]
name = "a"
kind = "fs"
path = "{os.path.join(workdir, 'a')}"
[[backends]]
name = "b"
kind = "fs"
path = "{os.path.join(workdir, 'b')}"
""", args=("--log-format", "json"))
    try:
        s3 = make_client(p.endpoint)
        s3.create_bucket(Bucket="logs")
        rid = s3.put_object(Bucket="logs", Key="k", Body=b"x")["ResponseMetadata"]["RequestId"]
    finally:
        p.stop()
    lines = [json.loads(line) for line in p.log().splitlines() if line.strip()]
    assert all({"ts", "level", "target", "message", "request_id"} <= set(l) for l in lines)
    mine = [l for l in lines if l["request_id"] == rid]
    # The request's own line, once, and nothing of it logged without its id.
    assert [l for l in mine if "PutObject PUT /logs/k -> 200" in l["message"]], mine
    assert not [l for l in lines if rid in l["message"] and l["request_id"] != rid]


def run_cli(p, *args):
    from conftest import BIN
    return subprocess.run([BIN, "--config", os.path.join(p.workdir, "s3proxy.toml"), *args], cwd=p.workdir,
                          capture_output=True, text=True, timeout=120)


def test_rotate_keys_rewraps_without_moving_data_and_scrub_finds_tampering(workdir):
    import base64
    k1, k2 = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    data_dir = os.path.join(workdir, "fs")

    def conf(active, keys):
        listed = ", ".join(f'{{ id = "{i}", key = "{k}" }}' for i, k in keys)
        return creds() + f"""
[admin]
enabled = false
[encryption]
active = "{active}"
keys = [ {listed} ]
[[backends]]
name = "local"
kind = "fs"
path = "{data_dir}"
"""

    proxy_dir = os.path.join(workdir, "proxy")
    p = Proxy(proxy_dir, conf("k1", [("k1", k1)]))
    s3 = make_client(p.endpoint)
    s3.create_bucket(Bucket="rot")
    bodies = {f"obj{i}": os.urandom(1000 + 70_000 * i) for i in range(5)}
    etags = {k: s3.put_object(Bucket="rot", Key=k, Body=v)["ETag"] for k, v in bodies.items()}
    p.stop()
    # k2 becomes active; k1 stays readable. Rotate while the proxy serves.
    with open(os.path.join(proxy_dir, "s3proxy.toml"), "w") as f:
        f.write(conf("k2", [("k1", k1), ("k2", k2)]))
    p.start()
    try:
        r = run_cli(p, "rotate-keys", "--dry-run")
        assert r.returncode == 0 and '5 object(s) under key "k1"' in r.stdout, r.stdout + r.stderr
        r = run_cli(p, "rotate-keys")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "re-wrapped 5 object(s)" in r.stdout and "older keys may be removed" in r.stdout, r.stdout
        # Resumable: a second run has nothing left to do.
        r = run_cli(p, "rotate-keys")
        assert "re-wrapped 0 object(s)" in r.stdout, r.stdout
        for k, v in bodies.items():
            got = s3.get_object(Bucket="rot", Key=k)
            assert got["Body"].read() == v and got["ETag"] == etags[k]
    finally:
        p.stop()
    # k1 removed: everything still reads, so every data key is now under k2.
    with open(os.path.join(proxy_dir, "s3proxy.toml"), "w") as f:
        f.write(conf("k2", [("k2", k2)]))
    p.start()
    try:
        for k, v in bodies.items():
            assert s3.get_object(Bucket="rot", Key=k)["Body"].read() == v
        r = run_cli(p, "scrub")
        assert r.returncode == 0 and "scrubbed 5 object replica(s): 0 failed" in r.stdout, r.stdout + r.stderr
        # One byte of one stored object flipped on disk: scrub names it and fails.
        # Files are named by a hash of the key; obj3 is the second largest.
        stored = sorted((os.path.join(root, n) for root, _, files in os.walk(os.path.join(data_dir, "rot", "objects"))
                         for n in files), key=os.path.getsize)
        victim = stored[-2]
        with open(victim, "r+b") as f:
            f.seek(5000)
            b = f.read(1)
            f.seek(5000)
            f.write(bytes([b[0] ^ 0xFF]))
        r = run_cli(p, "scrub")
        assert r.returncode == 1 and "rot/obj3" in r.stdout and "1 failed" in r.stdout, r.stdout + r.stderr
    finally:
        p.stop()


def test_request_limit_answers_slow_down_and_loses_nothing(workdir):
    p = Proxy(os.path.join(workdir, "proxy"), creds() + f"""
[admin]
enabled = false
[limits]
max_requests = 1
[[backends]]
name = "local"
kind = "fs"
path = "{os.path.join(workdir, 'fs')}"
""")
    try:
        s3 = make_client(p.endpoint)
        s3.create_bucket(Bucket="lim")
        s3.put_object(Bucket="lim", Key="old", Body=b"kept")
        # One upload in flight holds the only slot: its body arrives slowly.
        body = os.urandom(1 << 20)
        headers, _ = w.sign_v4("PUT", "/lim/slow", payload_hash=hashlib.sha256(body).hexdigest(),
                               headers={"content-length": str(len(body))}, host=f"127.0.0.1:{p.port}")
        slow = socket.create_connection(("127.0.0.1", p.port), timeout=30)
        slow.sendall(b"PUT /lim/slow HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
                     + b"\r\n" + body[:1000])
        time.sleep(0.5)
        # Another request is answered at once with 503 SlowDown, not queued.
        started = time.time()
        r = w.v4(p.port, "GET", "/lim/old")
        w.assert_error(r, 503, "SlowDown")
        assert time.time() - started < 2
        # The upload in flight finishes whole; afterwards requests are served again.
        slow.sendall(body[1000:])
        assert read_head(slow).startswith(b"HTTP/1.1 200")
        slow.close()
        assert s3.get_object(Bucket="lim", Key="slow")["Body"].read() == body
        assert s3.get_object(Bucket="lim", Key="old")["Body"].read() == b"kept"
    finally:
        p.stop()


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
