"""Dump-side tests for the process tree, regular files, pipes and FIFOs."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from harness import (Workload, check, crpipe, dump, images_dir, reap,
                     session_pids, show)

O_ACCMODE, O_RDWR, O_APPEND, O_NONBLOCK, O_WRONLY = 0o3, 0o2, 0o2000, 0o4000, 0o1


def in_tmp(w, path):
    """A path the workload printed, relative to its working directory."""
    return os.path.realpath(os.path.join(w.tmp, path))


def files_by_id(images):
    return {e["id"]: e for e in show(os.path.join(images, "files.img"))}


def fdinfo(images, pid):
    return {e["fd"]: e for e in show(os.path.join(images, f"fdinfo-{pid}.img"))}


def test_files_and_pipes():
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        files = files_by_id(img)
        fds = fdinfo(img, r["pid"])
        child_fds = fdinfo(img, r["child"])

        reg = files[fds[r["file"]["fd"]]["id"]]["reg"]
        check(reg["name"] == in_tmp(w, r["file"]["path"]), f"file name {reg['name']}")
        check(int(reg["pos"]) == 3, f"pos {reg['pos']}")
        check(reg["flags"] & O_ACCMODE == O_RDWR and reg["flags"] & O_APPEND, f"flags {reg['flags']:o}")
        check(reg["fown"]["pid"] == r["pid"] and reg["fown"]["signum"] == signal.SIGUSR2,
              f"fown {reg['fown']}")
        check(fds[r["file"]["fd"]]["flags"] == 0, "file fd must not be CLOEXEC")

        ro = fds[r["ro"]["fd"]]
        check(ro["flags"] == 1, "CLOEXEC of the read-only fd lost")
        check(int(files[ro["id"]]["reg"]["pos"]) == 7, "read-only pos")
        check(files[ro["id"]]["reg"]["flags"] & O_NONBLOCK, "O_NONBLOCK lost")
        check(ro["id"] != fds[r["file"]["fd"]]["id"], "two opens of one path share an id")

        un = files[fds[r["unlinked"]["fd"]]["id"]]["reg"]
        check(un["crpipe"].get("unlinked") is True, f"unlinked file not marked: {un}")
        check(un["name"] == in_tmp(w, r["unlinked"]["path"]), f"unlinked name {un['name']}")

        check(files[fds[r["null"]]["id"]]["reg"]["name"] == "/dev/null", "/dev/null")

        # The pipe is one description per end, shared by parent and child.
        for end in ("r", "w"):
            fd = r["pipe"][end]
            check(fds[fd]["id"] == child_fds[fd]["id"], f"pipe {end} end not shared with the child")
            check(fds[fd]["type"] == "PIPE", f"pipe fd type {fds[fd]['type']}")
            check(files[fds[fd]["id"]]["pipe"]["pipe_id"] == r["pipe"]["ino"], "pipe_id")
        entries = show(os.path.join(img, "pipes-data.img"))
        data = [d for d in entries if d["bytes"] > 0]
        check(len(data) == 1 and data[0]["pipe_id"] == r["pipe"]["ino"]
              and data[0]["bytes"] == r["pipe"]["bytes"], f"pipes-data {data}")
        # An empty pipe is recorded only for its non-default size (1 MiB here).
        check([d.get("size") for d in entries if d["bytes"] == 0] == [1 << 20],
              f"empty pipe's size not recorded: {entries}")

        fifo = files[fds[r["fifo"]["r"]]["id"]]
        check(fds[r["fifo"]["r"]]["type"] == "FIFO", "fifo fd type")
        regf = files[fifo["fifo"]["regf_id"]]["reg"]
        check(regf["name"] == in_tmp(w, r["fifo"]["path"]), f"fifo path {regf['name']}")
        fdata = show(os.path.join(img, "fifo-data.img"))
        check(len(fdata) == 1 and fdata[0]["bytes"] == r["fifo"]["bytes"], f"fifo-data {fdata}")
        w.verify()


def test_tree_growing_while_frozen():
    """Kill mode: every task of a tree that forks and spawns threads during the freeze is
    caught, so none survives the dump."""
    for attempt in range(3):
        with Workload("forker", 400) as w:
            w.wait_ready()
            time.sleep(0.02 * attempt)
            img = images_dir(w)
            dump(w.pid, img, leave_running=False)
            pstree = show(os.path.join(img, "pstree.img"))
            deadline = time.monotonic() + 10
            while session_pids(w.pid) and time.monotonic() < deadline:
                reap()
                time.sleep(0.01)
            left = session_pids(w.pid)
            check(not left, f"tasks survived the dump: {left[:10]}")
            check(len(pstree) > 1, "the tree did not grow")
            pids = {e["pid"] for e in pstree}
            for e in pstree[1:]:
                check(e["ppid"] in pids, f"parent {e['ppid']} of {e['pid']} not dumped")
            check(pstree[0]["ppid"] == 0 and pstree[0]["pid"] == w.pid, "root entry")
            check(any(len(e.get("threads", [])) > 1 for e in pstree), "no threads recorded")


def test_unsupported_fd_refused():
    with Workload("eventfd_holder") as w:
        r = w.wait_ready()
        img = images_dir(w)
        rc, _, err = crpipe("run", "dump", "-t", w.pid, "-D", img)
        check(rc != 0, "dump of an eventfd must fail")
        want = f"fd {r['fd']} of pid {r['pid']}"
        check(want in err and "anon_inode:[eventfd]" in err, f"error does not name it: {err}")
        check(w.alive(), "the workload died")
        check(not [f for f in os.listdir(img) if f.endswith(".img")], "images left behind")
        w.verify()


def _sleeper_with_pipe():
    p = subprocess.Popen(["sleep", "1000"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    ino = os.fstat(p.stdout.fileno()).st_ino
    return p, ino


def test_external_pipe():
    p, ino = _sleeper_with_pipe()
    img = tempfile.mkdtemp(prefix="crpipe-extpipe-")
    try:
        rc, _, err = crpipe("run", "dump", "-t", p.pid, "-D", img, "-R")
        check(rc != 0 and f"--external pipe[{ino}]" in err, f"outside pipe not refused: {err}")
        check(p.poll() is None, "sleep died")
        dump(p.pid, img, "--external", f"pipe[{ino}]")
        files = show(os.path.join(img, "files.img"))
        pipes = [e for e in files if e["type"] == "PIPE"]
        check(pipes and pipes[0]["pipe"]["crpipe"]["external"] is True, f"not external: {pipes}")
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(img, ignore_errors=True)


def test_external_file():
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        path = in_tmp(w, r["file"]["path"])
        st = os.stat(path)
        with open(f"/proc/{w.pid}/fdinfo/{r['file']['fd']}") as f:
            mnt = int([l for l in f if l.startswith("mnt_id:")][0].split()[1])
        key = f"file[{mnt:x}:{st.st_ino:x}]"
        img = images_dir(w)
        dump(w.pid, img, "--external", key)
        files = {e["id"]: e for e in show(os.path.join(img, "files.img"))}
        fds = fdinfo(img, w.pid)
        reg = files[fds[r["file"]["fd"]]["id"]]["reg"]
        check(reg.get("ext") is True and reg["name"] == key, f"external file entry {reg}")
        w.verify()


def test_zombie_refused():
    with Workload("zombie_parent") as w:
        r = w.wait_ready()
        img = images_dir(w)
        rc, _, err = crpipe("run", "dump", "-t", w.pid, "-D", img)
        check(rc != 0 and f"pid {r['zombie']} is a zombie" in err, f"zombie not named: {err}")
        check(w.alive(), "the parent died")
        w.verify()


def test_missing_root_refused():
    img = tempfile.mkdtemp(prefix="crpipe-noroot-")
    try:
        # A pid that does not exist: the highest one allowed that /proc does not list (pids
        # wrap around on a machine that has run long).
        with open("/proc/sys/kernel/pid_max") as f:
            pid = int(f.read()) - 1
        while os.path.exists(f"/proc/{pid}"):
            pid -= 1
        rc, _, err = crpipe("run", "dump", "-t", pid, "-D", img)
        check(rc != 0 and f"pid {pid} does not exist" in err, f"missing root: {err}")
    finally:
        shutil.rmtree(img, ignore_errors=True)
