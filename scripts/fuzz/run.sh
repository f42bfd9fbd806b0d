#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 60).
#   scripts/fuzz/run.sh [--build-dir DIR] [SECONDS]
# Crashes are written to DIR/artifacts/; the corpus grows in DIR/corpus/<target>/,
# seeded from scripts/fuzz/corpus/<target>/. Exit status is non-zero if a fuzzer failed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build="$here/../../build-fuzz"
if [ "${1:-}" = "--build-dir" ]; then
  build=$2
  shift 2
fi
seconds=${1:-60}

cxx=${CXX_FUZZ:-}
if [ -z "$cxx" ]; then
  for c in clang++-14 clang++; do
    if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
  done
fi
if [ -z "$cxx" ]; then
  echo "fuzz: no clang++ found (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j"${FUZZ_JOBS:-1}" >/dev/null

status=0
mkdir -p "$build/artifacts"
for target in image_file stage_reader; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  echo "fuzz: $target for ${seconds}s"
  if ! "$build/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$build/artifacts/$target-" -print_final_stats=1 \
      "$corpus" "$here/corpus/$target" >"$build/$target.log" 2>&1; then
    echo "fuzz: $target FAILED; see $build/$target.log and $build/artifacts/" >&2
    tail -n 30 "$build/$target.log" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$build/$target.log" | sed "s/^/fuzz: $target /"
  fi
done
exit $status
