#!/usr/bin/env bash
# Benchmark s3proxy against its peers in one session (issue #8; docs/bench/README.md).
#
# Setups, each measured over two backends (s3s-fs on disk, then an in-memory s3proxy
# without encryption, which is fast enough not to hide the proxies' own cost):
#   direct       the backend itself
#   nginx        nginx as a plain streaming reverse proxy in front of it
#   s3s-proxy    s3s-proxy 0.14.1 in front of it
#   plain        s3proxy, no encryption, one backend
#   enc          s3proxy, encrypted, one backend
#   enc3-w1      s3proxy, encrypted, three backends, write quorum 1
#   enc3-wmaj    s3proxy, encrypted, three backends, write quorum majority
#   plain-sdk, enc-sdk  plain and enc with every backend request through aws-sdk-s3
#                (S3PROXY_S3_SDK_ONLY=1), to measure the lean client against it; not in the
#                default list
#   plain-base, enc-base  plain and enc run by another build of s3proxy, $BENCH_BASE_BIN
#                (e.g. main's), for a before/after in one session; not in the default list
#   plain-w1, enc-w1  plain and enc with one runtime worker thread (TOKIO_WORKER_THREADS=1),
#                to measure what cross-thread wake-ups cost on a small machine; not in the
#                default list
# Workloads: 4 KiB PUT/GET/HEAD at concurrency 32, HEAD at concurrency 1 (latency), LIST,
# DELETE; PUT and GET of 1 MiB, 64 MiB and 512 MiB; ranged 1 MiB GETs of a 64 MiB object.
# Then the raw AEAD against the crypto layer (cargo bench -p s3proxy-bench), and the
# peak RSS of s3proxy (plain and encrypted) while a 5 GiB object streams through it each
# way (a multipart upload in 64 MiB parts, then one whole GET).
#
# Writes docs/bench/results.jsonl (one line per run), results.md and the plots
# (BENCH_SMALL_ONLY=1: results-small.jsonl and results-small.md, which results.md then
# includes).
#
# Environment:
#   BENCH_SECONDS   seconds per run (default 4)
#   BENCH_SIZES     large object sizes (default "1MiB 64MiB 512MiB")
#   BENCH_BACKENDS  which rounds (default "s3s-fs memory")
#   BENCH_SETUPS    which setups (default all of the above)
#   BENCH_RSS_SIZE  size of the RSS measurement (default 5GiB; "0" skips it)
#   BENCH_AEAD      0 skips the AEAD/crypto-layer measurement
#   BENCH_OUT       output directory (default docs/bench)
#   BENCH_BASE_BIN  the s3proxy binary of the plain-base and enc-base setups
#   BENCH_REPEAT    run the setups of a round this many times, interleaved (default 1); the
#                   report keeps each workload's best run, which filters out the moments
#                   other work on the machine took the CPU
#   BENCH_SMALL_ONLY  1: only the small-request table (issue #18): 4 KiB PUT, GET, HEAD at
#                   c=32 and HEAD at c=1, over the memory backend, for nginx, plain and enc
#                   (BENCH_SETUPS still narrows it); no large objects, AEAD or RSS. With
#                   BENCH_SECONDS=5 it takes about a minute.
#   BENCH_ERASURE   1: only the erasure round (issue #19): PUT and GET of one large object
#                   ($BENCH_ERASURE_SIZE, default 512MiB; $BENCH_ERASURE_OPS of each, default
#                   3) through "ec21" (encrypted, erasure-coded 2 data + 1 parity) and
#                   "enc3-w1" (encrypted, three full copies), both over the same three s3s-fs
#                   backends in one run, with the proxy's CPU seconds per GiB (utime + stime
#                   from /proc/PID/stat around each run); writes results-erasure.jsonl and
#                   results-erasure.md. BENCH_REPEAT interleaves the two setups.
#   BENCH_HEDGE     1: only the hedged-read case (issue #18, scripts/bench_hedge.py, half a
#                   minute): an encrypting proxy over three replicas, the first paused by
#                   SIGSTOP during 40 GETs over 20 s, and the backend requests per GET with
#                   hedging on and off; writes results-hedge.jsonl and results-hedge.md.
#                   The full run (neither SMALL_ONLY nor ERASURE) ends with it too.
#   CARGO           cargo command (default cargo)
# Loopback only; every process started here is stopped by its PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
SECONDS_PER_RUN=${BENCH_SECONDS:-4}
SMALL_ONLY=${BENCH_SMALL_ONLY:-0}
ERASURE_ONLY=${BENCH_ERASURE:-0}
if [ "${BENCH_HEDGE:-0}" = 1 ]; then
    BACKENDS=memory
    SETUPS=plain
    RSS_SIZE=0
    BENCH_AEAD=0
