# s3fs integration suite, part 3 of 3: the checks that look behind the mount (a backend
# killed and repaired, the tls mode's certificate checks). Sourced by
# scripts/test_s3fs_integration.sh.
# shellcheck shell=bash

# --- resilience: the replica s3proxy is killed mid-write and later brought back ---
t_replica_killed_mid_write() {
    # A 40 MB write is under way (multipart, outside nomultipart) when one replica's process
    # is SIGKILLed; the write, and every case after this one, must still succeed.
    randfile "$L/killed.bin" 40000000
    cp "$L/killed.bin" killed-mid-write.bin &
    local cp_pid=$! i
    if [ "$MODE" = erasure ]; then
        # Striped at some 100 MB/s, the whole upload can be over in 0.8 s: the shard backend
        # is killed once the first part is stored, so that the other parts and the
        # completion (which re-stripes every part into the object) lose it midway.
        local seen=
        for i in $(seq 1 300); do
            grep -qF "UploadPart PUT /$BUCKET/killed-mid-write.bin -> " "$MODE_LOG" && { seen=1; break; }
            sleep 0.02
        done
        [ -n "$seen" ] || fail "no UploadPart of killed-mid-write.bin in the front's log within 6 s (RUST_LOG below info?)"
        kill -0 "$cp_pid" 2>/dev/null || fail "the upload was over before ec1 could be killed mid-write"
    else
        sleep 0.8
    fi
    kill_replica || fail "could not SIGKILL $KILLED"
    wait "$cp_pid" || fail "cp failed while a replica was killed"
    eq 40000000 "$(size killed-mid-write.bin)" "size"
    cmp "$L/killed.bin" killed-mid-write.bin
    expect_md5 killed-mid-write.bin
    # Known plaintext written while the replica is down: it must reach it only encrypted.
    printf 'resilience marker %s %s\n' "$MODE" "$MARKER" >resilience-marker.txt
    expect_md5 resilience-marker.txt
}
# Two S3 replicas of a bucket hold the same objects: the same keys and sizes, the same
# metadata (the proxy's version stamp and wrapped key included) and the same bytes. Backend
# ETags are compared as a shortcut only: a multipart upload's ETag and a repair's single PUT
# differ for the same bytes, so where they differ the bytes are compared.
compare_replicas() { # bucket endpoint-a key-a secret-a endpoint-b key-b secret-b
    python3 - "$@" <<'PY'
import hashlib, sys, boto3, botocore.config
bucket = sys.argv[1]
def client(ep, ak, sk):
    return boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
                        region_name="us-east-1",
                        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
a, b = client(*sys.argv[2:5]), client(*sys.argv[5:8])
def listing(s3):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["Size"], o["ETag"])
    return out
def digest(s3, key):
    h = hashlib.md5()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()
la, lb = listing(a), listing(b)
problems = []
for key in sorted(set(la) | set(lb)):
    if key not in la or key not in lb:
        problems.append(f"{key!r}: only on {'the first' if key in la else 'the second'}")
        continue
    if la[key][0] != lb[key][0]:
        problems.append(f"{key!r}: sizes {la[key][0]} and {lb[key][0]}")
        continue
    # s3proxy-etag: a repaired copy records the ETag its source backend gave the object,
    # which a replica written directly has no need of.
    ma = {k: v for k, v in a.head_object(Bucket=bucket, Key=key)["Metadata"].items() if k != "s3proxy-etag"}
    mb = {k: v for k, v in b.head_object(Bucket=bucket, Key=key)["Metadata"].items() if k != "s3proxy-etag"}
    if ma != mb:
        problems.append(f"{key!r}: metadata differs: {sorted(set(ma.items()) ^ set(mb.items()))[:4]}")
    elif la[key][1] != lb[key][1] and digest(a, key) != digest(b, key):
        problems.append(f"{key!r}: bytes differ")
print(f"{len(la)} objects compared")
for p in problems:
    print(p)
sys.exit(1 if problems or len(la) < 50 else 0)
PY
}
backend_get() { # endpoint access-key secret-key bucket key: the stored bytes to stdout
    python3 - "$@" <<'PY'
import sys, boto3, botocore.config
ep, ak, sk, bucket, key = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
                  region_name="us-east-1", config=botocore.config.Config(s3={"addressing_style": "path"}))
sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
PY
}
t_replica_converged() {
    # After the replica is back, the repair journal drains and the replica holds exactly
    # what the other S3 replica holds (same keys, sizes, metadata and ciphertext), and no
    # backend holds the plaintext written while it was down.
    local i n
    for i in $(seq 1 240); do
        n=$(find "$STATE/journal" -name '*.json' 2>/dev/null | wc -l)
        [ "$n" -eq 0 ] && break
        sleep 1
    done
    [ "$n" -eq 0 ] || fail "repair journal still holds $n entries after 240 s: $(ls "$STATE/journal" | head -5)"
    compare_replicas "$BUCKET" "$MOTO_ENDPOINT" moto moto "$REPLICA_ENDPOINT" "$BAK" "$BSK" >&2 \
        || fail "the repaired replica differs from moto (above)"
    if grep -rqF "$MARKER" "$WORK/replica-data" "$WORK/data"; then fail "plaintext marker found in a backend's files"; fi
    backend_get "$REPLICA_ENDPOINT" "$BAK" "$BSK" "$BUCKET" resilience-marker.txt >"$L/marker.replica"
    backend_get "$MOTO_ENDPOINT" moto moto "$BUCKET" resilience-marker.txt >"$L/marker.moto"
    if grep -qF "$MARKER" "$L/marker.replica" "$L/marker.moto"; then fail "plaintext marker served by a backend"; fi
    cmp "$L/marker.replica" "$L/marker.moto" || fail "the marker's ciphertext differs between replicas"
    eq "resilience marker $MODE $MARKER" "$(cat resilience-marker.txt)" "marker read through the mount"
}

# --- tls mode: s3fs checks the server's certificate ---
tls_mount_refused() { # name url: s3fs, trusting our CA only, must give up on this server
    local name=$1 url=$2 mnt="$W/mnt-tls-$1" log="$W/s3fs.tls-$1.log" pid i
    mkdir -p "$mnt"
    # s3fs mounts first and checks the service after: the mount shows for an instant, then
    # s3fs exits. So wait for the process, not for /proc/mounts.
    s3fs "$BUCKET" "$mnt" -f -o "url=$url,use_path_request_style,passwd_file=$W/passwd,dbglevel=warn" >"$log" 2>&1 &
    pid=$!
    printf '%s\n%s\n' "$pid" "$mnt" >"$PIDS/s3fs.tls-$name"   # the cleanup's, should it stay
    for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        ls "$mnt" >&2 || true
        unmount_one "$mnt" "$PIDS/s3fs.tls-$name"
        fail "s3fs still runs after 30 s against $url: it accepted the certificate"
    fi
    wait "$pid" || true   # s3fs 1.90 exits 0 even when its service check failed
    rm -f "$PIDS/s3fs.tls-$name"
    if grep -q " $mnt fuse" /proc/mounts; then fail "$mnt still mounted"; fi
    grep -qF "unable to connect(host=$url)" "$log" || fail "s3fs did not give up on $url: $(tail -5 "$log")"
    # CURLE_PEER_FAILED_VERIFICATION (60) as s3fs logs it: the certificate, and nothing else
    grep -qE 'CURLE_SSL_CACERT|curlCode: 60 ' "$log" || fail "no certificate error in the s3fs log: $(tail -5 "$log")"
}
export -f tls_mount_refused
t_tls_other_ca_refused() {
    # The impostor is a working s3proxy over the same backends: who trusts its CA reaches it.
    s3curl -f -I --cacert "$TLS_DIR/other-ca.pem" "$IMPOSTOR_ENDPOINT/$BUCKET" -o /dev/null \
        || fail "the impostor s3proxy does not answer with its own CA trusted"
    tls_mount_refused other-ca "$IMPOSTOR_ENDPOINT"
}
t_tls_hostname_checked() {
    # Our server and CA, but a name the certificate does not hold (it has IP 127.0.0.1 only).
    getent hosts localhost >/dev/null || fail "localhost does not resolve"
    tls_mount_refused localhost "https://localhost:${TLS_ENDPOINT##*:}"
}
# The cases the tls mode runs of the others: writes, reads, renames, the 25 MB multipart file,
# ls, chmod, and what the remount checks need.
TLS_CASES=(t_new_echo t_new_touch t_new_cp t_new_dd t_new_tee t_new_rename t_overwrite t_append
    t_chmod t_chown t_touch_d t_utimes t_mkdir_rmdir t_nested_dirs t_rename_dir t_symlink
    t_empty_file t_zero_byte_dirlike t_large_25m t_many_small_files)

# --- erasure mode: ec1 is killed mid-write, then back and repaired by `s3proxy repair` ---
# What each of the three erasure backends holds, from their own S3 listings and HEADs: every
# shard object's record (internal metadata s3proxy-ec, docs/ERASURE.md) names its shard index
# and the version stamp of the write. `missed B`: print the keys backend B holds no shard of,
# or a shard of another version than the others agree on. `complete FILE`: every key any
# backend holds has a shard of the same version, size and placement on all three, shard i on
# backend i; FILE lists keys that must be among them.
ec_shards() { # missed BACKEND | complete FILE
    python3 - "$BUCKET" "$BAK" "$BSK" "$1" "$2" $EC_ENDPOINT_LIST <<'PY'
import json, sys, boto3, botocore.config
from collections import Counter
bucket, ak, sk, what, arg, *endpoints = sys.argv[1:]
cfg = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2})
backends = [boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
                         region_name="us-east-1", config=cfg) for ep in endpoints]
