# s3fs integration suite, part 1 of 3: the stacks (backends and proxies) and mounting.
# Sourced by scripts/test_s3fs_integration.sh after its arguments and cleanup are set up;
# starts the processes of the stacks the chosen modes need.
# shellcheck shell=bash disable=SC2034  # variables used by the driver and the cases
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
# The backend the resilience case kills: the replica, or in the erasure mode one shard's
# backend (run_mode sets KILLED, by the name of its pid file).
KILLED=replica
kill_replica() { # SIGKILL: a crash, nothing flushed. Fails when there was none to kill.
    local pid; pid=$(cat "$PIDS/$KILLED" 2>/dev/null) || { echo "  no pid file for $KILLED" >&2; return 1; }
    kill -9 "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$PIDS/$KILLED"
    if kill -0 "$pid" 2>/dev/null; then echo "  $KILLED (pid $pid) still runs after SIGKILL" >&2; return 1; fi
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
# The erasure mode's stack: a third front s3proxy (the same master key and credentials),
# encrypting and then erasure-coding with [placement] kind = "erasure", 2 data + 1 parity
# shards, over three plain s3proxy servers of their own (filesystem, no encryption) reached
# over S3: shard i of every stripe on ec<i>. The resilience case SIGKILLs ec1 (a data
# shard's backend: the reads while it is down decode from parity). The front's background
# replay is left for an hour, so what rebuilds the missed shards is `s3proxy repair`, run by
# t_erasure_repaired. Its admin listener is off (the first proxy has 9001).
EC_N=3
EC_PORTS=() EC_ENDPOINTS=() EC_PORT= EC_ENDPOINT= EC_PROXY_LOG=
EC_STATE="$WORK/ec-state"
start_ec_backend() { # i
    RUST_LOG=warn "$BIN" --config "$WORK/ec$1.toml" --listen "127.0.0.1:${EC_PORTS[$1]}" \
        >>"$WORK/ec$1.out" 2>>"$WORK/ec$1.log" &
    echo $! >"$PIDS/ec$1"
    disown $!   # ec1 is killed on purpose: no "Killed" notice from this shell
    wait_port "${EC_PORTS[$1]}" "$PIDS/ec$1" "the erasure backend ec$1"
}
if [ "$WANT_EC" = 1 ]; then
    for i in $(seq 0 $((EC_N - 1))); do
        EC_PORTS[i]=$(free_port)
        EC_ENDPOINTS[i]="http://127.0.0.1:${EC_PORTS[i]}"
        sed -e "s|^state_dir = .*|state_dir = \"$WORK/ec$i-state\"|" \
            -e "s|^path = .*|path = \"$WORK/ec$i-data\"|" "$WORK/replica.toml" >"$WORK/ec$i.toml"
        start_ec_backend "$i" || exit 1
    done
    {
        printf '%s\n' "state_dir = \"$EC_STATE\"" "[[credentials]]" "access_key = \"$AK\"" \
            "secret_key = \"$SK\"" "[encryption]" "key_file = \"$WORK/master.key\"" \
            "[replication]" "repair_interval_secs = 3600" "[placement]" "kind = \"erasure\"" \
            "data_shards = 2" "parity_shards = 1" "[admin]" "enabled = false"
        for i in $(seq 0 $((EC_N - 1))); do
            printf '%s\n' "[[backends]]" "name = \"ec$i\"" "kind = \"s3\"" \
                "endpoint = \"${EC_ENDPOINTS[i]}\"" "access_key = \"$BAK\"" \
                "secret_key = \"$BSK\"" "timeout_ms = 30000"
        done
    } >"$WORK/ecproxy.toml"
    EC_PORT=$(free_port)
    EC_ENDPOINT="http://127.0.0.1:$EC_PORT"
    EC_PROXY_LOG="$WORK/ecproxy.log"
    RUST_LOG=${RUST_LOG:-info} "$BIN" --config "$WORK/ecproxy.toml" --listen "127.0.0.1:$EC_PORT" \
        >"$WORK/ecproxy.out" 2>"$EC_PROXY_LOG" &
    echo $! >"$PIDS/ecproxy"
    wait_port "$EC_PORT" "$PIDS/ecproxy" "the erasure s3proxy" || { tail -20 "$EC_PROXY_LOG" >&2; exit 1; }
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
        erasure) echo "" ;;  # the default options, through the erasure-coded stack
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

