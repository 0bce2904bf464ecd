"""xstored's store semantics as C xenstored 4.17 has them (spec §4-§7, §9), observed
through raw requests on real sockets."""
import subprocess

import pytest

from conftest import XEN_BIN
from xstored_util import SockConn, TYPES, args


@pytest.fixture
def conn(xstored):
    c = SockConn(xstored.socket)
    yield c
    c.close()


def test_transaction_isolation_and_commit(conn, xstored):
    other = SockConn(xstored.socket)
    conn.write("/t/a", "a")
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    assert tx != 0
    conn.write("/t/a", "b", tx=tx)
    conn.write("/t/new/deep", "n", tx=tx)
    assert conn.read("/t/a", tx=tx) == b"b"
    assert other.read("/t/a") == b"a"
    assert other.err("READ", "/t/new") == "ENOENT"
    assert sorted(conn.directory("/t", tx=tx)) == ["a", "new"]
    assert conn.call("TRANSACTION_END", "T", tx=tx) == b"OK\0"
    assert other.read("/t/a") == b"b"
    assert other.read("/t/new/deep") == b"n"
    other.close()


def test_transaction_conflict_eagain(conn, xstored):
    other = SockConn(xstored.socket)
    conn.write("/c/a", "a")
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    assert conn.read("/c/a", tx=tx) == b"a"
    other.write("/c/a", "b")
    assert conn.read("/c/a", tx=tx) == b"a"  # repeatable per node
    conn.write("/c/a", "c", tx=tx)
    assert conn.err("TRANSACTION_END", "T", tx=tx) == "EAGAIN"
    assert conn.read("/c/a") == b"b"
    # the transaction is gone after EAGAIN
    assert conn.err("READ", "/c/a", tx=tx) == "ENOENT"
    other.close()


def test_transaction_abort_and_rm_inside(conn):
    conn.write("/r/x/y", "1")
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    conn.call("RM", "/r/x", tx=tx)
    assert conn.err("READ", "/r/x/y", tx=tx) == "ENOENT"
    assert conn.read("/r/x/y") == b"1"
    conn.call("TRANSACTION_END", "F", tx=tx)
    assert conn.read("/r/x/y") == b"1"
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    conn.call("RM", "/r/x", tx=tx)
    conn.call("TRANSACTION_END", "T", tx=tx)
    assert conn.err("READ", "/r/x") == "ENOENT"
    assert conn.directory("/r") == []


def test_transaction_start_with_open_tx_ebusy(conn):
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    assert conn.err("TRANSACTION_START", "", tx=tx) == "EBUSY"
    tx2 = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    assert tx2 != tx


def test_watch_ok_then_initial_event_then_events_before_reply(conn):
    conn.send(b"")
    r = conn.request("WATCH", args("/w", "tok"))
    assert r.body == b"OK\0"
    assert conn.next_event() == (b"/w", b"tok")
    # our own write: the event is queued before the OK
    conn.send(__import__("xstored_util").pack("WRITE", b"/w/x\0v"))
    first = conn.read_msg()
    assert first.type == TYPES["WATCH_EVENT"] and first.body == b"/w/x\0tok\0"
    assert conn.read_msg().body == b"OK\0"
    assert conn.err("WATCH", "/w", "tok") == "EEXIST"


def test_rm_event_order(conn, xstored):
    w = SockConn(xstored.socket)
    conn.write("/d/a/b", "")
    conn.write("/d/c", "")
    for p in ("/d", "/d/a/b", "/d/c", "/d/a"):
        w.call("WATCH", p, p)
        assert w.next_event() == (p.encode(), p.encode())
    conn.call("RM", "/d")
    got = [w.next_event() for _ in range(4)]
    # post-order exact events for descendants, then /d itself
    assert got == [(b"/d/a/b", b"/d/a/b"), (b"/d/a", b"/d/a"), (b"/d/c", b"/d/c"),
                   (b"/d", b"/d")]
    w.no_event()
    w.close()


def test_mkdir_existing_is_silent(conn, xstored):
    w = SockConn(xstored.socket)
    conn.write("/m", "v")
    w.call("WATCH", "/m", "t")
    w.next_event()
    conn.call("MKDIR", "/m")
    w.no_event()
    assert conn.read("/m") == b"v"
    w.close()


