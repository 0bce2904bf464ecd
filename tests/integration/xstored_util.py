"""Helpers for xstored's own integration tests: a raw wire client over the unix socket
and a guest-side ring client (memfd page + two eventfds, handed over with SCM_RIGHTS as
docs/xenstore-ring-transport.md describes).  Nothing here mocks xstored: tests talk to
the real daemon, byte for byte."""
import mmap
import os
import select
import socket
import struct
import time

HDR = struct.Struct("<IIII")

TYPES = dict(CONTROL=0, DIRECTORY=1, READ=2, GET_PERMS=3, WATCH=4, UNWATCH=5,
             TRANSACTION_START=6, TRANSACTION_END=7, INTRODUCE=8, RELEASE=9,
             GET_DOMAIN_PATH=10, WRITE=11, MKDIR=12, RM=13, SET_PERMS=14, WATCH_EVENT=15,
             ERROR=16, IS_DOMAIN_INTRODUCED=17, RESUME=18, SET_TARGET=19, RESTRICT=20,
             RESET_WATCHES=21, DIRECTORY_PART=22)


def pack(t, payload=b"", tx=0, req_id=0):
    if isinstance(t, str):
        t = TYPES[t]
    return HDR.pack(t, req_id, tx, len(payload)) + payload


def args(*strs):
    """b"a\\0b\\0" from strings."""
    return b"".join(s.encode() + b"\0" if isinstance(s, str) else s + b"\0" for s in strs)


