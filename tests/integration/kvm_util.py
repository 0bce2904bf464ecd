"""Helpers for the kvm core's integration tests: runs build/<variant>/plugins/kvm/
xst-kvm-drive (libxstcore + xst-hv-kvm.so, a real KVM guest) on the test guest
tests/guests/xstguest and talks to it line by line (see kvm_drive.c for the commands).
Tests skip, printing the plugin's probe reason, only when KVM is unusable here."""
import os
import queue
import re
import subprocess
import threading
import time

import pytest

from conftest import build_path


def kvm_usable():
    """None when /dev/kvm opens read-write, else why not."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return "/dev/kvm unusable: %s" % e.strerror
    os.close(fd)
    return None


def skip_without_kvm():
    """Skip the calling test, printing why, only when /dev/kvm is unusable."""
    why = kvm_usable()
    if why:
        print("skipping: " + why)
        pytest.skip(why)

DRIVE = build_path("plugins", "kvm", "xst-kvm-drive")
PLUGIN = build_path("plugins", "kvm", "xst-hv-kvm.so")
GUEST = build_path("tests", "guests", "xstguest")


class DriveError(Exception):
    pass


class Drive:
    """One guest under xst-kvm-drive.  Output lines are kept in order; expect() consumes
    them, so assertions about "what came next" are exact."""

    def __init__(self, cmdline, mem_mib=64, domid=1, paused=False, kernel=None,
                 ramdisk=None):
        if not os.path.exists("/dev/kvm"):
            pytest.skip("/dev/kvm is missing on this host")
        argv = [str(DRIVE), "--plugin", str(PLUGIN), "--kernel", str(kernel or GUEST),
                "--cmdline", cmdline, "--mem", str(mem_mib), "--domid", str(domid)]
        if paused:
            argv.append("--paused")
        if ramdisk:
            argv += ["--ramdisk", str(ramdisk)]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.q = queue.Queue()
        self.log = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        first = self.next_line(30)
        if first.startswith("SKIP: "):
            self.close()
            pytest.skip("kvm unusable: " + first[6:])
        if first != "OK create":
            self.close()
            raise DriveError("drive did not start: %r" % first)

    def _read(self):
        for line in self.proc.stdout:
            self.q.put((time.monotonic(), line.rstrip("\n")))
        self.q.put((time.monotonic(), None))

    def next_line(self, timeout):
        try:
            t, line = self.q.get(timeout=timeout)
        except queue.Empty:
            raise DriveError("no output within %.1fs; so far: %s" % (timeout, self.log[-20:]))
        if line is None:
            self.q.put((t, None))
            raise DriveError("xst-kvm-drive exited (%s): %s" %
                             (self.proc.poll(), self.proc.stderr.read()))
        self.log.append(line)
        self.last_time = t
        return line

    def expect(self, pattern, timeout=10):
        """Consumes lines until one matches pattern (regex, search); returns the match."""
        end = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise DriveError("timed out waiting for %r; last lines: %s" %
                                 (pattern, self.log[-20:]))
            line = self.next_line(left)
            m = rx.search(line)
            if m:
                return m
            if line.startswith("EXIT ") and not pattern.startswith("^EXIT"):
                raise DriveError("guest stopped while waiting for %r: %s" % (pattern, line))

    def lines_for(self, seconds):
        """Every line that arrives within `seconds`."""
        out = []
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            try:
                t, line = self.q.get(timeout=left)
            except queue.Empty:
                return out
            if line is None:
                self.q.put((t, None))
                return out
            self.log.append(line)
            out.append(line)

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def cmd(self, cmd, timeout=60):
        """Runs a command; returns its OK line, raises DriveError on ERR."""
        self.send(cmd)
        m = self.expect(r"^(OK|ERR) " + re.escape(cmd), timeout)
        line = self.log[-1]
        if m.group(1) == "ERR":
            raise DriveError(line)
        return line

    def counter(self, timeout=10):
        """Next COUNTER line as (n, errors, dirtied)."""
        m = self.expect(r"^CON COUNTER (\d+) errors=(\d+) dirtied=(\d+)", timeout)
        return int(m.group(1)), int(m.group(2)), int(m.group(3))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(20)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
