#!/usr/bin/env python3
"""LIST cost through the encrypting proxy over an S3-only stack (moto), cold and warm,
against moto's own LIST in the same run. Usage: scripts/bench_list.py [KEYS] [ROUNDS]
(the release binary: S3PROXY_BIN, default target/release/s3proxy)."""

import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from conftest import ACCESS_KEY, BIN, SECRET_KEY, Proxy, make_client, start_moto  # noqa: E402

KEYS = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def proxy_config(workdir, key_file, moto):
    return f"""
state_dir = "{workdir}/state"
[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
[encryption]
key_file = "{key_file}"
[[backends]]
name = "moto"
kind = "s3"
endpoint = "{moto.endpoint}"
access_key = "moto"
secret_key = "moto"
"""


def list_all(client, bucket):
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1000}):
        n += len(page.get("Contents", []))
    return n


def timed(client, bucket):
    t = time.perf_counter()
    n = list_all(client, bucket)
    dt = time.perf_counter() - t
    assert n == KEYS, n
    return KEYS / dt


def main():
    root = tempfile.mkdtemp(prefix="s3proxy-bench-list-")
    key_file = os.path.join(root, "master.key")
    subprocess.run([BIN, "keygen", key_file], check=True, capture_output=True)
    moto = start_moto(root)
    proxies = []
    try:
        def instance():
            d = os.path.join(root, f"proxy{len(proxies)}")
            p = Proxy(d, proxy_config(d, key_file, moto))
            proxies.append(p)
            return make_client(p.endpoint, max_pool_connections=32)

        writer = instance()
        direct = make_client(moto.endpoint, "moto", "moto")
        bucket = "bench-list"
        writer.create_bucket(Bucket=bucket)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: writer.put_object(Bucket=bucket, Key=f"dir{i % 10}/obj{i:07d}",
                                                      Body=os.urandom(100 + i % 5000)), range(KEYS)))
        rows = []
        for r in range(ROUNDS):
            plain = timed(direct, bucket)
            reader = instance()  # a fresh instance: an empty cache
            cold = timed(reader, bucket)
            warm = timed(reader, bucket)
            written = timed(writer, bucket)
            rows.append((plain, cold, warm, written))
            print(f"round {r + 1}: moto LIST {plain:8.0f} keys/s | proxy cold {cold:8.0f} keys/s | "
                  f"proxy warm {warm:8.0f} keys/s | writing instance {written:8.0f} keys/s", flush=True)
        med = [sorted(c)[len(c) // 2] for c in zip(*rows)]
        print(f"median of {ROUNDS}, {KEYS} keys: moto {med[0]:.0f}, cold {med[1]:.0f}, warm {med[2]:.0f}, "
              f"writer {med[3]:.0f} keys/s")
    finally:
        for p in proxies:
            p.stop()
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