def test_relative_watch_strips_home(conn):
    conn.call("WATCH", "rw", "t")
    assert conn.next_event() == (b"rw", b"t")
    conn.write("/local/domain/0/rw/x", "1")
    assert conn.next_event() == (b"rw/x", b"t")


def test_transaction_events_fire_on_commit_only(conn, xstored):
    w = SockConn(xstored.socket)
    w.call("WATCH", "/te", "t")
    w.next_event()
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    conn.write("/te/a", "1", tx=tx)
    w.no_event()
    conn.call("TRANSACTION_END", "T", tx=tx)
    assert w.next_event() == (b"/te/a", b"t")
    w.close()


def test_dup_event_suppression(conn, xstored):
    w = SockConn(xstored.socket)
    w.call("WATCH", "/dup", "t")
    w.next_event()
    # w does not read: fill its socket so further events stay queued in xstored
    filler = "f" * 150
    for i in range(4000):
        conn.write("/dup/%s%d" % (filler, i), "")
    for _ in range(5):
        conn.write("/dup/same", "x")
    same = 0
    while True:
        try:
            ev = w.next_event(timeout=0.5)
        except TimeoutError:
            break
        same += ev == (b"/dup/same", b"t")
    # identical events still queued unsent collapse into one
    assert same == 1
    w.close()


def test_reset_watches_drops_watches_and_transactions(conn):
    conn.call("WATCH", "/rw", "t")
    conn.next_event()
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    conn.call("RESET_WATCHES", raw=b"\0")
    assert conn.err("READ", "/tool", tx=tx) == "ENOENT"
    conn.write("/rw", "1")
    conn.no_event()


def test_perms_roundtrip_and_inheritance(conn):
    conn.write("/p", "")
    conn.call("SET_PERMS", "/p", "r0")
    assert conn.call("GET_PERMS", "/p") == b"r0\0"
    conn.write("/p/child", "")
    assert conn.call("GET_PERMS", "/p/child") == b"r0\0"
    assert conn.err("SET_PERMS", "/p", "x0") == "EINVAL"
    assert conn.err("SET_PERMS", "/p") == "EINVAL"
    assert conn.err("SET_PERMS", "/p", "n9") == "ENOENT"  # owner domain unknown
    # octal/hex domids parse like strtol(..., 0)
    conn.call("SET_PERMS", "/p", "n0", "r0x10")
    assert conn.call("GET_PERMS", "/p") == b"n0\0r16\0"


def test_special_acl_set(conn):
    conn.call("SET_PERMS", "@releaseDomain", "n0")
    assert conn.err("SET_PERMS", "@other", "n0") == "EINVAL"
    assert conn.err("READ", "@releaseDomain") == "EINVAL"


def test_introduce_release_special_watches(conn, xstored):
    w = SockConn(xstored.socket)
    for p in ("@introduceDomain", "@releaseDomain"):
        w.call("WATCH", p, p)
        assert w.next_event() == (p.encode(), p.encode())
    conn.call("INTRODUCE", "5", "1", "2")
    assert w.next_event() == (b"@introduceDomain", b"@introduceDomain")
    assert conn.call("IS_DOMAIN_INTRODUCED", "5") == b"T\0"
    conn.write("/local/domain/5", "")
    conn.call("SET_PERMS", "/local/domain/5", "n5")
    conn.write("/local/domain/5/x", "")
    conn.call("RESUME", "5")
    conn.call("SET_TARGET", "5", "0")
    conn.call("RELEASE", "5")
    evs = [w.next_event() for _ in range(1)]
    assert evs == [(b"@releaseDomain", b"@releaseDomain")]
    # nodes owned by the released domain are gone
    assert conn.err("READ", "/local/domain/5") == "ENOENT"
    assert conn.call("IS_DOMAIN_INTRODUCED", "5") == b"F\0"
    assert conn.err("RESUME", "5") == "ENOENT"
    w.close()


CONTROL = XEN_BIN / "xenstore-control"


def control(xstored, *argv):
    return subprocess.run([str(CONTROL)] + list(argv), env=xstored.env, capture_output=True,
                          text=True, timeout=20)


HELP_417 = ("check\t\nlog\ton|off\nlive-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
            "    Default timeout is 60 seconds.\nlogfile\t<file>\nmemreport\t[<file>]\n"
            "print\t<string>\nquota\t[set <name> <val>|<domid>]\nquota-soft\t[set <name> <val>]\n"
            "help\t\n")


