"""Dump-side tests of process state (issue 4): threads, registers' images, signals, memory.

Each test dumps a workload with --leave-running, compares what `crpipe show --json` decoded
with the truth the workload printed (or /proc), then lets the workload verify itself."""
import os
import signal
import struct

from harness import Workload, check, collect_images, dump, images_dir, same_images, show

PAGE = 4096
VMA_ANON_SHARED = 1 << 8
VMA_FILE_PRIVATE = 1 << 6
VMA_AREA_HEAP = 1 << 5
MADV_DONTFORK, MADV_WIPEONFORK = 10, 18


def raw_bytes(s):
    """A bytes field as show --json prints it (one char per byte)."""
    return s.encode("latin-1")


def pagemap(images, name):
    """(pages_id, [(vaddr, nr_pages, offset in pages-N.img)]) of a pagemap image. Its first
    entry is the PagemapHead; show decodes it as an entry whose field 1 is pages_id."""
    entries = show(os.path.join(images, name))
    pages_id = int(entries[0]["vaddr"])
    out, off = [], 0
    for e in entries[1:]:
        n = int(e.get("nr_pages", e.get("compat_nr_pages")))
        out.append((int(e["vaddr"]), n, off))
        off += n * PAGE
    return pages_id, out


def read_pages(images, pages_id, runs, addr, length):
    """The bytes stored for [addr, addr + length), or None if any page is missing."""
    with open(os.path.join(images, f"pages-{pages_id}.img"), "rb") as f:
        data = f.read()
    out = b""
    a = addr
    while a < addr + length:
        for vaddr, n, off in runs:
            if vaddr <= a < vaddr + n * PAGE:
                take = min(addr + length - a, vaddr + n * PAGE - a)
                out += data[off + a - vaddr: off + a - vaddr + take]
                a += take
                break
        else:
            return None
    return out


def pattern(n, seed):
    return bytes((seed * 131 + i * 7) & 0xFF for i in range(n))


def overlaps(runs, start, end):
    return [r for r in runs if r[0] < end and r[0] + r[1] * PAGE > start]


