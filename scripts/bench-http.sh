#!/usr/bin/env bash
# Load benchmark of `carbonstore serve` with wrk (Debian package `wrk`), beside the engine's own
# Store.update rate from the same run (docs/BENCHMARKS.md, "HTTP service (wrk)").
#
# Builds release, seeds W1 users through the engine (CarbonBench --only seed) into the embedded
# default storage (path:carbonstore-data) of a temporary directory, starts `carbonstore serve` there
# with a configured write key, and measures adding one transaction per request:
#   1. to many W1 users, chosen round-robin (BENCH_USERS, default 1000);
#   2. to one hot W1 user;
# then CarbonBench --only update-rate: Store.update for the same two cases, as many writers at a
# time as wrk has connections, in one process.
#
#   scripts/bench-http.sh
#   BENCH_SECONDS=20 BENCH_THREADS=2 BENCH_CONNECTIONS=16 BENCH_USERS=1000 scripts/bench-http.sh
#
# BENCH_SCRATCH_PATH chooses SwiftPM's build folder (default .build).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${BENCH_SECONDS:-20}
threads=${BENCH_THREADS:-2}
connections=${BENCH_CONNECTIONS:-16}
users=${BENCH_USERS:-1000}
scratch=${BENCH_SCRATCH_PATH:-.build}

if ! command -v wrk >/dev/null; then
    echo "wrk is missing: install it (Debian: apt-get install wrk)" >&2
    exit 1
fi

swift build -c release --scratch-path "$scratch" --product carbonstore
swift build -c release --scratch-path "$scratch" --product CarbonBench
bin=$(swift build -c release --scratch-path "$scratch" --show-bin-path)

work=$(mktemp -d "$PWD/.bench-data-http.XXXXXX")
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "# HTTP benchmark"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "- $(swift --version 2>/dev/null | head -n 1)"
echo "- $(wrk --version 2>&1 | head -n 1)"
echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- data: $work ($(df -T "$work" | awk 'NR==2 {print $2}'))"
echo "- wrk -t$threads -c$connections -d${seconds}s --latency; $users W1 users; one transaction per request"
echo

keys=$("$bin/carbonstore" keys new --role write)
key=$(awk '$1 == "key:" {print $2}' <<<"$keys")
entry=$(awk '$1 == "entry:" {print $2}' <<<"$keys")

# Seed through the engine, into the embedded default storage of the temporary directory.
start=$(date +%s)
(cd "$work" && env -u CARBONSTORE_STORAGE "$bin/CarbonBench" --only seed --storage path:carbonstore-data --users "$users" --prefix w1-)
(cd "$work" && env -u CARBONSTORE_STORAGE "$bin/CarbonBench" --only seed --storage path:carbonstore-data --users 1 --prefix hot-)
echo "- seeding took $(($(date +%s) - start)) s"
echo

# The service on the embedded default (no CARBONSTORE_STORAGE), with the default log level (info:
# one JSON line per request, written to a file).
(cd "$work" && exec env -u CARBONSTORE_STORAGE CARBONSTORE_API_KEYS="$entry" "$bin/carbonstore" serve --port 0 >"$work/serve.log" 2>"$work/serve.err") &
server=$!
port=""
for _ in $(seq 1 300); do
    port=$(grep -m1 '"message":"listening"' "$work/serve.log" 2>/dev/null | sed -n 's/.*"port":"\([0-9]*\)".*/\1/p' || true)
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { echo "serve did not start" >&2; cat "$work/serve.err" >&2; exit 1; }
grep -m1 '"message":"listening"' "$work/serve.log"

run_wrk() { # label users prefix tag
    echo
    echo "## HTTP: $1"
    echo
    BENCH_KEY="$key" BENCH_USERS="$2" BENCH_USER_PREFIX="$3" BENCH_RUN="$4" BENCH_THREADS="$threads" \
        wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s scripts/bench-http.lua \
        "http://127.0.0.1:$port"
}
run_wrk "one transaction to $users W1 users, round-robin" "$users" w1- many
run_wrk "one transaction to one hot W1 user" 1 hot- hot

echo
echo "hot user after the run: $(curl -s -H "Authorization: Bearer $key" "http://127.0.0.1:$port/v1/users/hot-00000" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r["transactions"]), "transactions, revision", r["revision"])')"
echo "server metrics:"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^carbonstore_(lock_timeouts_total|fence_conflicts_total|lock_wait_seconds_(sum|count))' || true

kill "$server"
wait "$server" || true
server=""

echo
"$bin/CarbonBench" --only update-rate --users "$users" --concurrency "$connections" --seconds "$seconds" --dir "$work/engine"