class XsError(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.name = name


class Reply:
    def __init__(self, hdr, body):
        self.type, self.req_id, self.tx, self.len = hdr
        self.body = body

    @property
    def error(self):
        return self.body.rstrip(b"\0").decode() if self.type == TYPES["ERROR"] else None

    def __repr__(self):
        return "Reply(type=%d, req_id=%d, tx=%d, body=%r)" % (self.type, self.req_id,
                                                              self.tx, self.body)


class Conn:
    """Common request/reply logic over a byte transport with send()/recv_exact()."""

    def __init__(self):
        self.events = []

    def read_msg(self, timeout=10):
        hdr = HDR.unpack(self.recv_exact(16, timeout))
        body = self.recv_exact(hdr[3], timeout) if hdr[3] else b""
        return Reply(hdr, body)

    def request(self, t, payload=b"", tx=0, req_id=0, timeout=10):
        """Send one request; return its reply, queueing watch events seen before it."""
        self.send(pack(t, payload, tx, req_id))
        while True:
            r = self.read_msg(timeout)
            if r.type == TYPES["WATCH_EVENT"]:
                self.events.append(tuple(r.body.split(b"\0")[:2]))
                continue
            return r

    def call(self, t, *strs, tx=0, raw=None):
        """Request expecting success; raises XsError for an ERROR reply."""
        r = self.request(t, raw if raw is not None else args(*strs), tx=tx)
        if r.error:
            raise XsError(r.error)
        assert r.type == TYPES[t], r
        return r.body

    def err(self, t, *strs, tx=0, raw=None):
        """Request expecting an ERROR; returns its name."""
        r = self.request(t, raw if raw is not None else args(*strs), tx=tx)
        assert r.error, "expected an error, got %r" % (r,)
        return r.error

    def write(self, path, value, tx=0):
        v = value.encode() if isinstance(value, str) else value
        return self.call("WRITE", raw=path.encode() + b"\0" + v, tx=tx)

    def read(self, path, tx=0):
        return self.call("READ", path, tx=tx)

    def directory(self, path, tx=0):
        body = self.call("DIRECTORY", path, tx=tx)
        return [x.decode() for x in body.split(b"\0")[:-1]] if body else []

    def next_event(self, timeout=5):
        if self.events:
            return self.events.pop(0)
        r = self.read_msg(timeout)
        assert r.type == TYPES["WATCH_EVENT"], r
        return tuple(r.body.split(b"\0")[:2])

    def no_event(self, wait=0.3):
        """Asserts that no watch event arrives within `wait` seconds."""
        assert not self.events, self.events
        try:
            r = self.read_msg(wait)
        except TimeoutError:
            return
        raise AssertionError("unexpected message %r" % (r,))


class SockConn(Conn):
    def __init__(self, path):
        super().__init__()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)

    def send(self, data, fds=None):
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def recv_exact(self, n, timeout=10):
        buf = b""
        self.sock.settimeout(timeout)
        try:
            while len(buf) < n:
                chunk = self.sock.recv(n - len(buf))
                if not chunk:
                    raise ConnectionResetError("xstored closed the connection")
                buf += chunk
        except socket.timeout:
            if not buf:
                raise TimeoutError("no data") from None
            raise
        return buf

    def closed(self, timeout=5):
        """True if the server closed this connection."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


RING = 1024
OFF_REQ_CONS, OFF_REQ_PROD, OFF_RSP_CONS, OFF_RSP_PROD = 2048, 2052, 2056, 2060
OFF_FEATURES, OFF_CONNECTION, OFF_ERROR = 2064, 2068, 2072


class RingConn(Conn):
    """The guest side of a xenstore ring: the page lives in a memfd at gfn*4096."""

    def __init__(self, gfn=3):
        super().__init__()
        self.gfn = gfn
        self.mem = os.memfd_create("xs-ring-test")
        os.ftruncate(self.mem, (gfn + 1) * 4096)
        self.kick = os.eventfd(0, os.EFD_CLOEXEC)
        self.notify = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.page = mmap.mmap(self.mem, 4096, offset=gfn * 4096)

    def introduce(self, priv, domid, evtchn=1):
        """Hands the ring to xstored through privileged socket connection `priv`."""
        payload = args(str(domid), str(self.gfn), str(evtchn))
        priv.send(pack("INTRODUCE", payload), fds=[self.mem, self.kick, self.notify])
        r = priv.read_msg()
        while r.type == TYPES["WATCH_EVENT"]:
            priv.events.append(tuple(r.body.split(b"\0")[:2]))
            r = priv.read_msg()
        return r

    def u32(self, off):
        return struct.unpack_from("<I", self.page, off)[0]

    def set_u32(self, off, v):
        struct.pack_into("<I", self.page, off, v & 0xffffffff)

    def send(self, data):
        while data:
            prod, cons = self.u32(OFF_REQ_PROD), self.u32(OFF_REQ_CONS)
            space = RING - ((prod - cons) & 0xffffffff)
            if space == 0:
                self.wait_notify(10)
                continue
            n = min(space, len(data))
            for i in range(n):
                self.page[(prod + i) % RING] = data[i]
            self.set_u32(OFF_REQ_PROD, prod + n)
            os.eventfd_write(self.kick, 1)
            data = data[n:]

    def wait_notify(self, timeout):
        r, _, _ = select.select([self.notify], [], [], timeout)
        if not r:
            return False
        try:
            os.eventfd_read(self.notify)
        except BlockingIOError:
            pass
        return True

    def recv_exact(self, n, timeout=10):
        buf = b""
        end = time.monotonic() + timeout
        while len(buf) < n:
            prod, cons = self.u32(OFF_RSP_PROD), self.u32(OFF_RSP_CONS)
            avail = (prod - cons) & 0xffffffff
            if avail:
                take = min(avail, n - len(buf))
                buf += bytes(self.page[RING + (cons + i) % RING] for i in range(take))
                self.set_u32(OFF_RSP_CONS, cons + take)
                os.eventfd_write(self.kick, 1)
                continue
            left = end - time.monotonic()
            if left <= 0:
                if not buf:
                    raise TimeoutError("no data on the ring")
                raise TimeoutError("partial message on the ring")
            self.wait_notify(min(left, 0.05))
        return buf

    def close(self):
        self.page.close()
        for fd in (self.mem, self.kick, self.notify):
            os.close(fd)