elif [ "$ERASURE_ONLY" = 1 ]; then
    BACKENDS=s3s-fs
    SETUPS=${BENCH_SETUPS:-"enc3-w1 ec21"}
    RSS_SIZE=0
    BENCH_AEAD=0
elif [ "$SMALL_ONLY" = 1 ]; then
    BACKENDS=memory
    SETUPS=${BENCH_SETUPS:-"nginx plain enc"}
    RSS_SIZE=0
    BENCH_AEAD=0
else
    BACKENDS=${BENCH_BACKENDS:-"s3s-fs memory"}
    SETUPS=${BENCH_SETUPS:-"direct nginx s3s-proxy plain enc enc3-w1 enc3-wmaj"}
    RSS_SIZE=${BENCH_RSS_SIZE:-5GiB}
fi
SIZES=${BENCH_SIZES:-"1MiB 64MiB 512MiB"}
REPEAT=${BENCH_REPEAT:-1}
OUT=${BENCH_OUT:-$ROOT/docs/bench}
export AWS_ACCESS_KEY_ID=BENCHACCESSKEY AWS_SECRET_ACCESS_KEY=benchsecretkey0123456789
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
PORT_BASE=${BENCH_PORT_BASE:-19300}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- installs
need_apt=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v pgrep >/dev/null || need_apt+=(procps)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null \
        || { [[ " ${need_apt[*]} " == *" nginx-light "* ]] && apt-get install -y -qq nginx >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
export PATH="$HOME/.cargo/bin:$PATH"
# Only what the chosen rounds and setups run.
if [[ " $BACKENDS " == *" s3s-fs "* || "$RSS_SIZE" != 0 ]]; then
    command -v s3s-fs >/dev/null || { log "installing s3s-fs"; $CARGO install s3s-fs@0.14.1 --features binary --locked; }
fi
if [[ " $SETUPS " == *" s3s-proxy "* ]]; then
    command -v s3s-proxy >/dev/null || { log "installing s3s-proxy"; $CARGO install s3s-proxy@0.14.1 --locked; }
fi
python3 -c 'import matplotlib' 2>/dev/null || { log "installing matplotlib"; python3 -m pip install -q matplotlib; }

log "building s3proxy and s3proxy-bench (release)"
$CARGO build --release -q -p s3proxy-bin -p s3proxy-bench
python3 -c 'import boto3' 2>/dev/null || { log "installing boto3"; python3 -m pip install -q boto3; }
if [ "${BENCH_HEDGE:-0}" = 1 ]; then
    exec python3 "$ROOT/scripts/bench_hedge.py" "${BENCH_OUT:-$ROOT/docs/bench}"
fi
S3PROXY=$ROOT/target/release/s3proxy
BENCH=$ROOT/target/release/s3proxy-bench

# ---------------------------------------------------------------- processes
WORK=$(mktemp -d /tmp/s3proxy-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
    local port=$1 i
    for i in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    log "nothing listens on port $port"; return 1
}

# stop PID...: stop processes this script started
stop() {
    local pid
    for pid in "$@"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    local keep=() p
    for p in "${PIDS[@]}"; do [[ " $* " == *" $p "* ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# start_s3sfs PORT DIR -> pid in $STARTED
start_s3sfs() {
    mkdir -p "$2"
    s3s-fs --host 127.0.0.1 --port "$1" --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" "$2" >"$WORK/s3s-fs-$1.log" 2>&1 &
    STARTED=$!; PIDS+=("$STARTED"); wait_port "$1"
}

# start_s3proxy PORT NAME ENCRYPT(on|off) QUORUM BACKEND_SPEC...
# BACKEND_SPEC: "memory" or "s3:PORT"
start_s3proxy() {
    local port=$1 name=$2 enc=$3 quorum=$4; shift 4
    local dir=$WORK/$name conf i=0 k m
    mkdir -p "$dir"
    conf=$dir/s3proxy.toml
    {
        echo "listen = \"127.0.0.1:$port\""
        echo "state_dir = \"$dir/state\""
        echo "[[credentials]]"
        echo "access_key = \"$AWS_ACCESS_KEY_ID\""
        echo "secret_key = \"$AWS_SECRET_ACCESS_KEY\""
        for spec in "$@"; do
            i=$((i + 1))
            echo "[[backends]]"
            echo "name = \"b$i\""
            if [ "$spec" = memory ]; then
                echo 'kind = "memory"'
            else
                echo 'kind = "s3"'
                echo "endpoint = \"http://127.0.0.1:${spec#s3:}\""
                echo "access_key = \"$AWS_ACCESS_KEY_ID\""
                echo "secret_key = \"$AWS_SECRET_ACCESS_KEY\""
                echo 'region = "us-east-1"'
                echo 'timeout_ms = 120000'
            fi
        done
        if [ -n "${PLACEMENT:-}" ]; then # "erasure K M"
            read -r _ k m <<<"$PLACEMENT"
            echo "[placement]"
            echo 'kind = "erasure"'
            echo "data_shards = $k"
            echo "parity_shards = $m"
        fi
        if [ $# -gt 1 ]; then
            echo "[replication]"
            case $quorum in
                majority) echo 'write_quorum = "majority"' ;;
                *) echo "write_quorum = $quorum" ;;
            esac
        fi
        echo "[encryption]"
        if [ "$enc" = on ]; then
            "$S3PROXY" keygen "$dir/master.key" >/dev/null
            echo "key_file = \"$dir/master.key\""
        else
            echo "enabled = false"
        fi
    } >"$conf"
    # TOKIO_WORKER_THREADS only when a setup asks for it (tokio reads it when set).
    env ${WORKERS:+TOKIO_WORKER_THREADS=$WORKERS} RUST_LOG=${BENCH_PROXY_LOG:-warn} \
        S3PROXY_S3_SDK_ONLY=${SDK_ONLY:-0} \
        "${PROXY_BIN:-$S3PROXY}" --config "$conf" >"$dir/out.log" 2>&1 &
    STARTED=$!; PIDS+=("$STARTED"); wait_port "$port"
}

start_nginx() {
    local port=$1 upstream=$2 dir=$WORK/nginx-$1
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    upstream backend { server 127.0.0.1:$upstream; keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 0;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            # Stream both ways, as the proxies do, with reads of up to 256 KiB.
            proxy_request_buffering off;
            proxy_buffering off;
            client_body_buffer_size 256k;
            proxy_buffer_size 256k;
            proxy_buffers 4 256k;
            proxy_busy_buffers_size 256k;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" &
    STARTED=$!; PIDS+=("$STARTED"); wait_port "$port"
}

start_s3s_proxy() {
    s3s-proxy --host 127.0.0.1 --port "$1" --endpoint-url "http://127.0.0.1:$2" \
        >"$WORK/s3s-proxy-$1.log" 2>&1 &
    STARTED=$!; PIDS+=("$STARTED"); wait_port "$1"
}

# ---------------------------------------------------------------- workloads
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
# The small-request table alone goes beside the full session's files, not over them.
[ "$SMALL_ONLY" = 1 ] && RESULTS=$OUT/results-small.jsonl
[ "$ERASURE_ONLY" = 1 ] && RESULTS=$OUT/results-erasure.jsonl
: >"$RESULTS"
# CPU ticks (utime + stime) of the given processes and their children (nginx's workers).
cpu_ticks() {
    local p t=0
    for p in "$@" $(for p in "$@"; do pgrep -P "$p"; done); do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
# The proxy under test (empty for the backend itself) and the backends, for cpu_ticks.
PROXY_PID=
BACKEND_PIDS=()
run() { # LABEL PORT ARGS...
    local label=$1 port=$2 hz proxy0 backends0 proxy1 backends1 client; shift 2
    hz=$(getconf CLK_TCK)
    proxy0=$(cpu_ticks $PROXY_PID); backends0=$(cpu_ticks "${BACKEND_PIDS[@]}")
    /usr/bin/time -f '%U %S' -o "$WORK/client-cpu" \
        "$BENCH" --endpoint "http://127.0.0.1:$port" --bucket bench --label "$label" \
        --json-out "$RESULTS" "$@" || { log "FAILED: $label $*"; return 1; }
    proxy1=$(cpu_ticks $PROXY_PID); backends1=$(cpu_ticks "${BACKEND_PIDS[@]}")
    client=$(awk '{print $1 + $2}' "$WORK/client-cpu")
    # CPU seconds each side spent on this run (set-up included), on the run's own line.
    sed -i '$ s/}$/,"cpu_s":{"proxy":'"$(awk -v t=$((proxy1 - proxy0)) -v hz="$hz" 'BEGIN {print t / hz}')"',"backends":'"$(awk -v t=$((backends1 - backends0)) -v hz="$hz" 'BEGIN {print t / hz}')"',"client":'"$client"'}}/' "$RESULTS"
}

workloads() { # LABEL PORT
    local label=$1 port=$2 d=$SECONDS_PER_RUN size c
    if [ "$ERASURE_ONLY" = 1 ]; then
        size=${BENCH_ERASURE_SIZE:-512MiB}
        n=${BENCH_ERASURE_OPS:-3}
        run "$label" "$port" --create-bucket --op put --size "$size" -c 1 -n "$n" --keys 1
        run "$label" "$port" --op get --size "$size" -c 1 -n "$n" --keys 1 --prepare false
        run "$label" "$port" --op delete --size "$size" -c 1 --keys 1 -n 1
        return 0
    fi
    run "$label" "$port" --create-bucket --op put --size 4KiB -c 32 --keys 256 -d "$d"
    run "$label" "$port" --op get --size 4KiB -c 32 --keys 256 -d "$d"
    run "$label" "$port" --op head --size 4KiB -c 32 --keys 256 -d "$d"
    run "$label" "$port" --op head --size 4KiB -c 1 --keys 256 -d "$d"
    [ "$SMALL_ONLY" = 1 ] && return 0
    run "$label" "$port" --op list --size 4KiB -c 4 --keys 256 -d "$d"
    run "$label" "$port" --op delete --size 4KiB -c 32 --keys 256 -n 256
    for size in $SIZES; do
        case $size in
            *KiB|1MiB|2MiB|4MiB) c=4 ;;
            *GiB|512MiB|256MiB) c=1 ;;
            *) c=2 ;;
        esac
        run "$label" "$port" --op put --size "$size" -c "$c" -d "$d"
        run "$label" "$port" --op get --size "$size" -c "$c" -d "$d" --prepare false
        if [ "$size" = 64MiB ]; then
            run "$label" "$port" --op get --size 64MiB --range-size 1MiB -c 4 -d "$d" --keys 2
        fi
        run "$label" "$port" --op delete --size "$size" -c 1 --keys "$c" -n "$c"
    done
}

# backends ROUND -> BACKEND_PORTS (three), each "s3:PORT" for s3proxy configs
start_backends() {
    local round=$1 i port
    BACKEND_PORTS=()
    BACKEND_PIDS=()
    for i in 0 1 2; do
        port=$((PORT_BASE + 10 * i + $([ "$round" = memory ] && echo 1 || echo 0)))
        if [ "$round" = memory ]; then
            start_s3proxy "$port" "mem-backend-$i" off 1 memory
        else
            start_s3sfs "$port" "$WORK/s3s-fs-data-$i"
        fi
        BACKEND_PORTS+=("$port")
        BACKEND_PIDS+=("$STARTED")
    done
}

P=$((PORT_BASE + 50))
for round in $BACKENDS; do
    log "round $round: starting three backends"
    start_backends "$round"
    b1=${BACKEND_PORTS[0]}
    for setup in $(for _ in $(seq 1 "$REPEAT"); do echo $SETUPS; done); do
        P=$((P + 1))
        log "round $round: $setup"
        case $setup in
            direct) port=$b1; pid= ;;
            nginx) start_nginx "$P" "$b1"; port=$P; pid=$STARTED ;;
            s3s-proxy) start_s3s_proxy "$P" "$b1"; port=$P; pid=$STARTED ;;
            plain) start_s3proxy "$P" "$round-plain-$P" off 1 "s3:$b1"; port=$P; pid=$STARTED ;;
            enc) start_s3proxy "$P" "$round-enc-$P" on 1 "s3:$b1"; port=$P; pid=$STARTED ;;
            plain-base | enc-base)
                [ -x "${BENCH_BASE_BIN:-}" ] || { log "$setup needs BENCH_BASE_BIN"; exit 2; }
                e=off; [ "$setup" = enc-base ] && e=on
                PROXY_BIN=$BENCH_BASE_BIN start_s3proxy "$P" "$round-$setup-$P" "$e" 1 "s3:$b1"
                port=$P; pid=$STARTED ;;
            plain-w1 | enc-w1)
                e=off; [ "$setup" = enc-w1 ] && e=on
                WORKERS=1 start_s3proxy "$P" "$round-$setup-$P" "$e" 1 "s3:$b1"
                port=$P; pid=$STARTED ;;
            plain-sdk | enc-sdk)
                e=off; [ "$setup" = enc-sdk ] && e=on
                SDK_ONLY=1 start_s3proxy "$P" "$round-$setup-$P" "$e" 1 "s3:$b1"
                port=$P; pid=$STARTED ;;
            ec21)
                PLACEMENT="erasure 2 1" start_s3proxy "$P" "$round-$setup-$P" on 1 \
                    "s3:${BACKEND_PORTS[0]}" "s3:${BACKEND_PORTS[1]}" "s3:${BACKEND_PORTS[2]}"
                port=$P; pid=$STARTED ;;
            enc3-w1 | enc3-wmaj)
                q=1; [ "$setup" = enc3-wmaj ] && q=majority
                start_s3proxy "$P" "$round-$setup-$P" on "$q" \
                    "s3:${BACKEND_PORTS[0]}" "s3:${BACKEND_PORTS[1]}" "s3:${BACKEND_PORTS[2]}"
                port=$P; pid=$STARTED ;;
            *) log "unknown setup $setup"; exit 2 ;;
        esac
        PROXY_PID=$pid
        workloads "$round/$setup" "$port"
        PROXY_PID=
        [ -n "$pid" ] && stop "$pid"
    done
    stop "${BACKEND_PIDS[@]}"
    BACKEND_PIDS=()
    rm -rf "$WORK"/s3s-fs-data-*
