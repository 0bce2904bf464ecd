"""xstored live update driven by Debian's unchanged xenstore-control (spec §9.1):
state, watches, queued and partial requests, open transactions and every failure
path.  The daemon under test is always one real process; the new binary is a real
copy of xstored (or a real failing program)."""
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import Xstored, build_path, wait_for
from liveupdate_util import CONTROL, binary_copy, exe_of, live_update, node_listing
from xstored_util import TYPES, SockConn, args, pack


@pytest.fixture
def lud(tmp_path):
    d = Xstored(tmp_path).start()
    yield d
    d.stop()
    assert d.proc.returncode in (0, -15), "xstored died: rc=%s" % d.proc.returncode


def test_lu_carries_store_watches_and_output(lud, tmp_path):
    c = SockConn(lud.socket)
    c.write("/a/b", "hello")
    c.write("/a/bin", b"x\0y")
    c.call("SET_PERMS", "/a/b", "n0", "r5")
    c.call("WATCH", "/a", "tok")
    assert c.next_event() == (b"/a", b"tok")
    c.call("WATCH", "rel", "reltok")  # relative: stays relative
    assert c.next_event() == (b"rel", b"reltok")
    # an event queued but unread by its client crosses the update once
    w = SockConn(lud.socket)
    w.call("WATCH", "/a/b", "w")
    c.write("/a/b", "v2")
    before = node_listing(lud, tmp_path / "before")
    pid = lud.proc.pid
    new = binary_copy(tmp_path)
    r = live_update(lud, new)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lud.proc.pid == pid and lud.proc.poll() is None
    assert exe_of(lud) == new
    assert not os.path.exists(os.path.join(str(tmp_path), "state_dump"))
    assert node_listing(lud, tmp_path / "after") == before
    assert w.next_event() == (b"/a/b", b"w")  # initial
    assert w.next_event() == (b"/a/b", b"w")  # the write before the update
    w.no_event()
    assert c.next_event() == (b"/a/b", b"tok")
    c.no_event()
    assert c.read("/a/bin") == b"x\0y"
    assert c.call("GET_PERMS", "/a/b") == b"n0\0r5\0"
    c.write("/a/b", "v3")
    assert c.next_event() == (b"/a/b", b"tok")
    assert w.next_event() == (b"/a/b", b"w")
    c.write("/local/domain/0/rel/x", "1")
    assert c.next_event() == (b"rel/x", b"reltok")
    # a second update from the new binary works the same way
    assert live_update(lud, build_path("store", "xstored")).returncode == 0
    assert c.read("/a/b") == b"v3"


def test_lu_held_and_partial_requests_are_answered(lud, tmp_path):
    a = SockConn(lud.socket)
    tx = int(a.call("TRANSACTION_START", "").rstrip(b"\0"))
    a.write("/t/x", "1", tx=tx)
    out = {}
    th = threading.Thread(target=lambda: out.update(r=live_update(lud, binary_copy(tmp_path))))
    th.start()
    time.sleep(0.5)  # -s parked: a transaction is open
    assert th.is_alive()
    b = SockConn(lud.socket)
    b.send(pack("TRANSACTION_START", b"\0", req_id=42))
    b.no_event(0.3)  # held, not answered
    msg = pack("WRITE", b"/t/y\0late", req_id=43)
    b.send(msg[:10])  # a partial header: carried as unprocessed input
    assert th.is_alive()
    assert a.call("TRANSACTION_END", "T", tx=tx) == b"OK\0"
    th.join(30)
    assert out["r"].returncode == 0, out["r"].stdout
    r = b.read_msg()
    assert (r.type, r.req_id) == (TYPES["TRANSACTION_START"], 42)
    btx = int(r.body.rstrip(b"\0"))
    assert btx > 0
    b.send(msg[10:])
    r = b.read_msg()
    assert (r.type, r.req_id, r.body) == (TYPES["WRITE"], 43, b"OK\0")
    assert b.call("TRANSACTION_END", "T", tx=btx) == b"OK\0"
    assert a.read("/t/x") == b"1" and a.read("/t/y") == b"late"


