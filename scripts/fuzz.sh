#!/usr/bin/env bash
# Fuzzes the CarbonStore file decoder with libFuzzer (Fuzz/DecoderFuzzer.swift): version-1,
# version-2 and version-3 (zstd) files, change frames and torn tails included (the checks:
# FuzzChecks.swift). zstd is libzstd's shared library, looked up at run time as in the package.
#
#   scripts/fuzz.sh [SECONDS]       build, then fuzz for SECONDS (default 300) from Fuzz/corpus
#   scripts/fuzz.sh --make-corpus   regenerate the committed seed corpus Fuzz/corpus
#   scripts/fuzz.sh --replay FILE…  run the fuzz target once on each FILE (e.g. a crash artifact)
#
# The CarbonModel and CarbonFormat sources are compiled straight into the fuzzer with
# -sanitize=fuzzer,address (coverage, AddressSanitizer; -O keeps Swift's overflow and bounds
# checks, so a trap is a crash too). zlib comes from the CZlib module map in Sources/CZlib; the
# CRC-32C instruction from the C target Sources/CHardwareCRC, compiled here with clang.
# Environment: SWIFTC (default swiftc), CLANG (default clang), FUZZ_BUILD (default .build-fuzz), FUZZ_JOBS (default 1).
# New interesting inputs go to $FUZZ_BUILD/corpus (not committed); crashes to $FUZZ_BUILD/artifacts.
# A crasher, once fixed, belongs in Tests/CarbonFormatTests/FuzzRegressions/.
set -euo pipefail

cd "$(dirname "$0")/.."
SWIFTC=${SWIFTC:-swiftc}
CLANG=${CLANG:-clang}
B=${FUZZ_BUILD:-.build-fuzz}
mkdir -p "$B"
FLAGS=(-swift-version 6 -O -sanitize=fuzzer,address -parse-as-library -package-name carbonstore -I "$B" -I Sources/CZlib -I Sources/CHardwareCRC/include)

build_modules() {
    # Rebuild only when a source changed.
    local stamp="$B/modules.stamp"
    if [[ -f $stamp ]] && [[ -z $(find Sources/CarbonModel Sources/CarbonFormat Sources/CZlib Sources/CHardwareCRC "$0" -newer "$stamp" -print -quit) ]]; then
        return
    fi
    echo "fuzz.sh: compiling CarbonModel and CarbonFormat with -sanitize=fuzzer,address" >&2
    "$CLANG" -O2 -fsanitize=fuzzer-no-link,address -I Sources/CHardwareCRC/include \
        -c Sources/CHardwareCRC/crc32c.c -o "$B/CHardwareCRC.o"
    "$SWIFTC" "${FLAGS[@]}" -module-name CarbonModel -wmo -emit-module -emit-module-path "$B/CarbonModel.swiftmodule" \
        -c Sources/CarbonModel/*.swift -o "$B/CarbonModel.o"
    "$SWIFTC" "${FLAGS[@]}" -module-name CarbonFormat -wmo -emit-module -emit-module-path "$B/CarbonFormat.swiftmodule" \
        -c Sources/CarbonFormat/*.swift -o "$B/CarbonFormat.o"
    touch "$stamp"
}

build_fuzzer() {
    build_modules
    if [[ ! -x $B/decoder-fuzzer || Fuzz/DecoderFuzzer.swift -nt $B/decoder-fuzzer || Sources/CarbonStoreTestSupport/FuzzChecks.swift -nt $B/decoder-fuzzer || $B/modules.stamp -nt $B/decoder-fuzzer ]]; then
        echo "fuzz.sh: linking $B/decoder-fuzzer" >&2
        "$SWIFTC" "${FLAGS[@]}" -module-name DecoderFuzzer Fuzz/DecoderFuzzer.swift \
            Sources/CarbonStoreTestSupport/FuzzChecks.swift "$B/CarbonModel.o" "$B/CarbonFormat.o" "$B/CHardwareCRC.o" -lz -o "$B/decoder-fuzzer" 2> >(grep -v "Cannot export local symbol" >&2)
    fi
}

case "${1:-}" in
--make-corpus)
    build_modules
    # The generator links the same instrumented objects, with ASan's runtime but not libFuzzer's main.
    "$SWIFTC" -swift-version 6 -O -sanitize=address -package-name carbonstore -I "$B" -I Sources/CZlib -I Sources/CHardwareCRC/include -module-name MakeCorpus Fuzz/MakeCorpus.swift \
        Sources/CarbonStoreTestSupport/RecordGenerator.swift \
        "$B/CarbonModel.o" "$B/CarbonFormat.o" "$B/CHardwareCRC.o" -lz -o "$B/make-corpus" 2> >(grep -v "Cannot export local symbol" >&2)
    rm -rf Fuzz/corpus && mkdir -p Fuzz/corpus
    "$B/make-corpus" Fuzz/corpus
    ls -l Fuzz/corpus | tail -n +2 | wc -l | xargs echo "fuzz.sh: seed files:"
    du -sb Fuzz/corpus | cut -f1 | xargs echo "fuzz.sh: bytes:"
    exit 0
    ;;
--replay)
    shift
    build_fuzzer
    exec "$B/decoder-fuzzer" "$@"
    ;;
esac

SECONDS_TO_RUN=${1:-300}
build_fuzzer
mkdir -p "$B/corpus" "$B/artifacts"
rm -f "$B/artifacts"/*
LOG="$B/fuzz.log"
echo "fuzz.sh: fuzzing for $SECONDS_TO_RUN s with ${FUZZ_JOBS:-1} job(s); log in $LOG" >&2
JOB_FLAGS=()
if [[ ${FUZZ_JOBS:-1} != 1 ]]; then JOB_FLAGS=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
set +e
"$B/decoder-fuzzer" "$B/corpus" Fuzz/corpus -dict=Fuzz/cstore.dict \
    -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$B/artifacts/" -print_final_stats=1 "${JOB_FLAGS[@]}" >"$LOG" 2>&1
status=$?
set -e
if [[ ${FUZZ_JOBS:-1} != 1 ]]; then cat fuzz-*.log >>"$LOG" 2>/dev/null && rm -f fuzz-*.log; fi
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOG" | awk '{s += $2} END {print s + 0}')
rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$LOG" | awk '{s += $2} END {print s + 0}')
cov=$(grep -o 'cov: [0-9]*' "$LOG" | tail -1 | awk '{print $2}')
crashes=$(find "$B/artifacts" -type f | wc -l)
echo "seconds: $SECONDS_TO_RUN"
echo "executions: $execs"
echo "exec/s: $rate"
echo "coverage (edges): ${cov:-?}"
echo "corpus: $(ls "$B/corpus" | wc -l) inputs in $B/corpus"
echo "crashes: $crashes"
if [[ $crashes -gt 0 || $status -ne 0 ]]; then
    find "$B/artifacts" -type f | sed 's/^/crash input: /'
    grep -E "ERROR|==[0-9]+==|Fatal error|property violated|deadly signal" "$LOG" | head -20
    exit 1
fi