held = []  # per backend: key -> (record, shard object size)
for s3 in backends:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            head = s3.head_object(Bucket=bucket, Key=o["Key"])
            rec = head["Metadata"].get("s3proxy-ec")
            out[o["Key"]] = (json.loads(rec) if rec else None, head["ContentLength"])
    held.append(out)
keys = sorted(set().union(*held))
def version(rec):  # everything but the shard index: one version of one placement
    return None if rec is None else tuple(sorted((k, str(v)) for k, v in rec.items() if k != "i"))
def agreed(key):  # the version most backends hold
    return Counter(version(h[key][0]) for h in held if key in h).most_common(1)[0][0]
if what == "missed":
    b = int(arg)
    for key in keys:
        if key not in held[b] or version(held[b][key][0]) != agreed(key):
            print(key)
    sys.exit(0)
problems = []
for key in keys:
    recs = [h.get(key) for h in held]
    for i, r in enumerate(recs):
        if r is None:
            problems.append(f"{key!r}: no shard on ec{i}")
        elif r[0] is None:
            problems.append(f"{key!r}: ec{i}'s object has no s3proxy-ec record")
        elif r[0].get("i") != i or r[0].get("k") != 2 or r[0].get("m") != 1:
            problems.append(f"{key!r}: ec{i} holds shard {r[0].get('i')} of {r[0].get('k')} + {r[0].get('m')}")
    found = [r for r in recs if r is not None and r[0] is not None]
    if len({version(r[0]) for r in found}) > 1:
        problems.append(f"{key!r}: versions differ: {[r[0].get('ver') for r in found]}")
    if len({r[1] for r in found}) > 1:
        problems.append(f"{key!r}: shard object sizes differ: {[r[1] for r in found]}")
must = [line.rstrip("\n") for line in open(arg) if line.strip()]
problems += [f"{key!r} (written while ec1 was down) is on no backend" for key in must if key not in keys]
print(f"{len(keys)} objects, each a shard on all {len(backends)} backends; "
      f"{len(must)} of them written while ec1 was down")
for p in problems[:20]:
    print(p)
sys.exit(1 if problems or len(keys) < 50 else 0)
PY
}
t_erasure_repaired() {
    # What ec1 missed while it was down: at least the 40 MB file being written when it was
    # killed, the marker and the 25 MB multipart file written after, and many more.
    ec_shards missed 1 >"$W/ec-missed"
    [ "$(wc -l <"$W/ec-missed")" -ge 100 ] || fail "ec1 missed only $(wc -l <"$W/ec-missed") objects"
    local key
    for key in killed-mid-write.bin resilience-marker.txt large/f25m.renamed; do
        grep -qxF "$key" "$W/ec-missed" || fail "ec1 was not missing $key: $(head -5 "$W/ec-missed")"
    done
    echo "ec1 missed $(wc -l <"$W/ec-missed") objects" >&2
    # `s3proxy repair` beside the serving front (which holds the state dir's lock shared).
    local out
    out=$(RUST_LOG=warn "$BIN" --config "$W/ecproxy.toml" repair --while-serving 2>&1) || fail "s3proxy repair failed: $out"
    echo "$out" >&2
    echo "$out" | grep -qE '^[0-9]+ objects scanned, .* 0 failed; 0 journal entries pending$' || fail "repair left something: $out"
    ec_shards complete "$W/ec-missed" >&2 || fail "the backends do not each hold a shard of every object (above)"
    local left
    left=$(ec_shards missed 1) || fail "could not list what ec1 misses"
    [ -z "$left" ] || fail "ec1 still misses shards after the repair: $(echo "$left" | head -5)"
    if grep -rqF "$MARKER" "$W"/ec?-data; then fail "plaintext marker found in an erasure backend's files"; fi
    eq "resilience marker $MODE $MARKER" "$(cat resilience-marker.txt)" "marker read through the mount"
}
t_erasure_second_kill() {
    # ec0 (data shard 0) SIGKILLed too, now that ec1 is repaired: what ec1 missed reads back
    # through the front from ec1's rebuilt shards and ec2's parity. The remount cases that
    # follow run with ec0 down as well.
    kill_replica || fail "could not SIGKILL $KILLED"
    eq "$(md5 "$L/f25m")" "$(s3curl -f "$S3URL/large/f25m.renamed" | md5sum | cut -d' ' -f1)" "large/f25m.renamed over the front"
    eq "resilience marker $MODE $MARKER" "$(s3curl -f "$S3URL/resilience-marker.txt")" "marker over the front"
}
