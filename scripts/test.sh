#!/usr/bin/env bash
# Runs the whole CarbonStore test suite on a fresh machine: installs what the tests need, builds,
# and runs every test with a moto server on loopback for the AWS integration tests
# (scripts/with_moto.sh starts and stops it). Used as is by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# zlib's headers (the format compresses sections with it).
if [ ! -f /usr/include/zlib.h ]; then
    echo "installing zlib1g-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq zlib1g-dev >/dev/null
fi

# libzstd's shared library (format version 3 compresses with it; found at run time). Debian's
# dpkg depends on libzstd1, so it is nearly always there.
if ! ldconfig -p 2>/dev/null | grep -q 'libzstd\.so\.1'; then
    echo "installing libzstd1"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq libzstd1 >/dev/null
fi

# The code is formatted as .swift-format says; a warning fails the run.
swift format lint --strict --recursive Sources Tests Package.swift

swift build --build-tests
# One suite at a time: the multi-process, torture and AWS suites each load the machine (and the one
# moto server) on purpose, and must not starve each other into timeouts.
scripts/with_moto.sh swift test --skip-build --no-parallel "$@"
# The live service against its own OpenAPI document (schemathesis).
scripts/schemathesis.sh
