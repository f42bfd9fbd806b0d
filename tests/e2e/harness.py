"""End-to-end test harness: real processes, real crpipe binaries.

A workload (tests/workloads/*.c) is started in its own session with stdout to a log file;
it prints "READY {json}" once its state is built, and on SIGUSR1 verifies itself and prints
PASS or FAIL. The harness is a child subreaper, so whatever a test leaves behind is reaped
here, and every test kills its workload's whole session when it ends, passed or not.
"""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

BUILD = os.environ.get("CRPIPE_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BUILD = os.path.abspath(BUILD)
CRPIPE = os.path.join(BUILD, "coordinator", "crpipe")
WORKLOADS = os.path.join(BUILD, "tests", "workloads")

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def session_pids(sid):
    """Every process whose session is `sid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Workload:
    """Runs one workload program in a session of its own."""

    def __init__(self, name, *args, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix=f"crpipe-{name}-")
        self.log = os.path.join(self.tmp, "workload.log")
        logf = open(self.log, "w")
        self.proc = subprocess.Popen(
            [os.path.join(WORKLOADS, name), *map(str, args)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, cwd=self.tmp)
        logf.close()
        self.pid = self.proc.pid
        self.ready = None

    def output(self):
        with open(self.log) as f:
            return f.read()

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith("READY "):
                    self.ready = json.loads(line[6:])
                    return self.ready
            if self.proc.poll() is not None:
                raise TestFailure(f"workload exited before READY:\n{self.output()}")
            time.sleep(0.01)
        raise TestFailure(f"workload not READY after {timeout}s:\n{self.output()}")

    def verify(self, timeout=20):
        """SIGUSR1 to the workload; its exit code and PASS/FAIL line decide."""
        os.kill(self.pid, signal.SIGUSR1)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"workload did not finish verifying:\n{self.output()}")
        out = self.output()
        check(rc == 0 and "PASS" in out.splitlines()[-1:][0] if out else False,
              f"workload verification failed (rc {rc}):\n{out}")

    def alive(self):
        return self.proc.poll() is None

    def cleanup(self):
        for pid in session_pids(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        reap()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False


def crpipe(*args, check_rc=None, timeout=300):
    """Runs crpipe; returns (rc, stdout, stderr)."""
    p = subprocess.run([CRPIPE, *map(str, args)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    if check_rc is not None and p.returncode != check_rc:
        raise TestFailure(f"crpipe {' '.join(map(str, args))} exited {p.returncode}, "
                          f"expected {check_rc}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p.returncode, p.stdout, p.stderr


def dump(pid, images, *extra, leave_running=True, expect_rc=0):
    args = ["run", "dump", "-t", pid, "-D", images, *extra]
    if leave_running:
        args.append("--leave-running")
    return crpipe(*args, check_rc=expect_rc)


def collect_images(pid, into, *extra):
    """Images of the tree under `pid` written by the collector alone (with `extra`
    options, the tree left running) and `crpipe stage serialize`, into the new dir `into`."""
    stream = into + ".stream"
    subprocess.run([os.path.join(BUILD, "collector", "crpipe-collector"), "-t", str(pid),
                    "--out", stream, "-R", *extra], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    os.mkdir(into)
    subprocess.run([CRPIPE, "stage", "serialize", "-i", stream, "-D", into], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
    return into


def same_images(a, b, prefixes):
    """The first image file whose name starts with one of `prefixes` and differs between
    the dirs a and b (or is missing in b), or None."""
    for name in sorted(os.listdir(a)):
        if name.startswith(tuple(prefixes)):
            other = os.path.join(b, name)
            if not os.path.exists(other):
                return name
            with open(os.path.join(a, name), "rb") as x, open(other, "rb") as y:
                if x.read() != y.read():
                    return name
    return None


def show(path):
    """The entries of one image file, as `crpipe show --json` decodes them."""
    _, out, _ = crpipe("show", "--json", path, check_rc=0)
    doc = json.loads(out)
    return doc["entries"]


def images_dir(w):
    d = os.path.join(w.tmp, "images")
    os.makedirs(d, exist_ok=True)
    return d


SS_STATES = {"ESTAB": 1, "LISTEN": 10, "UNCONN": 7}
SS_TYPES = {"u_str": 1, "u_dgr": 2, "u_seq": 5}


def ss_unix(pids):
    """The kernel's own view of the unix sockets held by `pids`, from `ss -xapn`:
    {ino: {"type", "state", "recvq", "peer", "holders": {(pid, fd)}}}."""
    out = subprocess.run(["ss", "-xapn"], capture_output=True, text=True, check=True).stdout
    socks = {}
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) < 8 or f[0] not in SS_TYPES:
            continue
        holders = set()
        for pid, fd in __import__("re").findall(r"pid=(\d+),fd=(\d+)", line):
            if int(pid) in pids:
                holders.add((int(pid), int(fd)))
        if not holders:
            continue
        socks[int(f[5])] = {"type": SS_TYPES[f[0]], "state": SS_STATES.get(f[1], f[1]),
                            "recvq": int(f[2]), "peer": int(f[7]) if f[7].isdigit() else 0,
                            "holders": holders}
    return socks


def unix_entries(images):
    """{ino: UnixSkEntry} of the sockets held by fds, from files.img."""
    out = {}
    for e in show(os.path.join(images, "files.img")):
        if e["type"] == "UNIXSK" and e["usk"]["ino"] != 0:
            out[e["usk"]["ino"]] = e["usk"]
    return out


def queues_by_id(images):
    path = os.path.join(images, "sk-queues.img")
    q = {}
    if os.path.exists(path):
        for e in show(path):
            q.setdefault(e["id_for"], []).append(e)
    return q


def holders_in_images(images):
    """{file id: {(pid, fd)}} from every fdinfo-PID.img."""
    out = {}
    for name in os.listdir(images):
        if name.startswith("fdinfo-") and name.endswith(".img"):
            pid = int(name[7:-4])
            for e in show(os.path.join(images, name)):
                out.setdefault(e["id"], set()).add((pid, e["fd"]))
    return out


def compare_unix_with_kernel(images, kernel):
    """Every socket the kernel says the tree holds is in the images with the same type,
    state, peer, holders and (stream, seqpacket) queued bytes."""
    entries = unix_entries(images)
    queues = queues_by_id(images)
    holders = holders_in_images(images)
    for ino, k in kernel.items():
        check(ino in entries, f"socket {ino} ({k}) missing from the images")
        e = entries[ino]
        check(e["type"] == k["type"], f"socket {ino}: type {e['type']} != {k['type']}")
        check(e["state"] == k["state"], f"socket {ino}: state {e['state']} != {k['state']}")
        if k["peer"]:
            check(e["peer"] == k["peer"], f"socket {ino}: peer {e['peer']} != {k['peer']}")
        check(holders.get(e["id"], set()) == k["holders"],
              f"socket {ino}: holders {holders.get(e['id'])} != {k['holders']}")
        if k["type"] in (1, 5) and k["state"] == 1:
            got = sum(q["length"] for q in queues.get(e["id"], []))
            check(got == k["recvq"], f"socket {ino}: {got} bytes queued in images, "
                                     f"kernel says {k['recvq']}")


def pid_alive(pid):
    """Running or stopped, not a zombie (a zombie is reaped here when it is our child)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def verify_restored(w, pid, timeout=30):
    """Like Workload.verify for a tree that `crpipe run restore -d` brought back: its root is
    not the process the harness started (it is the harness's child only once crpipe exited,
    through the subreaper), so the PASS/FAIL line in the log and the pid disappearing say
    that it finished."""
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        lines = w.output().splitlines()
        last = lines[-1] if lines else ""
        if (last.startswith("PASS") or last.startswith("FAIL")) and not pid_alive(pid):
            check(last.startswith("PASS"), f"restored workload failed:\n{w.output()}")
            return
        time.sleep(0.01)
    raise TestFailure(f"restored workload did not finish verifying:\n{w.output()}")


def dump_and_kill(w):
    """Dumps the workload (killing it, as CRIU does) and reaps its tree, which the harness
    inherits as subreaper; returns the image directory."""
    img = images_dir(w)
    dump(w.pid, img, leave_running=False)
    w.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while session_pids(w.pid) and time.monotonic() < deadline:
        reap()
        time.sleep(0.01)
    reap()
    return img


def restore(img, *extra, timeout=120, prefix=()):
    """Runs `crpipe run restore -D img` (after `prefix`, e.g. a prlimit command); returns
    (rc, stdout, stderr)."""
    p = subprocess.run([*prefix, CRPIPE, "run", "restore", "-D", img, *map(str, extra)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def restore_attached(img, root):
    """Starts `crpipe run restore -D img` without -d (crpipe stays, waiting for the root)
    and returns its Popen once the restored root `root` exists."""
    p = subprocess.Popen([CRPIPE, "run", "restore", "-D", img], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not pid_alive(root) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # let the restore resume the tree
    return p
