"""Helpers for the live-update tests: Debian's xenstore-control, copies of the
xstored binary (so /proc/PID/exe shows the exec), and the node listing of a state
stream written by the daemon itself (XS_CONTROL dump-state + xstored --inspect-state)."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from conftest import XEN_BIN, build_path  # noqa: E402

CONTROL = str(XEN_BIN / "xenstore-control")


def live_update(d, binary, *opts, timeout=60):
    """xenstore-control live-update [opts] binary against daemon d; CompletedProcess."""
    return subprocess.run([CONTROL, "live-update"] + list(opts) + [str(binary)], env=d.env,
                          capture_output=True, text=True, timeout=timeout)


def binary_copy(dirpath, name="xstored-new"):
    p = os.path.join(str(dirpath), name)
    shutil.copy(str(build_path("store", "xstored")), p)
    os.chmod(p, 0o755)
    return p


def exe_of(d):
    return os.readlink("/proc/%d/exe" % d.proc.pid)


def node_listing(d, path):
    """NODE lines of the daemon's state stream: the committed store with perms."""
    r = subprocess.run([CONTROL, "dump-state", str(path)], env=d.env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr + r.stdout
    out = subprocess.run([str(build_path("store", "xstored")), "--inspect-state", str(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [l for l in out.splitlines() if l.startswith("NODE ")]