def test_lu_force_carries_open_transactions(lud, tmp_path):
    a, b, o = SockConn(lud.socket), SockConn(lud.socket), SockConn(lud.socket)
    o.write("/f/x", "0")
    o.write("/f/y", "0")
    o.call("WATCH", "/f", "ow")
    assert o.next_event() == (b"/f", b"ow")
    ta = int(a.call("TRANSACTION_START", "").rstrip(b"\0"))
    a.write("/f/new", "from-a", tx=ta)
    a.call("RM", "/f/x", tx=ta)
    tb = int(b.call("TRANSACTION_START", "").rstrip(b"\0"))
    assert b.read("/f/y", tx=tb) == b"0"
    b.write("/f/y", "from-b", tx=tb)
    o.write("/f/y", "outside")  # b's transaction is now doomed
    assert o.next_event() == (b"/f/y", b"ow")
    t0 = time.monotonic()
    r = live_update(lud, binary_copy(tmp_path), "-F", "-t", "1")
    assert r.returncode == 0, r.stdout
    assert time.monotonic() - t0 >= 0.9
    # inside a's transaction its view is intact
    assert a.read("/f/new", tx=ta) == b"from-a"
    assert a.err("READ", "/f/x", tx=ta) == "ENOENT"
    assert sorted(a.directory("/f", tx=ta)) == ["new", "y"]
    assert a.call("TRANSACTION_END", "T", tx=ta) == b"OK\0"
    assert b.err("TRANSACTION_END", "T", tx=tb) == "EAGAIN"
    assert o.read("/f/new") == b"from-a" and o.read("/f/y") == b"outside"
    assert o.err("READ", "/f/x") == "ENOENT"
    # the events queued inside a's transaction fired at its commit, once
    got = {o.next_event(), o.next_event()}
    assert got == {(b"/f/new", b"ow"), (b"/f/x", b"ow")}
    o.no_event()
    # new transaction ids do not collide with carried ones
    t2 = int(a.call("TRANSACTION_START", "").rstrip(b"\0"))
    assert t2 != ta


def test_lu_timeout_without_force_keeps_serving(lud, tmp_path):
    a = SockConn(lud.socket)
    ta = int(a.call("TRANSACTION_START", "").rstrip(b"\0"))
    a.write("/long/x", "1", tx=ta)
    pid_exe = exe_of(lud)
    r = live_update(lud, binary_copy(tmp_path), "-t", "1")
    assert r.returncode == 3
    assert "Starting live update failed:\nDomains with long running transactions:" in r.stderr
    assert re.search(r"\nDomain \d+: [1-9]\d* s", r.stderr), r.stderr
    assert exe_of(lud) == pid_exe
    assert a.call("TRANSACTION_END", "T", tx=ta) == b"OK\0"
    assert a.read("/long/x") == b"1"
    # -F with the transaction still young: C xenstored's answer too
    ta = int(a.call("TRANSACTION_START", "").rstrip(b"\0"))
    b = SockConn(lud.socket)
    bt = int(b.call("TRANSACTION_START", "").rstrip(b"\0"))
    assert bt
    r = live_update(lud, binary_copy(tmp_path), "-F", "-t", "1")
    assert r.returncode == 0, r.stdout
    assert a.call("TRANSACTION_END", "T", tx=ta) == b"OK\0"


@pytest.mark.parametrize("kind", ["missing", "not-executable", "exits-at-once", "true",
                                  "corrupt-stream", "bad-cmdline"])
