"""Unix socket restore (issue 5), verified from outside until memory restore lands: the
workload is dumped and killed, restored with `--stop-before memory` (every restored task
left alive in pause() with exactly its restored fds), dumped again with --leave-running,
and both dumps are compared socket by socket (inodes mapped through pid/fd), plus direct
getsockname/getpeername checks through pidfd_getfd. Every process is killed at the end."""
import ctypes
import os
import shutil
import signal
import socket
import subprocess

from cases_restore import dump_and_kill
from harness import (CRPIPE, TestFailure, Workload, check, dump, reap, session_pids, show)

_libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_open, SYS_pidfd_getfd = 434, 438

IGNORED = {"id", "ino", "peer", "vfs_ino", "vfs_dev", "icons", "listener", "wqlen"}


def steal_fd(pid, fd):
    pidfd = _libc.syscall(SYS_pidfd_open, pid, 0)
    check(pidfd >= 0, f"pidfd_open {pid}")
    try:
        n = _libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        check(n >= 0, f"pidfd_getfd {pid}/{fd}: errno {ctypes.get_errno()}")
        return socket.socket(fileno=n)
    finally:
        os.close(pidfd)


def model(img):
    """{(pid, fd): socket description} with peers as (pid, fd) and queues as content."""
    files = {e["id"]: e for e in show(os.path.join(img, "files.img"))}
    holders = {}
    for t in show(os.path.join(img, "pstree.img")):
        for f in show(os.path.join(img, f"fdinfo-{t['pid']}.img")):
            holders.setdefault(f["id"], []).append((t["pid"], f["fd"]))
    ino_to = {}
    for fid, hs in holders.items():
        e = files[fid]
        if e["type"] == "UNIXSK":
            ino_to[e["usk"]["ino"]] = min(hs)
    queues = {}
    path = os.path.join(img, "sk-queues.img")
    if os.path.exists(path):
        for m in show(path):
            queues.setdefault(m["id_for"], []).append(
                {k: v for k, v in m.items() if k != "id_for"})
    out = {}
    for fid, hs in holders.items():
        e = files[fid]
        if e["type"] != "UNIXSK":
            continue
        u = e["usk"]
        d = {k: v for k, v in u.items() if k not in IGNORED and k != "crpipe"}
        d["crpipe"] = {k: v for k, v in u.get("crpipe", {}).items() if k not in IGNORED}
        d["peer"] = ino_to.get(u["peer"], "outside" if u["peer"] else None)
        d["holders"] = sorted(hs)
        d["queue"] = queues.get(fid, [])
        # Pending connections: their data and clients, in accept order.
        emb = sorted((f["usk"] for f in files.values() if f["type"] == "UNIXSK"
                      and f["usk"].get("crpipe", {}).get("listener") == u["ino"]),
                     key=lambda x: x["crpipe"].get("icon_index", 0))
        d["embryos"] = [(ino_to.get(x["peer"]), x.get("shutdown"), queues.get(x["id"], []))
                        for x in emb]
        for h in hs:
            out[h] = d
    return out


def restore_stopped(img, *extra):
    p = subprocess.run([CRPIPE, "run", "restore", "-D", img, "--stop-before", "memory",
                        *map(str, extra)], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0:
        raise TestFailure(f"restore failed ({p.returncode}):\n{p.stderr}")
    return int(p.stdout.split("restored root pid")[1].split()[0])


def kill_tree(pid):
    for p in session_pids(pid) + [pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reap()


def test_unix_restore_every_case():
    with Workload("unix_restore") as w:
        r = w.wait_ready()
        try:
            img = dump_and_kill(w)
            # A missing parent directory is created on restore.
            shutil.rmtree(os.path.join(r["dir"], "sub"))
            root = restore_stopped(img)
            try:
                check(root == r["pid"], f"restored root {root}, dumped {r['pid']}")
                img2 = os.path.join(w.tmp, "images2")
                os.makedirs(img2)
                dump(root, img2)
                before, after = model(img), model(img2)
                check(sorted(before) == sorted(after),
                      f"fds differ: {sorted(before)} vs {sorted(after)}")
                for key in sorted(before):
                    check(before[key] == after[key],
                          f"pid/fd {key}:\n dumped   {before[key]}\n restored {after[key]}")
                # Names on both ends of the cross-task connection (CRIU loses these).
                acc = steal_fd(r["pid"], r["accepted"])
                cli = steal_fd(r["child"], r["child_client"])
                lst = r["listener"]
                check(acc.getsockname() == lst, f"accepted end's name {acc.getsockname()!r}")
                check(cli.getpeername() == lst, f"client's peer name {cli.getpeername()!r}")
                acc.close()
                cli.close()
                check(os.stat(lst).st_mode & 0o7777 == 0o640, "socket file mode")
                check((os.stat(lst).st_uid, os.stat(lst).st_gid) == (1000, 1001), "socket owner")
            finally:
                kill_tree(root)
        finally:
            shutil.rmtree(r["dir"], ignore_errors=True)
