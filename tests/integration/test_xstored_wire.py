"""xstored's byte stream handling (spec §1-§3): framing, partial I/O, malformed input.
Talks raw bytes over the real socket of a real daemon."""
import fcntl
import struct
import termios
import time

import pytest

from xstored_util import HDR, SockConn, TYPES, args, pack


@pytest.fixture
def conn(xstored):
    c = SockConn(xstored.socket)
    yield c
    c.close()


def test_read_write_roundtrip(conn):
    conn.write("/a/b", b"hello\0world")
    assert conn.read("/a/b") == b"hello\0world"
    assert conn.directory("/a") == ["b"]
    # intermediate node created with an empty value
    assert conn.read("/a") == b""


def test_reply_echoes_req_id_and_tx(conn):
    conn.send(pack("READ", args("/tool"), req_id=0xdeadbeef))
    r = conn.read_msg()
    assert (r.type, r.req_id, r.tx, r.body) == (TYPES["READ"], 0xdeadbeef, 0, b"")


def test_byte_by_byte_request(conn):
    data = pack("WRITE", b"/slow\0value")
    for b in data:
        conn.sock.send(bytes([b]))
        time.sleep(0.001)
    assert conn.read_msg().body == b"OK\0"
    assert conn.read("/slow") == b"value"


def test_pipelined_requests_answered_in_order(conn):
    batch = b"".join(pack("WRITE", b"/p/%d\0v%d" % (i, i), req_id=i) for i in range(200))
    batch += b"".join(pack("READ", b"/p/%d\0" % i, req_id=1000 + i) for i in range(200))
    conn.sock.sendall(batch)
    for i in range(200):
        r = conn.read_msg()
        assert (r.req_id, r.body) == (i, b"OK\0")
    for i in range(200):
        r = conn.read_msg()
        assert (r.req_id, r.body) == (1000 + i, b"v%d" % i)


def unconsumed(sock):
    """Bytes this end sent that the peer has not read yet (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def test_handled_requests_are_consumed_once(conn):
    # xstored peeks at requests and consumes their bytes after the replies
    # (store/socket.c): every request is answered exactly once, and nothing it has
    # answered stays queued in the socket.
    conn.write("/once", b"0")
    for i in range(50):
        conn.send(pack("WRITE", b"/once\0%d" % i, req_id=i))
        assert conn.read_msg().req_id == i
        deadline = time.monotonic() + 2
        while unconsumed(conn.sock) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert unconsumed(conn.sock) == 0
    assert conn.read("/once") == b"49"
    conn.no_event(0.2)  # and no duplicate reply


def test_requests_around_passed_fds_answered_once(conn, tmp_path):
    # A message carrying descriptors is read for real rather than peeked; the
    # requests before and after it in the stream are each answered once.
    f = open(tmp_path / "f", "w")
    conn.send(pack("READ", b"/tool\0", req_id=1))
    conn.send(pack("READ", b"/tool\0", req_id=2), fds=[f.fileno()])
    conn.send(pack("READ", b"/tool\0", req_id=3))
    assert [conn.read_msg().req_id for _ in range(3)] == [1, 2, 3]
    conn.no_event(0.2)
    f.close()


def test_oversized_payload_closes_only_that_connection(xstored):
    bad, good = SockConn(xstored.socket), SockConn(xstored.socket)
    bad.sock.sendall(HDR.pack(TYPES["WRITE"], 0, 0, 4097))
    assert bad.closed()
    assert good.read("/tool") == b""
    good.close()


def test_max_payload_accepted(conn):
    value = b"x" * (4096 - len(b"/big\0"))
    conn.write("/big", value)
    assert conn.read("/big") == value


@pytest.mark.parametrize("t", [20, 23, 24, 25, 26, 100, 0xffff, TYPES["WATCH_EVENT"], TYPES["ERROR"]])
def test_unknown_and_server_only_types_enosys(conn, t):
    r = conn.request(t, b"x\0")
    assert r.error == "ENOSYS"
    assert conn.read("/tool") == b""  # stream continues


def test_missing_nul_and_extra_bytes(conn):
    assert conn.err("WRITE", raw=b"/nonul") == "EINVAL"
    assert conn.err("READ", raw=b"/tool") == "EINVAL"
    assert conn.err("READ", raw=b"/tool\0junk") == "EINVAL"
    assert conn.err("WATCH", raw=b"/a\0tok\0depth\0") == "EINVAL"
    assert conn.err("DIRECTORY_PART", raw=b"/tool\0") == "EINVAL"
    assert conn.err("TRANSACTION_END", "X") == "EINVAL"
    assert conn.read("/tool") == b""


@pytest.mark.parametrize("path", ["", "/a//b", "/a/", "/a b", "/a\x01", "@foo", "/" + "x" * 3100])
def test_invalid_paths_einval(conn, path):
    assert conn.err("WRITE", raw=path.encode() + b"\0v") == "EINVAL"


def test_errors(conn):
    assert conn.err("READ", "/nope") == "ENOENT"
    assert conn.err("RM", "/nope/deeper") == "ENOENT"
    assert conn.call("RM", "/nope") == b"OK\0"  # parent exists
    assert conn.err("RM", "/") == "EINVAL"
    assert conn.err("READ", "/x", tx=77) == "ENOENT"
    assert conn.err("TRANSACTION_END", "T") == "ENOENT"
    assert conn.err("UNWATCH", "/a", "t") == "ENOENT"
    assert conn.err("RELEASE", "0") == "EINVAL"
    assert conn.err("RELEASE", "9") == "ENOENT"
    assert conn.err("INTRODUCE", "5", "1") == "EINVAL"
    assert conn.err("INTRODUCE", "5", "1", "0") == "EINVAL"


def test_relative_paths_resolve_under_dom0_home(conn):
    conn.write("rel/x", "1")
    assert conn.read("/local/domain/0/rel/x") == b"1"
    assert conn.read("rel/x") == b"1"


def test_big_directory_e2big_and_directory_part(conn):
    names = ["child-with-a-longish-name-%05d" % i for i in range(400)]
    for n in names:
        conn.write("/big/" + n, "")
    assert conn.err("DIRECTORY", "/big") == "E2BIG"
    got, off, gen = b"", 0, None
    while True:
        body = conn.call("DIRECTORY_PART", "/big", str(off))
        g, chunk = body.split(b"\0", 1)
        assert gen in (None, g)
        gen = g
        if chunk.endswith(b"\0\0") or chunk == b"\0":
            got += chunk[:-1]
            break
        got += chunk
        off += len(chunk)
    assert got.split(b"\0")[:-1] == [n.encode() for n in names]
    # offset past the end: gen and an empty list
    assert conn.call("DIRECTORY_PART", "/big", "999999") == gen + b"\0\0"


def test_get_domain_path_and_is_introduced(conn):
    assert conn.call("GET_DOMAIN_PATH", "7") == b"/local/domain/7\0"
    assert conn.call("GET_DOMAIN_PATH", "junk") == b"/local/domain/0\0"
    assert conn.call("IS_DOMAIN_INTRODUCED", "7") == b"F\0"
    assert conn.call("IS_DOMAIN_INTRODUCED", "32752") == b"T\0"
