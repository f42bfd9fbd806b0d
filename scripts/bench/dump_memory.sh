#!/usr/bin/env bash
# Dump of random anonymous memory (issue 4's benchmark, dump half): 64 MiB, 512 MiB and
# 2 GiB in one process, and a 64-process tree of 8 MiB each. Prints wall time (median of
# RUNS), CPU time of all stages and the peak memory of the largest, time frozen (the collector's own measure, in the same
# dumps, median) and its ratio to the dump time, and throughput as a fraction of this
# machine's memcpy bandwidth and of the image directory's (tmpfs) write bandwidth, both
# measured in the same run, plus the first-touch rate a restore cannot beat.
# Usage: scripts/bench/dump_memory.sh [RUNS] [WORKLOAD...]   (64m 512m 2g procs; all by default)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build}
crpipe=$build/coordinator/crpipe
workload=$build/scripts/bench/crpipe-bench-memory
runs=${1:-3}; shift || true
only=("$@"); [ ${#only[@]} -gt 0 ] || only=(64m 512m 2g procs)
want() { [[ " ${only[*]} " == *" $1 "* ]]; }
work=$(mktemp -d /dev/shm/crpipe-bench-mem.XXXXXX)
trap 'rm -rf "$work"; [ -n "${wpid:-}" ] && kill -9 -- -"$wpid" 2>/dev/null; true' EXIT

limits=$("$build/scripts/bench/crpipe-bench-limits")
memcpy_mbs=$(awk '/memcpy_mbs/ {print $2}' <<<"$limits")
touch_mbs=$(awk '/touch_mbs/ {print $2}' <<<"$limits")
# The image directory's write bandwidth: dd of as many MiB as the dump writes, the best of
# three, measured right before each workload's dumps. In this VM freed memory goes back to
# the host and the next writer that needs it pays the host's faults: a single 2 GiB write
# measured 0.8 and 2.8 GB/s a minute apart. Measured next to the dumps, with the same size,
# the yardstick sees the memory the dumps see; the best of three (against the dumps'
# median) keeps a cold dd from flattering them.
write_bw() {  # MiB -> MB/s
  for i in 1 2 3; do
    dd if=/dev/zero of="$work/ddtest" bs=1M count="$1" conv=fsync 2>&1 |
      awk '/copied/ {print $(NF-1) * ($NF == "GB/s" ? 1000 : ($NF == "kB/s" ? 0.001 : 1))}'
    rm -f "$work/ddtest"
  done | sort -n | tail -1
}
echo "machine: memcpy ${memcpy_mbs} MB/s, first touch ${touch_mbs} MB/s, tmpfs write of 1 GiB $(write_bw 1024) MB/s, $(nproc) cores"
printf "%-14s %9s %9s %11s %11s %10s %7s %9s %8s %9s %8s\n" workload "MB" "dump ms" "cpu s" "peak MiB" "frozen ms" "fr/dump" "MB/s" "%memcpy" "write MB/s" "%write"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench() {  # name MiB procs
  local name=$1 mib=$2 procs=$3
  # Removed first: the redirection below truncates the file only once the child runs, and
  # the wait loop must not see the READY of the workload before.
  rm -f "$work/ready"
  setsid "$workload" "$mib" "$procs" > "$work/ready" 2>&1 < /dev/null &
  wpid=$!
  disown
  until grep -q READY "$work/ready" 2>/dev/null; do sleep 0.05; done
  local write_mbs
  write_mbs=$(write_bw $((mib * procs)))
  local walls=() frozens=() r s e
  for r in $(seq "$runs"); do
    rm -rf "$work/img" "$work/dlog"; mkdir "$work/img"
    s=$(date +%s%N)
    "$crpipe" run dump -t "$wpid" -D "$work/img" --leave-running -v 3 -o "$work/dlog" \
        >/dev/null 2>&1
    e=$(date +%s%N)
    walls+=($(( (e - s) / 1000 )))
    # The collector's own measure, from the first stop to the last detach, in this dump.
    frozens+=("$(awk '/frozen for/ {for (i=1;i<=NF;i++) if ($i=="for") print $(i+1)}' \
                 "$work/dlog" | tail -1)")
  done
  local wall_us bytes frozen
  wall_us=$(printf "%s\n" "${walls[@]}" | median)
  frozen=$(printf "%s\n" "${frozens[@]}" | median)
  bytes=$(du -sb "$work/img" | cut -f1)
  # CPU of one more dump, every stage (crpipe waits for the collector and the serializer,
  # so their time is in its children's), and the peak memory of the largest stage.
  rm -rf "$work/img"; mkdir "$work/img"
  /usr/bin/time -f "%U %S %M" -o "$work/tc" "$crpipe" run dump -t "$wpid" -D "$work/img" \
      --leave-running -v 1 >/dev/null 2>&1
  read -r cu cs cm < "$work/tc"
  awk -v n="$name" -v b="$bytes" -v w="$wall_us" -v cu="$cu" -v cs="$cs" -v cm="$cm" \
      -v fr="${frozen:-?}" -v mc="$memcpy_mbs" -v wr="$write_mbs" 'BEGIN {
    mbs = b / (w / 1e6) / 1e6
    printf "%-14s %9.1f %9.1f %11.3f %11.1f %10s %6.0f%% %9.0f %7.1f%% %9.0f %7.1f%%\n", n,
      b/1e6, w/1000, cu+cs, cm/1024, fr, fr/(w/1000)*100, mbs, mbs/mc*100, wr, mbs/wr*100 }'
  kill -9 -- -"$wpid" 2>/dev/null || true
  wpid=
  rm -rf "$work/img" "$work/clog"
}

if want 64m; then bench "64 MiB" 64 1; fi
if want 512m; then bench "512 MiB" 512 1; fi
if want 2g; then bench "2 GiB" 2048 1; fi
if want procs; then bench "64 procs" 8 64; fi