def test_lu_failure_keeps_old_daemon(lud, tmp_path, kind):
    c = SockConn(lud.socket)
    c.write("/keep", "me")
    c.call("WATCH", "/keep", "k")
    assert c.next_event() == (b"/keep", b"k")
    exe = exe_of(lud)
    opts = []
    if kind == "missing":
        binary, expect = tmp_path / "nope", "File not accessible."
    elif kind == "not-executable":
        binary = tmp_path / "plain"
        binary.write_text("#!/bin/sh\n")
        expect = "File not executable."
    elif kind == "exits-at-once":
        binary, expect = "/bin/false", "Error activating new binary."
    elif kind == "true":
        binary, expect = "/bin/true", "Error activating new binary."
    elif kind == "bad-cmdline":
        binary, expect = binary_copy(tmp_path), "Error activating new binary."
        opts = ["-c", "--no-such-option"]
    else:
        # a real xstored that finds the stream damaged: its check reads a damaged
        # copy (the stream itself is a sealed memfd, see test_lu_stream_sealed)
        binary = tmp_path / "corrupting"
        binary.write_text("#!/bin/sh\nprev=\nfor a; do\n  shift\n"
                          "  if [ \"$prev\" = --check-stream ]; then\n"
                          "    [ -z \"$XSTORED_CHECK_WAIT\" ] || cat >/dev/null\n"
                          "    cp \"$a\" %s/damaged\n"
                          "    printf 'garbage!' | dd of=%s/damaged bs=1 seek=40 conv=notrunc "
                          "2>/dev/null\n    a=%s/damaged\n  fi\n  set -- \"$@\" \"$a\"\n"
                          "  prev=$a\ndone\nexec %s \"$@\"\n"
                          % (tmp_path, tmp_path, tmp_path, build_path("store", "xstored")))
        binary.chmod(0o755)
        expect = "rejected the state"
    r = live_update(lud, binary, *opts)
    assert r.returncode == 3, r.stdout + r.stderr
    assert expect in r.stderr, r.stderr
    assert lud.proc.poll() is None and exe_of(lud) == exe
    assert c.read("/keep") == b"me"
    c.write("/keep", "still")
    assert c.next_event() == (b"/keep", b"k")
    assert not os.path.exists(os.path.join(str(tmp_path), "state_dump"))
    # and a good update still works afterwards
    r = live_update(lud, binary_copy(tmp_path))
    assert r.returncode == 0, r.stdout
    assert c.read("/keep") == b"still"


def test_lu_stream_sealed(lud, tmp_path):
    """The pre-flight cannot change what the new process restores: the stream is a
    sealed memfd (the new process relies on it to skip a second check)."""
    c = SockConn(lud.socket)
    c.write("/keep", "me")
    binary = tmp_path / "damaging"
    binary.write_text("#!/bin/sh\nprev=\nfor a; do\n  if [ \"$prev\" = --check-stream ]; then\n"
                      "    case \"$a\" in /proc/self/fd/*) ;; *) exit 9;; esac\n"
                      "    [ -n \"$XSTORED_CHECK_WAIT\" ] || exit 7\n"
                      "    cat >/dev/null\n"
                      "    if printf 'garbage!' | dd of=\"$a\" bs=1 seek=40 conv=notrunc "
                      "2>/dev/null; then exit 8; fi\n"
                      "    if printf 'garbage!' >> \"$a\"; then exit 8; fi\n"
                      "  fi\n  prev=$a\ndone\nexec %s \"$@\"\n" % build_path("store", "xstored"))
    binary.chmod(0o755)
    r = live_update(lud, binary)
    assert r.returncode == 0, r.stdout + r.stderr
    assert c.read("/keep") == b"me"
    c.write("/keep", "after")
    assert c.read("/keep") == b"after"


def test_lu_binary_without_gate(lud, tmp_path):
    """A new binary that checks at once instead of waiting for the complete stream
    (an xst binary without the gated pre-flight) fails the gated check, passes the
    ordinary one, and the update goes through."""
    c = SockConn(lud.socket)
    for i in range(200):
        c.write("/many/n%d" % i, "v" * 100)
    binary = tmp_path / "ungated"
    binary.write_text("#!/bin/sh\nunset XSTORED_CHECK_WAIT\nexec %s \"$@\" </dev/null\n"
                      % build_path("store", "xstored"))
    binary.chmod(0o755)
    r = live_update(lud, binary)
    assert r.returncode == 0, r.stdout + r.stderr
    assert c.read("/many/n199") == b"v" * 100


