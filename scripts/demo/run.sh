#!/usr/bin/env bash
# The demo: a chat server with three clients, a logger and a pending connection, all
# talking over unix sockets, is dumped with visible progress (and killed, as CRIU does),
# its socket graph is shown from the images, and it is restored: same pids, same
# sockets, and the chat goes on. Uses the installed crpipe, or the one in build/.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
crpipe=$(command -v crpipe || echo "$here/build/coordinator/crpipe")
chat=$(command -v crpipe-demo-chat || echo "$here/build/scripts/demo/crpipe-demo-chat")
dir=/tmp/crpipe-demo
rm -rf "$dir"; mkdir -p "$dir/images"

setsid "$chat" "$dir" </dev/null >"$dir/chat.log" 2>&1 &
pid=$!
trap 'kill -KILL -- -$pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do grep -q "^chat:" "$dir/chat.log" 2>/dev/null && break; sleep 0.05; done
echo "== demo: chat server pid $pid"
pstree -p "$pid" 2>/dev/null || ps --forest -g "$pid" -o pid,comm
echo "== crpipe run dump -t $pid -D $dir/images -v 2"
"$crpipe" run dump -t "$pid" -D "$dir/images" -v 2
echo "== images"
ls -l "$dir/images"
echo "== crpipe show --sockets $dir/images"
"$crpipe" show --sockets "$dir/images"
lines=$(wc -l < "$dir/chat.log")
echo "== the chat is gone (killed by the dump): $(pgrep -c -s "$pid" 2>/dev/null || echo 0) processes left"
echo "== crpipe run restore -D $dir/images -d -v 2"
"$crpipe" run restore -D "$dir/images" -d -v 2
echo "== restored tree:"
pstree -p "$pid" 2>/dev/null || ps --forest -g "$pid" -o pid,comm
sleep 0.5
echo "== the chat goes on after the restore ($(( $(wc -l < "$dir/chat.log") - lines )) new log lines):"
tail -n 3 "$dir/chat.log"
echo "== demo done"
