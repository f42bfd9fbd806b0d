"""Dump-side tests for unix sockets: every field compared with the kernel's own view
(sock_diag through `ss -x`) and with what the workload knows, then the workload checks
that nothing was consumed."""
import os

from harness import (Workload, check, compare_unix_with_kernel, crpipe, dump, images_dir,
                     queues_by_id, show, ss_unix, unix_entries)

STREAM, DGRAM, SEQPACKET = 1, 2, 5


def name_bytes(e):
    return e["name"].encode("latin-1")


def test_queues_options_scm():
    with Workload("unix_queues") as w:
        r = w.wait_ready()
        img = images_dir(w)
        kernel = ss_unix({r["pid"], r["child"]})
        dump(w.pid, img)
        compare_unix_with_kernel(img, kernel)
        entries = unix_entries(img)
        queues = queues_by_id(img)
        socks = {s["name"]: s for s in r["sockets"]}
        for s in r["sockets"]:
            e = entries[s["ino"]]
            if "peer" in s:
                check(e["peer"] == s["peer"], f"{s['name']}: peer")
            q = queues.get(e["id"], [])
            if "records" in s:
                check([m["length"] for m in q] == s["records"],
                      f"{s['name']}: records {[m['length'] for m in q]} != {s['records']}")
            if "queued_bytes" in s:
                check(sum(m["length"] for m in q) == s["queued_bytes"], f"{s['name']}: bytes")
            if "peek_off" in s:
                check(e["crpipe"]["peek_off"] == s["peek_off"], f"{s['name']}: peek_off")
        d = entries[socks["dgram_rx"]["ino"]]
        o = d["opts"]
        want = socks["dgram_rx"]
        # The workload prints what getsockopt reports (the kernel doubles what was set).
        check(o["so_sndbuf"] == want["sndbuf"], f"sndbuf {o['so_sndbuf']}")
        check(o["so_rcvbuf"] == want["rcvbuf"], f"rcvbuf {o['so_rcvbuf']}")
        check(o["so_priority"] == want["priority"] and o["so_mark"] == want["mark"], "prio/mark")
        check(o["so_rcvlowat"] == want["rcvlowat"] and o["so_linger"] == want["linger"], "lowat/linger")
        # The kernel keeps timeouts in jiffies: what getsockopt returns is the value set,
        # rounded up to the next tick (at most 10 ms at HZ=100).
        for key, tmo in (("rcv", want["rcvtimeo"]), ("snd", want["sndtimeo"])):
            got = o[f"so_{key}_tmo_sec"] * 1000000 + o[f"so_{key}_tmo_usec"]
            set_us = tmo[0] * 1000000 + tmo[1]
            check(set_us <= got < set_us + 10000, f"SO_{key.upper()}TIMEO {got} us, set {set_us}")
        check(len(o.get("so_filter", [])) == want["filter_len"], "BPF filter")
        check(entries[socks["seqpacket_rx"]["ino"]]["opts"]["so_passcred"] is True, "passcred")
        # SCM_RIGHTS and credentials travel with the messages.
        allq = [m for ms in queues.values() for m in ms]
        check(any(m.get("scm") for m in allq), "no SCM_RIGHTS recorded")
        check(any("ucred" in m for m in allq), "no SCM_CREDENTIALS recorded")
        files = {e["id"]: e for e in show(os.path.join(img, "files.img"))}
        for m in allq:
            for scm in m.get("scm", []):
                for fid in scm["rights"]:
                    check(fid in files, f"passed file id {fid} not recorded")
        w.verify()


