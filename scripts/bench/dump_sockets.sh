#!/usr/bin/env bash
# Dump time of 10 .. 10,000 unix sockets with 4 KiB queued in each (issue 3's benchmark).
# Prints, per size: dump wall time (median of RUNS), time per socket, CPU time and peak
# memory of each stage, the time the tree was frozen, and image throughput as a fraction
# of this machine's memcpy and tmpfs write bandwidth measured in the same run.
# Usage: scripts/bench/dump_sockets.sh [RUNS] [SIZES...]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build}
crpipe=$build/coordinator/crpipe
collector=$build/collector/crpipe-collector
serializer=$build/serializer/crpipe-serializer
workload=$build/scripts/bench/crpipe-bench-sockets
runs=${1:-5}; shift || true
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000 10000)
work=$(mktemp -d /dev/shm/crpipe-bench.XXXXXX)
trap 'rm -rf "$work"; [ -n "${wpid:-}" ] && kill -9 "$wpid" 2>/dev/null; true' EXIT

# This machine's limits, measured now.
memcpy_mbs=$("$build/scripts/bench/crpipe-bench-limits" | awk '/memcpy_mbs/ {print $2}')
write_mbs=$(dd if=/dev/zero of="$work/ddtest" bs=1M count=512 conv=fsync 2>&1 | awk '/copied/ {print $(NF-1) * ($NF == "GB/s" ? 1000 : 1)}')
rm -f "$work/ddtest"
echo "machine: memcpy ${memcpy_mbs} MB/s, tmpfs write ${write_mbs} MB/s, $(nproc) cores"
printf "%8s %10s %10s %12s %12s %10s %12s %12s %8s\n" sockets "dump ms" "us/socket" "collect cpu" "collect MiB" "frozen ms" "serial. cpu" "images MB" "%write"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for n in "${sizes[@]}"; do
  "$workload" "$n" 4096 > "$work/ready" 2>&1 < /dev/null &
  wpid=$!
  until grep -q READY "$work/ready" 2>/dev/null; do sleep 0.02; done
  walls=()
  for r in $(seq "$runs"); do
    rm -rf "$work/img"; mkdir "$work/img"
    s=$(date +%s%N)
    "$crpipe" run dump -t "$wpid" -D "$work/img" --leave-running -v 1 >/dev/null 2>&1
    e=$(date +%s%N)
    walls+=($(( (e - s) / 1000 )))
  done
  wall_us=$(printf "%s\n" "${walls[@]}" | median)
  # Per stage: the collector alone into a stream file, then the serializer alone. The
  # frozen time is this collector's: it writes the whole stream (tens of MB) into the
  # file itself, which in a dump the serializer does, so it can exceed the dump's time.
  # (-v 2: the per-fd lines of -v 3 would be written while the tree is frozen.)
  /usr/bin/time -f "%U %S %M" -o "$work/tc" "$collector" -t "$wpid" --out "$work/stream" -R -v 2 \
      --log "$work/clog" >/dev/null
  read -r cu cs cm < "$work/tc"
  frozen=$(awk '/frozen for/ {for (i=1;i<=NF;i++) if ($i=="for") print $(i+1)}' "$work/clog" | tail -1)
  rm -rf "$work/img2"; mkdir "$work/img2"
  /usr/bin/time -f "%U %S %M" -o "$work/ts" "$serializer" write -D "$work/img2" --in "$work/stream" >/dev/null 2>&1
  read -r su ss sm < "$work/ts"
  bytes=$(du -sb "$work/img2" | cut -f1)
  awk -v n="$n" -v w="$wall_us" -v cu="$cu" -v cs="$cs" -v cm="$cm" -v fr="${frozen:-?}" \
      -v su="$su" -v ss="$ss" -v b="$bytes" -v wm="$write_mbs" 'BEGIN {
    printf "%8d %10.2f %10.2f %12.3f %12.1f %10s %12.3f %12.2f %7.1f%%\n", n, w/1000, w/n,
      cu+cs, cm/1024, fr, su+ss, b/1e6, (b/(w/1e6))/1e6/wm*100 }'
  kill -9 "$wpid"; wait "$wpid" 2>/dev/null || true; wpid=
done