def test_task_memory():
    with Workload("task_memory") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        pid, child = r["pid"], r["child"]
        pages_id, runs = pagemap(img, f"pagemap-{pid}.img")

        got = read_pages(img, pages_id, runs, r["pattern"], 3 * PAGE)
        check(got == pattern(3 * PAGE, 1), "the known pattern is not in pages-N.img where "
              "pagemap says")
        check(not overlaps(runs, r["big"], r["big"] + (64 << 20)),
              "pages of the untouched 64 MiB mapping were stored")
        check(read_pages(img, pages_id, runs, r["brk"] - PAGE, PAGE) == pattern(PAGE, 7),
              "the written brk page is missing")
        # The private file mapping: only the page written (copied on write) is stored.
        fm = r["fmap"]
        check(read_pages(img, pages_id, runs, fm + PAGE, PAGE) == pattern(PAGE, 9),
              "the copied-on-write page of the private file mapping is missing")
        check(not overlaps(runs, fm, fm + PAGE) and not overlaps(runs, fm + 2 * PAGE, fm + 3 * PAGE),
              "file pages that were only read were stored")

        mm = show(os.path.join(img, f"mm-{pid}.img"))[0]
        check(int(mm["mm_brk"]) == r["brk"], f"mm_brk {mm['mm_brk']:#x} != sbrk(0) {r['brk']:#x}")
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        check(int(mm["mm_start_brk"]) == int(stat[47 - 3]), "mm_start_brk != /proc/PID/stat")
        check(int(mm["mm_start_code"]) == int(stat[26 - 3]), "mm_start_code != /proc/PID/stat")
        vmas = {int(v["start"]): v for v in mm["vmas"]}
        files = {e["id"]: e for e in show(os.path.join(img, "files.img"))}
        check(files[mm["exe_file_id"]]["reg"]["name"] == os.path.realpath(
            os.path.join(os.path.dirname(__file__), "..", "..", "build", "tests", "workloads",
                         "task_memory")) or files[mm["exe_file_id"]]["reg"]["name"].endswith(
            "/task_memory"), "exe_file_id does not name the executable")
        fv = vmas[fm]
        check(fv["status"] & VMA_FILE_PRIVATE, f"file mapping status {fv['status']:#x}")
        check(files[fv["shmid"]]["reg"]["name"].endswith("/task_memory_file"),
              "the private file mapping's shmid is not its file")
        check(int(vmas[r["dontfork"]]["madv"]) & (1 << MADV_DONTFORK), "MADV_DONTFORK lost")
        check(int(vmas[r["wipe"]]["madv"]) & (1 << MADV_WIPEONFORK), "MADV_WIPEONFORK lost")
        check(any(v["status"] & VMA_AREA_HEAP for v in mm["vmas"]), "no heap VMA")

        # Shared anonymous memory: one shmem pagemap, shared by both processes' VMAs.
        sv = vmas[r["shm"]]
        check(sv["status"] & VMA_ANON_SHARED, f"shared mapping status {sv['status']:#x}")
        cmm = show(os.path.join(img, f"mm-{child}.img"))[0]
        cv = {int(v["start"]): v for v in cmm["vmas"]}[r["shm"]]
        check(cv["shmid"] == sv["shmid"], "parent and child shared mapping ids differ")
        shmem = [n for n in os.listdir(img) if n.startswith("pagemap-shmem-")]
        check(shmem == [f"pagemap-shmem-{sv['shmid']}.img"], f"shmem pagemaps {shmem}")
        sid, sruns = pagemap(img, shmem[0])
        check(sum(n for _, n, _ in sruns) == 5, f"{sum(n for _, n, _ in sruns)} shared pages stored, want 5")
        for i in range(5):
            check(read_pages(img, sid, sruns, i * 10 * PAGE, PAGE) == pattern(PAGE, 100 + i),
                  f"shared page {i} content")
        _, cruns = pagemap(img, f"pagemap-{child}.img")
        check(not overlaps(cruns, r["shm"], r["shm"] + 256 * PAGE),
              "the child's pagemap stores shared pages again")
        w.verify()


