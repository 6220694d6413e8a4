#!/usr/bin/env bash
# s3fs-fuse mounts through s3proxy: every file operation must behave as on a local disk.
#
# Starts the full stack on free loopback ports in its own temp dir: s3proxy encrypting and
# replicating at write quorum 1 to three backends of mixed kinds (its filesystem backend,
# moto_server, and a second s3proxy serving a filesystem over S3). Mounts one bucket per
# mode with Debian's s3fs and runs the cases, one line each, ending with exactly
# "N passed, N failed". Exit code 0 only when nothing failed. In every mode but tls the second
# s3proxy is SIGKILLed during a write halfway through the cases and restarted before the
# remount; the run then checks it was repaired to hold what moto holds, ciphertext only.
# The tls mode mounts over HTTPS instead, through a second s3proxy (the same backends, master
# key, upload-id secret and credentials, plus [tls]) with a certificate for 127.0.0.1 from a
# private CA made here with openssl. s3fs checks it (no no_check_certificate, hostname checks
# on) and trusts that CA only through CURL_CA_BUNDLE: s3fs 1.90 has no CA option, it passes the
# file named there to libcurl as CURLOPT_CAINFO. It runs a reduced set of cases (writes, reads,
# renames, a 25 MB multipart file, ls, chmod, the remount checks), not the replica kill, and
# checks that a mount is refused for a certificate from another CA and for a name the
# certificate does not hold.
#
# Usage: scripts/test_s3fs_integration.sh [MODE...]
#   MODE: default | nomultipart | nocopyapi | sigv2 | tls | all (default: $S3FS_MODES or all)
# Environment:
#   S3PROXY_BIN        the proxy binary (default target/debug/s3proxy)
#   S3FS_MODES         modes when no argument is given (space separated)
#   S3FS_TEST_HUGE=1   also run the 1 GB+ case (multipart copy on rename above 512 MB)
#   S3FS_KEEP=1        keep the work dir (logs) after the run
#   RUST_LOG           proxy log level (default info: one line per request)
# Needs: s3fs, fuse3 (or fuse), attr, rsync, curl, python3 with boto3, moto_server, openssl
# (tls mode); root or a user allowed to mount.
# The cases check what ls itself shows, so ls | grep is the point:
# shellcheck disable=SC2010,SC2012
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${S3PROXY_BIN:-$ROOT/target/debug/s3proxy}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
ALL_MODES="default nomultipart nocopyapi sigv2 tls"

# --- arguments ---------------------------------------------------------------------------
MODES=()
if [ $# -eq 0 ]; then
    read -r -a MODES <<<"${S3FS_MODES:-all}"
else
    MODES=("$@")
fi
if [ "${MODES[*]}" = "all" ]; then read -r -a MODES <<<"$ALL_MODES"; fi
for m in "${MODES[@]}"; do
    case " $ALL_MODES " in *" $m "*) ;; *) echo "unknown mode '$m' (want: $ALL_MODES all)" >&2; exit 2 ;; esac
done
WANT_TLS=0
case " ${MODES[*]} " in *" tls "*) WANT_TLS=1 ;; esac
if [ "$WANT_TLS" = 1 ] && ! command -v openssl >/dev/null; then echo "missing openssl (apt-get install openssl)" >&2; exit 2; fi
for tool in s3fs curl python3 rsync timeout moto_server; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install s3fs fuse3 attr rsync curl; pip install 'moto[server]')" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "no s3proxy binary at $BIN (cargo build -p s3proxy-bin, or set S3PROXY_BIN)" >&2; exit 2; }

# --- state, cleanup ----------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/s3fs-it.XXXXXX")
PIDS="$WORK/pids"        # one file per process we started: <pid> (and mountpoint for s3fs)
mkdir -p "$PIDS" "$WORK/local" "$WORK/expect"
PASSED=0 FAILED=0 KNOWN=0 SKIPPED=0
FAILED_NAMES=()

unmount_one() { # mountpoint pidfile: unmount, then make sure the s3fs process is gone
    local mnt=$1 pidfile=$2 pid i
    pid=$(head -1 "$pidfile" 2>/dev/null)
    if grep -q " $mnt fuse" /proc/mounts 2>/dev/null; then
        umount "$mnt" 2>/dev/null || fusermount -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
    fi
    if [ -n "$pid" ]; then
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; fi
    fi
    rm -f "$pidfile"
}

