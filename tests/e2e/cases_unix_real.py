"""Unix socket restore for real (issue 5): each unix workload is dumped (and killed),
restored with `crpipe run restore -d` — memory, registers and all — and then told to check
itself: every queued byte and record boundary, SCM_RIGHTS files and SCM_CREDENTIALS,
names on both ends, peek offsets, options, pending connections, echo through every
connection. The workload fails if any of that were lost. Every process a test started is
killed at the end (the harness is the subreaper of the restored tree)."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from cases_process import dump_and_kill, restore
from harness import (CRPIPE, Workload, collect_images, same_images, check, dump, images_dir, pid_alive, reap, session_pids,
                     verify_restored)


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


def test_unix_real_restore_leftovers():
    # A dgram socketpair end whose other end closed, with its datagrams queued; a receiver
    # whose socket file was unlinked and replaced by a FIFO (set aside for the bind).
    restore_and_verify("unix_leftovers", cleanup_dir="dir")


def test_unix_many_sockets_restore_within_the_fd_limit():
    # 1,200 sockets in one task whose RLIMIT_NOFILE is 1,264, restored by a crpipe whose
    # hard limit is 1,600: each socket goes straight to its fd number (a restore that kept
    # every new socket above the task's highest fd would need about 2,400). Dumped once, so
    # a datagram queue with an empty message between two others comes back whole too (the
    # fd-table iterator's path peeks it on a grabbing thread).
    with Workload("unix_many", "600", "midzero") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        rc, _, err = restore(img, "-d", prefix=("prlimit", "--nofile=1600:1600"))
        check(rc == 0, f"restore under RLIMIT_NOFILE 1600 failed:\n{err}")
        try:
            verify_restored(w, r["pid"])
        finally:
            kill_session(r["pid"])


def test_a_large_fd_table_is_read_by_the_bpf_iterator():
    # 4,200 sockets: the task's fd table (FDSize 8,192) is read by the fd-table iterator
    # instead of /proc (the log says so, and each fd's flags, position and mount id come
    # from it); the restore and the workload's own checks then tell that nothing was lost.
    with Workload("unix_many", "2100") as w:
        r = w.wait_ready()
        # The same fds through /proc (--no-fd-table-bpf) give the same images.
        a = collect_images(w.pid, os.path.join(w.tmp, "img-iterator"))
        b = collect_images(w.pid, os.path.join(w.tmp, "img-proc"), "--no-fd-table-bpf")
        d = same_images(a, b, ("fdinfo-", "files", "sk-queues"))
        check(d is None, f"{d} differs between the iterator and /proc")
        # crpipe run dump --no-bpf: no iterator reads the table.
        nobpf = os.path.join(w.tmp, "img-nobpf")
        os.mkdir(nobpf)
        nolog = os.path.join(w.tmp, "dump-nobpf.log")
        dump(w.pid, nobpf, "--no-bpf", "-v", "4", "-o", nolog)
        with open(nolog) as f:
            text = f.read()
        check("fd tables: read through /proc (--no-fd-table-bpf)" in text and
              "read by a BPF iterator" not in text,
              "run dump --no-bpf still read the fd table by BPF:\n" +
              "\n".join(l for l in text.splitlines() if "fd tables" in l))
        img = images_dir(w)
        log = os.path.join(w.tmp, "dump.log")
        dump(w.pid, img, "-v", "4", "-o", log, leave_running=False)
        w.proc.wait(timeout=30)
        with open(log) as f:
            text = f.read()
        check("fd tables: read by a BPF iterator" in text,
              "the large fd table was not read by the iterator:\n" +
              "\n".join(l for l in text.splitlines() if "fd tables" in l))
        deadline = time.monotonic() + 10
        while session_pids(r["pid"]) and time.monotonic() < deadline:
            reap()
            time.sleep(0.01)
        rc, _, err = restore(img, "-d", prefix=("prlimit", "--nofile=9000:9000"))
        check(rc == 0, f"restore failed:\n{err}")
        try:
            verify_restored(w, r["pid"])
        finally:
            kill_session(r["pid"])


def test_unix_real_restore_queues_scm_rights():
    # Byte-exact queues with boundaries, zero-length records, SCM_RIGHTS of a regular file,
    # a pipe and a socket no task holds, SCM_CREDENTIALS, peek offsets, options, BPF filter.
    restore_and_verify("unix_queues", "linked")


def test_unix_real_restore_queues_from_a_stream():
    # The same queues restored from a stage stream (through a pipe) instead of -D: the
    # queued bytes come in the stream, are kept in a memfd and mapped by the restorer.
    with Workload("unix_queues", "linked") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        feed = subprocess.Popen([CRPIPE, "stage", "serialize", "--reverse", "-D", img, "-o", "-"],
                                stdout=subprocess.PIPE)
        try:
            p = subprocess.run([CRPIPE, "run", "restore", "--stream", "-", "-d"],
                               stdin=feed.stdout, capture_output=True, text=True, timeout=120)
        finally:
            feed.stdout.close()
            feed.wait(timeout=30)
        check(p.returncode == 0, f"restore --stream - of unix_queues failed:\n{p.stderr}")
        try:
            verify_restored(w, r["pid"])
        finally:
            kill_session(r["pid"])


class OutsideServers:
    """A dgram server and stream listeners outside the dumped tree (in the test itself)."""

    def __init__(self, tmp):
        self.dgram_path = os.path.join(tmp, "outside-dgram.sock")
        self.stream_path = os.path.join(tmp, "outside-stream.sock")
        self.stream_path2 = os.path.join(tmp, "outside-stream2.sock")
        self.dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dgram.bind(self.dgram_path)
        self.listeners = []
        for p in (self.stream_path, self.stream_path2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(p)
            s.listen(4)
            self.listeners.append(s)
        self.conns = []

    def accept(self, which, timeout=10):
        self.listeners[which].settimeout(timeout)
        c, _ = self.listeners[which].accept()
        self.conns.append(c)
        return c

    def echo_one(self, conn):
        """In a thread: reads one byte, answers it upper-cased."""
        def run():
            conn.settimeout(30)
            try:
                b = conn.recv(1)
                if b:
                    conn.sendall(b.upper())
            except OSError:
                pass
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def close(self):
        for s in [self.dgram, *self.listeners, *self.conns]:
            s.close()


def extern_round_trip(dead):
    tmp = tempfile.mkdtemp(prefix="crpipe-outside-")
    srv = OutsideServers(tmp)
    try:
        args = [srv.dgram_path, srv.stream_path] + (["dead"] if dead else [])
        with Workload("unix_extern", *args) as w:
            r = w.wait_ready()
            first = srv.accept(0)
            dgram, stream = r["dgram_client"]["ino"], r["stream_client"]["ino"]
            img = images_dir(w)
            dump(w.pid, img, "--ext-unix-sk", f"--ext-unix-sk={stream}", leave_running=False)
            w.proc.wait(timeout=10)
            reap()
            check(first.recv(1) == b"", "the dumped tree's connection did not close")
            # Without a way to reconnect the stream socket, the restore refuses, naming it.
            rc, _, err = restore(img, "-d", "--ext-unix-sk")
            check(rc != 0 and f"ino {stream}" in err and "--ext-unix-sk-dead" in err
                  and "--ext-unix-sk=" in err, f"not refused clearly:\n{err}")
            check(not pid_alive(r["pid"]), "a refused restore left the root running")
            how = (["--ext-unix-sk-dead", str(stream)] if dead
                   else [f"--ext-unix-sk={stream}={srv.stream_path2}"])
            rc, _, err = restore(img, "-d", "--ext-unix-sk", *how)
            check(rc == 0, f"restore failed:\n{err}")
            try:
                if not dead:
                    # The restored socket connected to PATH, not to its dump-time peer.
                    srv.echo_one(srv.accept(1))
                verify_restored(w, r["pid"])
            finally:
                kill_session(r["pid"])
            srv.dgram.settimeout(5)
            check(srv.dgram.recv(16) == b"ping",
                  "the restored dgram client did not reach the outside server by name")
    finally:
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_unix_real_restore_ext_unix_sk_reconnect():
    # --ext-unix-sk: a one-way dgram client reconnected by name to a server outside the
    # tree; --ext-unix-sk=INO=PATH: a stream socket reconnected to another listener.
    extern_round_trip(dead=False)


def test_unix_real_restore_ext_unix_sk_dead():
    # --ext-unix-sk-dead INO: the stream socket comes back as a closed connection.
    extern_round_trip(dead=True)


def test_unix_name_map_beside_original():
    # --unix-name-map OLD/=NEW/: the copy binds under NEW while a socket (standing for the
    # running original) still holds the old listener's path; the accepted end's name and
    # the client's peer name are the new path. Checked from outside (--stop-before memory).
    from cases_unix_restore import restore_stopped, steal_fd, kill_tree
    with Workload("unix_restore") as w:
        r = w.wait_ready()
        newdir = r["dir"] + ".copy"
        squatter = None
        try:
            img = dump_and_kill(w)
            os.makedirs(r["dir"], exist_ok=True)
            squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(r["listener"]):
                os.unlink(r["listener"])
            squatter.bind(r["listener"])
            squatter.listen(1)
            before = os.stat(r["listener"]).st_ino
            root = restore_stopped(img, "--unix-name-map", r["dir"] + "/=" + newdir + "/")
            try:
                new = os.path.join(newdir, os.path.basename(r["listener"]))
                acc = steal_fd(r["pid"], r["accepted"])
                cli = steal_fd(r["child"], r["child_client"])
                check(acc.getsockname() == new, f"accepted end's name {acc.getsockname()!r}")
                check(cli.getpeername() == new, f"client's peer name {cli.getpeername()!r}")
                acc.close()
                cli.close()
                check(os.stat(r["listener"]).st_ino == before,
                      "the original's socket file was touched")
                check(os.path.exists(new), f"{new} not bound")
            finally:
                kill_tree(root)
        finally:
            if squatter:
                squatter.close()
            shutil.rmtree(r["dir"], ignore_errors=True)
            shutil.rmtree(newdir, ignore_errors=True)


def test_unix_real_restore_inherit_fd_socket():
    # --external unix[INO] on dump; on restore the outside server hands in a new socketpair
    # end with --inherit-fd fd[N]:socket:[INO], which the restored task holds at the dumped
    # fd number and echoes through. Missing and unmatched --inherit-fd are errors naming it.
    tmp = tempfile.mkdtemp(prefix="crpipe-outside-")
    srv = OutsideServers(tmp)
    inner = outer = None
    try:
        with Workload("unix_extern", srv.dgram_path, srv.stream_path) as w:
            r = w.wait_ready()
            srv.accept(0)
            stream = r["stream_client"]["ino"]
            img = images_dir(w)
            dump(w.pid, img, "--ext-unix-sk", f"--external=unix[{stream}]", leave_running=False)
            w.proc.wait(timeout=10)
            reap()
            key = f"socket:[{stream}]"
            rc, _, err = restore(img, "-d", "--ext-unix-sk")
            check(rc != 0 and key in err and "--inherit-fd" in err, f"missing not named:\n{err}")
            inner, outer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            n = inner.fileno()
            rc, _, err = restore(img, "-d", "--ext-unix-sk", "--inherit-fd", f"fd[{n}]:{key}",
                                 "--inherit-fd", f"fd[{n}]:socket:[1]")
            check(rc != 0 and "socket:[1]" in err and "matches nothing" in err,
                  f"unmatched --inherit-fd not named:\n{err}")
            check(not pid_alive(r["pid"]), "a refused restore left the root running")
            p = subprocess.run([CRPIPE, "run", "restore", "-D", img, "-d", "--ext-unix-sk",
                                "--inherit-fd", f"fd[{n}]:{key}"], pass_fds=[n],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=120)
            check(p.returncode == 0, f"restore failed:\n{p.stderr}")
            inner.close()
            try:
                srv.echo_one(outer)
                verify_restored(w, r["pid"])
            finally:
                kill_session(r["pid"])
            srv.dgram.settimeout(5)
            check(srv.dgram.recv(16) == b"ping", "dgram client not reconnected")
    finally:
        for s in (inner, outer):
            if s:
                s.close()
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)
