"""Helpers for the xenstore proof tests: the reference C xenstored, a raw wire client and
fixtures that run one test against xstored and against Xen's C xenstored.

The C xenstored (Debian xen-utils-4.17) is started through
/work/shared/anchors/c-xenstored/run (override with XST_CXENSTORED_RUN).  Every socket
connection is privileged on both daemons.
"""
import os
import pathlib
import signal
import socket
import struct
import subprocess
import time

import pytest

import conftest
from conftest import Xstored, wait_for

XEN_BIN = pathlib.Path("/usr/lib/xen-4.17/bin")
CXS_RUN = pathlib.Path(os.environ.get("XST_CXENSTORED_RUN",
                                      "/work/shared/anchors/c-xenstored/run"))
DISCREPANCIES = pathlib.Path(os.environ.get("XST_XS_DISCREPANCIES", "/tmp/xs-discrepancies.txt"))

# Message types (xs_wire.h).
CONTROL, DIRECTORY, READ, GET_PERMS, WATCH, UNWATCH, TRANSACTION_START, TRANSACTION_END, \
    INTRODUCE, RELEASE, GET_DOMAIN_PATH, WRITE, MKDIR, RM, SET_PERMS, WATCH_EVENT, ERROR, \
    IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET, RESTRICT, RESET_WATCHES, DIRECTORY_PART = range(23)
TYPE_NAMES = {v: k for k, v in dict(
    CONTROL=CONTROL, DIRECTORY=DIRECTORY, READ=READ, GET_PERMS=GET_PERMS, WATCH=WATCH,
    UNWATCH=UNWATCH, TRANSACTION_START=TRANSACTION_START, TRANSACTION_END=TRANSACTION_END,
    INTRODUCE=INTRODUCE, RELEASE=RELEASE, GET_DOMAIN_PATH=GET_DOMAIN_PATH, WRITE=WRITE,
    MKDIR=MKDIR, RM=RM, SET_PERMS=SET_PERMS, WATCH_EVENT=WATCH_EVENT, ERROR=ERROR,
    IS_DOMAIN_INTRODUCED=IS_DOMAIN_INTRODUCED, RESUME=RESUME, SET_TARGET=SET_TARGET,
    RESTRICT=RESTRICT, RESET_WATCHES=RESET_WATCHES, DIRECTORY_PART=DIRECTORY_PART).items()}
PAYLOAD_MAX = 4096
HDR = struct.Struct("<IIII")


def type_name(t):
    return TYPE_NAMES.get(t, str(t))