CASE_PID=
cleanup() {
    local f
    if [ -n "$CASE_PID" ]; then kill "$CASE_PID" 2>/dev/null; fi
    for f in "$PIDS"/s3fs.*; do
        [ -e "$f" ] || continue
        unmount_one "$(sed -n 2p "$f")" "$f"
    done
    for f in proxy tlsproxy impostor replica moto; do
        [ -f "$PIDS/$f" ] || continue
        local pid; pid=$(cat "$PIDS/$f")
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        rm -f "$PIDS/$f"
    done
    if [ "${S3FS_KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the stack ---------------------------------------------------------------------------
# The proxy encrypts (a key made by `s3proxy keygen`) and replicates to three backends of
# mixed kinds under write quorum 1: its own filesystem backend, moto_server, and another
# s3proxy (filesystem, no encryption) reached over S3. That last one is the replica the
# resilience case kills and brings back: its data lives on disk, so a restart keeps it.
AK=AKS3FSINTEGRATION
SK=s3fs-integration-secret-key
BAK=AKS3FSREPLICA        # credentials of the backend s3proxy
BSK=s3fs-replica-secret
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port pidfile what
    local i
    for i in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$(cat "$2")" 2>/dev/null || { echo "$3 exited" >&2; return 1; }
        sleep 0.05
    done
    echo "$3 did not listen on $1" >&2; return 1
}
PORT=$(free_port)
MOTO_PORT=$(free_port)
REPLICA_PORT=$(free_port)
HTTP_ENDPOINT="http://127.0.0.1:$PORT"
ENDPOINT=$HTTP_ENDPOINT  # the front proxy of the mode that runs (run_mode sets it)
REPLICA_ENDPOINT="http://127.0.0.1:$REPLICA_PORT"
MOTO_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
STATE="$WORK/state"
"$BIN" keygen "$WORK/master.key" >/dev/null || { echo "s3proxy keygen failed" >&2; exit 1; }
cat >"$WORK/s3proxy.toml" <<EOF
state_dir = "$STATE"
[[credentials]]
access_key = "$AK"
secret_key = "$SK"
[encryption]
key_file = "$WORK/master.key"
[replication]
write_quorum = 1
repair_interval_secs = 1
upload_id_secret = "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[[backends]]
name = "local"
kind = "fs"
path = "$WORK/data"
[[backends]]
name = "moto"
kind = "s3"
endpoint = "$MOTO_ENDPOINT"
access_key = "moto"
secret_key = "moto"
timeout_ms = 30000
[[backends]]
name = "replica"
kind = "s3"
endpoint = "$REPLICA_ENDPOINT"
access_key = "$BAK"
secret_key = "$BSK"
timeout_ms = 30000
EOF
cat >"$WORK/replica.toml" <<EOF
state_dir = "$WORK/replica-state"
[[credentials]]
access_key = "$BAK"
secret_key = "$BSK"
[encryption]
enabled = false
[[backends]]
name = "disk"
kind = "fs"
path = "$WORK/replica-data"
EOF
printf '%s:%s\n' "$AK" "$SK" >"$WORK/passwd"
chmod 600 "$WORK/passwd"
PROXY_LOG="$WORK/proxy.log"

start_replica() {
    RUST_LOG=warn "$BIN" --config "$WORK/replica.toml" --listen "127.0.0.1:$REPLICA_PORT" \
        >>"$WORK/replica.out" 2>>"$WORK/replica.log" &
    echo $! >"$PIDS/replica"
    disown $!   # killed on purpose later: no "Killed" notice from this shell
    wait_port "$REPLICA_PORT" "$PIDS/replica" "the replica s3proxy"
}
kill_replica() { # SIGKILL: a crash, nothing flushed
    local pid; pid=$(cat "$PIDS/replica" 2>/dev/null) || return 0
    kill -9 "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$PIDS/replica"
}
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
echo $! >"$PIDS/moto"
wait_port "$MOTO_PORT" "$PIDS/moto" moto_server || exit 1
start_replica || exit 1
RUST_LOG=${RUST_LOG:-info} "$BIN" --config "$WORK/s3proxy.toml" --listen "127.0.0.1:$PORT" \
    >"$WORK/proxy.out" 2>"$PROXY_LOG" &
echo $! >"$PIDS/proxy"
wait_port "$PORT" "$PIDS/proxy" s3proxy || { cat "$PROXY_LOG"; exit 1; }

# The tls mode's front: a second s3proxy, its config the first one's with its own state_dir
# (its repair journal) and [tls], serving a certificate for 127.0.0.1 from a private CA. The
# impostor is a third, the same but with a certificate for 127.0.0.1 from another CA: s3fs
# trusting our CA must refuse it. Their admin listeners are off (the first proxy has 9001).
TLS_DIR="$WORK/tls"
TLS_PORT= TLS_ENDPOINT= IMPOSTOR_ENDPOINT= TLS_PROXY_LOG=
new_ca() { # name common-name
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.pem" 2>>"$TLS_DIR/openssl.log"
}
new_server_cert() { # name ca-name: key, certificate for IP 127.0.0.1, and the chain (leaf first)
    printf '%s\n' "subjectAltName = IP:127.0.0.1" "basicConstraints = critical,CA:FALSE" \
        "keyUsage = critical,digitalSignature" "extendedKeyUsage = serverAuth" >"$TLS_DIR/server.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.csr" 2>>"$TLS_DIR/openssl.log" &&
    openssl x509 -req -in "$TLS_DIR/$1.csr" -CA "$TLS_DIR/$2.pem" -CAkey "$TLS_DIR/$2.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 30 -extfile "$TLS_DIR/server.ext" \
        -out "$TLS_DIR/$1.crt" 2>>"$TLS_DIR/openssl.log" &&
    cat "$TLS_DIR/$1.crt" "$TLS_DIR/$2.pem" >"$TLS_DIR/$1-chain.pem"
}
start_tls_front() { # name port cert-name: an s3proxy like the first, over HTTPS
    sed "s|^state_dir = .*|state_dir = \"$WORK/$1-state\"|" "$WORK/s3proxy.toml" >"$WORK/$1.toml"
    printf '[admin]\nenabled = false\n[tls]\ncert_file = "%s"\nkey_file = "%s"\n' \
        "$TLS_DIR/$3-chain.pem" "$TLS_DIR/$3.key" >>"$WORK/$1.toml"
    RUST_LOG=${RUST_LOG:-info} "$BIN" --config "$WORK/$1.toml" --listen "127.0.0.1:$2" \
        >"$WORK/$1.out" 2>"$WORK/$1.log" &
    echo $! >"$PIDS/$1"
    wait_port "$2" "$PIDS/$1" "the $1 s3proxy" || { tail -20 "$WORK/$1.log" >&2; return 1; }
}
if [ "$WANT_TLS" = 1 ]; then
    mkdir -p "$TLS_DIR"
    { new_ca ca "s3fs-it test CA" && new_server_cert server ca &&
      new_ca other-ca "s3fs-it another CA" && new_server_cert impostor other-ca; } ||
        { echo "openssl could not make the test certificates:" >&2; cat "$TLS_DIR/openssl.log" >&2; exit 1; }
    TLS_PORT=$(free_port)
    start_tls_front tlsproxy "$TLS_PORT" server || exit 1
    IMPOSTOR_PORT=$(free_port)
    start_tls_front impostor "$IMPOSTOR_PORT" impostor || exit 1
    TLS_ENDPOINT="https://127.0.0.1:$TLS_PORT"
    IMPOSTOR_ENDPOINT="https://127.0.0.1:$IMPOSTOR_PORT"
    TLS_PROXY_LOG="$WORK/tlsproxy.log"
fi

# Raw S3 requests for set-up and for looking behind the mount. curl's own SigV4 does not
# add x-amz-content-sha256 (S3 requires it) and does not encode '/' in the query, so
# callers pass queries already encoded.
s3curl() {
    curl -sS --max-time 60 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

# --- mounting ----------------------------------------------------------------------------
MODE=default
mode_opts() {
    case "$1" in
        default) echo "" ;;
        nomultipart) echo ",nomultipart" ;;
        nocopyapi) echo ",nocopyapi" ;;
        sigv2) echo ",sigv2" ;;
        tls) echo "" ;;  # the url is https://, the certificate checked as by default
    esac
}

