#!/usr/bin/env bash
# The whole test suite of s3proxy, on a fresh machine: installs what the tests need
# (Debian packages, Python clients), checks formatting and lints, builds, runs the Rust
# tests and the end-to-end tests against the real binary (pytest, then s3fs mounts in every
# mode), and ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
LOGS=$(mktemp -d)
failed_steps=()

step() { echo; echo "=== $*"; }

install_deps() {
    local need_apt=()
    command -v s3fs >/dev/null || need_apt+=(s3fs)
    command -v fusermount3 >/dev/null || need_apt+=(fuse3)
    command -v setfattr >/dev/null || need_apt+=(attr)
    command -v rsync >/dev/null || need_apt+=(rsync)
    command -v curl >/dev/null || need_apt+=(curl)
    command -v s3cmd >/dev/null || need_apt+=(s3cmd)
    command -v rclone >/dev/null || need_apt+=(rclone)
    command -v openssl >/dev/null || need_apt+=(openssl)   # the s3fs tls mode's certificates
    if [ ${#need_apt[@]} -gt 0 ]; then
        step "apt-get install ${need_apt[*]}"
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
    fi
    # minio: the client library whose own functional suite tests/test_minio_functional.py
    # runs; pinned there too (the suite comes from the same version's sdist).
    local minio_py=7.2.20
    if ! python3 -c "import boto3, pytest, moto" 2>/dev/null || ! command -v aws >/dev/null \
        || ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('minio') != '$minio_py')" 2>/dev/null; then
        step "pip install test clients"
        python3 -m pip install -q --disable-pip-version-check awscli boto3 pytest "moto[server]" "minio==$minio_py"
    fi
    # S3 server for the S3 backend's conformance tests; newer releases need a newer rustc.
    if ! command -v s3s-fs >/dev/null && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
        step "cargo install s3s-fs"
        cargo install -q s3s-fs@0.14.1 --features binary --locked
    fi
}

install_deps || failed_steps+=("install")

step "cargo fmt --check"
cargo fmt --all -- --check || failed_steps+=("fmt")

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings || failed_steps+=("clippy")

step "cargo build --release"
cargo build --release --workspace --quiet || failed_steps+=("build")

# In release, like the binary the end-to-end tests run: one build of the dependencies
# (the S3 SDK is most of the build time) serves both.
step "cargo test --release"
S3PROXY_BIN="$ROOT/target/release/s3proxy" cargo test --release --workspace 2>&1 | tee "$LOGS/cargo.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("cargo test")

step "end-to-end tests (pytest)"
(cd tests && S3PROXY_BIN="$ROOT/target/release/s3proxy" python3 -m pytest -q -p no:cacheprovider "$@") 2>&1 | tee "$LOGS/pytest.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("pytest")

step "the README's first command, verbatim, and an aws cli round trip (scripts/test_readme_quickstart.sh)"
timeout 900 scripts/test_readme_quickstart.sh 2>&1 | tee "$LOGS/readme.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("readme")

step "s3fs mounts (scripts/test_s3fs_integration.sh, every mode; the 1.1 GB file in the default one)"
S3PROXY_BIN="$ROOT/target/release/s3proxy" S3FS_TEST_HUGE=1 timeout 1800 scripts/test_s3fs_integration.sh all 2>&1 | tee "$LOGS/s3fs.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed_steps+=("s3fs")

sum() { grep -oE "[0-9]+ $1" "$2" | awk '{s+=$1} END {print s+0}'; }
cargo_passed=$(grep -E "^test result:" "$LOGS/cargo.log" | sum passed /dev/stdin)
cargo_failed=$(grep -E "^test result:" "$LOGS/cargo.log" | sum failed /dev/stdin)
py_line=$(grep -E "(passed|failed|error)" "$LOGS/pytest.log" | tail -1)
py_passed=$(echo "$py_line" | grep -oE "[0-9]+ passed" | awk '{print $1+0}')
py_failed=$(echo "$py_line" | grep -oE "[0-9]+ (failed|error)" | awk '{s+=$1} END {print s+0}')
s3fs_line=$(grep -E "^[0-9]+ passed, [0-9]+ failed$" "$LOGS/s3fs.log" | tail -1)
s3fs_passed=$(echo "$s3fs_line" | grep -oE "[0-9]+ passed" | awk '{print $1+0}')
s3fs_failed=$(echo "$s3fs_line" | grep -oE "[0-9]+ failed" | awk '{print $1+0}')
echo "s3fs: ${s3fs_passed:-0} passed, ${s3fs_failed:-0} failed"
readme_line=$(grep -E "^[0-9]+ passed, [0-9]+ failed$" "$LOGS/readme.log" | tail -1)
readme_passed=$(echo "$readme_line" | grep -oE "[0-9]+ passed" | awk '{print $1+0}')
readme_failed=$(echo "$readme_line" | grep -oE "[0-9]+ failed" | awk '{print $1+0}')
passed=$(( cargo_passed + ${py_passed:-0} + ${s3fs_passed:-0} + ${readme_passed:-0} ))
failed=$(( cargo_failed + ${py_failed:-0} + ${s3fs_failed:-0} + ${readme_failed:-0} ))
if [ ${#failed_steps[@]} -gt 0 ]; then
    # The names of what failed, last, so that the tail of the output a CI run keeps says
    # which tests to look at, not only how many.
    echo "failed tests:"
    { grep -E ' \.\.\. FAILED$' "$LOGS/cargo.log" | sed 's/^/  cargo: /'
      grep -E '^(FAILED|ERROR) ' "$LOGS/pytest.log" | cut -c1-240 | sed 's/^/  pytest: /'
      grep -E '^FAIL' "$LOGS/readme.log" "$LOGS/s3fs.log" | sed 's/^/  /'
    } | head -40
    echo "failed steps: ${failed_steps[*]}"
    [ "$failed" -eq 0 ] && failed=${#failed_steps[@]}
fi
rm -rf "$LOGS"
echo "total: $passed passed, $failed failed"
[ ${#failed_steps[@]} -eq 0 ]