done

# ---------------------------------------------------------------- AEAD and RSS
if [ "${BENCH_AEAD:-1}" = 1 ]; then
    log "raw AEAD against the crypto layer (cargo bench -p s3proxy-bench)"
    $CARGO bench -q -p s3proxy-bench --bench crypto_throughput 2>/dev/null | tee "$OUT/crypto-bench.txt"
fi

if [ "$RSS_SIZE" != 0 ]; then
    log "peak RSS of s3proxy (encrypted, s3s-fs backend) streaming $RSS_SIZE each way"
    start_s3sfs $((PORT_BASE + 90)) "$WORK/rss-data"
    backend_pid=$STARTED
    for setup in plain enc; do
        enc=off; [ $setup = enc ] && enc=on
        start_s3proxy $((PORT_BASE + 91)) "rss-$setup" "$enc" 1 "s3:$((PORT_BASE + 90))"
        pid=$STARTED
        PROXY_PID=$pid; BACKEND_PIDS=("$backend_pid")
        # Multipart, as clients upload objects this large (a single PUT stops at 5 GiB).
        run "rss/$setup" $((PORT_BASE + 91)) --create-bucket --op put --size "$RSS_SIZE" -n 1 \
            --part-size 64MiB
        run "rss/$setup" $((PORT_BASE + 91)) --op get --size "$RSS_SIZE" -n 1 --prepare false
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        echo "{\"label\":\"rss/$setup\",\"op\":\"rss\",\"size_label\":\"$RSS_SIZE\",\"peak_rss_kib\":$hwm}" >>"$RESULTS"
        log "s3proxy ($setup) peak RSS after PUT and GET of $RSS_SIZE: $((hwm / 1024)) MiB"
        run "rss/$setup" $((PORT_BASE + 91)) --op delete --size "$RSS_SIZE" -n 1 --keys 1
        stop "$pid"
    done
    stop "$backend_pid"
