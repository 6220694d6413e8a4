#!/usr/bin/env bash
# Profile s3proxy under 4 KiB requests (issue #18; docs/bench/README.md): start an
# in-memory s3proxy as the backend and s3proxy plain (or encrypted) in front of it, drive
# one small workload through the front one with s3proxy-bench, record the front proxy with
# `perf record --call-graph dwarf` and fold it into a flame graph with inferno.
#
# usage: scripts/bench_profile.sh OUT.svg [OP] [ENCRYPT]
#   OP       head (default), get or put: 4 KiB, c=32
#   ENCRYPT  off (default) or on
# Environment: PROFILE_SECONDS (default 8), BENCH_PORT_BASE (default 19500),
# PROFILE_FOLDED (also keep the folded stacks in this file), PROFILE_SYSCALLS=1 (count the
# proxy's system calls per request with `perf stat` instead of recording a profile).
# Needs perf (Debian: linux-perf) and inferno (`cargo install inferno --locked`); uses the
# release binaries as they are (build them first). Loopback only; every process started
# here is stopped by its PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT_SVG=${1:?usage: bench_profile.sh OUT.svg [OP] [ENCRYPT]}
OP=${2:-head}
ENC=${3:-off}
SECS=${PROFILE_SECONDS:-8}
PORT_BASE=${BENCH_PORT_BASE:-19500}
export PATH="$HOME/.cargo/bin:$PATH"
export AWS_ACCESS_KEY_ID=BENCHACCESSKEY AWS_SECRET_ACCESS_KEY=benchsecretkey0123456789
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
S3PROXY=$ROOT/target/release/s3proxy
BENCH=$ROOT/target/release/s3proxy-bench
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 2; }
command -v inferno-flamegraph >/dev/null || { echo "inferno is missing (cargo install inferno --locked)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/s3proxy-profile.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    local i
    for i in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2; return 1
}

# start PORT NAME ENCRYPT BACKEND ("memory" or a port of an S3 server)
start() {
    local dir=$WORK/$2
    mkdir -p "$dir"
    {
        echo "listen = \"127.0.0.1:$1\""
        echo "state_dir = \"$dir/state\""
        echo "[[credentials]]"
        echo "access_key = \"$AWS_ACCESS_KEY_ID\""
        echo "secret_key = \"$AWS_SECRET_ACCESS_KEY\""
        echo "[[backends]]"
        echo 'name = "b1"'
        if [ "$4" = memory ]; then
            echo 'kind = "memory"'
        else
            echo 'kind = "s3"'
            echo "endpoint = \"http://127.0.0.1:$4\""
            echo "access_key = \"$AWS_ACCESS_KEY_ID\""
            echo "secret_key = \"$AWS_SECRET_ACCESS_KEY\""
            echo 'region = "us-east-1"'
        fi
        echo "[encryption]"
        if [ "$3" = on ]; then
            "$S3PROXY" keygen "$dir/master.key" >/dev/null
            echo "key_file = \"$dir/master.key\""
        else
            echo "enabled = false"
        fi
    } >"$dir/s3proxy.toml"
    RUST_LOG=warn "$S3PROXY" --config "$dir/s3proxy.toml" >"$dir/out.log" 2>&1 &
    STARTED=$!; PIDS+=("$STARTED"); wait_port "$1"
}

start $((PORT_BASE + 1)) backend off memory
start $((PORT_BASE + 2)) proxy "$ENC" $((PORT_BASE + 1))
proxy=$STARTED
bench() {
    "$BENCH" --endpoint "http://127.0.0.1:$((PORT_BASE + 2))" --bucket bench --size 4KiB \
        --keys 256 "$@"
}
bench --create-bucket --op put -c 32 -d 1 >/dev/null
bench --op "$OP" -c 32 -d "$((SECS + 2))" &
load=$!; PIDS+=("$load")
sleep 1
if [ "${PROFILE_SYSCALLS:-0}" = 1 ]; then
    events=$(perf list 2>/dev/null | awk '/syscalls:sys_enter_(writev|write|sendto|sendmsg|recvfrom|read|readv|recvmsg|epoll_wait|epoll_pwait|futex|sched_yield) /{printf "%s%s", s, $1; s=","}')
    perf stat -x, -e "$events" -p "$proxy" -- sleep "$SECS" 2>"$WORK/stat"
    wait "$load"
    cat "$WORK/stat"
    exit 0
fi
perf record -q -F 499 --call-graph dwarf,16384 -p "$proxy" -o "$WORK/perf.data" -- sleep "$SECS"
wait "$load"
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$WORK/folded"
[ -n "${PROFILE_FOLDED:-}" ] && cp "$WORK/folded" "$PROFILE_FOLDED"
inferno-flamegraph --title "s3proxy ($ENC encryption) under 4 KiB ${OP^^} c=32" \
    <"$WORK/folded" >"$OUT_SVG"
# The heaviest frames by self time, for the commit message and the notes.
awk '{n = $NF; $NF = ""; split($0, f, ";"); s[f[length(f)]] += n; t += n}
     END {for (k in s) printf "%5.1f%% %s\n", 100 * s[k] / t, k}' "$WORK/folded" |
    sort -rn | head -25