def lu_trace_lines(d):
    with open(d.trace, errors="replace") as f:
        return [l for l in f if "live-update:" in l]


def test_lu_checked_while_written(lud, tmp_path):
    """The gated pre-flight checks the stream while it is written (following the
    writer's watermarks, several for a stream this size) and its verdict is the one
    used: no second, ordinary pre-flight."""
    c = SockConn(lud.socket)
    for i in range(6000):
        c.write("/big/d%d/n%d" % (i // 100, i), "v%d-" % i + "x" * 96)
    new = binary_copy(tmp_path)
    r = live_update(lud, new)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = lu_trace_lines(lud)
    written = [l for l in lines if "state written" in l]
    assert len(written) == 1, lines
    size = int(re.search(r"(\d+) bytes of state written \(memfd\)", written[0]).group(1))
    assert size > 3 * 256 * 1024, written[0]  # several watermarks
    m = re.search(r"\(gated, watermarks followed: (\d+)\)$", written[0].rstrip())
    assert m and int(m.group(1)) >= 1, written[0]
    # the new process trusts that check (its trace is flushed by its first loop)
    wait_for(lambda: any("checked by the pre-flight" in l for l in lu_trace_lines(lud)),
             what="the new process's restore line")
    assert c.read("/big/d59/n5999") == b"v5999-" + b"x" * 96
    assert c.call("DIRECTORY", "/big/d7").count(b"\0") == 100


@pytest.fixture
def lud_file(tmp_path, monkeypatch):
    """A daemon told to pass its live-update state in the state file, as on a host
    where no memfd can be made."""
    monkeypatch.setenv("XSTORED_LU_NO_MEMFD", "1")
    d = Xstored(tmp_path).start()
    yield d
    d.stop()
    assert d.proc.returncode in (0, -15), "xstored died: rc=%s" % d.proc.returncode


def test_lu_state_file_fallback(lud_file, tmp_path):
    """Without a memfd the stream goes through the state file next to the socket:
    the pre-flight reads it there, the new process checks it again itself, restores
    everything, and the file is gone afterwards; a failed pre-flight leaves the old
    daemon serving and no file behind."""
    d = lud_file
    state = os.path.join(str(tmp_path), "state_dump")
    c = SockConn(d.socket)
    for i in range(300):
        c.write("/f/n%d" % i, "v%d" % i)
    c.call("SET_PERMS", "/f/n1", "n0", "r7")
    c.call("WATCH", "/f", "ftok")
    assert c.next_event() == (b"/f", b"ftok")
    before = node_listing(d, tmp_path / "before")
    seen = tmp_path / "checked-path"
    binary = tmp_path / "recording"
    binary.write_text("#!/bin/sh\nprev=\nfor a; do\n  if [ \"$prev\" = --check-stream ]; then\n"
                      "    echo \"$a\" >> %s; [ -f \"$a\" ] && ls -l \"$a\" >> %s\n  fi\n"
                      "  prev=$a\ndone\nexec %s \"$@\"\n"
                      % (seen, seen, build_path("store", "xstored")))
    binary.chmod(0o755)
    pid = d.proc.pid
    r = live_update(d, binary)
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.proc.pid == pid and d.proc.poll() is None
    checked = seen.read_text().splitlines()
    assert checked[0] == state, checked  # one ordinary pre-flight, of the file
    assert checked[1].startswith("-rw-------"), checked
    assert len(checked) == 2, checked
    assert not os.path.exists(state)
    wait_for(lambda: any("restored" in l for l in lu_trace_lines(d)),
             what="the new process's restore line")
    lines = lu_trace_lines(d)
    assert any(re.search(r"\d+ bytes of state written in", l) for l in lines), lines
    assert not any("(memfd)" in l or "checked by the pre-flight" in l for l in lines), lines
    assert node_listing(d, tmp_path / "after") == before
    assert c.call("GET_PERMS", "/f/n1") == b"n0\0r7\0"
    c.write("/f/n299", "new")
    assert c.next_event() == (b"/f/n299", b"ftok")
    c.no_event()
    # a new binary that rejects the stream: the old daemon keeps serving, no file left
    exe = exe_of(d)
    bad = tmp_path / "rejecting"
    bad.write_text("#!/bin/sh\nfor a; do [ \"$a\" = --check-stream ] && "
                   "{ echo 'invalid stream: test'; exit 1; }; done\nexec %s \"$@\"\n"
                   % build_path("store", "xstored"))
    bad.chmod(0o755)
    r = live_update(d, bad)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "rejected the state" in r.stderr, r.stderr
    assert exe_of(d) == exe and d.proc.poll() is None
    assert not os.path.exists(state)
    assert c.read("/f/n299") == b"new"
    # and an update afterwards still goes through the file
    r = live_update(d, binary_copy(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert c.read("/f/n0") == b"v0"
    assert not os.path.exists(state)


def test_lu_session_rules_and_abort(lud, tmp_path):
    a, b = SockConn(lud.socket), SockConn(lud.socket)
    new = binary_copy(tmp_path)

    def ctl(conn, *words):
        return conn.call("CONTROL", "live-update", *words).rstrip(b"\0").decode()

    assert ctl(a, "-a") == "No live-update session active."
    assert ctl(a, "-s") == "Not in live-update session."
    assert ctl(a, "-f", new) == "OK"
    assert ctl(b, "-f", new) == "live-update session already active."
    assert ctl(b, "-c", "x") == "Not in live-update session."
    assert ctl(b, "-a") == "Not in live-update session."
    assert ctl(a, "-a") == "OK"
    assert ctl(b, "-f", new) == "OK"
    b.close()  # closing the owner ends its session
    wait_for(lambda: ctl(a, "-f", new) == "OK", what="session of a closed connection ended")
    assert ctl(a, "-a") == "OK"
    assert a.err("CONTROL", raw=args("live-update")) == "EINVAL"


def test_lu_new_cmdline(lud, tmp_path):
    new = binary_copy(tmp_path)
    cmd = "--socket %s --no-fork -T %s -Q nodes=1234" % (lud.socket, lud.trace)
    r = live_update(lud, new, "-c", cmd)
    assert r.returncode == 0, r.stdout
    q = lud.run(CONTROL, "quota").stdout
    assert [l for l in q.splitlines() if l.startswith("nodes")][0].split()[2] == "1234"
    assert open("/proc/%d/cmdline" % lud.proc.pid).read().split("\0")[1:4] == \
        ["--socket", lud.socket, "--no-fork"]


def test_lu_stub_domain_chunked_form(lud, tmp_path):
    """The stub-domain form: -b <size>, then -d chunks of at most 2048 bytes
    ("live-update\0-d\0<n>\0<n bytes>"), then -s.  (Debian's xenstore-control only
    takes this path under a real hypervisor, so the chunks are sent raw here.)
    xstored stores the binary next to its state and runs it."""
    c = SockConn(lud.socket)
    new = binary_copy(tmp_path)
    data = open(new, "rb").read()

    def ctl(raw):
        return c.call("CONTROL", raw=raw).rstrip(b"\0").decode()

    assert ctl(args("live-update", "-b", str(len(data)))) == "OK"
    assert ctl(args("live-update", "-s")) == "Kernel not complete."
    for off in range(0, len(data), 2048):
        chunk = data[off:off + 2048]
        assert ctl(args("live-update", "-d", str(len(chunk))) + chunk) == "OK"
    assert ctl(args("live-update", "-d", "1") + b"x") == "Too much kernel data."
    assert ctl(args("live-update", "-s", "-t", "10")) == "OK"
    exe = exe_of(lud)
    assert exe.endswith(".lu-binary")
    assert open(exe, "rb").read() == data
    c.write("/after", "1")
    assert c.read("/after") == b"1"


def test_lu_dump_and_inspect_state(lud, tmp_path):
    c = SockConn(lud.socket)
    c.write("/d/x", "val")
    c.call("WATCH", "/d", "dt")
    tx = int(c.call("TRANSACTION_START", "").rstrip(b"\0"))
    c.write("/d/y", "in-tx", tx=tx)
    st = tmp_path / "dump"
    r = subprocess.run([str(build_path("store", "xstored")), "--socket", lud.socket,
                        "--dump-state", str(st)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (os.stat(st).st_mode & 0o777) == 0o600
    out = subprocess.run([str(build_path("store", "xstored")), "--inspect-state", str(st)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.startswith("xenstore stream version 1")
    assert 'WATCH conn' in out and 'path "/d" token "dt"' in out
    assert 'NODE /d/x [n0] = "val"' in out
    assert "TRANSACTION conn" in out and "TXNODE" in out and '"in-tx"' in out
    assert "NODE @releaseDomain" in out and "NODE @introduceDomain" in out
    chk = subprocess.run([str(build_path("store", "xstored")), "--check-stream", str(st)],
                         capture_output=True, text=True, timeout=30)
    assert chk.returncode == 0 and "xstored-stream-ok" in chk.stdout
    data = bytearray(open(st, "rb").read())
    data[0:8] = b"notastor"
    open(st, "wb").write(bytes(data))
    chk = subprocess.run([str(build_path("store", "xstored")), "--check-stream", str(st)],
                         capture_output=True, text=True, timeout=30)
    assert chk.returncode == 1 and "bad ident" in chk.stdout


def test_lu_carries_domain_rings(lud, tmp_path):
    """A domain's ring (memfd page + eventfds) crosses the update: the new process
    maps the same page, keeps its indexes, and unread replies, queued events and a
    half-sent request all arrive."""
    from xstored_util import RingConn
    priv = SockConn(lud.socket)
    g = RingConn()
    assert g.introduce(priv, 5).body == b"OK\0"
    priv.call("MKDIR", "/local/domain/5")
    priv.call("SET_PERMS", "/local/domain/5", "n5")
    g.write("data/x", "1")
    g.call("WATCH", "data", "gt")
    assert g.next_event() == (b"data", b"gt")
    priv.write("/local/domain/5/data/x", "2")  # event left unread in the ring
    g.send(pack("READ", b"data/x\0", req_id=9)[:7])  # half a request
    quota_before = lud.run(CONTROL, "quota", "5").stdout
    r = live_update(lud, binary_copy(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert priv.call("IS_DOMAIN_INTRODUCED", "5") == b"T\0"
    assert lud.run(CONTROL, "quota", "5").stdout == quota_before
    g.send(pack("READ", b"data/x\0", req_id=9)[7:])
    assert g.next_event() == (b"data/x", b"gt")
    r = g.read_msg()
    assert (r.type, r.req_id, r.body) == (TYPES["READ"], 9, b"2")
    g.write("data/y", "3")
    assert g.next_event() == (b"data/y", b"gt")
    assert priv.read("/local/domain/5/data/y") == b"3"
    out = subprocess.run([str(build_path("store", "xstored")), "--socket", lud.socket,
                          "--dump-state", str(tmp_path / "st")], capture_output=True, text=True)
    assert out.returncode == 0
    listing = subprocess.run([str(build_path("store", "xstored")), "--inspect-state",
                              str(tmp_path / "st")], capture_output=True, text=True).stdout
    assert "ring domid 5" in listing and "DOMAIN 5 introduced" in listing