fi

log "writing the report into $OUT"
if [ "$ERASURE_ONLY" = 1 ]; then
    # Each setup's best run of each op; CPU per GiB from the same run's proxy CPU.
    python3 - "$RESULTS" "$OUT/results-erasure.md" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("op") not in ("put", "get") or not r.get("bytes"):
        continue
    k = (r["label"], r["op"])
    if k not in best or r["mib_per_sec"] > best[k]["mib_per_sec"]:
        best[k] = r
names = {"enc3-w1": "3 full copies (encrypted, W=1)", "ec21": "erasure 2+1 (encrypted)"}
out = ["| setup | op | size | MiB/s | proxy CPU s per GiB | backends' CPU s per GiB |", "|---|---|---|---|---|---|"]
for (label, op), r in sorted(best.items(), key=lambda kv: (kv[0][1] != "put", kv[0][0])):
    gib = r["bytes"] / 2**30
    setup = label.split("/")[-1]
    out.append(f"| {names.get(setup, setup)} | {op.upper()} | {r['size'] // 2**20} MiB | {r['mib_per_sec']:.1f} | "
               f"{r['cpu_s']['proxy'] / gib:.2f} | {r['cpu_s']['backends'] / gib:.2f} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
    log "done"
    exit 0
fi
python3 "$ROOT/scripts/bench_report.py" "$RESULTS" "$OUT/crypto-bench.txt" "$OUT"
if [ "$SMALL_ONLY" != 1 ]; then
    log "hedged reads (scripts/bench_hedge.py)"
    python3 "$ROOT/scripts/bench_hedge.py" "$OUT"
fi
log "done"
