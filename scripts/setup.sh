#!/usr/bin/env bash
# First command of the README: installs what is missing, builds, installs crpipe and its
# stage binaries into /usr/local/bin, and runs the demo (dump of a small chat program).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
cmake --install build --prefix /usr/local >/dev/null
echo "crpipe: installed $(command -v crpipe)"
bash scripts/demo/run.sh