def test_control_commands(conn, xstored, tmp_path):
    assert conn.call("CONTROL", "help") == HELP_417.encode() + b"\0"
    assert conn.call("CONTROL", "check") == b"OK\0"
    assert conn.call("CONTROL", "print", "hello") == b"OK\0"
    assert conn.err("CONTROL", "nosuch") == "EINVAL"
    assert conn.err("CONTROL", "log") == "EINVAL"
    q = conn.call("CONTROL", "quota").decode()
    assert q.startswith("Quota settings:\n")
    assert "nodes            :     1000 Nodes per domain\n" in q
    conn.call("CONTROL", "quota", "set", "nodes", "77")
    assert "nodes            :       77 Nodes per domain" in conn.call("CONTROL", "quota").decode()
    assert conn.err("CONTROL", "quota", "set", "nodes", "0") == "EINVAL"
    assert conn.err("CONTROL", "quota", "set", "bogus", "3") == "EINVAL"
    assert conn.call("CONTROL", "quota-soft").decode() == (
        "Quota settings:\nmemory           :  2097152 Total Xenstore memory per domain "
        "(warning level)\n\0")
    assert conn.call("CONTROL", "quota", "0").decode().startswith("Domain 0:\nnodes           : ")
    assert conn.err("CONTROL", "quota", "42") == "ENOENT"
    report = tmp_path / "mem"
    assert conn.call("CONTROL", "memreport", str(report)) == b"OK\0"
    assert report.stat().st_size > 0
    # live-update (store/lu.c): a session is opened and aborted; failures are text replies
    assert conn.call("CONTROL", "live-update", "-f", "/nonexistent/xstored") == \
        b"File not accessible.\0"
    assert conn.call("CONTROL", "live-update", "-f", "/bin/true") == b"OK\0"
    assert conn.call("CONTROL", "live-update", "-a") == b"OK\0"
    assert conn.call("CONTROL", "live-update", "-a") == b"No live-update session active.\0"
    if CONTROL.exists():
        r = control(xstored, "help")
        assert r.returncode == 0 and r.stdout == HELP_417 + "\n"  # the client adds one


def test_events_fire_in_watch_registration_order(conn, xstored):
    w = SockConn(xstored.socket)
    for p, t in (("/o", "t1"), ("/o/a/b", "t2"), ("/", "t3"), ("/o/a", "t4")):
        w.call("WATCH", p, t)
        w.next_event()
    conn.write("/o/a/b/c", "")
    got = [w.next_event()[1] for _ in range(4)]
    assert got == [b"t1", b"t2", b"t3", b"t4"]  # as C xenstored: not path order
    w.close()


def test_watchers_events_sent_before_the_writers_reply(conn, xstored):
    # xstored sends what a request queued in queue order: a watcher's event is in its
    # socket by the time the writer has its reply (this paces a writer to its
    # watchers, and keeps fan-out latency down: docs/xstored.md)
    import select
    ws = [SockConn(xstored.socket) for _ in range(300)]
    for i, w in enumerate(ws):
        w.call("WATCH", "/fo", "t%d" % i)
        assert w.next_event() == (b"/fo", b"t%d" % i)
    for n in range(5):
        conn.write("/fo/e%d" % n, "v")
        ready = select.select([w.sock for w in ws], [], [], 0)[0]
        assert len(ready) == len(ws), (n, len(ready))
        for i, w in enumerate(ws):
            assert w.next_event() == (b"/fo/e%d" % n, b"t%d" % i)
    for w in ws:
        w.close()


def test_transaction_event_order_and_net_changes(conn, xstored):
    w = SockConn(xstored.socket)
    conn.write("/f/x/y", "")
    w.call("WATCH", "/f", "t")
    w.next_event()
    w.call("WATCH", "/f/x/y", "ty")
    w.next_event()
    tx = int(conn.call("TRANSACTION_START", "").rstrip(b"\0"))
    conn.write("/f/p1", "", tx=tx)
    conn.write("/f/tmp", "", tx=tx)
    conn.call("RM", "/f/tmp", tx=tx)  # created and removed inside: no event
    conn.call("RM", "/f/x", tx=tx)
    conn.call("TRANSACTION_END", "T", tx=tx)
    got = [w.next_event() for _ in range(3)]
    # C xenstored's order: a removed node's own event precedes its descendants'
    assert got == [(b"/f/p1", b"t"), (b"/f/x", b"t"), (b"/f/x/y", b"ty")]
    w.no_event()
    w.close()
