"""Connections a listener had not accepted, connected by several tasks (issue 5, items 3
and 5): the dump records who connected each (the embryo's SO_PEERCRED, read by the BPF
reader), and after restore accept() returns them in order, each with its data and with
SO_PEERCRED naming the task that connected: two live children (one with uid 3001), a child
with uid 4001 that exited after handing its client to the root, one with uid 5001 that
closed its client and exited, and one with uid 6001 that closed its client and lives on
holding no socket at all."""
import os
import tempfile

from cases_process import dump_and_kill, restore
from cases_unix_real import kill_session
from harness import Workload, check, crpipe, pid_alive, show, verify_restored


def embryos(img):
    """The not-yet-accepted connections of files.img, in accept order."""
    out = [e["usk"] for e in show(os.path.join(img, "files.img"))
           if e["type"] == "UNIXSK" and e["usk"].get("crpipe", {}).get("origin") == "embryo"]
    return sorted(out, key=lambda u: u["crpipe"].get("icon_index", 0))


def run_case(*mode):
    d = tempfile.mkdtemp(prefix="crpipe-e2e-embryo-creds-")
    os.chmod(d, 0o777)
    try:
        with Workload("unix_embryo_creds", os.path.join(d, "l.sock"), *mode) as w:
            r = w.wait_ready()
            check(not pid_alive(r["c"]) and not pid_alive(r["d"]),
                  "the connecting children that should have exited still run")
            img = dump_and_kill(w)
            want = [(r["a"], 0, 0), (r["b"], 3001, 3002), (r["a"], 0, 0),
                    (r["c"], 4001, 4002), (r["b"], 3001, 3002), (r["d"], 5001, 5002),
                    (r["e"], 6001, 6002)]
            got = []
            for u in embryos(img):
                c = u["crpipe"].get("peercred", {})
                got.append((c.get("pid"), c.get("uid"), c.get("gid")))
            check(got == want, f"embryos' SO_PEERCRED in the images {got}, want {want}")
            _, out, _ = crpipe("show", "--sockets", img, check_rc=0)
            check(f"connected by pid {r['b']} uid 3001 gid 3002" in out,
                  f"crpipe show --sockets does not say who connected:\n{out}")
            rc, _, err = restore(img, "-d")
            check(rc == 0, f"restore failed:\n{err}")
            try:
                check(not pid_alive(r["c"]) and not pid_alive(r["d"]),
                      "an SO_PEERCRED helper is still running")
                verify_restored(w, r["pid"])
            finally:
                kill_session(r["pid"])
    finally:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
        os.rmdir(d)


def test_unix_embryo_creds_of_several_connecting_tasks():
    run_case()


def test_unix_embryo_creds_listener_unlinked():
    """The same with the listener's file unlinked after the connects: the tasks that connect
    find it at its path during the restore, and it is unlinked again."""
    run_case("unlinked")
