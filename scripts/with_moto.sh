#!/usr/bin/env bash
# Runs a command with a moto server (S3, DynamoDB and IAM) on a free loopback port, IAM enforcement
# on, prepared by scripts/aws_test_env.py: a bucket, a lock table, and an engine user holding only
# the least-privilege policy. The command sees CARBONSTORE_TEST_* variables; the servers are stopped
# however the command ends. Needs the carbonstore binary built (swift build).
#
# A second moto server, without IAM enforcement, serves what moto cannot check with enforcement on:
# presigned URLs (its access control reads only the Authorization header and answers 500) and
# ListObjectsV2 with a '/' in a query value (it rebuilds the query decoded and so computes another
# signature than AWS does). Signatures of those are checked against botocore's vectors instead.
#
#   scripts/with_moto.sh swift test --skip-build
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import moto.server, boto3, botocore, flask_cors' 2>/dev/null; then
    echo "installing the Python test dependencies (scripts/requirements-test.txt)"
    python3 -m pip install --quiet -r scripts/requirements-test.txt
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
open_port=$(free_port)
log=$(mktemp -t moto.XXXXXX)
open_log=$(mktemp -t moto-open.XXXXXX)
# The first 4 requests are let through unauthenticated: aws_test_env.py uses them to make the admin.
INITIAL_NO_AUTH_ACTION_COUNT=4 python3 -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
python3 -m moto.server -H 127.0.0.1 -p "$open_port" >"$open_log" 2>&1 &
open_pid=$!
cleanup() {
    kill "$moto_pid" "$open_pid" 2>/dev/null || true
    wait "$moto_pid" "$open_pid" 2>/dev/null || true
    rm -f "$log" "$open_log"
}
trap cleanup EXIT
wait_for() {
    for _ in $(seq 1 150); do
        if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$1/moto-api/')" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "moto did not start on port $1:" >&2
    cat "$2" >&2
    return 1
}
wait_for "$port" "$log"
wait_for "$open_port" "$open_log"
bin="$(swift build --show-bin-path)/carbonstore"
[ -x "$bin" ] || swift build --product carbonstore
eval "$(python3 scripts/aws_test_env.py "http://127.0.0.1:$port" "$bin")"
python3 -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$open_port', region_name='us-east-1', aws_access_key_id='AKIAOPEN', aws_secret_access_key='open').create_bucket(Bucket='$CARBONSTORE_TEST_BUCKET')"
export CARBONSTORE_TEST_OPEN_ENDPOINT="http://127.0.0.1:$open_port"
export CARBONSTORE_REQUIRE_AWS_TESTS=1
"$@"
