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
