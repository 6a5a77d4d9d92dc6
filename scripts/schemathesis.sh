#!/usr/bin/env bash
# Checks the live service against its own contract with schemathesis (a tool nobody here wrote):
# starts `carbonstore serve` on a free loopback port over a fresh `path:` storage with a new admin
# key, fetches the OpenAPI document the service serves at /openapi.json, and runs schemathesis
# against every operation with that key. Fails on any server error (5xx), any status, content type,
# header or body that the document does not allow, or a server that does not stop cleanly on
# SIGTERM. The server is stopped however the run ends. Needs the carbonstore binary built
# (`swift build`); CARBONSTORE_BIN names another one. Extra arguments go to `schemathesis run`.
#
#   scripts/schemathesis.sh
#   SCHEMATHESIS_MAX_EXAMPLES=200 scripts/schemathesis.sh --seed 1234
set -euo pipefail
cd "$(dirname "$0")/.."

pinned=$(sed -n 's/^schemathesis==//p' scripts/requirements-test.txt)
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$pinned" ]; then
    echo "installing the Python test dependencies (scripts/requirements-test.txt)"
    python3 -m pip install --quiet -r scripts/requirements-test.txt
fi

bin="${CARBONSTORE_BIN:-$(swift build --show-bin-path)/carbonstore}"
if [ ! -x "$bin" ]; then
    echo "schemathesis.sh: $bin is not built; run 'swift build' first" >&2
    exit 1
fi

# Test cases per operation in the fuzzing and stateful phases (the coverage phase makes its own);
# with 50, a run against a trivial stub server took 35 s on 2 cores (the budget is 3 minutes).
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
report_dir="$PWD/.build/schemathesis-report"
rm -rf "$report_dir"
mkdir -p "$report_dir"

work=$(mktemp -d -t carbonstore-schemathesis.XXXXXX)
server_log="$report_dir/server.log"
server_pid=""

# Stops the server with SIGTERM and waits for it; SIGKILL if it outlives its shutdown deadline.
# Sets server_status to its exit status.
server_status=""
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis.sh: the server did not stop within 15 s of SIGTERM; killing it" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    server_status=0
    wait "$server_pid" 2>/dev/null || server_status=$?
    server_pid=""
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

keys=$("$bin" keys new --role admin)
key=$(awk '$1 == "key:" { print $2 }' <<<"$keys")
entry=$(awk '$1 == "entry:" { print $2 }' <<<"$keys")
if [[ "$key" != csk_* || "$entry" != admin:* ]]; then
    echo "schemathesis.sh: unexpected output of 'carbonstore keys new --role admin':" >&2
    echo "$keys" | sed 's/csk_[A-Za-z0-9_-]*/csk_<redacted>/' >&2
    exit 1
fi

mkdir -p "$work/data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
CARBONSTORE_STORAGE="path:$work/data" \
    CARBONSTORE_API_KEYS="$entry" \
    CARBONSTORE_SHUTDOWN_DEADLINE_MS=10000 \
    "$bin" serve --host 127.0.0.1 --port "$port" >"$server_log" 2>&1 &
server_pid=$!

ready=""
for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        break
    fi
    if python3 -c "import urllib.request; urllib.request.urlopen('$base/healthz', timeout=2)" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.2
done
if [ -z "$ready" ]; then
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis.sh: the server did not answer $base/healthz within 30 s; its log ($server_log):" >&2
    else
        echo "schemathesis.sh: the server exited before answering $base/healthz; its log ($server_log):" >&2
    fi
    tail -n 50 "$server_log" >&2
    exit 1
fi

# schemathesis does not test the operation that serves the document it loaded, so check that one
# here: it must answer the committed document.
status=0
if ! python3 - "$base/openapi.json" Sources/CarbonServer/openapi.json <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    media = r.headers.get_content_type()
    served = json.load(r)
    request_id = r.headers.get("X-Request-Id")
committed = json.load(open(sys.argv[2]))
problems = []
if media != "application/json":
    problems.append(f"Content-Type is {media}, not application/json")
if not request_id:
    problems.append("no X-Request-Id header")
if served != committed:
    problems.append(f"the document differs from {sys.argv[2]}")
for p in problems:
    print(f"schemathesis.sh: GET /openapi.json: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
then
    status=1
fi

echo "schemathesis.sh: running schemathesis against $base (server log: $server_log)"
# From the report folder, where schemathesis keeps its cache of failures (for `st replay`).
# One worker: with two (threads), CPython 3.11 before 3.11.8 can raise a spurious
# "SystemError: AST constructor recursion depth mismatch" when hypothesis parses source to
# describe a strategy (python/cpython gh-106905); it fails the run with a "Runtime Error" that has
# nothing to do with the service (seen here with Python 3.11.7).
(cd "$report_dir" && schemathesis run "$base/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --max-examples "$max_examples" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --report junit --report-dir "$report_dir" \
    --no-color \
    "$@") || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis.sh: the server exited during the run; its log ($server_log):" >&2
    tail -n 50 "$server_log" >&2
    status=1
fi
stop_server
if [ "$server_status" != 0 ]; then
    echo "schemathesis.sh: the server exited with status $server_status after SIGTERM (expected 0); its log ($server_log):" >&2
    tail -n 20 "$server_log" >&2
    status=1
fi
echo "schemathesis.sh: report in $report_dir (JUnit XML and the server's log; run 'st replay <id>' there)"
if [ "$status" != 0 ]; then
    echo "schemathesis.sh: FAILED (status $status)" >&2
fi
exit "$status"
