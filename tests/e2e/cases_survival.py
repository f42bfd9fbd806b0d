"""A dump whose stage is killed halfway leaves the tree running exactly as it was, and no
images behind: the collector releases the tree when its reader or its coordinator goes
away, and the kernel detaches every thread when the collector itself dies."""
import os
import signal
import subprocess
import time

from harness import CRPIPE, Workload, check, crpipe, images_dir, reap, session_pids


def children_named(parent, name):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{d}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if int(fields[1]) == parent and comm == name:
                out.append(int(d))
    return out


def kill_stage_midway(stage, after_log=None):
    """Starts a dump, kills `stage` (crpipe-collector, crpipe-serializer, or the
    coordinator itself) once it runs (or once the dump's log has a line with `after_log`),
    and checks the tree and the image directory."""
    with Workload("survivor", 384) as w:
        w.wait_ready()
        img = images_dir(w)
        log = os.path.join(w.tmp, "dump.log")
        coord = subprocess.Popen([CRPIPE, "run", "dump", "-t", str(w.pid), "-D", img,
                                  "-v", "3", "-o", log],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        victim = None
        deadline = time.monotonic() + 10
        while victim is None and time.monotonic() < deadline and coord.poll() is None:
            if stage == "crpipe":
                victim = coord.pid
            else:
                found = children_named(coord.pid, stage[:15])
                victim = found[0] if found else None
            if victim is None:
                time.sleep(0.001)
        check(victim is not None, f"{stage} never ran; crpipe said: "
                                  f"{coord.stderr.read() if coord.poll() is not None else ''}")
        if after_log is None:
            time.sleep(0.05)  # let the dump get going: the tree is frozen now
        else:
            while time.monotonic() < deadline and coord.poll() is None:
                if os.path.exists(log) and after_log in open(log).read():
                    break
                time.sleep(0.0005)
            check(coord.poll() is None, f"the dump ended before its log said {after_log!r}")
        os.kill(victim, signal.SIGKILL)
        try:
            rc = coord.wait(timeout=30)
        except subprocess.TimeoutExpired:
            coord.kill()
            raise
        if stage != "crpipe":
            check(rc != 0, f"the dump reported success after {stage} was killed")
        # The tree goes on: nothing killed, nothing left frozen (state S, not t).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = []
            for pid in session_pids(w.pid):
                with open(f"/proc/{pid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            if states and all(s in "SR" for s in states):
                break
            time.sleep(0.01)
        check(len(session_pids(w.pid)) == 2, "the tree lost a process")
        check(all(s in "SR" for s in states), f"tasks left stopped: {states}")
        # Stages orphaned by a killed coordinator were reparented to us (a subreaper):
        # wait for them to finish before looking at the image directory.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (children_named(os.getpid(), "crpipe-serializ")
                                               or children_named(os.getpid(), "crpipe-collecto")):
            reap()
            time.sleep(0.01)
        reap()
        left = os.listdir(img)
        check(not [f for f in left if f.startswith(".crpipe-partial")], f"partial dir left: {left}")
        if stage == "crpipe":
            # Nobody was left to tell the collector to kill the tree; the serializer may
            # still have committed a complete dump, which must then decode.
            if "inventory.img" in left:
                for f in left:
                    crpipe("show", "--json", os.path.join(img, f), check_rc=0)
        else:
            check(not [f for f in left if f.endswith(".img")], f"images left behind: {left}")
        w.verify()


def test_serializer_killed():
    kill_stage_midway("crpipe-serializer")


def test_collector_killed():
    """Killed while it reads the frozen tree from outside (fds, page tables). Not inside
    the few ms a task spends in injected syscalls: a collector killed there leaves that
    task with borrowed registers (docs/features.md, limits)."""
    kill_stage_midway("crpipe-collector", after_log="collector: froze ")


def test_collector_killed_while_the_serializer_reads_the_pages():
    """With `run dump -D` the serializer reads the frozen tree's pages itself after the
    collector sent its last message. The collector dies then: the kernel releases the tree,
    whose memory may change, so nothing may be committed (PageCopier::checkStillFrozen)."""
    kill_stage_midway("crpipe-collector", after_log="collector: collected ")


def test_coordinator_killed():
    kill_stage_midway("crpipe")
