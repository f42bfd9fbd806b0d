"""The stage stream and the images as data: stage by stage runs, the byte-identical round
trip on a real dump, and corrupt or truncated input refused with its offset."""
import filecmp
import os

from harness import Workload, check, crpipe, dump, images_dir


def same_dirs(a, b):
    names_a = sorted(f for f in os.listdir(a) if f.endswith(".img"))
    names_b = sorted(f for f in os.listdir(b) if f.endswith(".img"))
    check(names_a == names_b, f"image sets differ: {names_a} vs {names_b}")
    _, mismatch, errors = filecmp.cmpfiles(a, b, names_a, shallow=False)
    check(not mismatch and not errors, f"images differ: {mismatch} {errors}")


def test_stages_alone_and_round_trip():
    with Workload("unix_queues") as w:
        w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        stream = os.path.join(w.tmp, "stream.bin")
        crpipe("stage", "collect", "-t", w.pid, "-o", stream, "-R", check_rc=0)
        check(w.alive(), "stage collect -R killed the tree")
        img2 = os.path.join(w.tmp, "img2")
        os.mkdir(img2)
        crpipe("stage", "serialize", "-i", stream, "-D", img2, check_rc=0)
        # images -> stream -> images is byte-identical
        back = os.path.join(w.tmp, "back.bin")
        crpipe("stage", "serialize", "--reverse", "-D", img2, "-o", back, check_rc=0)
        img3 = os.path.join(w.tmp, "img3")
        os.mkdir(img3)
        crpipe("stage", "serialize", "-i", back, "-D", img3, check_rc=0)
        same_dirs(img2, img3)
        # The same dump through `run dump` and through the stages alone holds the same
        # image files (contents differ only where the state moved between the two).
        check(sorted(os.listdir(img2)) == sorted(f for f in os.listdir(img) if f.endswith(".img")),
              "run dump and stage collect wrote different image sets")
        _, out, _ = crpipe("stage", "decode", "-i", stream, check_rc=0)
        check("hello" in out and "end images=" in out, f"decode output: {out[:300]}")
        w.verify()


def test_truncated_stream_refused_with_offset():
    with Workload("files_pipes", ".") as w:
        w.wait_ready()
        stream = os.path.join(w.tmp, "stream.bin")
        crpipe("stage", "collect", "-t", w.pid, "-o", stream, "-R", check_rc=0)
        size = os.path.getsize(stream)
        cut = os.path.join(w.tmp, "cut.bin")
        with open(stream, "rb") as f, open(cut, "wb") as g:
            g.write(f.read(size - 5))
        rc, out, err = crpipe("stage", "decode", "-i", cut)
        check(rc != 0 and "offset" in err, f"truncated stream not refused with an offset: {err}")
        img = images_dir(w)
        rc, _, err = crpipe("stage", "serialize", "-i", cut, "-D", img)
        check(rc != 0 and "offset" in err, f"serialize of a truncated stream: {err}")
        check(not [f for f in os.listdir(img) if f.endswith(".img")], "partial images left")
        w.verify()


def test_corrupt_image_refused_with_file_and_offset():
    with Workload("files_pipes", ".") as w:
        w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        path = os.path.join(img, "files.img")
        data = bytearray(open(path, "rb").read())
        # Make the second entry's length run past the end of the file.
        first_len = int.from_bytes(data[8:12], "little")
        off = 12 + first_len
        data[off:off + 4] = (len(data) * 2).to_bytes(4, "little")
        open(path, "wb").write(bytes(data))
        rc, _, err = crpipe("show", "--json", path)
        check(rc != 0 and f"files.img at offset {off}" in err, f"corrupt image: {err}")
        rc, _, err = crpipe("stage", "serialize", "--reverse", "-D", img, "-o",
                            os.path.join(w.tmp, "s.bin"))
        check(rc != 0 and f"files.img at offset {off}" in err, f"reverse of a corrupt dir: {err}")
        w.verify()


