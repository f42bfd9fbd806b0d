"""Unix socket restore for real (issue 5): each unix workload is dumped (and killed),
restored with `crpipe run restore -d` — memory, registers and all — and then told to check
itself: every queued byte and record boundary, SCM_RIGHTS files and SCM_CREDENTIALS,
names on both ends, peek offsets, options, pending connections, echo through every
connection. The workload fails if any of that were lost. Every process a test started is
killed at the end (the harness is the subreaper of the restored tree)."""
import os
import shutil
import signal

from cases_process import dump_and_kill, restore
from harness import Workload, check, pid_alive, reap, session_pids, verify_restored


def kill_session(pid):
    for p in session_pids(pid) + [pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reap()


def restore_and_verify(name, *args, extra=(), cleanup_dir=None):
    with Workload(name, *args) as w:
        r = w.wait_ready()
        try:
            img = dump_and_kill(w)
            rc, _, err = restore(img, "-d", *extra)
            check(rc == 0, f"restore of {name} failed:\n{err}")
            check(pid_alive(r["pid"]), "the restored root is not running")
            try:
                verify_restored(w, r["pid"])
            finally:
                kill_session(r["pid"])
        finally:
            if cleanup_dir and r.get(cleanup_dir):
                shutil.rmtree(r[cleanup_dir], ignore_errors=True)
        return r


def test_unix_real_restore_names():
    # Listener with backlog and pending connections (with data, one closed), abstract
    # name with NULs, autobound, relative name, renamed and unlinked socket files.
    restore_and_verify("unix_names", cleanup_dir="dir")


def test_unix_real_restore_every_case():
    # Pairs across tasks, shutdowns, half-closed, SO_PEERCRED, dgram fan-in with senders'
    # names, names on both ends of accepted connections.
    restore_and_verify("unix_restore", cleanup_dir="dir")


def test_unix_real_restore_queues_scm_rights():
    # Byte-exact queues with boundaries, zero-length records, SCM_RIGHTS of a regular file,
    # a pipe and a socket no task holds, SCM_CREDENTIALS, peek offsets, options, BPF filter.
    restore_and_verify("unix_queues", "linked")
