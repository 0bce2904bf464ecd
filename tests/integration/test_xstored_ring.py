"""The ring transport (docs/xenstore-ring-transport.md): a memfd page + two eventfds
handed to a real xstored with INTRODUCE over its socket; the test then plays the guest
and speaks the xenstore ring protocol.  Ring connections are unprivileged."""
import pytest

from conftest import Xstored
from xstored_util import OFF_ERROR, HDR, RingConn, SockConn, TYPES, args, pack

DOMID = 5


def setup_domain(priv, domid=DOMID, perms=None):
    priv.write("/local/domain/%d" % domid, "")
    priv.call("SET_PERMS", "/local/domain/%d" % domid, *(perms or ["n%d" % domid]))


@pytest.fixture
def guest(xstored):
    priv = SockConn(xstored.socket)
    ring = RingConn()
    r = ring.introduce(priv, DOMID)
    assert r.body == b"OK\0", r
    setup_domain(priv)
    yield priv, ring
    ring.close()
    priv.close()


def test_ring_client_basic_ops(guest):
    priv, ring = guest
    ring.write("/local/domain/5/name", "guest")
    assert ring.read("/local/domain/5/name") == b"guest"
    # relative paths resolve under the domain's home
    ring.write("data/x", "1")
    assert priv.read("/local/domain/5/data/x") == b"1"
    assert sorted(ring.directory("/local/domain/5")) == ["data", "name"]
    # new nodes are owned by the guest
    assert priv.call("GET_PERMS", "/local/domain/5/data/x") == b"n5\0"
    assert ring.call("GET_DOMAIN_PATH", "5") == b"/local/domain/5\0"


def test_ring_unprivileged_permissions(guest):
    priv, ring = guest
    assert ring.err("READ", "/tool") == "EACCES"
    assert ring.err("WRITE", raw=b"/tool/x\0v") == "EACCES"
    # missing node below an unreadable parent: hidden as EACCES
    assert ring.err("READ", "/tool/nope") == "EACCES"
    # missing node in its own home: the real ENOENT
    assert ring.err("READ", "/local/domain/5/nope") == "ENOENT"
    # privileged-only messages
    assert ring.err("INTRODUCE", "6", "1", "1") == "EACCES"
    assert ring.err("CONTROL", "help") == "EACCES"
    assert ring.err("IS_DOMAIN_INTRODUCED", "5") == "EACCES"
    # changing the owner is not allowed for an unprivileged domain
    ring.write("/local/domain/5/o", "")
    assert ring.err("SET_PERMS", "/local/domain/5/o", "n0") == "EPERM"
    ring.call("SET_PERMS", "/local/domain/5/o", "n5", "r0")
    # read permission granted by dom0
    priv.write("/shared", "s")
    priv.call("SET_PERMS", "/shared", "n0", "r5")
    assert ring.read("/shared") == b"s"
    assert ring.err("WRITE", raw=b"/shared\0v") == "EACCES"
    priv.call("SET_PERMS", "/shared", "n0", "b5")
    ring.write("/shared", "w")
    assert priv.read("/shared") == b"w"


def test_ring_watch_events_and_filtering(guest):
    priv, ring = guest
    ring.call("WATCH", "/local/domain/5/w", "tok")
    assert ring.next_event() == (b"/local/domain/5/w", b"tok")
    priv.write("/local/domain/5/w/a", "1")
    assert ring.next_event() == (b"/local/domain/5/w/a", b"tok")
    # a watch on / sees only what the domain may read
    ring.call("WATCH", "/", "root")
    assert ring.next_event() == (b"/", b"root")
    priv.write("/secret", "x")
    ring.no_event()
    ring.call("WATCH", "@releaseDomain", "rel")
    assert ring.next_event() == (b"@releaseDomain", b"rel")


def test_ring_transactions(guest):
    priv, ring = guest
    ring.write("/local/domain/5/t", "a")
    tx = int(ring.call("TRANSACTION_START", "").rstrip(b"\0"))
    ring.write("/local/domain/5/t", "b", tx=tx)
    priv.write("/local/domain/5/t", "c")
    assert ring.err("TRANSACTION_END", "T", tx=tx) == "EAGAIN"
    assert priv.read("/local/domain/5/t") == b"c"


def test_ring_many_requests_wrap_the_ring(guest):
    priv, ring = guest
    value = b"v" * 900
    for i in range(30):  # far more than 1024 bytes each way: indexes wrap
        ring.write("/local/domain/5/big%d" % i, value)
        assert ring.read("/local/domain/5/big%d" % i) == value


def test_release_tears_down_ring_and_removes_nodes(guest):
    priv, ring = guest
    priv.call("WATCH", "@releaseDomain", "r")
    priv.next_event()
    ring.write("/local/domain/5/x", "1")
    priv.call("RELEASE", "5")
    assert priv.next_event() == (b"@releaseDomain", b"r")
    assert priv.err("READ", "/local/domain/5") == "ENOENT"
    # the ring is no longer served
    ring.send(pack("READ", args("/local/domain/5")))
    with pytest.raises(TimeoutError):
        ring.read_msg(timeout=0.5)


