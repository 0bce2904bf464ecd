"""Scale: many concurrent client connections, and a connection that misbehaves while
others keep being served.  Against xstored, and Xen's C xenstored as the reference."""
import resource
import socket

import pytest

from xs_util import READ, WRITE, XsRaw, xsd  # noqa: F401  (xsd is a fixture)

NCONN = 10000


@pytest.fixture
def nofile():
    """Raises RLIMIT_NOFILE before the daemon starts (daemons inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NCONN + 512
    if hard != resource.RLIM_INFINITY and hard < want:
        print("SKIP reason: RLIMIT_NOFILE hard limit %d < %d" % (hard, want))
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_ten_thousand_connections(nofile, xsd):
    first = XsRaw(xsd.socket)
    first.write("/scale", "v")
    socks = []
    try:
        for _ in range(NCONN):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(xsd.socket)          # blocking: waits while the backlog is full
            s.settimeout(30)
            socks.append(s)
        # One request on every connection, all in flight at once, then every reply.
        req = b"/scale\0"
        hdr = (READ).to_bytes(4, "little") + bytes(8) + len(req).to_bytes(4, "little")
        for s in socks:
            s.sendall(hdr + req)
        for i, s in enumerate(socks):
            data = b""
            while len(data) < 17:
                chunk = s.recv(64)
                assert chunk, "connection %d closed by the daemon" % i
                data += chunk
            assert data[:4] == (READ).to_bytes(4, "little") and data[16:] == b"v", (i, data)
        assert first.read("/scale") == b"v"
    finally:
        for s in socks:
            s.close()
    # The daemon is still there for a new client after they all went away.
    c = XsRaw(xsd.socket)
    assert c.write("/scale/after", "1") == b"OK\0"
    c.close()
    first.close()


def test_stalled_reader_does_not_block_others(xsd):
    """A client that sends requests but never reads replies must not stop the daemon
    serving everybody else."""
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(xsd.socket)
    stalled.setblocking(False)
    other = XsRaw(xsd.socket)
    other.write("/stall", "x" * 3000)
    req = b"/stall\0"
    msg = (READ).to_bytes(4, "little") + bytes(8) + len(req).to_bytes(4, "little") + req
    sent = 0
    try:
        for _ in range(2000):              # up to ~6 MB of replies nobody reads
            stalled.send(msg)
            sent += 1
    except BlockingIOError:
        pass
    assert sent > 10
    for i in range(50):
        assert other.read("/stall") == b"x" * 3000
        assert other.ok(WRITE, b"/stall/%d\0v" % i) == b"OK\0"
    stalled.close()
    other.close()