class CXenstored:
    """Xen's C xenstored 4.17 in socket-only mode (the reference implementation)."""

    name = "cxenstored"

    def __init__(self, tmpdir, args=()):
        self.dir = pathlib.Path(tmpdir)
        self.socket = str(self.dir / "socket")
        self.args = list(args)
        self.pid = None

    @staticmethod
    def unavailable():
        """Why the reference cannot run here, or None."""
        if not CXS_RUN.exists():
            return "C xenstored anchor %s missing" % CXS_RUN
        if not (XEN_BIN / "xenstored").exists():
            return "%s missing (apt-get install xen-utils-4.17 libxen-dev)" % (XEN_BIN / "xenstored")
        return None

    def start(self):
        env = dict(os.environ)
        # xenstored itself honours XENSTORED_PATH: a stray one would make it take over
        # (and unlink) another daemon's socket.
        env.pop("XENSTORED_PATH", None)
        env.pop("XENSTORED_RUNDIR", None)
        if self.args:
            return self._start_with_args(env)
        r = subprocess.run(["sh", str(CXS_RUN), str(self.dir)], capture_output=True, text=True,
                           env=env, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("C xenstored did not start: " + (r.stderr or r.stdout).strip())
        self.pid = int(r.stdout.split()[-1])
        return self

    def _start_with_args(self, env):
        """As the anchor's run script does (same shim, same -N), plus daemon options; the
        anchor script itself takes none."""
        cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME",
                                            os.path.expanduser("~/.cache"))) / "xst-anchors"
        shim = cache / "libxenshim.so"
        src = CXS_RUN.parent / "xenshim.c"
        if not shim.exists() or src.stat().st_mtime > shim.stat().st_mtime:
            cache.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(src),
                                "-ldl"], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("cannot build the xenstored shim: " + r.stderr)
        self.dir.mkdir(parents=True, exist_ok=True)
        env["XENSTORED_RUNDIR"] = str(self.dir)
        env["LD_PRELOAD"] = str(shim)
        log = open(self.dir / "xenstored.log", "w")
        proc = subprocess.Popen([str(XEN_BIN / "xenstored"), "-N"] + self.args, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.pid = proc.pid
        self._proc = proc
        try:
            wait_for(lambda: os.path.exists(self.socket) or proc.poll() is not None,
                     what="C xenstored socket")
        except TimeoutError:
            proc.kill()
            raise RuntimeError("C xenstored did not create its socket")
        if proc.poll() is not None:
            raise RuntimeError("C xenstored exited: " + (self.dir / "xenstored.log").read_text())
        return self

    @property
    def env(self):
        e = dict(os.environ)
        e["XENSTORED_PATH"] = self.socket
        return e

    def alive(self):
        if getattr(self, "_proc", None) is not None:
            return self._proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def run(self, *argv, check=True, input=None, timeout=30):
        return Xstored.run(self, *argv, check=check, input=input, timeout=timeout)

    def stop(self):
        if self.pid and self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                wait_for(lambda: not self.alive(), timeout=5, what="C xenstored exit")
            except TimeoutError:
                os.kill(self.pid, signal.SIGKILL)


class XstoredD(Xstored):
    """xstored from the build under test, with a crash/sanitizer check at stop."""

    name = "xstored"

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        was_alive = self.alive()
        rc = super().stop()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        assert was_alive, "xstored died during the test: rc=%s\n%s" % (rc, err)
        assert rc in (0, -signal.SIGTERM), "xstored exit rc=%s\n%s" % (rc, err)
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            assert bad not in err, "xstored sanitizer report:\n" + err
        return rc


def start_daemon(kind, tmpdir, args=()):
    d = pathlib.Path(tmpdir) / kind
    d.mkdir(parents=True, exist_ok=True)
    if kind == "xstored":
        exe = conftest.build_path("store", "xstored")
        assert exe.exists(), "xstored not built: %s" % exe
        return XstoredD(d, args).start()
    why = CXenstored.unavailable()
    if why:
        print("SKIP reason: " + why)
        pytest.skip(why)
    try:
        return CXenstored(d, args).start()
    except RuntimeError as e:
        print("SKIP reason: %s" % e)
        pytest.skip(str(e))


@pytest.fixture(params=["xstored", "cxenstored"])
def xsd(request, tmp_path):
    """One daemon per test: xstored, and (as a check of the expectations) Xen's C xenstored."""
    d = start_daemon(request.param, tmp_path)
    yield d
    d.stop()


def note_discrepancy(title, detail):
    """Appends a discrepancy between xstored and C xenstored for the daemon engineer."""
    try:
        with open(DISCREPANCIES, "a") as f:
            f.write("=== %s  [%s]\n%s\n\n" % (title, time.strftime("%Y-%m-%d %H:%M:%S"), detail))
    except OSError:
        pass


class Closed(Exception):
    pass


class XsRaw:
    """A raw xenstore wire client over the unix socket (16-byte little-endian headers)."""

    SYNC_REQ = 0x5e5e0000

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.nsync = 0

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, mtype, payload=b"", tx=0, req=0, length=None):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        self.sock.sendall(HDR.pack(mtype, req, tx, n) + payload)

    def _fill(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed()
            self.buf += chunk

    def recv(self):
        """Next message: (type, req_id, tx_id, payload)."""
        self._fill(HDR.size)
        t, r, x, n = HDR.unpack(self.buf[:HDR.size])
        self._fill(HDR.size + n)
        payload = self.buf[HDR.size:HDR.size + n]
        self.buf = self.buf[HDR.size + n:]
        return t, r, x, payload

    def request(self, mtype, payload=b"", tx=0, req=0):
        """Sends one request; returns (reply, events that arrived before the reply)."""
        self.send(mtype, payload, tx=tx, req=req)
        events = []
        while True:
            m = self.recv()
            if m[0] == WATCH_EVENT:
                events.append(m)
                continue
            return m, events

    def sync(self):
        """Everything the server queued before a no-op round trip (watch events)."""
        self.nsync += 1
        req = self.SYNC_REQ + self.nsync
        self.send(GET_DOMAIN_PATH, b"0\0", req=req)
        got = []
        while True:
            m = self.recv()
            if m[0] == GET_DOMAIN_PATH and m[1] == req:
                return got
            got.append(m)

    def eof(self, timeout=2.0):
        """True when the server closed the connection within `timeout`; bytes that arrive
        meanwhile are kept for recv()."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                c = self.sock.recv(65536)
                if not c:
                    return True
                self.buf += c
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)

    # Convenience wrappers asserting success.
    def ok(self, mtype, payload=b"", tx=0):
        (t, _, _, p), _ = self.request(mtype, payload, tx=tx)
        assert t == mtype, "%s %r -> %s %r" % (type_name(mtype), payload, type_name(t), p)
        return p

    def write(self, path, value, tx=0):
        if isinstance(value, str):
            value = value.encode()
        return self.ok(WRITE, path.encode() + b"\0" + value, tx=tx)

    def read(self, path, tx=0):
        return self.ok(READ, path.encode() + b"\0", tx=tx)