def test_names_listeners_embryos():
    with Workload("unix_names") as w:
        r = w.wait_ready()
        img = images_dir(w)
        kernel = ss_unix({r["pid"]})
        dump(w.pid, img)
        compare_unix_with_kernel(img, kernel)
        entries = unix_entries(img)
        lst = entries[r["listener"]["ino"]]
        check(lst["backlog"] == r["listener"]["backlog"], f"backlog {lst['backlog']}")
        check(len(lst["crpipe"]["icons"]) == r["listener"]["pending"], "icons")
        files = show(os.path.join(img, "files.img"))
        embryos = [e["usk"] for e in files if e["type"] == "UNIXSK"
                   and e["usk"]["crpipe"].get("listener") == r["listener"]["ino"]]
        check(len(embryos) == r["listener"]["pending"], f"{len(embryos)} embryos recorded")
        check(sorted(e["crpipe"].get("icon_index", 0) for e in embryos)
              == list(range(len(embryos))), "embryos not numbered in queue order")
        clients = r["listener"]["clients"]
        check([e["peer"] for e in sorted(embryos, key=lambda e: e["crpipe"].get("icon_index", 0))][:2]
              == clients, "embryo peers are not the pending clients in order")
        # What each pending client already sent, read without accepting the connection.
        ids = {e["id"]: e for e in show(os.path.join(img, "files.img"))}
        queues = queues_by_id(img)
        by_index = sorted(
            (e for e in (f["usk"] for f in ids.values() if f["type"] == "UNIXSK")
             if e["crpipe"].get("listener") == r["listener"]["ino"]),
            key=lambda e: e["crpipe"].get("icon_index", 0))
        sent = [sum(m["length"] for m in queues.get(e["id"], [])) for e in by_index]
        check(sent == r["listener"]["client_data"], f"pending connections' data {sent} != "
                                                    f"{r['listener']['client_data']}")
        ab = entries[r["abstract"]["ino"]]
        check(name_bytes(ab).hex() == r["abstract"]["name_hex"], f"abstract name {ab['name']!r}")
        au = entries[r["autobound"]["ino"]]
        check(name_bytes(au).hex() == r["autobound"]["name_hex"] and au["crpipe"]["autobound"],
              "autobound name")
        rel = entries[r["relative"]["ino"]]
        check(name_bytes(rel).rstrip(b"\0") == r["relative"]["name"].encode(), "relative name")
        check(rel["name_dir"] == r["dir"], f"name_dir {rel.get('name_dir')}")
        check(rel["file_perms"]["mode"] == r["relative"]["mode"], "socket file mode")
        ren = entries[r["renamed"]["ino"]]
        check(ren["crpipe"]["current_path"] == r["renamed"]["current"], "renamed path")
        rq = queues_by_id(img).get(ren["id"], [])
        check([m["length"] for m in rq] == r["renamed"]["records"], "datagrams of renamed")
        check(rq[0]["addr"].encode("latin-1").rstrip(b"\0") == b"rel.sock", "sender address")
        gone = entries[r["unlinked"]["ino"]]
        check(gone.get("deleted") is True, "deleted socket file not marked")
        check(entries[r["unlinked"]["client"]]["peer"] == r["unlinked"]["ino"], "client of deleted")
        w.verify()


def test_peer_outside_refused_then_external():
    with Workload("unix_extern") as w:
        r = w.wait_ready()
        img = images_dir(w)
        rc, _, err = crpipe("run", "dump", "-t", w.pid, "-D", img, "-R")
        check(rc != 0, "a peer outside the tree must refuse the dump")
        check(f"fd " in err and "outside the dumped tree" in err and "--external unix[" in err
              and "--ext-unix-sk" in err, f"refusal does not name the way out: {err}")
        check(not [f for f in os.listdir(img) if f.endswith(".img")], "images left behind")
        dgram = r["dgram_client"]["ino"]
        stream = r["stream_end"]["ino"]
        dump(w.pid, img, "--ext-unix-sk", f"--external=unix[{stream}]")
        entries = unix_entries(img)
        check(entries[dgram]["crpipe"].get("peer_external") is True, "dgram peer not external")
        check(entries[dgram]["crpipe"]["ext_peer_name"].rstrip("\0") == r["dgram_client"]["peer_name"],
              "external peer name")
        check(entries[stream]["crpipe"].get("ext_inherit") is True, "stream end not inherited")
        w.verify()


def test_unconnected_stream_sockets():
    with Workload("unix_unconnected") as w:
        r = w.wait_ready()
        img = images_dir(w)
        dump(w.pid, img)
        entries = unix_entries(img)
        for key, typ in (("stream", STREAM), ("seqpacket", SEQPACKET), ("bound", STREAM)):
            e = entries[r[key]]
            check(e["type"] == typ and e["state"] == 7, f"{key}: type {e['type']} state {e['state']}")
        check(entries[r["bound"]]["name"].rstrip("\0") == "bound-unconnected.sock", "bound name")
        w.verify()
