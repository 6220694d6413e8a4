#!/usr/bin/env bash
# The README's first set-up command, run verbatim in the checkout, then an aws cli round
# trip with the credentials it prints, as a new user would. Ends with "N passed, N failed".
#
# It runs where the README says: the checkout, with ./data as the embedded default's
# store. A ./data that is already there (someone's own proxy data) or a busy port 9000 is
# left alone and the check says SKIPPED, loudly; on a clean clone (CI) it always runs.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

cmd=$(sed -n '/^## Set-up on a fresh machine/,/^## /p' README.md | grep -m1 -E '^cargo run' | sed 's/ *#.*$//')
if [ -z "$cmd" ]; then
    fail "README.md has no 'cargo run' line under 'Set-up on a fresh machine'"
    finish
fi
if [ -e data ]; then
    echo "SKIPPED: ./data exists in $ROOT (not a clean checkout); the README's first command is not run over it"
    finish
fi
if (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null; then
    echo "SKIPPED: 127.0.0.1:9000 is in use, where the README's first command listens"
    finish
fi

work=$(mktemp -d)
echo "running the README's first command: $cmd"
# cargo run replaces itself with the binary, so this PID is the proxy's.
bash -c "exec $cmd" >"$work/stdout" 2>"$work/stderr" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$ROOT/data" "$work"
}
trap cleanup EXIT

access="" secret=""
for _ in $(seq 1 600); do
    access=$(sed -n 's/^ *access key: *//p' "$work/stdout")
    secret=$(sed -n 's/^ *secret key: *//p' "$work/stdout")
    [ -n "$access" ] && [ -n "$secret" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if [ -z "$access" ] || [ -z "$secret" ]; then
    fail "the proxy printed no credentials"
    tail -20 "$work/stderr"
    finish
fi
ok "'$cmd' started and printed dev credentials"
grep -q "aws --endpoint-url http://127.0.0.1:9000 s3 mb s3://demo" "$work/stdout" \
    && ok "it prints a ready-to-paste aws cli example" || fail "no aws cli example printed"

export AWS_ACCESS_KEY_ID=$access AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE
aws_() { timeout 120 aws --endpoint-url http://127.0.0.1:9000 "$@"; }
if aws_ s3 mb s3://demo >/dev/null && aws_ s3 cp README.md s3://demo/ >/dev/null \
    && aws_ s3 ls s3://demo/ | grep -q README.md \
    && aws_ s3 cp s3://demo/README.md "$work/back.md" >/dev/null && cmp -s README.md "$work/back.md"; then
    ok "aws cli round trip (mb, cp up, ls, cp down, same bytes)"
else
    fail "aws cli round trip"
fi
# Encrypted at rest: the stored bytes are not the README's.
if grep -rqs "Set-up on a fresh machine" data --exclude-dir=.s3proxy; then
    fail "plaintext found under ./data"
else
    ok "./data holds no plaintext"
fi
finish
