"""Process restore (issue 4): each workload is dumped (and killed), restored with
`crpipe run restore -d`, then told to check itself; it must report PASS from the restored
memory, registers, threads, signals, files and pipes. Each workload fails if the state it
checks were lost."""
import hashlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

from harness import (restore_attached, CRPIPE, collect_images, same_images, WORKLOADS, Workload, check, dump, dump_and_kill, images_dir,
                     pid_alive, reap, restore, session_pids, verify_restored)


def round_trip(name, *args, tmp=None):
    with Workload(name, *args, tmp=tmp) as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        pidfile = os.path.join(w.tmp, "restored.pid")
        rc, _, err = restore(img, "-d", "--pidfile", pidfile)
        check(rc == 0, f"restore of {name} failed:\n{err}")
        with open(pidfile) as f:
            check(int(f.read()) == r["pid"], "pidfile")
        check(pid_alive(r["pid"]), "the restored root is not running")
        verify_restored(w, r["pid"])


def test_counter_loop():
    round_trip("task_counter")


def test_static_binary():
    round_trip("task_counter_static")


def test_big_memory_256mib():
    round_trip("task_bigmem", 256)


def test_comm_nice_robust_list_tid_address_personality_creds_prctl():
    # tests/workloads/task_identity.c: per thread comm, nice, robust list, tid address; per
    # process personality, no_new_privs, dumpable, THP disabled, groups, gids, capabilities.
    round_trip("task_identity")


def test_sessions_and_process_groups_inside_the_tree():
    # tests/workloads/task_sessions.c: a child with a session of its own holding two process
    # groups' members, and a group leader in the root's session.
    round_trip("task_sessions")


def test_fpu_sse_avx_state_of_a_thread_in_a_syscall():
    # tests/workloads/task_xstate.c: xmm/ymm (zmm16, zmm31, k1 with AVX-512), MXCSR and the
    # x87 control word held by a thread blocked in read() from its own asm.
    round_trip("task_xstate")


def test_page_runs_and_private_dev_zero():
    # Runs of pages across the collector's pagemap reads, holes at their boundaries, and a
    # child whose private /dev/zero mapping sends it the late way (tests/workloads/task_runs.c).
    round_trip("task_runs")