def test_task_signals():
    with Workload("task_signals") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        pid = r["pid"]
        cores = {t: show(os.path.join(img, f"core-{t}.img"))[0] for t in r["tids"]}
        check(len(cores) == 3, "three threads, three core images")
        check(len([n for n in os.listdir(img) if n.startswith("core-")]) == 3, "core images")
        leader = cores[pid]
        tc = leader["tc"]
        check(len(tc["sigactions"]) == 62, f"{len(tc['sigactions'])} sigactions, want 62")

        def sa(sig):  # sigactions skip SIGKILL (9) and SIGSTOP (19)
            i = sig - 1 - (sig > 9) - (sig > 19)
            return tc["sigactions"][i]
        usr2 = sa(r["usr2"])
        check(int(usr2["sigaction"]) == r["handler"], "SIGUSR2 handler address")
        check(int(usr2["flags"]) & (4 | 0x10000000) == (4 | 0x10000000),
              f"SIGUSR2 flags {int(usr2['flags']):#x} lack SA_SIGINFO|SA_RESTART")
        check(int(usr2["mask"]) == 1 << (signal.SIGINT - 1), f"SIGUSR2 mask {usr2['mask']}")
        check(int(sa(r["rt"])["sigaction"]) == r["rt_handler"], "SIGRTMIN+1 handler")
        check(int(sa(signal.SIGPIPE)["sigaction"]) == 1, "SIG_IGN of SIGPIPE")

        blocked = (1 << (signal.SIGUSR1 - 1)) | (1 << (r["usr2"] - 1)) | (1 << (r["rt"] - 1))
        for t, c in cores.items():
            check(int(c["thread_core"]["blk_sigset"]) & blocked == blocked, f"tid {t} mask")
            check(c["thread_info"]["gpregs"]["fs_base"] != 0, f"tid {t} fs_base")
        shared = [raw_bytes(s["siginfo"]) for s in tc.get("signals_s", {}).get("signals", [])]
        check(len(shared) == 1 and struct.unpack_from("i", shared[0])[0] == r["rt"],
              f"process-wide pending: {len(shared)} siginfos")
        # si_value of a queued signal sits at offset 24 of siginfo_t (after pid, uid).
        check(struct.unpack_from("i", shared[0], 24)[0] == 4242, "queued si_value")
        private = [raw_bytes(s["siginfo"])
                   for s in leader["thread_core"].get("signals_p", {}).get("signals", [])]
        check([struct.unpack_from("i", p)[0] for p in private] == [r["usr2"]],
              "thread-private pending SIGUSR2")
        sas = leader["thread_core"]["sas"]
        check(int(sas["ss_sp"]) == r["altstack"] and int(sas["ss_size"]) == r["altsize"],
              f"sigaltstack {sas}")
        virt = tc["timers"]["virt"]
        check(int(virt["isec"]) == 1000 and int(virt["iusec"]) == 500, f"ITIMER_VIRTUAL {virt}")
        nofile = tc["rlimits"]["rlimits"][7]
        check(int(nofile["cur"]) == 777 and int(nofile["max"]) == 888, f"RLIMIT_NOFILE {nofile}")
        check(tc.get("child_subreaper") is True, "child_subreaper")
        check(leader["thread_core"]["pdeath_sig"] == signal.SIGHUP, "pdeath_sig")
        check(leader["thread_core"]["creds"]["uid"] == os.getuid(), "creds uid")
        check(tc["comm"] == "task_signals", f"comm {tc['comm']}")
        ids = leader["ids"]
        check(ids["net_ns_id"] == os.stat(f"/proc/{pid}/ns/net").st_ino, "net ns id")
        check(int(leader["thread_info"]["clear_tid_addr"]) != 0, "clear_tid_addr")
        fs = show(os.path.join(img, f"fs-{pid}.img"))[0]
        check(fs["umask"] == 0o27, f"umask {fs['umask']:o}")
        files = {e["id"]: e for e in show(os.path.join(img, "files.img"))}
        check(files[fs["cwd_id"]]["reg"]["name"] == os.path.realpath(w.tmp), "cwd")
        check(files[fs["root_id"]]["reg"]["name"] == "/", "root")
        w.verify()


def test_dump_leaves_mappings_and_fds_as_they_were():
    """The dump injects syscalls into each task (with a scratch mapping of its own): after a
    dump with --leave-running every task has the same mappings and fds as before, the mm
    image lists exactly those mappings (none of the dump's own), and the pages stored are
    the task's."""
    with Workload("task_memory") as w:
        r = w.wait_ready()
        pids = [r["pid"], r["child"]]

        def state(pid):
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
            return maps, sorted((n, os.readlink(f"/proc/{pid}/fd/{n}"))
                                for n in os.listdir(f"/proc/{pid}/fd"))

        before = {p: state(p) for p in pids}
        img = images_dir(w)
        dump(w.pid, img)
        for p in pids:
            maps, fds = state(p)
            check(maps == before[p][0], f"pid {p}: mappings changed by the dump:\n{maps}")
            check(fds == before[p][1], f"pid {p}: fds changed by the dump: {fds}")
            mm = show(os.path.join(img, f"mm-{p}.img"))[0]
            starts = sorted(int(v["start"]) for v in mm["vmas"])
            real = sorted(int(line.split("-")[0], 16) for line in maps.splitlines())
            check(starts == real, f"pid {p}: the mm image lists {len(starts)} mappings, "
                                  f"/proc/{p}/maps {len(real)}")
        pages_id, runs = pagemap(img, f"pagemap-{r['pid']}.img")
        check(read_pages(img, pages_id, runs, r["pattern"], 3 * PAGE) == pattern(3 * PAGE, 1),
              "the known pattern is not in pages-N.img")
        w.verify()