def page_refs_stream(pid, path):
    """The stream a collector started with --page-refs writes (pages named, not carried).
    Its control channel is closed at once: with no verdict to wait for, it releases the
    tree when the stream is complete."""
    import socket
    import subprocess
    from harness import BUILD
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(
        [os.path.join(BUILD, "collector", "crpipe-collector"), "-t", str(pid), "--out",
         path, "-R", "--page-refs", "--control-fd", str(theirs.fileno()), "-v", "1"],
        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    ours.close()
    theirs.close()
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()  # its tree is released when it dies
        p.wait()
        raise
    check(p.returncode == 0, f"collector --page-refs: {err}")


def test_page_refs_give_the_images_a_stream_gives():
    """`crpipe run dump -D` lets the serializer read the frozen tree's pages itself
    (ImagePageRefs): the memory images are byte for byte those of the stream path, where
    the collector sends every page; such a stream is shown by decode and refused by a
    serializer not started with --page-refs, leaving the directory empty."""
    with Workload("task_memory") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        stream = os.path.join(w.tmp, "stream.bin")
        crpipe("stage", "collect", "-t", w.pid, "-o", stream, "-R", check_rc=0)
        img2 = os.path.join(w.tmp, "img2")
        os.mkdir(img2)
        crpipe("stage", "serialize", "-i", stream, "-D", img2, check_rc=0)
        mem = sorted(f for f in os.listdir(img)
                     if f.startswith(("pages-", "pagemap-", "mm-")))
        check(any(f.startswith("pagemap-shmem-") for f in mem) and len(mem) >= 6,
              f"memory images {mem}")
        # The layout is the same; the contents too, where the task keeps still (its stack
        # and the rseq CPU numbers move between two dumps): the pattern it wrote.
        same = [f for f in mem if not f.startswith("pages-")]
        _, mismatch, errors = filecmp.cmpfiles(img, img2, same, shallow=False)
        check(not mismatch and not errors, f"memory images differ: {mismatch} {errors}")
        for f in mem:
            check(os.path.getsize(os.path.join(img, f)) == os.path.getsize(os.path.join(img2, f)),
                  f"{f}: sizes differ")
        from cases_task import pagemap, pattern, read_pages
        for d in (img, img2):
            pid_, runs = pagemap(d, f"pagemap-{r['pid']}.img")
            check(read_pages(d, pid_, runs, r["pattern"], 3 * 4096) == pattern(3 * 4096, 1),
                  f"the task's pattern is not in the pages of {d}")
        check(os.path.getsize(os.path.join(img, "pages-1.img")) > 3 * 4096, "pages-1.img empty")

        refs = os.path.join(w.tmp, "refs.bin")
        page_refs_stream(w.pid, refs)
        _, out, _ = crpipe("stage", "decode", "-i", refs, check_rc=0)
        check(f"page-refs #" in out and f"pid {r['pid']}" in out, f"decode: {out[:400]}")
        img3 = os.path.join(w.tmp, "img3")
        os.mkdir(img3)
        rc, _, err = crpipe("stage", "serialize", "-i", refs, "-D", img3)
        check(rc != 0 and "--page-refs" in err and "offset" in err,
              f"a page-refs stream was not refused: {err}")
        check(os.listdir(img3) == [], f"refused stream left {os.listdir(img3)}")
        w.verify()


def test_page_refs_of_a_task_gone_fail_naming_it():
    """The serializer reads named pages of a task that no longer exists: the write fails
    naming the pid and the image, and nothing is committed."""
    import subprocess
    from harness import BUILD
    with Workload("task_memory") as w:
        r = w.wait_ready()
        refs = os.path.join(w.tmp, "refs.bin")
        page_refs_stream(w.pid, refs)
        for pid in (r["child"], r["pid"]):
            os.kill(pid, 9)
        w.proc.wait(timeout=10)
        img = os.path.join(w.tmp, "img")
        os.mkdir(img)
        p = subprocess.run(
            [os.path.join(BUILD, "serializer", "crpipe-serializer"), "write", "-D", img, "--in",
             refs, "--page-refs"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=60)
        check(p.returncode != 0 and f"pid {r['pid']}" in p.stderr and "pages-" in p.stderr,
              f"pages of a dead task: rc {p.returncode}: {p.stderr}")
        check(os.listdir(img) == [], f"a failed write left {os.listdir(img)}")


def test_serializer_failure_is_reported_not_the_broken_stream():
    """The serializer fails first (no image directory): crpipe reports its reason, not the
    collector's broken stream that follows, and the tree runs on untouched."""
    with Workload("files_pipes", ".") as w:
        w.wait_ready()
        missing = os.path.join(w.tmp, "no-such-dir")
        rc, out, err = crpipe("run", "dump", "-t", w.pid, "-D", missing)
        last = (out + err).strip().splitlines()[-1]
        check(rc != 0 and f"open image directory {missing}: No such file or directory" in last,
              f"dump into a missing directory said: {last!r}")
        check(w.alive(), "a failed dump killed the tree")
        w.verify()


def check_entries_before_pages(decoded, what):
    """Every page message (bytes or references) of a pages-N.img comes after pagemap entries
    that describe at least as many bytes: a reader of the stream knows where pages belong
    when they arrive (live migration restores while pages still come)."""
    import re
    names, pages_of_pagemap, described, sent = {}, {}, {}, {}
    current_pagemap_head = set()
    for line in decoded.splitlines():
        m = re.match(r"@\d+ image-open #(\d+) (\S+)", line)
        if m:
            names[int(m.group(1))] = m.group(2)
            continue
        m = re.match(r"\s+(pagemap-\S+\.img): PagemapEntry \{ (.*) \}", line)
        if m:
            img, body = m.group(1), m.group(2)
            if img not in current_pagemap_head:
                # The first entry is the PagemapHead: field 1 (shown as vaddr) is pages_id.
                current_pagemap_head.add(img)
                pages_id = int(re.search(r"vaddr: (\d+)", body).group(1))
                pages_of_pagemap[img] = f"pages-{pages_id}.img"
                continue
            n = int(re.search(r"(?<!compat_)nr_pages: (\d+)", body).group(1))
            pages = pages_of_pagemap[img]
            described[pages] = described.get(pages, 0) + n * 4096
            continue
        m = re.match(r"@(\d+) pages #(\d+) (\d+) bytes", line) or \
            re.match(r"@(\d+) page-refs #(\d+) pid \d+, \d+ ranges, (\d+) bytes", line)
        if m:
            pages = names[int(m.group(2))]
            sent[pages] = sent.get(pages, 0) + int(m.group(3))
            check(sent[pages] <= described.get(pages, 0),
                  f"{what}: at stream offset {m.group(1)}, {sent[pages]} bytes of {pages} "
                  f"came before entries describing them ({described.get(pages, 0)})")
    check(sent and all(sent[p] == described.get(p) for p in sent),
          f"{what}: pages sent {sent} and described {described} differ")


def test_pagemap_entries_come_before_their_pages():
    # task_runs has runs across the collector's pagemap reads (split there) and a child
    # whose memory goes the late way; both the byte stream and the page references keep
    # each entry ahead of its pages.
    with Workload("task_runs") as w:
        r = w.wait_ready()
        stream = os.path.join(w.tmp, "stream.bin")
        crpipe("stage", "collect", "-t", w.pid, "-o", stream, "-R", check_rc=0)
        _, out, _ = crpipe("stage", "decode", "-i", stream, check_rc=0)
        check_entries_before_pages(out, "byte stream")
        refs = os.path.join(w.tmp, "refs.bin")
        page_refs_stream(w.pid, refs)
        _, out, _ = crpipe("stage", "decode", "-i", refs, check_rc=0)
        check_entries_before_pages(out, "page references")
        check(f"pid {r['pid']}" in out, "no page references of the parent")
        w.verify()
