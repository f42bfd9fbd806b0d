"""Unix sockets of another network namespace (issue 5 item 6): a workload's child joins a
named namespace (`ip netns add`) and makes a listener with an abstract name, an accepted
connection and a socketpair there, with queued data. After dump (kill) and a real restore
the child checks (SIOCGSKNS) that each socket is in that namespace again, with its data and
name, and the parent that the name is not visible in the root namespace. With the
namespace deleted between dump and restore, the restore is refused naming it."""
import os
import subprocess

from cases_process import dump_and_kill, restore
from cases_unix_real import kill_session
from harness import Workload, check, pid_alive, session_pids, verify_restored


class NetNs:
    def __init__(self):
        self.name = f"crpipe-e2e-{os.urandom(4).hex()}"
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def delete(self):
        if os.path.exists(self.path):
            subprocess.run(["ip", "netns", "del", self.name], check=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.delete()


def test_unix_netns_restored_inside_namespace():
    with NetNs() as ns, Workload("unix_netns", ns.path) as w:
        r = w.wait_ready()
        check(r["netns_ino"] == os.stat(ns.path).st_ino, "workload saw another namespace")
        img = dump_and_kill(w)
        rc, _, err = restore(img, "-d")
        check(rc == 0, f"restore failed:\n{err}")
        check(pid_alive(r["pid"]), "the restored root is not running")
        try:
            verify_restored(w, r["pid"])
        finally:
            kill_session(r["pid"])


def test_unix_netns_gone_refused():
    with NetNs() as ns, Workload("unix_netns", ns.path) as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        ns.delete()
        check_refused_for_gone_namespace(img, r, f"network namespace {r['netns_ino']}")


def check_refused_for_gone_namespace(img, r, namespace):
    """The restore of `img` is refused naming `namespace` and the child's socket, and leaves
    no process of the tree behind."""
    rc, _, err = restore(img, "-d")
    try:
        check(rc != 0, f"restore into a gone {namespace} succeeded")
        check(namespace in err and "no longer exists" in err,
              f"refusal does not name the namespace:\n{err}")
        check(f"pid {r['child']} fd " in err, f"refusal does not name the socket:\n{err}")
        check(not pid_alive(r["pid"]) and not pid_alive(r["child"]),
              "a process of the tree is running after the refused restore")
        check(not session_pids(r["pid"]), "the refused restore left processes behind")
    finally:
        kill_session(r["pid"])
