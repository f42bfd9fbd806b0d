"""The collector's BPF fast path against its syscall path: each workload is dumped twice,
first through BPF (--bpf), then with --no-bpf, and every image must decode to the same
entries, field by field. The BPF dump comes first on purpose: the syscall path's peek marks
a zero-length datagram as peeked, which hides it from later peeks at an offset (the kernel's
rule, which both paths follow), while the BPF path changes nothing. Then the workload checks
that neither dump consumed or changed anything."""
import json
import os
import shutil
import subprocess
import tempfile
import time

from harness import BUILD, Workload, check, crpipe, images_dir


def decoded(images):
    out = {}
    for name in sorted(os.listdir(images)):
        if not name.endswith(".img"):
            continue
        _, text, _ = crpipe("show", "--json", os.path.join(images, name), check_rc=0)
        out[name] = json.loads(text)
    return out


def diff(a, b, path=""):
    """The first difference between two decoded images, as a readable path, or None."""
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'the BPF dump' if k in a else 'the --no-bpf dump'}"
            d = diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} entries != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def collect(pid, images, flag):
    """The collector alone (it takes --bpf; crpipe passes only --no-bpf, the default), then
    the serializer into `images`; returns the collector's log."""
    stream, log = images + ".stream", images + ".log"
    c = subprocess.run([os.path.join(BUILD, "collector", "crpipe-collector"), "-t", str(pid),
                        "--out", stream, "-R", "-v", "4", "--log", log, flag],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    with open(log) as f:
        text = f.read()
    check(c.returncode == 0, f"collector {flag} exited {c.returncode}:\n{c.stderr}\n{text[-3000:]}")
    s = subprocess.run([os.path.join(BUILD, "serializer", "crpipe-serializer"), "write",
                        "-D", images, "--in", stream],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    check(s.returncode == 0, f"serializer exited {s.returncode}:\n{s.stderr}")
    return text


def dump_both_ways(w):
    base = images_dir(w)
    fast, slow = os.path.join(base, "bpf"), os.path.join(base, "nobpf")
    os.makedirs(fast)
    os.makedirs(slow)
    log = collect(w.pid, fast, "--bpf")
    check("fast path off" not in log and "fast path:" in log,
          "the BPF fast path did not run:\n" + "\n".join(
              l for l in log.splitlines() if "fast path" in l))
    collect(w.pid, slow, "--no-bpf")
    a, b = decoded(fast), decoded(slow)
    # Peek state: a queue with SCM_RIGHTS is peeked with syscalls on both paths, and a
    # datagram peek marks a zero-length datagram as peeked, after which a peek at an offset
    # skips it (the workload still has it: it is only marked). So the second dump may lack
    # zero-length datagrams behind the head of a queue that the first one recorded. Those,
    # and only those, are left out of the comparison.
    for imgs in (a, b):
        q = imgs.get("sk-queues.img")
        if q:
            seen, kept = set(), []
            for m in q["entries"]:
                head = m["id_for"] not in seen
                seen.add(m["id_for"])
                if head or m["length"] != 0 or m.get("scm") or "ucred" in m:
                    kept.append(m)
            q["entries"] = kept
    # Register state is not the fast path's business and may move between two dumps of a
    # live task (the x87 bit of xstate_bv is set once the task touches the FPU again), so
    # each thread's registers are left out too.
    for imgs in (a, b):
        for name, img in imgs.items():
            if name.startswith("core-"):
                for e in img["entries"]:
                    e.pop("thread_info", None)
    check(sorted(a) == sorted(b), f"image files differ: {sorted(a)} vs {sorted(b)}")
    for name in a:
        d = diff(a[name], b[name], name)
        check(d is None, f"BPF and --no-bpf images differ at {d}")
    return a


def test_fastpath_unix_queues():
    with Workload("unix_queues") as w:
        w.wait_ready()
        imgs = dump_both_ways(w)
        check("sk-queues.img" in imgs, "no queues recorded")
        w.verify()


def test_fastpath_unix_names():
    with Workload("unix_names") as w:
        w.wait_ready()
        dump_both_ways(w)
        w.verify()


def test_fastpath_files_pipes():
    with Workload("files_pipes", ".") as w:
        w.wait_ready()
        dump_both_ways(w)
        w.verify()


def test_fastpath_many_sockets():
    """The benchmark's shape, small: stream pairs with 4 KiB queued in each socket, most of
    it in page fragments (the calibrated path)."""
    prog = os.path.join(BUILD, "scripts", "bench", "crpipe-bench-sockets")
    tmp = tempfile.mkdtemp(prefix="crpipe-fastpath-")
    out = open(os.path.join(tmp, "out"), "w")
    # stdout/stderr to a file: a pipe to this script would be a pipe end outside the tree
    p = subprocess.Popen([prog, "200", "4096"], stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()

    class Holder:
        pass
    w = Holder()
    w.pid, w.tmp = p.pid, tmp
    try:
        for _ in range(2000):
            with open(os.path.join(tmp, "out")) as f:
                if "READY" in f.read():
                    break
            time.sleep(0.01)
        imgs = dump_both_ways(w)
        total = sum(m["length"] for m in imgs["sk-queues.img"]["entries"])
        check(total == 200 * 4096, f"queued bytes {total}")
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