# mount_s3fs NAME BUCKET MOUNTPOINT EXTRA_OPTS: s3fs in the foreground (-f) in the
# background, so that its PID is ours to stop. attr_timeout=0: the kernel would otherwise
# cache attributes for a second and a stat right after cp -p or touch -d shows stale times.
mount_s3fs() {
    local name=$1 bucket=$2 mnt=$3 extra=$4 pid
    mkdir -p "$mnt"
    s3fs "$bucket" "$mnt" -f \
        -o "url=$ENDPOINT,use_path_request_style,passwd_file=$WORK/passwd,attr_timeout=0,dbglevel=warn$extra" \
        >>"$WORK/s3fs.$name.log" 2>&1 &
    pid=$!
    printf '%s\n%s\n' "$pid" "$mnt" >"$PIDS/s3fs.$name"
    for _ in $(seq 1 200); do
        grep -q " $mnt fuse" /proc/mounts && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "s3fs did not mount $bucket on $mnt:" >&2
    tail -20 "$WORK/s3fs.$name.log" >&2
    unmount_one "$mnt" "$PIDS/s3fs.$name"
    return 1
}

umount_s3fs() { unmount_one "$(sed -n 2p "$PIDS/s3fs.$1")" "$PIDS/s3fs.$1"; }

# --- helpers the cases use (exported: each case runs in its own bash under timeout) ------
fail() { echo "  $*" >&2; return 1; }
eq() { # expected actual what
    [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}
near_now() { # epoch-seconds what: within a minute of now
    local t=$1 now; now=$(date +%s)
    if [ $((t - now)) -gt 60 ] || [ $((now - t)) -gt 60 ]; then fail "$2: time $t is not now ($now)"; fi
}
md5() { md5sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# remember what a file must hold after a remount
expect_md5() { local id; id=$(printf '%s' "$1" | md5sum | cut -c1-16); printf '%s\n%s\n' "$1" "$(md5 "$1")" >"$W/expect/$id"; }
randfile() { head -c "$2" /dev/urandom >"$1"; }
# compare N random ranges of a mounted file with the local reference
ranged_reads() { # mounted local count
    local m=$1 l=$2 n=$3 sz off len i
    sz=$(size "$l")
    for i in $(seq 1 "$n"); do
        off=$(( (RANDOM * 32768 + RANDOM) % sz ))
        len=$(( (RANDOM % 300000) + 1 ))
        # dd reads exactly this range (tail | head would read on until SIGPIPE)
        cmp <(dd if="$m" bs=64k iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none) \
            <(dd if="$l" bs=64k iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none) \
            || fail "range $off+$len differs"
    done
}
MARKER="s3proxy-plaintext-marker-$RANDOM$RANDOM"
export AK SK ENDPOINT BAK BSK MOTO_ENDPOINT REPLICA_ENDPOINT STATE PIDS WORK MARKER
export TLS_DIR TLS_ENDPOINT IMPOSTOR_ENDPOINT
export -f fail eq near_now md5 size expect_md5 randfile ranged_reads s3curl kill_replica unmount_one

CASES=()   # name|timeout|function, filled per mode
add() { CASES+=("$1|$2|$3"); }

run_case() { # name timeout function
    local name=$1 tmo=$2 fn=$3 rc start
    start=$(date +%s)
    # In the background and waited for, so that a signal runs the cleanup trap at once.
    (cd "$M" && exec timeout -k 10 "$tmo" bash -c "set -euo pipefail; $fn") >"$WORK/case.log" 2>&1 &
    CASE_PID=$!
    wait "$CASE_PID"
    rc=$?
    CASE_PID=
    local took=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        PASSED=$((PASSED + 1)); printf 'ok    %-12s %-45s %3ss\n' "$MODE" "$name" "$took"
    elif [ -n "${KNOWN_LIMITS[$fn]:-}" ]; then
        KNOWN=$((KNOWN + 1)); printf 'known %-12s %-45s s3fs limitation: %s\n' "$MODE" "$name" "${KNOWN_LIMITS[$fn]}"
        sed 's/^/      | /' "$WORK/case.log" | tail -5
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$MODE/$name")
        [ $rc -eq 124 ] && echo "  timed out after ${tmo}s" >>"$WORK/case.log"
        printf 'FAIL  %-12s %-45s %3ss\n' "$MODE" "$name" "$took"
        sed 's/^/      | /' "$WORK/case.log" | tail -15
    fi
}
skip_case() { SKIPPED=$((SKIPPED + 1)); printf 'skip  %-12s %-45s %s\n' "$MODE" "$1" "$2"; }

# Cases that fail because of s3fs itself, not the server, with the reason. They still run
# and are reported; a pass is a pass.
declare -A KNOWN_LIMITS=()

# ==== cases ==============================================================================
# Each runs with the mount ($M) as working directory, under set -euo pipefail.
# $L is a local scratch directory on another filesystem; $W the work dir.

# --- new files ---
t_new_echo() {
    mkdir -p new; echo "hello s3fs" >new/echo.txt
    eq 11 "$(stat -c %s new/echo.txt)" "stat size"
    eq "hello s3fs" "$(cat new/echo.txt)" "content"
    local line; line=$(ls -la --time-style=+%s new/echo.txt)
    eq 11 "$(echo "$line" | awk '{print $5}')" "ls -la size"
    near_now "$(echo "$line" | awk '{print $6}')" "ls -la time"
    near_now "$(stat -c %Y new/echo.txt)" "stat mtime"
    expect_md5 new/echo.txt
}
t_new_touch() {
    touch new/touched
    [ -f new/touched ] || fail "not a regular file"
    eq 0 "$(stat -c %s new/touched)" "size"
    near_now "$(stat -c %Y new/touched)" "mtime"
    ls -la new | grep -q ' touched$' || fail "not listed"
    expect_md5 new/touched
}
t_new_cp() {
    randfile "$L/cp.src" 100000
    cp "$L/cp.src" new/cp.bin
    eq 100000 "$(size new/cp.bin)" "size"
    cmp "$L/cp.src" new/cp.bin
    cp -p "$L/cp.src" new/cp-p.bin
    eq "$(stat -c %Y "$L/cp.src")" "$(stat -c %Y new/cp-p.bin)" "cp -p mtime"
    expect_md5 new/cp.bin
}
t_new_dd() {
    randfile "$L/dd.src" 1048576
    dd if="$L/dd.src" of=new/dd.bin bs=64k status=none
    eq 1048576 "$(size new/dd.bin)" "size"
    cmp "$L/dd.src" new/dd.bin
    dd if=/dev/zero of=new/dd-count.bin bs=4k count=3 status=none
    eq 12288 "$(size new/dd-count.bin)" "size of bs=4k count=3"
    expect_md5 new/dd.bin
}
t_new_tee() {
    echo one | tee -a new/tee.txt >/dev/null
    echo two | tee -a new/tee.txt >/dev/null
    eq "$(printf 'one\ntwo')" "$(cat new/tee.txt)" "content"
    eq 8 "$(size new/tee.txt)" "size"
    expect_md5 new/tee.txt
}
t_new_rename() {
    echo "renamed" >new/before.txt
    mv new/before.txt new/after.txt
    [ ! -e new/before.txt ] || fail "old name still exists"
    eq renamed "$(cat new/after.txt)" "content"
    eq 8 "$(size new/after.txt)" "size"
    expect_md5 new/after.txt
}
t_new_mv_from_other_fs() {
    randfile "$L/moved.bin" 70000
    local sum; sum=$(md5 "$L/moved.bin")
    touch -d "2010-01-02 03:04:05 UTC" "$L/moved.bin"
    mv "$L/moved.bin" new/moved.bin
    [ ! -e "$L/moved.bin" ] || fail "source still exists"
    eq "$sum" "$(md5 new/moved.bin)" "checksum"
    eq 1262401445 "$(stat -c %Y new/moved.bin)" "mtime kept by mv"
    mv new/moved.bin "$L/moved-back.bin"
    [ ! -e new/moved.bin ] || fail "mv out left the file"
    eq "$sum" "$(md5 "$L/moved-back.bin")" "checksum after mv out"
}

# --- existing files ---
t_overwrite() {
    randfile "$L/ow" 5000; cp "$L/ow" exist-ow.bin
    echo short >exist-ow.bin
    eq 6 "$(size exist-ow.bin)" "size"
    eq short "$(cat exist-ow.bin)" "content"
    expect_md5 exist-ow.bin
}
t_append() {
    printf 'a' >exist-ap.txt
    for i in 1 2 3 4 5; do printf '%s' "$i" >>exist-ap.txt; done
    eq a12345 "$(cat exist-ap.txt)" "content"
    eq 6 "$(size exist-ap.txt)" "size"
    expect_md5 exist-ap.txt
}
t_truncate_smaller() {
    randfile "$L/tr" 10000; cp "$L/tr" exist-trs.bin
    truncate -s 1000 exist-trs.bin; truncate -s 1000 "$L/tr"
    eq 1000 "$(size exist-trs.bin)" "size"
    cmp "$L/tr" exist-trs.bin
    truncate -s 0 "$L/tr"; : >exist-trs0.bin
    eq 0 "$(size exist-trs0.bin)" "size after : >"
    expect_md5 exist-trs.bin
}
t_truncate_larger() {
    randfile "$L/tl" 1000; cp "$L/tl" exist-trl.bin
    truncate -s 300000 exist-trl.bin; truncate -s 300000 "$L/tl"
    eq 300000 "$(size exist-trl.bin)" "size"
    cmp "$L/tl" exist-trl.bin
    expect_md5 exist-trl.bin
}
t_random_writes() {
    randfile "$L/rw" 2000000; cp "$L/rw" exist-rw.bin
    local i off len
    for i in $(seq 1 12); do
        off=$(( (RANDOM * 32768 + RANDOM) % 2300000 ))   # some land past the end
        len=$(( RANDOM % 5000 + 1 ))
        randfile "$L/patch" "$len"
        dd if="$L/patch" of=exist-rw.bin bs=1 seek="$off" conv=notrunc status=none
        dd if="$L/patch" of="$L/rw" bs=1 seek="$off" conv=notrunc status=none
    done
    eq "$(size "$L/rw")" "$(size exist-rw.bin)" "size"
    eq "$(md5 "$L/rw")" "$(md5 exist-rw.bin)" "checksum"
    expect_md5 exist-rw.bin
}

# --- metadata (checked again after the remount by t_meta_after_remount) ---
t_chmod() {
    echo x >meta-chmod; chmod 640 meta-chmod
    eq 640 "$(stat -c %a meta-chmod)" "mode"
    chmod u+x,o+r meta-chmod
    eq 744 "$(stat -c %a meta-chmod)" "mode after u+x,o+r"
    eq x "$(cat meta-chmod)" "content kept"
    mkdir -p meta-dir; chmod 750 meta-dir
    eq 750 "$(stat -c %a meta-dir)" "directory mode"
}
t_chown() {
    echo x >meta-chown; chown 1234:2345 meta-chown
    eq 1234:2345 "$(stat -c %u:%g meta-chown)" "owner"
    eq x "$(cat meta-chown)" "content kept"
}
t_touch_d() {
    echo x >meta-touch; touch -d "2001-02-03 04:05:06 UTC" meta-touch
    eq 981173106 "$(stat -c %Y meta-touch)" "mtime"
    eq x "$(cat meta-touch)" "content kept"
}
t_utimes() {
    echo x >meta-utimes
    python3 -c 'import os,sys; os.utime(sys.argv[1], (1234567890, 1234567890))' meta-utimes
    eq 1234567890 "$(stat -c %Y meta-utimes)" "mtime"
}
t_mkdir_rmdir() {
    mkdir dir-a
    [ -d dir-a ] || fail "not a directory"
    ls -la | grep -q ' dir-a$' || fail "not listed"
    rmdir dir-a
    [ ! -e dir-a ] || fail "still there after rmdir"
    mkdir dir-b; echo x >dir-b/f
    if rmdir dir-b 2>/dev/null; then fail "rmdir of a non-empty directory succeeded"; fi
    rm dir-b/f; rmdir dir-b
    [ ! -e dir-b ] || fail "still there"
}
t_nested_dirs() {
    mkdir -p nest/a/b/c/d
    echo deep >nest/a/b/c/d/f.txt
    eq deep "$(cat nest/a/b/c/d/f.txt)" "content"
    eq "nest/a nest/a/b nest/a/b/c nest/a/b/c/d nest/a/b/c/d/f.txt" "$(find nest -mindepth 1 | sort | tr '\n' ' ' | sed 's/ $//')" "find"
    eq b "$(ls nest/a)" "ls nest/a"
    expect_md5 nest/a/b/c/d/f.txt
}
t_rename_dir() {
    mkdir -p rdir/sub; echo 1 >rdir/one; echo 2 >rdir/sub/two; chmod 700 rdir/sub
    mv rdir rdir2
    [ ! -e rdir ] || fail "old directory still exists"
    eq 1 "$(cat rdir2/one)" "one"; eq 2 "$(cat rdir2/sub/two)" "sub/two"
    eq 700 "$(stat -c %a rdir2/sub)" "mode of moved subdirectory"
    eq "one sub" "$(ls rdir2 | tr '\n' ' ' | sed 's/ $//')" "listing"
    expect_md5 rdir2/sub/two
}
t_symlink() {
    echo target-data >sym-target
    ln -s sym-target sym-link
    ln -s does-not-exist sym-dangling
    [ -L sym-link ] || fail "not a symlink"
    eq sym-target "$(readlink sym-link)" "readlink"
    eq target-data "$(cat sym-link)" "read through link"
    eq does-not-exist "$(readlink sym-dangling)" "dangling readlink"
    mkdir -p symdir; ln -s ../sym-target symdir/up
    eq target-data "$(cat symdir/up)" "relative link from subdir"
}
t_hardlink_refused() {
    echo x >hl-src
    if ln hl-src hl-dst 2>/dev/null; then fail "hard link succeeded (s3fs cannot keep one)"; fi
    [ ! -e hl-dst ] || fail "a link target appeared"
}
t_meta_after_remount() {
    eq 744 "$(stat -c %a meta-chmod)" "chmod"
    eq 750 "$(stat -c %a meta-dir)" "directory chmod"
    eq 1234:2345 "$(stat -c %u:%g meta-chown)" "chown"
    eq 981173106 "$(stat -c %Y meta-touch)" "touch -d"
    eq 1234567890 "$(stat -c %Y meta-utimes)" "utimes"
    eq sym-target "$(readlink sym-link)" "symlink"
    eq target-data "$(cat sym-link)" "symlink target"
    eq 700 "$(stat -c %a rdir2/sub)" "renamed directory mode"
    eq "$(stat -c %Y "$L/cp.src")" "$(stat -c %Y new/cp-p.bin)" "cp -p mtime"
}
t_content_after_remount() {
    local f path want n=0
    for f in "$W"/expect/*; do
        path=$(sed -n 1p "$f"); want=$(sed -n 2p "$f")
        [ -e "$path" ] || fail "$path is gone"
        eq "$want" "$(md5 "$path")" "checksum of $path"
        n=$((n + 1))
    done
    [ "$n" -gt 10 ] || fail "only $n files recorded"
}

# --- edge names ---
edge_name() { # a file with this name: create, list, read, rename, delete
    local n=$1
    mkdir -p edge; echo "$n" >"edge/$n"
    eq "$n" "$(cat "edge/$n")" "content"
    ls edge | grep -qxF "$n" || fail "'$n' not listed as such: $(ls edge | tr '\n' '|')"
    mv "edge/$n" "edge/$n.moved"
    eq "$n" "$(cat "edge/$n.moved")" "content after rename"
    mkdir -p "edge/d $n"; echo in >"edge/d $n/in"
    eq in "$(cat "edge/d $n/in")" "file in a directory with that name"
    rm -r "edge/$n.moved" "edge/d $n"
    [ ! -e "edge/$n.moved" ] || fail "still there after rm"
}
export -f edge_name
t_name_spaces() { edge_name "a name  with spaces "; }
t_name_unicode() { edge_name "héllo wörld 日本語 ✓ ñ"; }
t_name_percent() { edge_name "100%25 %20 %"; }
t_name_plus() { edge_name "a+b+c"; }
t_name_hash() { edge_name "#hash#"; }
t_name_misc() { edge_name "q?a&b=c;d'e\"f[g]{h}~!@\$^(x),'"; }
t_name_long() { edge_name "$(printf 'L%.0s' $(seq 1 240))"; }
t_deep_path() {
    local p=deep i
    for i in $(seq 1 30); do p="$p/d$i"; done
    mkdir -p "$p"; echo bottom >"$p/f"
    eq bottom "$(cat "$p/f")" "content"
    eq 31 "$(find deep -type d | wc -l)" "directories"
    expect_md5 "$p/f"
}
t_empty_file() {
    : >empty.bin
    eq 0 "$(size empty.bin)" "size"; eq "" "$(cat empty.bin)" "content"
    [ -f empty.bin ] || fail "not a regular file"
}
t_zero_byte_dirlike() {
    # A 0-byte file whose name reads like a directory's: it must stay a file (also after
    # the remount, see t_dirlike_after_remount), and an empty directory a directory.
    touch dirlike; mkdir dirlike.d
    if [ ! -f dirlike ] || [ -d dirlike ]; then fail "dirlike is not a regular file"; fi
    [ -d dirlike.d ] || fail "dirlike.d is not a directory"
    # Objects written by other S3 clients: "rawdir/" (0 bytes, no content type) and a key
    # under a prefix that has no directory object at all.
    # (curl would label the body application/x-www-form-urlencoded: send no type at all)
    s3curl -f -X PUT -H "Content-Type:" --data-binary '' "$S3URL/rawdir/" -o /dev/null
    s3curl -f -X PUT -H "Content-Type:" --data-binary 'child' "$S3URL/implicit/child.txt" -o /dev/null
    [ -d rawdir ] || fail "rawdir/ is not a directory"
    [ -d implicit ] || fail "implicit/ is not a directory"
    eq child "$(cat implicit/child.txt)" "implicit/child.txt"
    ls | grep -qx implicit || fail "implicit not listed"
}
t_dirlike_after_remount() {
    if [ ! -f dirlike ] || [ -d dirlike ]; then fail "dirlike is not a regular file"; fi
    [ -d dirlike.d ] || fail "dirlike.d is not a directory"
    [ -f empty.bin ] || fail "empty.bin is not a regular file"
    eq 0 "$(size empty.bin)" "empty.bin size"
}

# --- large files ---
large_file() { # size-in-MB name
    local mb=$1 name=$2
    mkdir -p large
    [ -f "$L/$name" ] || head -c "$((mb * 1048576))" /dev/urandom >"$L/$name"
    cp "$L/$name" "large/$name"
    eq "$((mb * 1048576))" "$(size "large/$name")" "size"
    mv "large/$name" "large/$name.renamed"
    [ ! -e "large/$name" ] || fail "old name exists after rename"
    eq "$(md5 "$L/$name")" "$(md5 "large/$name.renamed")" "checksum after rename"
    expect_md5 "large/$name.renamed"
}
export -f large_file
t_large_25m() { large_file 25 f25m; }
t_large_200m() { large_file 200 f200m; }
t_large_huge() { large_file 1100 f1100m; }
t_large_ranges_after_remount() {
    local f
    for f in "$L"/f*m; do
        [ -f "large/$(basename "$f").renamed" ] || continue
        ranged_reads "large/$(basename "$f").renamed" "$f" 12
    done
}
t_multipart_copy_rename() {
    # Rename above singlepart_copy_limit uses UploadPartCopy with x-amz-copy-source-range;
    # a second mount with a low limit exercises it without a 512 MB file.
    local sum; sum=$(md5 "$L/f25m")
    eq "$sum" "$(md5 "$MC/large/f25m.renamed")" "checksum via the second mount"
    mv "$MC/large/f25m.renamed" "$MC/large/f25m.mpcopy"
    eq "$sum" "$(md5 "$MC/large/f25m.mpcopy")" "checksum after multipart copy"
    grep -q "UploadPartCopy PUT /$BUCKET/large/f25m.mpcopy" "$W/proxy.log" || fail "no UploadPartCopy seen in the proxy log"
    mv "$MC/large/f25m.mpcopy" "$MC/large/f25m.renamed"
}

# --- a second mount (default mode): other s3fs options, and what one client sees of another
t_cross_mount_new_file() {
    # Written on one mount, seen at once, with its size, on another (no shared cache).
    echo "from mount one" >"$M/cross.txt"
    eq 15 "$(stat -c %s "$MC/cross.txt")" "size on the second mount"
    eq "from mount one" "$(cat "$MC/cross.txt")" "content on the second mount"
    randfile "$L/cross.bin" 3000000; cp "$L/cross.bin" "$MC/cross.bin"
    cmp "$L/cross.bin" "$M/cross.bin"
    # An overwrite is visible to any S3 client at once (s3fs itself caches stat results).
    echo "second version" >"$M/cross.txt"
    eq 15 "$(s3curl -f -I "$S3URL/cross.txt" | tr -d '\r' | awk 'tolower($1)=="content-length:" {print $2}')" "HEAD size after overwrite"
}
t_xattr() {
    # -o use_xattr keeps extended attributes in x-amz-meta-xattr (URL-encoded JSON).
    echo x >"$MC/xattr.txt"
    setfattr -n user.color -v "blue green" "$MC/xattr.txt"
    setfattr -n user.other -v 0x00ff10 "$MC/xattr.txt"
    eq "blue green" "$(getfattr --only-values -n user.color "$MC/xattr.txt")" "getfattr"
    getfattr -d "$MC/xattr.txt" 2>/dev/null | grep -q '^user.other=' || fail "user.other not listed"
    s3curl -f -I "$S3URL/xattr.txt" | grep -qi '^x-amz-meta-xattr:.*user.color' || fail "not stored as x-amz-meta-xattr"
    setfattr -x user.color "$MC/xattr.txt"
    if getfattr -n user.color "$MC/xattr.txt" 2>/dev/null; then fail "removed attribute still there"; fi
    eq x "$(cat "$MC/xattr.txt")" "content kept"
}
t_xattr_empty_value() {
    echo x >"$MC/xattr-empty.txt"
    setfattr -n user.empty "$MC/xattr-empty.txt" || true
    getfattr -d "$MC/xattr-empty.txt" 2>/dev/null | grep -q '^user.empty' || fail "user.empty (empty value) not kept"
}
KNOWN_LIMITS[t_xattr_empty_value]="s3fs 1.90 s3fs_setxattr rejects a 0-byte value ('Wrong parameter: value, size(0)') before any request is sent"

t_list_head_agree() {
    # What LIST says of every object (size, ETag) is what HEAD says, multipart ones included.
    local listing n=0 enc size etag head hsize hetag
    listing=$(s3curl -f "$S3URL?list-type=2&max-keys=1000" | python3 -c '
import sys, urllib.parse, xml.etree.ElementTree as ET
ns = {"s": "http://s3.amazonaws.com/doc/2006-03-01/"}
root = ET.fromstring(sys.stdin.read())
items = root.findall("s:Contents", ns) or root.findall("Contents")
for c in items:
    get = lambda n: (c.find("s:" + n, ns) if c.find("s:" + n, ns) is not None else c.find(n)).text
    print(urllib.parse.quote(get("Key"), safe="/"), get("Size"), get("ETag"))
')
    [ -n "$listing" ] || fail "empty listing"
    while read -r enc size etag; do
        head=$(s3curl -f -I "$S3URL/$enc" | tr -d '\r')
        hsize=$(echo "$head" | awk 'tolower($1)=="content-length:" {print $2}')
        hetag=$(echo "$head" | awk 'tolower($1)=="etag:" {print $2}')
        eq "$size $etag" "$hsize $hetag" "HEAD of $enc"
        n=$((n + 1))
    done <<<"$listing"
    echo "$listing" | awk '{print $3}' | grep -q -- '-[0-9]*"$' || fail "no multipart object among $n"
}

# --- stress ---
t_many_small_files() {
    mkdir -p many; local i n=$SMALL_FILES
    for i in $(seq 1 "$n"); do echo "small file $i" >"many/f$i"; done
    eq "$n" "$(ls many | wc -l)" "listed"
    for i in $(seq 1 "$n"); do [ "$(cat "many/f$i")" = "small file $i" ] || fail "many/f$i"; done
    rm -r many
    [ ! -e many ] || fail "rm -r left the directory"
}
t_parallel_writers() {
    mkdir -p par "$L/par"; local w pids=()
    for w in 1 2 3 4 5 6; do
        (
            for i in $(seq 1 15); do
                head -c $(( (RANDOM % 200000) + 1 )) /dev/urandom >"$L/par/w$w-$i"
                cp "$L/par/w$w-$i" "par/w$w-$i"
            done
        ) &
        pids+=($!)
    done
    for w in "${pids[@]}"; do wait "$w" || fail "a writer failed"; done
    eq 90 "$(ls par | wc -l)" "files"
    diff -r "$L/par" par
}
make_tree() { # dir: a small source tree with nested dirs, odd names, empty files, a symlink
    local d=$1 i
    mkdir -p "$d/src/a/b" "$d/src/empty dir" "$d/docs"
    for i in $(seq 1 40); do head -c $((RANDOM % 30000)) /dev/urandom >"$d/src/a/f$i.bin"; done
    for i in $(seq 1 10); do echo "doc $i" >"$d/docs/readme $i.md"; done
    : >"$d/src/a/b/empty"; echo deep >"$d/src/a/b/deep.txt"
    chmod 600 "$d/docs/readme 1.md"; chmod 755 "$d/src/a/f1.bin"
    ln -s ../docs/readme\ 2.md "$d/src/link"
    touch -d "2015-06-07 08:09:10 UTC" "$d/docs/readme 3.md"
}
export -f make_tree
t_cp_r() {
    make_tree "$L/tree-cp"
    cp -r "$L/tree-cp" tree-cp
    diff -r "$L/tree-cp" tree-cp
}
t_rsync_a() {
    make_tree "$L/tree-rs"
    rsync -a "$L/tree-rs/" tree-rs/
    diff -r "$L/tree-rs" tree-rs
    eq 600 "$(stat -c %a "tree-rs/docs/readme 1.md")" "mode kept"
    eq 1433664550 "$(stat -c %Y "tree-rs/docs/readme 3.md")" "mtime kept"
    # A second rsync must find nothing to do: sizes, times, modes and links all agree.
    local changes; changes=$(rsync -a --itemize-changes "$L/tree-rs/" tree-rs/)
    eq "" "$changes" "changes on a second rsync"
}

# --- resilience: the replica s3proxy is killed mid-write and later brought back ---
t_replica_killed_mid_write() {
    # A 40 MB write is under way (multipart, outside nomultipart) when one replica's process
    # is SIGKILLed; the write, and every case after this one, must still succeed.
    randfile "$L/killed.bin" 40000000
    cp "$L/killed.bin" killed-mid-write.bin &
    local cp_pid=$!
    sleep 0.8
    kill_replica
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

# ==== the run ============================================================================
run_mode() {
    MODE=$1
    BUCKET="s3fs-$MODE"
    ENDPOINT=$HTTP_ENDPOINT
    if [ "$MODE" = tls ]; then
        ENDPOINT=$TLS_ENDPOINT
        export CURL_CA_BUNDLE="$TLS_DIR/ca.pem"   # s3fs's CA bundle, and curl's (s3curl)
    fi
    export ENDPOINT
    S3URL="$ENDPOINT/$BUCKET"
    M="$WORK/mnt-$MODE"
    L="$WORK/local/$MODE"
    MC="$WORK/mnt-$MODE-copy"
    W="$WORK"
    mkdir -p "$L"
    rm -f "$WORK"/expect/*
    export MODE BUCKET S3URL M L MC W
    echo "--- mode $MODE: s3fs -o use_path_request_style,attr_timeout=0$(mode_opts "$MODE")$(
        [ "$MODE" = tls ] && echo ",url=$ENDPOINT with CURL_CA_BUNDLE=$CURL_CA_BUNDLE")"
    s3curl -f -X PUT "$ENDPOINT/$BUCKET" -o /dev/null || { FAILED=$((FAILED + 1)); echo "FAIL  $MODE create bucket"; return; }
    if ! mount_s3fs "$MODE" "$BUCKET" "$M" "$(mode_opts "$MODE")"; then
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$MODE/mount"); echo "FAIL  $MODE mount"; return
    fi
    local c
    CASES=()
    add "new: echo > then stat/cat/ls" 60 t_new_echo
    add "new: touch" 60 t_new_touch
    add "new: cp, cp -p" 60 t_new_cp
    add "new: dd" 60 t_new_dd
    add "new: tee -a" 60 t_new_tee
    add "new: by rename" 60 t_new_rename
    add "new: mv from another filesystem" 60 t_new_mv_from_other_fs
    add "existing: overwrite" 60 t_overwrite
    add "existing: append" 60 t_append
    add "existing: truncate smaller" 60 t_truncate_smaller
    add "existing: truncate larger" 60 t_truncate_larger
    add "existing: dd conv=notrunc at random offsets" 120 t_random_writes
    add "meta: chmod" 60 t_chmod
    add "meta: chown" 60 t_chown
    add "meta: touch -d" 60 t_touch_d
    add "meta: utimes" 60 t_utimes
    add "meta: mkdir, rmdir" 60 t_mkdir_rmdir
    add "meta: nested directories" 60 t_nested_dirs
    add "meta: rename a directory" 60 t_rename_dir
    add "meta: symlinks" 60 t_symlink
    add "meta: hard link refused" 60 t_hardlink_refused
    add "resilience: a replica killed mid-write" 300 t_replica_killed_mid_write
    add "name: spaces" 60 t_name_spaces
    add "name: unicode" 60 t_name_unicode
    add "name: percent" 60 t_name_percent
    add "name: plus" 60 t_name_plus
    add "name: hash" 60 t_name_hash
    add "name: ?&=;'\"[]{}~!@\$^()," 60 t_name_misc
    add "name: 240 characters" 60 t_name_long
    add "name: 30 directories deep" 120 t_deep_path
    add "edge: empty file" 60 t_empty_file
    add "edge: 0-byte file named like a directory" 60 t_zero_byte_dirlike
    add "large: 25 MB write, rename, checksum" 300 t_large_25m
    case "$MODE" in default | nomultipart) add "large: 200 MB write, rename, checksum" 900 t_large_200m ;; esac
    if [ "${S3FS_TEST_HUGE:-0}" = 1 ] && [ "$MODE" = default ]; then
        add "large: 1.1 GB write, rename (multipart copy)" 1800 t_large_huge
    fi
    # 300 in the default mode; the other modes send the same requests for them.
    SMALL_FILES=100; [ "$MODE" = default ] && SMALL_FILES=300
    [ "$MODE" = tls ] && SMALL_FILES=30
    export SMALL_FILES
    add "stress: $SMALL_FILES small files" 300 t_many_small_files
    add "stress: parallel writers" 300 t_parallel_writers
    add "stress: cp -r then diff -r" 300 t_cp_r
    add "stress: rsync -a then diff -r" 300 t_rsync_a
    if [ "$MODE" = tls ]; then
        local kept=()
        for c in "${CASES[@]}"; do
            case " ${TLS_CASES[*]} " in *" ${c##*|} "*) kept+=("$c") ;; esac
        done
        CASES=("tls: another CA's certificate refused|60|t_tls_other_ca_refused"
               "tls: a name not in the certificate refused|60|t_tls_hostname_checked" "${kept[@]}")
    fi
    for c in "${CASES[@]}"; do
        IFS='|' read -r name tmo fn <<<"$c"
        run_case "$name" "$tmo" "$fn"
    done

    # The killed replica returns; repair must bring it level with the others.
    if [ "$MODE" = tls ]; then
        :   # not killed in this mode
    elif start_replica; then
        run_case "resilience: replica repaired, ciphertext only" 300 t_replica_converged
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$MODE/replica restart"); echo "FAIL  $MODE replica restart"
    fi

    # Everything again from the server, with nothing cached by this s3fs process.
    umount_s3fs "$MODE"
    if mount_s3fs "$MODE" "$BUCKET" "$M" "$(mode_opts "$MODE")"; then
        run_case "remount: metadata survives" 60 t_meta_after_remount
        run_case "remount: content checksums" 600 t_content_after_remount
        run_case "remount: empty and dir-like files" 60 t_dirlike_after_remount
        run_case "remount: random ranged reads" 600 t_large_ranges_after_remount
        if [ "$MODE" = default ]; then
            # A second mount with other options that matter: a low multipart-copy limit,
            # extended attributes, ListObjectsV2 and Content-MD5 on every upload.
            if mount_s3fs "$MODE-copy" "$BUCKET" "$MC" ",singlepart_copy_limit=10,use_xattr,listobjectsv2,enable_content_md5"; then
                run_case "large: rename by multipart copy" 300 t_multipart_copy_rename
                run_case "second mount: new file seen at once" 60 t_cross_mount_new_file
                run_case "second mount: xattrs (use_xattr)" 60 t_xattr
                run_case "second mount: xattr with an empty value" 60 t_xattr_empty_value
                run_case "server: LIST and HEAD agree" 120 t_list_head_agree
                umount_s3fs "$MODE-copy"
            else
                FAILED=$((FAILED + 1)); FAILED_NAMES+=("$MODE/mount copy"); echo "FAIL  $MODE second mount"
            fi
        fi
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$MODE/remount"); echo "FAIL  $MODE remount"
    fi
    umount_s3fs "$MODE"
    if [ "$MODE" = tls ]; then unset CURL_CA_BUNDLE; fi
}

check_proxy_log() { # name pidfile log
    MODE=$1
    local bad pidfile=$2 log=$3
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        FAILED=$((FAILED + 1)); printf 'FAIL  %-12s %s\n' "$MODE" "s3proxy died"; tail -20 "$log"; return
    fi
    # 5xx statuses, panics, and errors sent inside a 200 (long copies and completions)
    bad=$(grep -E 'panicked| -> 5[0-9][0-9] |sent in a 200 body' "$log" | head -10)
    if [ -n "$bad" ]; then
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$MODE log")
        printf 'FAIL  %-12s %s\n' "$MODE" "server errors or panics in the proxy log:"; printf '%s\n' "$bad" | sed 's/^/      | /'
    else
        PASSED=$((PASSED + 1)); printf 'ok    %-12s %s\n' "$MODE" "no 5xx, no error in a 200 and no panic in the proxy log"
    fi
}

# shellcheck disable=SC2046 # one word per function name
export -f $(declare -F | awk '$3 ~ /^t_/ {print $3}') compare_replicas backend_get
echo "s3proxy $BIN on $HTTP_ENDPOINT${TLS_ENDPOINT:+ and $TLS_ENDPOINT (tls mode)}; s3fs $(s3fs --version 2>/dev/null | head -1 | grep -oE 'V[0-9.]+'); work dir $WORK"
for mode in "${MODES[@]}"; do run_mode "$mode"; done
check_proxy_log proxy "$PIDS/proxy" "$PROXY_LOG"
if [ -n "$TLS_PROXY_LOG" ]; then check_proxy_log proxy-tls "$PIDS/tlsproxy" "$TLS_PROXY_LOG"; fi
echo "statuses by operation (4xx/5xx):"
grep -ohE '[0-9A-F]{16} [A-Za-z]+ [A-Z]+ .* -> [45][0-9][0-9]' "$PROXY_LOG" ${TLS_PROXY_LOG:+"$TLS_PROXY_LOG"} |
    awk '{print $2, $NF}' | sort | uniq -c | sed 's/^/  /'
[ ${#FAILED_NAMES[@]} -gt 0 ] && echo "failed: ${FAILED_NAMES[*]}"
echo "$KNOWN known s3fs limitations, $SKIPPED skipped"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
