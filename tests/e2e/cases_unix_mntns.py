"""Unix socket files bound in another mount namespace (issue 5 item 6). The test keeps a
process in a mount namespace of its own with a tmpfs mounted on a directory there only; a
workload's child joins that namespace and binds a listener (with an accepted and a pending
connection), a datagram receiver and a bound client there. After dump (kill) and a real
restore the child joins the namespace again and checks its socket files, names, queues and
connections; the parent that nothing was bound in the restorer's own namespace. With the
namespace gone between dump and restore, the restore is refused naming it."""
import os
import shutil
import signal
import subprocess
import tempfile

from cases_process import dump_and_kill, restore
from cases_unix_netns import check_refused_for_gone_namespace
from cases_unix_real import kill_session
from harness import Workload, check, pid_alive, session_pids, verify_restored


class MountNs:
    """A process in a new mount namespace (private propagation) with a tmpfs on `dir`."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="crpipe-e2e-mntns-")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs crpipe-e2e {self.dir} && echo up && exec sleep 3600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        check(line.strip() == "up", f"could not make a mount namespace: {line!r}")
        self.path = f"/proc/{self.proc.pid}/ns/mnt"
        self.ino = os.stat(self.path).st_ino

    def delete(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.delete()
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_unix_mntns_bound_inside_namespace():
    with MountNs() as ns, Workload("unix_mntns", ns.path, ns.dir) as w:
        r = w.wait_ready()
        check(r["mntns_ino"] == ns.ino, "workload saw another namespace")
        img = dump_and_kill(w)
        rc, _, err = restore(img, "-d")
        check(rc == 0, f"restore failed:\n{err}")
        check(pid_alive(r["pid"]), "the restored root is not running")
        try:
            verify_restored(w, r["pid"])
        finally:
            kill_session(r["pid"])


def test_unix_mntns_gone_refused():
    with MountNs() as ns, Workload("unix_mntns", ns.path, ns.dir) as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        ns.delete()
        check_refused_for_gone_namespace(img, r, f"mount namespace {ns.ino}")
