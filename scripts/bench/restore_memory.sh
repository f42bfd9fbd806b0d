#!/usr/bin/env bash
# Restore of random anonymous memory (issue 4's benchmark, restore half): 64 MiB, 512 MiB and
# 2 GiB in one process, and a 64-process tree of 8 MiB each. Each workload is dumped once
# (killed) into a tmpfs image directory, then restored RUNS times with `-d`. Prints wall
# time (median of RUNS), CPU time and peak memory of crpipe (with the serializer it waits
# for), the memory phase's time (from crpipe's log), and throughput (image bytes / wall
# time) as a fraction of this machine's memcpy bandwidth, of the first-touch rate (memset of
# fresh anonymous memory: the lowest cost of filling new memory, which a restore cannot
# beat) and of the image directory's read bandwidth, all measured in the same run. "mem %touch"
# is the memory phase alone against the first-touch rate. The last line restores 512 MiB
# from a stage stream through a pipe (`--stream -`) instead of an image directory.
# Usage: scripts/bench/restore_memory.sh [RUNS]
#   BUILD_DIR=... picks a build tree; CRPIPE=... another crpipe (its stages beside it).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build}
crpipe=${CRPIPE:-$build/coordinator/crpipe}
workload=$build/scripts/bench/crpipe-bench-memory
runs=${1:-3}
work=$(mktemp -d /dev/shm/crpipe-bench-rst.XXXXXX)
rpid=
cleanup() {
  [ -n "${wpid:-}" ] && kill -9 -- -"$wpid" 2>/dev/null
  [ -n "${rpid:-}" ] && kill -9 -- -"$rpid" 2>/dev/null
  rm -rf "$work"
  true
}
trap cleanup EXIT

limits=$("$build/scripts/bench/crpipe-bench-limits")
memcpy_mbs=$(awk '/memcpy_mbs/ {print $2}' <<<"$limits")
touch_mbs=$(awk '/touch_mbs/ {print $2}' <<<"$limits")
# Read bandwidth of the image directory: a 1 GiB file written there, read back (page cache
# is tmpfs itself, so this is what any reader of the images pays at best).
dd if=/dev/zero of="$work/ddtest" bs=1M count=1024 status=none
read_mbs=$(dd if="$work/ddtest" of=/dev/null bs=1M 2>&1 |
           awk '/copied/ {print $(NF-1) * ($NF == "GB/s" ? 1000 : 1)}')
rm -f "$work/ddtest"
echo "machine: memcpy ${memcpy_mbs} MB/s, first touch ${touch_mbs} MB/s, image dir read ${read_mbs} MB/s, $(nproc) cores"
printf "%-10s %8s %9s %8s %9s %8s %7s %8s %7s %7s %9s\n" workload "MB" "rst ms" "cpu s" \
  "peak MiB" "mem ms" "MB/s" "%memcpy" "%touch" "%read" "mem%touch"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

gone() {  # pid: waits (10 s at most) until no process of that session is left
  local i
  for i in $(seq 1000); do
    pgrep -s "$1" >/dev/null 2>&1 || [ -d "/proc/$1" ] || return 0
    sleep 0.01
  done
}

bench() {  # name MiB procs [stream]
  local name=$1 mib=$2 procs=$3 how=${4:-dir}
  # Removed first: the redirection below truncates the file only once the child runs, and
  # the wait loop must not see the READY of the workload before.
  rm -f "$work/ready"
  setsid "$workload" "$mib" "$procs" > "$work/ready" 2>&1 < /dev/null &
  wpid=$!
  disown
  until grep -q READY "$work/ready" 2>/dev/null; do sleep 0.05; done
  rm -rf "$work/img"; mkdir "$work/img"
  "$crpipe" run dump -t "$wpid" -D "$work/img" >/dev/null 2>&1
  gone "$wpid"
  rpid=$wpid
  wpid=
  local from=(-D "$work/img")
  if [ "$how" = stream ]; then
    # The same images as one stage stream file, restored front to back from a pipe.
    "$crpipe" stage serialize --reverse -D "$work/img" -o "$work/stream" >/dev/null 2>&1
    from=(--stream -)
  fi
  local walls=() mems=() cpus=() peaks=() r s e
  for r in $(seq "$runs"); do
    rm -f "$work/log"
    s=$(date +%s%N)
    /usr/bin/time -f "%U %S %M" -o "$work/tc" \
      "$crpipe" run restore "${from[@]}" -d -v 3 -o "$work/log" >/dev/null 2>"$work/err" \
      < <([ "$how" = stream ] && cat "$work/stream" || true) ||
      { echo "$name: restore failed:"; cat "$work/err"; tail -5 "$work/log"; exit 1; }
    e=$(date +%s%N)
    walls+=($(( (e - s) / 1000 )))
    read -r cu cs cm < "$work/tc"
    cpus+=("$(awk -v u="$cu" -v s="$cs" 'BEGIN {print u + s}')")
    peaks+=("$cm")
    mems+=("$(awk '/phase memory:/ {for (i=1;i<=NF;i++) if ($i=="in") print $(i+1)}' "$work/log" | tail -1)")
    kill -9 -- -"$rpid" 2>/dev/null || true
    gone "$rpid"
  done
  local wall_us mem_ms cpu peak bytes
  wall_us=$(printf "%s\n" "${walls[@]}" | median)
  mem_ms=$(printf "%s\n" "${mems[@]}" | median)
  cpu=$(printf "%s\n" "${cpus[@]}" | median)
  peak=$(printf "%s\n" "${peaks[@]}" | median)
  bytes=$(du -sb "$work/img" | cut -f1)
  awk -v n="$name" -v b="$bytes" -v w="$wall_us" -v c="$cpu" -v m="$peak" -v mm="${mem_ms:-0}" \
      -v mc="$memcpy_mbs" -v to="$touch_mbs" -v rd="$read_mbs" 'BEGIN {
    mbs = b / (w / 1e6) / 1e6
    mem = mm > 0 ? b / (mm / 1e3) / 1e6 : 0
    printf "%-10s %8.1f %9.1f %8.3f %9.1f %8.1f %7.0f %7.1f%% %6.1f%% %6.1f%% %8.1f%%\n", n, b/1e6,
      w/1000, c, m/1024, mm, mbs, mbs/mc*100, mbs/to*100, mbs/rd*100, mem/to*100 }'
  rpid=
  rm -rf "$work/img" "$work/log" "$work/stream"
}

bench "64 MiB"  64 1
bench "512 MiB" 512 1
bench "2 GiB"   2048 1
bench "64 procs" 8 64
bench "512M strm" 512 1 stream