def test_ring_oversized_request_sets_proto_error(guest):
    priv, ring = guest
    ring.send(HDR.pack(TYPES["WRITE"], 0, 0, 5000))
    for _ in range(100):
        if ring.u32(OFF_ERROR) == 3:
            break
        ring.wait_notify(0.05)
    assert ring.u32(OFF_ERROR) == 3
    # the daemon and its other clients are fine
    assert priv.read("/local/domain/5") == b""


def test_introduce_without_fds_is_bookkeeping_only(xstored):
    priv = SockConn(xstored.socket)
    priv.call("INTRODUCE", "9", "1", "1")
    assert priv.call("IS_DOMAIN_INTRODUCED", "9") == b"T\0"
    priv.call("RELEASE", "9")
    priv.close()


@pytest.fixture
def quota_daemon(tmp_path):
    d = Xstored(tmp_path, args=["-E", "4", "-W", "2", "-t", "1", "-A", "2", "-S", "200"]).start()
    yield d
    d.stop()


def test_ring_quotas(quota_daemon):
    priv = SockConn(quota_daemon.socket)
    ring = RingConn()
    assert ring.introduce(priv, 7).body == b"OK\0"
    setup_domain(priv, 7)  # owned by 7: counts as its first node
    # nodes: create while count < 4
    for i in range(3):
        ring.write("/local/domain/7/n%d" % i, "")
    assert ring.err("WRITE", raw=b"/local/domain/7/n3\0") == "ENOSPC"
    ring.call("RM", "/local/domain/7/n2")
    ring.write("/local/domain/7/n3", "")
    # node size
    assert ring.err("WRITE", raw=b"/local/domain/7/n0\0" + b"x" * 300) == "ENOSPC"
    # permissions per node
    assert ring.err("SET_PERMS", "/local/domain/7/n0", "n7", "r0", "r0") == "ENOSPC"
    # watches: rejected once more than 2 exist (4.17's off-by-one)
    for i in range(3):
        ring.call("WATCH", "/local/domain/7/w%d" % i, "t")
        ring.next_event()
    assert ring.err("WATCH", "/local/domain/7/w9", "t") == "E2BIG"
    # transactions: ENOSPC once more than 1 are open
    ring.call("TRANSACTION_START", "")
    ring.call("TRANSACTION_START", "")
    assert ring.err("TRANSACTION_START", "") == "ENOSPC"
    # dom0 is not bound by any of this
    for i in range(10):
        priv.write("/local/domain/0/free%d" % i, "x" * 300)
    q = priv.call("CONTROL", "quota", "7").decode()
    assert q.startswith("Domain 7:\nnodes           :        4\n"), q
    assert "watches         :        3\n" in q
    ring.close()
    priv.close()


def test_set_perms_event_reaches_readers_of_old_acl(guest):
    priv, ring = guest
    priv.write("/acl", "x")
    priv.call("SET_PERMS", "/acl", "n0", "r5")
    ring.call("WATCH", "/acl", "t")
    assert ring.next_event() == (b"/acl", b"t")
    priv.write("/acl", "y")
    assert ring.next_event() == (b"/acl", b"t")
    # access revoked: the change of ACL is still reported (old ACL allowed reading)
    priv.call("SET_PERMS", "/acl", "n0")
    assert ring.next_event() == (b"/acl", b"t")
    # from now on nothing
    priv.write("/acl", "z")
    ring.no_event()


@pytest.fixture
def outstanding_daemon(tmp_path):
    d = Xstored(tmp_path, args=["-Q", "outstanding=3"]).start()
    yield d
    d.stop()


def test_ring_outstanding_quota_stops_consumption(outstanding_daemon):
    from xstored_util import OFF_REQ_CONS, OFF_REQ_PROD
    priv = SockConn(outstanding_daemon.socket)
    ring = RingConn()
    assert ring.introduce(priv, 8).body == b"OK\0"
    setup_domain(priv, 8)
    value = b"v" * 300
    ring.write("/local/domain/8/big", value)
    req = pack("READ", args("/local/domain/8/big"))
    n = 1000 // len(req)  # as many requests as fit in the request ring
    start = ring.u32(OFF_REQ_PROD)
    for i in range(n):
        prod = ring.u32(OFF_REQ_PROD)
        for k, b in enumerate(req):
            ring.page[(prod + k) % 1024] = b
        ring.set_u32(OFF_REQ_PROD, prod + len(req))
    __import__("os").eventfd_write(ring.kick, 1)
    import time
    time.sleep(0.5)
    consumed = (ring.u32(OFF_REQ_CONS) - start) // len(req)
    # 3 replies fit the 1024-byte response ring, 3 more may wait queued: then it stops
    assert consumed <= 3 + 3 + 1 < n, consumed
    # draining the responses lets every request through
    for i in range(n):
        r = ring.read_msg()
        assert r.body == value
    ring.close()
    priv.close()


