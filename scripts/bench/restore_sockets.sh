#!/usr/bin/env bash
# Restore time of 10 .. 10,000 unix sockets with 4 KiB queued in each (issue 5's
# benchmark): total, per socket, and per restore phase as the coordinator logs them.
# Each size is dumped (killed) once and restored RUNS times; medians are printed.
# Usage: scripts/bench/restore_sockets.sh [RUNS] [SIZES...]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build}
crpipe=$build/coordinator/crpipe
workload=$build/scripts/bench/crpipe-bench-sockets
runs=${1:-3}; shift || true
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000 10000)
work=$(mktemp -d /dev/shm/crpipe-bench-rs.XXXXXX)
trap 'rm -rf "$work"; [ -n "${rpid:-}" ] && kill -9 "$rpid" 2>/dev/null; true' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
phases=(fork-tree bind-listen connect accept pending-connect refill-queues open-files share-fds memory resume)
printf "%8s %10s %10s" sockets "restore ms" "us/socket"
for p in "${phases[@]}"; do printf " %13s" "$p"; done
echo " (ms)"

for n in "${sizes[@]}"; do
  setsid "$workload" "$n" 4096 > "$work/ready" 2>&1 < /dev/null &
  wpid=$!
  disown "$wpid"  # the dump kills it; no job-control report
  until grep -q READY "$work/ready" 2>/dev/null; do sleep 0.02; done
  rm -rf "$work/img"; mkdir "$work/img"
  "$crpipe" run dump -t "$wpid" -D "$work/img" >/dev/null 2>&1
  for _ in $(seq 500); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.01; done
  declare -A per=()
  totals=()
  for r in $(seq "$runs"); do
    s=$(date +%s%N)
    "$crpipe" run restore -D "$work/img" -d -v 2 -o "$work/restore.log" > "$work/out" 2>&1
    e=$(date +%s%N)
    totals+=($(( (e - s) / 1000 )))
    rpid=$(sed -n 's/.*root \([0-9]*\).*/\1/p' "$work/out" | head -1)
    for p in "${phases[@]}"; do
      ms=$(awk -v p="phase $p:" 'index($0, p) { for (i = 1; i <= NF; i++) if ($i == "ms") v = $(i-1) } END { print v + 0 }' "$work/restore.log" 2>/dev/null || echo 0)
      per[$p]+="$ms "
    done
    kill -9 "$rpid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.01; done
    rpid=
    rm -f "$work/restore.log"
  done
  t=$(printf "%s\n" "${totals[@]}" | median)
  awk -v n="$n" -v t="$t" 'BEGIN { printf "%8d %10.1f %10.2f", n, t / 1000, t / n }'
  for p in "${phases[@]}"; do
    printf " %13.2f" "$(printf "%s\n" ${per[$p]} | median)"
  done
  echo
  unset per
done
