"""SO_PEERCRED after restore (issue 5 item 3): socketpairs made by a task that exited
before the dump, with other ids (their ends must still name its pid, uid and gid: crpipe
makes them from a short-lived helper cloned with that pid), and a connection to a
listener of a task with other ids (each end names the other side's pid and ids)."""
import os
import tempfile

from cases_process import dump_and_kill, restore
from cases_unix_real import kill_session
from harness import Workload, check, pid_alive, verify_restored


def test_unix_peercred_pairs_of_an_exited_task_and_other_ids():
    d = tempfile.mkdtemp(prefix="crpipe-e2e-peercred-")
    os.chmod(d, 0o777)
    try:
        with Workload("unix_peercred", os.path.join(d, "l.sock")) as w:
            r = w.wait_ready()
            check(not pid_alive(r["maker"]), "the pair maker is still running")
            img = dump_and_kill(w)
            rc, _, err = restore(img, "-d")
            check(rc == 0, f"restore failed:\n{err}")
            try:
                check(not pid_alive(r["maker"]), "the SO_PEERCRED helper is still running")
                verify_restored(w, r["pid"])
            finally:
                kill_session(r["pid"])
    finally:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
        os.rmdir(d)
