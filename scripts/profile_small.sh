#!/usr/bin/env bash
# Profile the proxy under small requests (issue #18): 4 KiB OP at c=32 for 5 s through one
# s3proxy (encryption on or off) over an s3proxy memory backend, with perf on the proxy.
#   scripts/profile_small.sh BIN on|off get|put|head [record|stat|callgrind]
# record: perf record -g of the proxy (the work dir is printed; perf report -i DIR/perf.data;
# PERF_CALLGRAPH="--call-graph dwarf,16384" PERF_FREQ=499 for stacks through frames without
# frame pointers); stat: syscalls and context switches of the proxy. Prints ops/s and the
# proxy's CPU ticks.
# callgrind: the proxy runs under valgrind's callgrind and COUNT (default 2000) requests at
# c=4 are counted: prints the proxy's instructions per request, which, unlike CPU time on
# a shared virtual machine, come out the same run after run (ops/s mean nothing there).
# Loopback only (ports 9181 and 9182); both processes are stopped by their PID.
set -u
BIN=$1; ENC=$2; OP=$3; PERF=${4:-}
W=$(mktemp -d /tmp/prof.XXXX)
export AWS_ACCESS_KEY_ID=AKPROF AWS_SECRET_ACCESS_KEY=secretprofsecretprof AWS_DEFAULT_REGION=us-east-1
cat > $W/b.toml <<T
listen = "127.0.0.1:9181"
state_dir = "$W/bs"
[[credentials]]
access_key = "AKPROF"
secret_key = "secretprofsecretprof"
[[backends]]
name = "m"
kind = "memory"
[encryption]
enabled = false
T
cat > $W/p.toml <<T
listen = "127.0.0.1:9182"
state_dir = "$W/ps"
[[credentials]]
access_key = "AKPROF"
secret_key = "secretprofsecretprof"
[[backends]]
name = "b1"
kind = "s3"
endpoint = "http://127.0.0.1:9181"
access_key = "AKPROF"
secret_key = "secretprofsecretprof"
region = "us-east-1"
[encryption]
$([ "$ENC" = on ] && echo "key_file = \"$W/master.key\"" || echo "enabled = false")
T
$BIN keygen $W/master.key >/dev/null
RUST_LOG=warn $BIN --config $W/b.toml > $W/b.log 2>&1 & BP=$!
if [ "$PERF" = callgrind ]; then
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file=$W/callgrind.out \
        $BIN --config $W/p.toml > $W/p.log 2>&1 & PP=$!
    for _ in $(seq 60); do curl -s -o /dev/null http://127.0.0.1:9182/ && break; sleep 0.5; done
else
    RUST_LOG=warn $BIN --config $W/p.toml > $W/p.log 2>&1 & PP=$!
    sleep 1.5
fi
B=${BENCH_BIN:-$(dirname "$0")/../target/release/s3proxy-bench}
$B --endpoint http://127.0.0.1:9182 --bucket prof --create-bucket --op put -n 64 -c 32 >/dev/null 2>&1
if [ "$PERF" = callgrind ]; then
    N=${COUNT:-2000}
    # Warm the connection pools and caches, then count only the measured requests.
    $B --endpoint http://127.0.0.1:9182 --bucket prof --op $OP -c 4 -n 200 >/dev/null 2>&1
    callgrind_control --zero $PP >/dev/null
    $B --endpoint http://127.0.0.1:9182 --bucket prof --op $OP -c 4 -n $N --prepare false 2>&1 | tail -1
    callgrind_control --dump=measured $PP >/dev/null
    sleep 1
    kill $PP $BP; wait $PP $BP 2>/dev/null
    # The dump named "measured" holds what was counted after --zero.
    IR=$(grep -l "^desc: Trigger: dump measured" $W/callgrind.out* | head -1 | xargs -r grep -E "^(summary|totals):" | awk '{print $2}' | head -1)
    [ -n "$IR" ] || { echo "no callgrind dump named 'measured' in $W" >&2; exit 1; }
    echo "proxy instructions per $OP: $((IR / N)) ($IR over $N requests)"
    echo "work dir $W"
    exit 0
fi
t0=$(awk '{print $14+$15}' /proc/$PP/stat)
if [ "$PERF" = stat ]; then perf stat -e context-switches,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_read -p $PP -o $W/stat.txt -- sleep 5 >/dev/null 2>&1 & PF=$!
elif [ "$PERF" = record ]; then perf record -F ${PERF_FREQ:-2999} ${PERF_CALLGRAPH:--g} -p $PP -o $W/perf.data -- sleep 5 >/dev/null 2>&1 & PF=$!; fi
$B --endpoint http://127.0.0.1:9182 --bucket prof --op $OP -c 32 -d 5 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k:d[k] for k in d if k in ("ops_per_sec","ops","p50_ms","errors")})'
t1=$(awk '{print $14+$15}' /proc/$PP/stat)
echo "proxy cpu ticks: $((t1-t0))"
[ -n "$PERF" ] && wait $PF
kill $PP $BP; wait $PP $BP 2>/dev/null
[ "$PERF" = stat ] && cat $W/stat.txt | grep -E "context|sys_enter"
echo "work dir $W"
