#!/usr/bin/env python3
"""Hedged reads (issue #18), measured: an encrypting s3proxy over three replicas (each an
s3proxy serving memory, reached through the S3 backend), majority write quorum, the
default 30 s backend timeout.

1. Cost on healthy replicas: the same GETs with `hedge_reads = true` and `false`; the
   backend requests per GET are counted by the backends themselves (their
   `s3proxy_requests_total`), so a hedge's losing request, which the proxy cancels and
   does not count, is counted too once its backend has answered it (one cancelled before
   that is not); the proxy's own `s3proxy_hedged_reads_total` (hedges, and lookups that
   stopped waiting for a replica) is reported beside them, and a hedged count below the
   unhedged one (requests missed) fails the line.
2. The first replica in read order paused (SIGSTOP): 40 GETs spread over 20 s, hedging on;
   the slowest, the median and the errors.

usage: scripts/bench_hedge.py OUT_DIR   (appends results-hedge.jsonl, writes
results-hedge.md). Needs target/release/s3proxy and boto3. Loopback only (ports 9191-9198);
every process started here is stopped by its PID. A GET that takes over 5 s (hedging not
working: the backend timeout is 30 s) ends the paused phase early, as a failure.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("S3PROXY_BIN", os.path.join(ROOT, "target/release/s3proxy"))
KEY, SECRET = "AKHEDGE", "secrethedgesecrethedge"
BACKEND_PORTS = [9191, 9192, 9193]
BACKEND_ADMIN_PORTS = [9196, 9197, 9198]
PROXY_PORT, ADMIN_PORT = 9194, 9195
# Loopback only: no HTTP proxy from the environment in between.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
HEALTHY_GETS = int(os.environ.get("HEDGE_HEALTHY_GETS", "400"))

started = []


def start(work, name, toml):
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as f:
        f.write(toml)
    log = open(os.path.join(work, f"{name}.log"), "w")
    proc = subprocess.Popen([BIN, "--config", path], stdout=log, stderr=log,
                            env={**os.environ, "RUST_LOG": "warn"})
    started.append(proc)
    return proc


def wait_port(port, proc):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the process meant to serve port {port} exited ({proc.returncode})")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


def credentials():
    return f'[[credentials]]\naccess_key = "{KEY}"\nsecret_key = "{SECRET}"\n'


def backend_toml(work, i, port):
    return (f'listen = "127.0.0.1:{port}"\nstate_dir = "{work}/b{i}"\n{credentials()}'
            f'[[backends]]\nname = "m"\nkind = "memory"\n[encryption]\nenabled = false\n'
            f'[admin]\nlisten = "127.0.0.1:{BACKEND_ADMIN_PORTS[i]}"\n')


def proxy_toml(work, hedge):
    backends = "".join(
        f'[[backends]]\nname = "r{i}"\nkind = "s3"\nendpoint = "http://127.0.0.1:{p}"\n'
        f'access_key = "{KEY}"\nsecret_key = "{SECRET}"\n'
        for i, p in enumerate(BACKEND_PORTS))
    return (f'listen = "127.0.0.1:{PROXY_PORT}"\nstate_dir = "{work}/p"\n{credentials()}'
            f'{backends}[replication]\nwrite_quorum = "majority"\n'
            f'hedge_reads = {"true" if hedge else "false"}\n'
            f'[encryption]\nkey_file = "{work}/master.key"\n'
            f'[admin]\nlisten = "127.0.0.1:{ADMIN_PORT}"\n')


def counter(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(m.group(1)) for m in
               re.finditer(rf'^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$', text, re.M))


def backend_requests():
    """Requests the three backends served, as they count them."""
    return sum(counter(p, "s3proxy_requests_total") for p in BACKEND_ADMIN_PORTS)


def client():
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{PROXY_PORT}",
                        aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                        region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, read_timeout=60,
                                      s3={"addressing_style": "path"}))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs/bench")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-hedge.")
    subprocess.run([BIN, "keygen", f"{work}/master.key"], check=True, capture_output=True)
    backends = [start(work, f"b{i}", backend_toml(work, i, p)) for i, p in enumerate(BACKEND_PORTS)]
    for p, b in zip(BACKEND_PORTS, backends):
        wait_port(p, b)
    bodies = {f"hedge{i}": os.urandom(100_000 + i) for i in range(4)}
    results = {}
    for hedge in (False, True):
        proxy = start(work, f"proxy-{hedge}", proxy_toml(work, hedge))
        wait_port(PROXY_PORT, proxy)
        s3 = client()
        if not hedge:
            s3.create_bucket(Bucket="hedge")
            for k, b in bodies.items():
                s3.put_object(Bucket="hedge", Key=k, Body=b)
        for k in bodies:  # samples for the hedge delays, and warm connections
            s3.get_object(Bucket="hedge", Key=k)["Body"].read()
        before, hedges_before = backend_requests(), counter(ADMIN_PORT, "s3proxy_hedged_reads_total")
        for i in range(HEALTHY_GETS):
            k = f"hedge{i % 4}"
            assert s3.get_object(Bucket="hedge", Key=k)["Body"].read() == bodies[k]
        time.sleep(0.5)  # a cancelled hedge's request reaches its backend's count
        per_get = (backend_requests() - before) / HEALTHY_GETS
        results["hedged" if hedge else "unhedged"] = per_get
        if hedge:
            results["hedges"] = counter(ADMIN_PORT, "s3proxy_hedged_reads_total") - hedges_before
        if hedge:
            backends[0].send_signal(signal.SIGSTOP)
            times, errors = [], 0
            try:
                for i in range(40):
                    k = f"hedge{i % 4}"
                    t0 = time.time()
                    try:
                        ok = s3.get_object(Bucket="hedge", Key=k)["Body"].read() == bodies[k]
                        errors += 0 if ok else 1
                    except Exception as e:  # noqa: BLE001 - an error is what is counted
                        print(f"GET {i}: {e}", file=sys.stderr)
                        errors += 1
                    times.append(time.time() - t0)
                    if times[-1] > 5:
                        print(f"GET {i} took {times[-1]:.1f} s: hedging is not working", file=sys.stderr)
                        errors += 40 - len(times)
                        break
                    time.sleep(0.5)
            finally:
                backends[0].send_signal(signal.SIGCONT)
            results["paused"] = {"gets": len(times), "errors": errors, "slowest_s": max(times),
                                 "p50_s": statistics.median(times)}
        stop(proxy)
    for b in backends:
        stop(b)
    if not results["unhedged"]:
        raise SystemExit("the backends counted no requests: is their /metrics served?")
    extra = results["hedged"] / results["unhedged"] - 1
    line = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "healthy_gets": HEALTHY_GETS,
            "backend_requests_per_get_unhedged": results["unhedged"],
            "backend_requests_per_get_hedged": results["hedged"], "extra": extra,
            "hedges_sent": results["hedges"],
            **{f"paused_{k}": v for k, v in results["paused"].items()}}
    with open(os.path.join(out, "results-hedge.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")
    p = results["paused"]
    # Hedging can only add requests: a count below the unhedged one means some were missed.
    ok_slow, ok_extra = p["slowest_s"] < 1 and p["errors"] == 0, -0.05 <= extra <= 0.05
    md = f"""# Benchmark results: hedged reads (`scripts/bench_hedge.py`)

An encrypting s3proxy over three replicas (s3proxy memory servers through the S3 backend),
majority quorum, backend timeout 30 s (the default); 100 KB objects. {line["when"]}.

| criterion | measured | bar | verdict |
|---|---|---|---|
| first replica paused (SIGSTOP): 40 GETs over 20 s, slowest | {p["slowest_s"]:.3f} s (p50 {p["p50_s"]:.3f} s), {p["errors"]} errors | < 1 s, no errors | **{"met" if ok_slow else "not met"}** |
| healthy replicas: backend requests per GET as the backends count them, hedging on / off ({HEALTHY_GETS} GETs each) | {results["hedged"]:.3f} / {results["unhedged"]:.3f}: {100 * extra:+.1f} % ({results["hedges"]:.0f} hedged reads by the proxy's count) | ≤ +5 % | **{"met" if ok_extra else "not met"}** |
"""
    with open(os.path.join(out, "results-hedge.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    try:
        main()
    finally:
        for proc in started:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
                proc.kill()
                proc.wait()
