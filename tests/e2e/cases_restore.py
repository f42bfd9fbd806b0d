"""Restore of the process tree and its fds (issue 4/5 foundation): the workload is dumped,
killed, and restored with --check-only, which stops every restorer before memory restore,
checks the restored tasks from /proc, prints what it saw as JSON and kills the tree. The
test compares that JSON with the images and with the workload's own READY line."""
import hashlib
import json
import os
import signal
import subprocess
import time

from harness import (CRPIPE, TestFailure, Workload, check, crpipe, dump, dump_and_kill,
                     images_dir, reap, restore, session_pids, show, verify_restored)

O_ACCMODE, O_WRONLY, O_RDWR, O_APPEND, O_NONBLOCK = 0o3, 0o1, 0o2, 0o2000, 0o4000


def images_digest(img):
    """Bytes of every file of an image directory, to prove a restore changed nothing."""
    h = {}
    for name in sorted(os.listdir(img)):
        with open(os.path.join(img, name), "rb") as f:
            h[name] = hashlib.sha256(f.read()).hexdigest()
    return h


def tree_pids(img):
    return [e["pid"] for e in show(os.path.join(img, "pstree.img"))]


def alive(pid):
    """Running (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def restorers_left():
    """Processes running crpipe-restorer: the program itself (argv[0]), not any command
    that merely names it (a build of the crpipe-restorer target, say)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0", 1)[0]
                if os.path.basename(argv0) == b"crpipe-restorer":
                    out.append(int(d))
            except OSError:
                pass
    return out


def check_nothing_left(pids):
    reap()
    left = [p for p in pids if alive(p)]
    check(not left, f"restored tasks still running: {left}")
    check(not restorers_left(), f"restorers still running: {restorers_left()}")


def test_restore_files_pipes_check_only():
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        before = images_digest(img)
        rc, out, err = restore(img, "--check-only")
        check(rc == 0, f"restore --check-only failed (rc {rc}):\n{err}\n{out}")
        rep = json.loads(out)
        check(rep["problems"] == [], f"problems: {rep['problems']}")
        tasks = {t["pid"]: t for t in rep["tasks"]}

        # The tree: original pids, parent, one session and group led by the root.
        check(set(tasks) == {r["pid"], r["child"]}, f"restored pids {sorted(tasks)}")
        check(tasks[r["child"]]["ppid"] == r["pid"], "child's parent")
        for t in tasks.values():
            check(t["sid"] == r["pid"] and t["pgid"] == r["pid"], f"session/group of {t}")

        pstree = {e["pid"]: e for e in show(os.path.join(img, "pstree.img"))}
        for pid, t in tasks.items():
            check(t["sid"] == pstree[pid]["sid"] and t["pgid"] == pstree[pid]["pgid"],
                  f"pid {pid}: sid/pgid differ from pstree.img")

        fds = {f["fd"]: f for f in tasks[r["pid"]]["fds"]}
        child_fds = {f["fd"]: f for f in tasks[r["child"]]["fds"]}
        dumped = {e["fd"] for e in show(os.path.join(img, f"fdinfo-{r['pid']}.img"))}
        check(set(fds) == dumped, f"fds {sorted(fds)} != images {sorted(dumped)}")

        path = os.path.realpath(os.path.join(w.tmp, r["file"]["path"]))
        f = fds[r["file"]["fd"]]
        check(f["link"] == path, f"file link {f['link']}")
        check(f["pos"] == r["file"]["pos"], f"file pos {f['pos']}")
        check(f["flags"] & O_ACCMODE == O_RDWR and f["flags"] & O_APPEND, f"flags {f['flags']:o}")
        check(not f["cloexec"], "file fd must not be CLOEXEC")
        ro = fds[r["ro"]["fd"]]
        check(ro["pos"] == r["ro"]["pos"] and ro["cloexec"] and ro["flags"] & O_NONBLOCK,
              f"read-only fd {ro}")
        un = fds[r["unlinked"]["fd"]]
        check(un["link"] == os.path.realpath(os.path.join(w.tmp, r["unlinked"]["path"])) + " (deleted)",
              f"unlinked fd {un}")
        check(not os.path.exists(os.path.join(w.tmp, r["unlinked"]["path"])),
              "the unlinked file was left on disk")
        check(fds[r["null"]]["link"] == "/dev/null", "/dev/null")

        # The pipe: one pipe, both ends in both tasks, its data back in it.
        pr, pw = fds[r["pipe"]["r"]], fds[r["pipe"]["w"]]
        check(pr["link"] == pw["link"] and pr["link"].startswith("pipe:["), f"pipe ends {pr} {pw}")
        check(child_fds[r["pipe"]["r"]]["link"] == pr["link"], "child's pipe end")
        want = b"in flight through the pipe\0".hex()
        check(pr["data"] == want, f"pipe data {bytes.fromhex(pr['data'])!r}")
        check(pw["flags"] & O_ACCMODE == O_WRONLY, "pipe write end flags")
        fifo = os.path.realpath(os.path.join(w.tmp, r["fifo"]["path"]))
        fr, fw = fds[r["fifo"]["r"]], fds[r["fifo"]["w"]]
        check(fr["link"] == fifo and fw["link"] == fifo, f"fifo links {fr['link']} {fw['link']}")
        check(fr["data"] == b"waiting in the fifo\0".hex(), f"fifo data {fr.get('data')}")

        check(images_digest(img) == before, "the images changed during the restore")
        check_nothing_left(tasks)