def test_restore_right_after_the_dump_returns():
    # `crpipe run dump` returns once the killed tree has exited: a 512 MiB task takes a
    # while to tear its memory down, and a restore started at once must not find its pid
    # still running. The harness reaps the dead root while the restore waits for that.
    with Workload("task_bigmem", 512) as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img, leave_running=False)
        p = subprocess.Popen([CRPIPE, "run", "restore", "-D", img, "-d"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        w.proc.wait(timeout=30)
        _, err = p.communicate(timeout=120)
        check(p.returncode == 0, f"restore right after the dump failed:\n{err}")
        verify_restored(w, r["pid"])


def test_signals_in_flight_while_freezing():
    # 16 threads queue SIGRTMIN to themselves without pause, numbered; the freeze stops some
    # of them holding a signal already taken from the queue. Restored, each thread must
    # have handled 1..highest with no gap: such a signal is kept at the head of its queue.
    # A freeze catches one in about every other dump: five dumps.
    for _ in range(5):
        with Workload("task_sigstorm") as w:
            r = w.wait_ready()
            time.sleep(0.05)
            img = dump_and_kill(w)
            rc, _, err = restore(img, "-d")
            check(rc == 0, f"restore failed:\n{err}")
            verify_restored(w, r["pid"])


def test_threads_mutex_condvar_tls():
    round_trip("task_threads")


def test_pipes_three_generations():
    round_trip("task_pipetree")


def test_signals_handlers_blocked_pending():
    # The workload sets a parent-death signal, which the restore gives back: its parent is
    # crpipe now, so crpipe stays (no -d) and exits with the root's status.
    with Workload("task_signals") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        p = restore_attached(img, r["pid"])
        verify_restored(w, r["pid"])
        _, err = p.communicate(timeout=30)
        check(p.returncode == 0, f"crpipe exited {p.returncode}:\n{err}")


def test_sigtrap_caught_ignored_pending():
    round_trip("task_sigtrap")


def test_memory_shared_anon_brk_cow_madvise():
    round_trip("task_memory")


def test_file_mappings():
    # Private file mappings hold file pages (not stored) beside copied-on-write ones
    # (stored): PAGEMAP_SCAN tells them apart as the pagemap entries do.
    with Workload("task_filemap") as w:
        w.wait_ready()
        a = collect_images(w.pid, os.path.join(w.tmp, "img-scan"))
        b = collect_images(w.pid, os.path.join(w.tmp, "img-entries"), "--no-pagemap-scan")
        d = same_images(a, b, ("pagemap-",))
        check(d is None, f"{d}: PAGEMAP_SCAN and pagemap entries differ")
    round_trip("task_filemap")


def test_brk_malloc_fork_after_restore():
    round_trip("task_grow")


def test_vdso_clock_gettime():
    round_trip("task_vdso")


def test_cxx_throw():
    round_trip("task_throw")


def test_files_and_pipes_tree():
    with Workload("files_pipes", ".") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        rc, _, err = restore(img, "-d")
        check(rc == 0, f"restore failed:\n{err}")
        verify_restored(w, r["pid"])


def test_dump_restore_twice():
    """dump -> restore -> dump -> restore of the same tree."""
    with Workload("task_counter") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        rc, _, err = restore(img, "-d")
        check(rc == 0, f"first restore failed:\n{err}")
        time.sleep(0.1)
        img2 = os.path.join(w.tmp, "images2")
        os.makedirs(img2)
        dump(r["pid"], img2, leave_running=False)
        deadline = time.monotonic() + 10
        while pid_alive(r["pid"]) and time.monotonic() < deadline:
            reap()
            time.sleep(0.01)
        rc, _, err = restore(img2, "-d")
        check(rc == 0, f"second restore failed:\n{err}")
        verify_restored(w, r["pid"])


def test_wait_for_root_exit_status():
    """Without -d crpipe waits for the restored root and exits with its status."""
    with Workload("task_counter") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        p = restore_attached(img, r["pid"])
        os.kill(r["pid"], 10)  # SIGUSR1: the workload checks itself and exits 0
        out, err = p.communicate(timeout=30)
        check(p.returncode == 0, f"crpipe exited {p.returncode}:\n{err}\n{w.output()}")
        check(w.output().splitlines()[-1].startswith("PASS"), w.output())


def test_taken_pid_refused_nothing_left():
    with Workload("task_counter") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)  # --leave-running: the pid stays taken
        digest = {n: hashlib.sha256(open(os.path.join(img, n), "rb").read()).hexdigest()
                  for n in os.listdir(img)}
        rc, _, err = restore(img, "-d")
        check(rc != 0 and f"pid {r['pid']} is taken" in err, f"taken pid not refused:\n{err}")
        after = {n: hashlib.sha256(open(os.path.join(img, n), "rb").read()).hexdigest()
                 for n in os.listdir(img)}
        check(after == digest, "images changed")
        w.verify()


def test_big_memory_from_a_stream():
    """-D maps pages-N.img; a restore from a stream must still take the pages from the
    stream, front to back (here through a pipe from `stage serialize --reverse`)."""
    with Workload("task_bigmem", 48) as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        feed = subprocess.Popen([CRPIPE, "stage", "serialize", "--reverse", "-D", img, "-o", "-"],
                                stdout=subprocess.PIPE)
        p = subprocess.run([CRPIPE, "run", "restore", "--stream", "-", "-d"], stdin=feed.stdout,
                           capture_output=True, text=True, timeout=120)
        feed.stdout.close()
        check(feed.wait(timeout=30) == 0, "stage serialize --reverse failed")
        check(p.returncode == 0, f"restore --stream - failed:\n{p.stderr}")
        verify_restored(w, r["pid"])

def digest_dir(img):
    return {n: hashlib.sha256(open(os.path.join(img, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(img))}


def test_memory_phase_failure_kills_everything():
    """A file mapped by the last task is removed between dump and restore: the restore
    fails in the memory phase, after the root and the first child were made; the error
    names the task and the file, every restored process is gone, the images unchanged."""
    with Workload("task_mapgone") as w:
        r = w.wait_ready()
        img = dump_and_kill(w)
        digest = digest_dir(img)
        os.unlink(os.path.join(w.tmp, "mapped.dat"))
        log = os.path.join(w.tmp, "restore.log")
        rc, _, err = restore(img, "-d", "-v", "3", "-o", log)
        last = r["pids"][2]
        check(rc != 0, f"the restore succeeded without the mapped file:\n{err}")
        check(f"pid {last}" in err and "mapped.dat" in err and "mapping" in err,
              f"the failure does not name task {last} and the mapped file:\n{err}")
        check("killed" in err, f"no word about the created processes:\n{err}")
        with open(log) as f:
            check("phase share-fds" in f.read(), "the restore did not get to the memory phase")
        for pid in r["pids"]:
            check(not pid_alive(pid), f"pid {pid} of the failed restore still runs")
        check(digest_dir(img) == digest, "images changed")


def read_pty(master, want, timeout=20):
    """Reads the pty master until `want` shows up; returns everything read."""
    out = b""
    deadline = time.monotonic() + timeout
    while want.encode() not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
    check(want.encode() in out, f"{want!r} never came on the terminal:\n{out.decode(errors='replace')}")
    return out.decode(errors="replace")


def test_shell_job_on_a_pty():
    """A job of a shell on a terminal (stdout and stderr on the pty, in the shell's session
    and group): refused without --shell-job; with it, restored by a crpipe that runs in a
    new shell session on the same terminal, into crpipe's session and group, writing on
    the terminal again; crpipe waits for it and exits with its status."""
    shell_job_round_trip(same_terminal=True)


def test_shell_job_in_another_terminal():
    """The job's terminal is closed after the dump (its /dev/pts/N is gone); a crpipe
    running in another terminal restores the job there, as a shell gives a job its own."""
    shell_job_round_trip(same_terminal=False)


def shell_job_round_trip(same_terminal):
    tmp = tempfile.mkdtemp(prefix="crpipe-shelljob-")
    master, slave = os.openpty()
    tty = os.ttyname(slave)
    open_fds = [master, slave]
    procs = []
    try:
        sh = subprocess.Popen(["setsid", "-c", "sh", "-c",
                               f"{WORKLOADS}/task_counter & echo JOB $!; wait"],
                              stdin=slave, stdout=slave, stderr=slave, cwd=tmp)
        procs.append(sh)
        out = read_pty(master, "READY")
        job = int(out.split("JOB ")[1].split()[0])
        check(os.readlink(f"/proc/{job}/fd/1") == tty, "the job is not on the terminal")
        img = os.path.join(tmp, "images")
        os.makedirs(img)
        dump(job, img, leave_running=False)
        sh.wait(timeout=10)
        deadline = time.monotonic() + 10
        while pid_alive(job) and time.monotonic() < deadline:
            reap()
            time.sleep(0.01)
        rc, _, err = restore(img, "-d")
        check(rc != 0 and "--shell-job" in err, f"a shell job restored without --shell-job:\n{err}")
        if not same_terminal:
            # The new terminal is opened while the old one exists (so it gets another
            # index), then the old one is closed for good.
            master2, slave2 = os.openpty()
            for fd in open_fds:
                os.close(fd)
            old_tty, tty = tty, os.ttyname(slave2)
            master, slave = master2, slave2
            open_fds = [master, slave]
            check(not os.path.exists(old_tty) and tty != old_tty, f"{old_tty} still exists")
        # A new shell session on the terminal restores it as its job.
        rs = subprocess.Popen(["setsid", "-c", CRPIPE, "run", "restore", "-D", img,
                               "--shell-job"],
                              stdin=slave, stdout=slave, stderr=slave, cwd=tmp)
        procs.append(rs)
        deadline = time.monotonic() + 20
        while not pid_alive(job) and time.monotonic() < deadline:
            time.sleep(0.01)
        check(pid_alive(job), "the job was not restored:\n" + read_pty_now(master))
        time.sleep(0.1)
        with open(f"/proc/{job}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        check(int(fields[3]) == rs.pid and int(fields[2]) == rs.pid,
              f"the job is in session {fields[3]} group {fields[2]}, not crpipe's {rs.pid}")
        check(os.readlink(f"/proc/{job}/fd/1") == tty,
              f"the restored job is on {os.readlink(f'/proc/{job}/fd/1')}, not on {tty}")
        os.kill(job, signal.SIGUSR1)
        read_pty(master, "PASS")
        check(rs.wait(timeout=30) == 0, f"crpipe exited {rs.returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in [p.pid for p in procs]:
            for q in session_pids(pid):
                try:
                    os.kill(q, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        reap()
        for fd in open_fds:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


def read_pty_now(master):
    out = b""
    while select.select([master], [], [], 0.1)[0]:
        try:
            out += os.read(master, 4096)
        except OSError:
            break
    return out.decode(errors="replace")


def test_thread_tid_taken_refused():
    """A tid of a dumped thread that another process holds is refused before anything is
    created, naming the tid and its thread's process."""
    with Workload("task_threads") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)  # --leave-running
        tids = sorted(int(t) for t in os.listdir(f"/proc/{w.pid}/task") if int(t) != w.pid)
        w.proc.kill()
        w.proc.wait(timeout=10)
        reap()
        # Something else now holds the first thread's tid: a process of ours, cloned onto it.
        taker = subprocess.Popen(["python3", "-c", f"""
import ctypes, os, struct, time
libc = ctypes.CDLL(None, use_errno=True)
tid = ctypes.c_int({tids[0]})
args = struct.pack("QQQQQQQQQQQ", 0, 0, 0, 0, 17, 0, 0, 0, ctypes.addressof(tid), 1, 0)
buf = ctypes.create_string_buffer(args)
r = libc.syscall(435, buf, len(args))
if r == 0:
    time.sleep(60)
    os._exit(0)
print("TAKEN" if r > 0 else "FAILED", ctypes.get_errno(), flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
        try:
            line = taker.stdout.readline()
            check(line.startswith("TAKEN"), f"could not take tid {tids[0]}: {line}")
            rc, _, err = restore(img, "-d")
            check(rc != 0 and f"tid {tids[0]} (a thread of pid {r['pid']})" in err
                  and "taken" in err, f"taken thread tid not refused:\n{err}")
            check(not pid_alive(r["pid"]), "the restore left the root behind")
        finally:
            for pid in (tids[0], taker.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            taker.wait()
            reap()
