#!/usr/bin/env bash
# Second command of the README (and what CI runs): builds, then runs every test —
# unit tests, a short fuzz run, and the end-to-end tests on real processes — through
# ctest. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