def test_restore_from_stream():
    """The collector's stream, read front to back from a pipe (stdin), restores the same."""
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        cat = subprocess.Popen([CRPIPE, "stage", "serialize", "--reverse", "-D", img, "-o", "-"],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        p = subprocess.run([CRPIPE, "run", "restore", "--stream", "-", "--check-only"],
                           stdin=cat.stdout, capture_output=True, text=True, timeout=60)
        cat.stdout.close()
        cat.wait()
        check(p.returncode == 0, f"restore --stream - failed:\n{p.stderr}")
        rep = json.loads(p.stdout)
        check({t["pid"] for t in rep["tasks"]} == {r["pid"], r["child"]}, "pids")
        check_nothing_left([r["pid"], r["child"]])


def test_restore_files_pipes_runs_on():
    """Without --check-only the tree comes back whole and checks its own fds (issue 4)."""
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        rc, _, err = restore(img, "-d")
        check(rc == 0, f"restore failed:\n{err}")
        verify_restored(w, r["pid"])


def test_restore_onto_taken_pid_refused():
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)  # --leave-running: the pids stay taken
        before = images_digest(img)
        rc, _, err = restore(img, "--check-only")
        check(rc != 0 and f"pid {r['pid']} is taken" in err, f"taken pid not refused:\n{err}")
        check(not restorers_left(), "restorers left behind")
        check(images_digest(img) == before, "images changed")
        w.verify()  # the original tree is untouched


def test_restore_missing_file_fails_naming_it():
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        path = os.path.realpath(os.path.join(w.tmp, r["file"]["path"]))
        os.rename(path, path + ".moved")
        before = images_digest(img)
        rc, _, err = restore(img, "--check-only")
        want = f"pid {r['pid']} fd {r['file']['fd']}: open {path}: No such file or directory"
        check(rc != 0 and want in err, f"expected '{want}' in:\n{err}")
        check_nothing_left([r["pid"], r["child"]])
        check(images_digest(img) == before, "images changed")


def test_restore_refuses_what_it_cannot_yet():
    # unix_queues holds an unlinked file with data and files passed with SCM_RIGHTS in
    # queued messages, which the restore refuses before creating anything.
    with Workload("unix_queues") as w:
        w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        rc, _, err = restore(img, "--check-only")
        check(rc != 0 and ("unlinked file" in err or "SCM_RIGHTS" in err)
              and "nothing was restored" in err, f"not refused clearly:\n{err}")
        check(not restorers_left(), "restorers left behind")
        w.verify()