@pytest.fixture
def timeout_daemon(tmp_path):
    d = Xstored(tmp_path, args=["-w", "watch-event=1"]).start()
    yield d
    d.stop()


def test_unread_watch_events_time_out(timeout_daemon):
    import time
    priv = SockConn(timeout_daemon.socket)
    ring = RingConn()
    assert ring.introduce(priv, 4).body == b"OK\0"
    setup_domain(priv, 4)
    ring.call("WATCH", "/local/domain/4/w", "t")
    assert ring.next_event() == (b"/local/domain/4/w", b"t")
    # the guest stops reading: fill its response ring with big events, more queue up
    long = "x" * 200
    for i in range(12):
        priv.write("/local/domain/4/w/%s%d" % (long, i), "")
    time.sleep(3)  # > watch-event timeout: what is still queued in xstored is dropped
    got = 0
    while True:
        try:
            ring.next_event(timeout=0.5)
            got += 1
        except TimeoutError:
            break
    assert 0 < got < 12  # what fitted the ring arrived, the queued rest timed out
    ring.close()
    priv.close()


def test_domain_watches_listed_and_registered_for_a_guest(guest):
    """xst's XS_CONTROL domain-watches / domain-watch: the agent reads a guest's watches
    on one xstored and registers them for it on another (migration, restore)."""
    priv, ring = guest
    assert priv.call("CONTROL", "domain-watches", "5") == b"\0"      # the end, at once
    ring.call("WATCH", "control/shutdown", "ctl")
    ring.call("WATCH", "/local/domain/5/w", "abs")
    ring.call("WATCH", "@releaseDomain", "rel")
    for _ in range(3):
        ring.next_event()
    assert priv.call("CONTROL", "domain-watches", "5") == \
        b"control/shutdown\0ctl\0/local/domain/5/w\0abs\0@releaseDomain\0rel\0\0"
    assert priv.call("CONTROL", "domain-watches", "5", "2") == b"@releaseDomain\0rel\0\0"
    assert priv.call("CONTROL", "domain-watches", "5", "3") == b"\0"
    # registering: as if the guest had sent WATCH, initial event included
    ring.call("RESET_WATCHES")
    assert priv.call("CONTROL", "domain-watch", "5", "data", "d") == b"OK\0"
    assert ring.next_event() == (b"data", b"d")
    priv.write("/local/domain/5/data/x", "1")
    assert ring.next_event() == (b"data/x", b"d")   # relative, as registered
    assert priv.err("CONTROL", "domain-watch", "5", "data", "d") == "EEXIST"
    assert priv.call("CONTROL", "domain-watches", "5") == b"data\0d\0\0"
    # more than one reply holds: the first has no end mark, the next ends with it
    ring.call("RESET_WATCHES")
    want = [("w%03d/" % i + "x" * 90, "t%d" % i) for i in range(60)]
    for p, t in want:
        ring.call("WATCH", p, t)
        ring.next_event()
    got, start, replies = [], 0, []
    while True:
        r = priv.call("CONTROL", "domain-watches", "5", str(start))
        replies.append(r)
        parts = r.split(b"\0")
        assert parts[-1] == b""
        parts = parts[:-1]
        end = len(parts) % 2 == 1
        if end:
            assert parts[-1] == b""
            parts = parts[:-1]
        got += [(parts[i].decode(), parts[i + 1].decode()) for i in range(0, len(parts), 2)]
        start = len(got)
        if end:
            break
    assert got == want
    assert len(replies) == 2 and all(len(r) <= 4096 for r in replies), [len(r) for r in replies]
    # bad requests
    assert priv.err("CONTROL", "domain-watches", "6") == "ENOENT"     # no such domain
    assert priv.err("CONTROL", "domain-watches", "5x") == "EINVAL"
    assert priv.err("CONTROL", "domain-watches", "5", "-") == "EINVAL"
    assert priv.err("CONTROL", "domain-watch", "5", "a//b", "t") == "EINVAL"
    assert priv.err("CONTROL", "domain-watch", "5", "x") == "EINVAL"
    assert ring.err("CONTROL", "domain-watches", "5") == "EACCES"   # privileged only
    ring.no_event()


def test_domain_watch_respects_the_guest_quota(tmp_path):
    d = Xstored(tmp_path, args=["-W", "2"]).start()
    try:
        priv = SockConn(d.socket)
        ring = RingConn()
        assert ring.introduce(priv, 5).body == b"OK\0"
        setup_domain(priv)
        for i in range(3):
            assert priv.call("CONTROL", "domain-watch", "5", "w%d" % i, "t") == b"OK\0"
        assert priv.err("CONTROL", "domain-watch", "5", "w9", "t") == "E2BIG"
        ring.close()
        priv.close()
    finally:
        d.stop()
