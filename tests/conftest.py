"""Shared fixtures for integration tests: real daemons on private sockets."""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("XST_BUILD", ROOT / "build" / "release"))
XEN_BIN = pathlib.Path("/usr/lib/xen-4.17/bin")


def build_path(*parts):
    return BUILD.joinpath(*parts)


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.01)
    raise TimeoutError("timed out waiting for " + what)


class Xstored:
    """One xstored process with its own run directory and socket."""

    def __init__(self, tmpdir, args=()):
        self.dir = pathlib.Path(tmpdir)
        self.socket = str(self.dir / "socket")
        self.trace = str(self.dir / "trace")
        self.args = list(args)
        self.proc = None

    def start(self):
        cmd = [str(build_path("store", "xstored")), "--socket", self.socket,
               "--no-fork", "-T", self.trace] + self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None,
                 what="xstored socket")
        if self.proc.poll() is not None:
            raise RuntimeError("xstored exited: " + self.proc.stderr.read())
        return self

    @property
    def env(self):
        e = dict(os.environ)
        e["XENSTORED_PATH"] = self.socket
        return e

    def run(self, *argv, check=True, input=None, timeout=30):
        """Run a client (e.g. xenstore-write) against this daemon."""
        r = subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("%s failed (%d): %s" % (argv, r.returncode, r.stderr))
        return r

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


@pytest.fixture
def xstored(tmp_path):
    d = Xstored(tmp_path).start()
    yield d
    d.stop()
    assert d.proc.returncode in (0, -signal.SIGTERM), "xstored died: rc=%s" % d.proc.returncode