def test_sigtrap_left_as_it_was():
    """The collector's injected syscalls single-step where SIGTRAP is neither ignored nor
    pending: a task's SIGTRAP handler, an ignored SIGTRAP and a pending one all stay as
    they were after a dump with --leave-running (the workload checks each)."""
    with Workload("task_sigtrap") as w:
        w.wait_ready()
        dump(w.pid, images_dir(w))
        w.verify()


# Where the collector's pagemap reads of a mapping end: 256 pages, then 8 times more each.
PIECE_ENDS = (256, 256 + 2048, 256 + 2048 + 16384, 256 + 2048 + 16384 + 65536)


def runs_task_runs_writes(pages):
    """The (first page, pages) runs task_runs.c writes: its want(i), merged, and split where
    a pagemap read ends (an entry goes before its pages, so a run still open there ends)."""
    def want(i):
        return (250 <= i < 262 or i in (2303, 2305) or 4000 <= i < 18688 or
                18689 <= i < 18700 or 84200 <= i < 84300 or i % 97 == 0)
    out, i = [], 0
    while i < pages:
        if want(i):
            j = i
            while j < pages and want(j) and (j == i or j not in PIECE_ENDS):
                j += 1
            out.append((i, j - i))
            i = j
        else:
            i += 1
    return out


def task_runs_page(i):
    return b"".join(struct.pack("<Q", (i * 0x9E3779B97F4A7C15 + k) & (2**64 - 1))
                    for k in range(0, PAGE, 8))


def test_page_runs_across_pagemap_reads():
    # The collector reads a mapping's page table in growing pieces and names each piece's
    # pages at once: a run across a piece boundary is split there (its pages in order, each
    # part's entry before its pages), a hole at a boundary must stay a hole. The child's
    # private /dev/zero mapping sends it the late way (after smaps), the parent goes early.
    with Workload("task_runs") as w:
        r = w.wait_ready()
        img = images_dir(w)
        log = os.path.join(w.tmp, "dump.log")
        dump(w.pid, img, "-v", "4", "-o", log)
        pid, child, area = r["pid"], r["child"], r["area"]
        # The pieces count from the mapping's start: it must not have merged with another.
        with open(f"/proc/{pid}/maps") as f:
            starts = [int(l.split("-")[0], 16) for l in f]
        check(area in starts, "the mapping merged with a neighbour; the piece boundaries moved")
        pages_id, runs = pagemap(img, f"pagemap-{pid}.img")
        got = [((v - area) // PAGE, n) for v, n, _ in overlaps(runs, area, area + r["pages"] * PAGE)]
        want = runs_task_runs_writes(r["pages"])
        check(got == want, f"runs in the mapping: {got[:8]}... want {want[:8]}...")
        for i in (250, 255, 256, 261, 2303, 2305, 4000, 18687, 18689, 84223, 84224, 84299, 97 * 500):
            check(read_pages(img, pages_id, runs, area + i * PAGE, PAGE) == task_runs_page(i),
                  f"page {i} of the mapping is not stored as written")
        with open(log) as f:
            text = f.read()
        check(f"pid {child}: a private mapping of /dev/zero (a device" in text,
              "the child with a private /dev/zero mapping did not go the late way")
        check("private memory of 1 processes on its way" in text,
              "the parent's private memory did not go early")
        cid, cruns = pagemap(img, f"pagemap-{child}.img")
        stored = sum(n for _, n, _ in cruns)
        check(stored >= 43, f"the child stored {stored} pages; its /dev/zero mapping has 43 written")
        # The runs came from PAGEMAP_SCAN (Linux 6.7+); read entry by entry from
        # /proc/PID/pagemap (--no-pagemap-scan) they are the same, byte for byte.
        check("runs from PAGEMAP_SCAN" in text, "the page tables were not read by PAGEMAP_SCAN")
        entries = collect_images(pid, os.path.join(w.tmp, "img-entries"), "--no-pagemap-scan")
        d = same_images(img, entries, ("pagemap-",))
        check(d is None, f"{d}: PAGEMAP_SCAN and pagemap entries differ")
        w.verify()
