"""The live-update drill (issue 4): 100 client connections doing transactions,
writes and watches continuously while 20 live updates run back to back through
Debian's xenstore-control.  Zero client errors, every watch event exactly once and
in order, and the final store identical (node records with perms, as the daemon's
own state stream lists them) to a replay of the same operations on a daemon that
never updated."""
import threading
import time

from conftest import Xstored
from liveupdate_util import binary_copy, exe_of, live_update, node_listing
from xstored_util import SockConn

CLIENTS = 100
UPDATES = 20


class Client(threading.Thread):
    def __init__(self, sock, i, stop):
        super().__init__(daemon=True)
        self.c = SockConn(sock)
        self.i = i
        self.stop = stop
        self.base = "/drill/%d" % i
        self.ops = []       # (path, value) in commit order: the replay log
        self.expected = []  # watch events this client must see, in order
        self.errors = []

    def run(self):
        try:
            self.loop()
        except Exception as e:  # noqa: BLE001 - any failure is a client error
            self.errors.append(repr(e))

    def loop(self):
        c, base = self.c, self.base
        c.call("WATCH", base, "t%d" % self.i)
        self.expected.append(base)
        n = 0
        while not self.stop.is_set():
            n += 1
            r = c.request("TRANSACTION_START", b"\0")
            if r.error:
                self.errors.append("start " + r.error)
                return
            tx = int(r.body.rstrip(b"\0"))
            c.write(base + "/v", "v%d" % n, tx=tx)
            r = c.request("TRANSACTION_END", b"T\0", tx=tx)
            if r.error:
                self.errors.append("commit " + r.error)
                return
            self.ops.append((base + "/v", "v%d" % n))
            self.expected.append(base + "/v")
            c.write(base + "/w", "w%d" % n)
            self.ops.append((base + "/w", "w%d" % n))
            self.expected.append(base + "/w")
        c.write(base + "/done", "yes")
        self.ops.append((base + "/done", "yes"))
        self.expected.append(base + "/done")
        got = []
        while not got or got[-1] != base + "/done":
            p, tok = c.next_event(timeout=10)
            assert tok == ("t%d" % self.i).encode(), tok
            got.append(p.decode())
        self.got = got


def test_liveupdate_drill(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    d = Xstored(tmp_path / "a").start()
    ref = Xstored(tmp_path / "b").start()
    try:
        setup = SockConn(d.socket)
        for i in range(CLIENTS):
            setup.call("MKDIR", "/drill/%d" % i)
        stop = threading.Event()
        clients = [Client(d.socket, i, stop) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        bins = [binary_copy(tmp_path, "xstored-a"), binary_copy(tmp_path, "xstored-b")]
        pid = d.proc.pid
        t0 = time.monotonic()
        times = []
        for k in range(UPDATES):
            time.sleep(0.05)
            s = time.monotonic()
            r = live_update(d, bins[k % 2], "-t", "10")
            times.append(time.monotonic() - s)
            assert r.returncode == 0, "update %d: %s%s" % (k, r.stdout, r.stderr)
            assert exe_of(d) == bins[k % 2] and d.proc.pid == pid
        stop.set()
        for c in clients:
            c.join(60)
        elapsed = time.monotonic() - t0
        errors = [(c.i, e) for c in clients for e in c.errors]
        assert not errors, errors[:5]
        assert all(not c.is_alive() for c in clients)
        total_ops = sum(len(c.ops) for c in clients)
        assert total_ops > CLIENTS * 10, total_ops  # they really ran during the updates
        for c in clients:
            assert c.got == c.expected, "client %d: events differ (lost or duplicated)" % c.i
        # reference replay on a daemon that never updated
        rc = SockConn(ref.socket)
        for i in range(CLIENTS):
            rc.call("MKDIR", "/drill/%d" % i)
        for c in clients:
            for path, value in c.ops:
                rc.write(path, value)
        assert node_listing(d, tmp_path / "d.state") == node_listing(ref, tmp_path / "r.state")
        print("drill: %d updates, %d client ops in %.1f s; update times max %.0f ms" %
              (UPDATES, total_ops, elapsed, max(times) * 1000))
    finally:
        d.stop()
        ref.stop()
    assert d.proc.returncode in (0, -15)
