#!/usr/bin/env bash
# Runs the whole CarbonStore test suite on a fresh machine: installs what the tests need, builds,
# runs every test, and cleans up after itself. Used as is by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# zlib's headers (the format compresses sections with it).
if [ ! -f /usr/include/zlib.h ]; then
    echo "installing zlib1g-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq zlib1g-dev >/dev/null
fi

swift build --build-tests
swift test --skip-build "$@"
