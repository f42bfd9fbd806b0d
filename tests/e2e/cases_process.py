"""Process restore (issue 4): each workload is dumped (and killed), restored with
`crpipe run restore -d`, then told to check itself; it must report PASS from the restored
memory, registers, threads, signals, files and pipes. Each workload fails if the state it
checks were lost."""
import hashlib
import os
import subprocess
import time

from harness import (CRPIPE, Workload, check, dump, images_dir, pid_alive, reap, session_pids,
                     verify_restored)


def dump_and_kill(w):
    img = images_dir(w)
    dump(w.pid, img, leave_running=False)
    w.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while session_pids(w.pid) and time.monotonic() < deadline:
        reap()
        time.sleep(0.01)
    reap()
    return img


def restore(img, *extra, timeout=120):
    p = subprocess.run([CRPIPE, "run", "restore", "-D", img, *map(str, extra)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


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
        p = subprocess.Popen([CRPIPE, "run", "restore", "-D", img], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not pid_alive(r["pid"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        verify_restored(w, r["pid"])
        _, err = p.communicate(timeout=30)
        check(p.returncode == 0, f"crpipe exited {p.returncode}:\n{err}")


def test_memory_shared_anon_brk_cow_madvise():
    round_trip("task_memory")


def test_file_mappings():
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
        p = subprocess.Popen([CRPIPE, "run", "restore", "-D", img], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not pid_alive(r["pid"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
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
