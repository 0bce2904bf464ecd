"""Helpers for the domain-process tests: a real xst-domain per domain, driven through the
xst-domctl harness (core/domctl.c), introduced to a real xstored, observed with Debian's
xenstore clients."""
import os
import pathlib
import signal
import socket
import subprocess
import time

from conftest import build_path, wait_for


def domctl_path():
    return str(build_path("core", "xst-domctl"))


def parse_kv(text):
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("event "):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def proc_start(pid):
    """The process's start time (clock ticks since boot), None if it is gone: with the
    pid, it names one process even after the pid was reused."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().split(")")[-1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def pid_alive(pid, start=None):
    """Is process pid (started at `start`, when given) alive?  A zombie is dead for our
    purposes, and so is another process that got the pid later."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().split(")")[-1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if fields[0] == "Z":
        return False
    return start is None or int(fields[19]) == start


class Domain:
    """One domain process, spawned and introduced to `xs` (an conftest.Xstored)."""

    def __init__(self, xs, rundir, domid, **cfg):
        self.xs = xs
        self.rundir = str(rundir)
        self.domid = domid
        self.cfg = cfg
        self.pid = None
        self.start = None
        self.gfn = None

    def ctl(self, *args, check=True, timeout=80):
        r = subprocess.run([domctl_path(), "--rundir", self.rundir, "--domid", str(self.domid)]
                           + [str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("xst-domctl %s failed (%d): %s%s" % (
                args, r.returncode, r.stdout, r.stderr))
        return r

    def spawn(self, *flags, check=True):
        """Spawn and create; with check=False a failed create is kept in self.result
        (the process, if it started, is still recorded for cleanup)."""
        args = ["spawn", "--core", "sim"]
        if self.xs is not None:
            args += ["--xs", self.xs.socket]
        args += list(flags) + ["%s=%s" % kv for kv in self.cfg.items()]
        self.result = r = self.ctl(*args, check=False)
        kv = parse_kv(r.stdout)
        if "pid" in kv:
            self.pid = int(kv["pid"])
            self.start = proc_start(self.pid)
        if check and r.returncode != 0:
            raise AssertionError("spawn failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))
        if "gfn" in kv:
            self.gfn = int(kv["gfn"])
        return self

    def toolstack_nodes(self, name):
        """What the agent writes for a guest (subset of libxl's layout), once the domain
        is introduced: name readable, data/ owned, control/shutdown writable by it."""
        base = "/local/domain/%d" % self.domid
        d = str(self.domid)
        self.xs.run("xenstore-write", base + "/name", name, base + "/data", "",
                    base + "/control/shutdown", "")
        self.xs.run("xenstore-chmod", base, "n0", "r" + d)
        self.xs.run("xenstore-chmod", base + "/name", "n0", "r" + d)
        self.xs.run("xenstore-chmod", base + "/data", "n" + d)
        self.xs.run("xenstore-chmod", base + "/control", "n0", "r" + d)
        self.xs.run("xenstore-chmod", base + "/control/shutdown", "n0", "b" + d)

    def info(self):
        return parse_kv(self.ctl("info").stdout)

    def events(self, after=0, timeout_ms=0):
        out = self.ctl("wait-event", after, timeout_ms).stdout
        evs = []
        for line in out.splitlines():
            if line.startswith("event "):
                evs.append(dict(f.split("=", 1) for f in line[6:].split(" ", 3)))
        return evs

    def console_log(self):
        return self.ctl("console-log").stdout

    def alive(self):
        return bool(self.pid) and pid_alive(self.pid, self.start)

    def destroy(self):
        if self.alive():
            self.ctl("destroy")
            wait_for(lambda: not self.alive(), timeout=10, what="domain process exit")

    def log(self):
        try:
            with open(os.path.join(self.rundir, "dom-%d.log" % self.domid)) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def assert_clean_log(self):
        """No sanitizer report (san=1 builds) in the domain process's log."""
        log = self.log()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert bad not in log, log

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)


def console_connect(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def recv_until(sock, what, timeout=5.0):
    buf = b""
    end = time.monotonic() + timeout
    while what not in buf and time.monotonic() < end:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().split(")")[-1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime
