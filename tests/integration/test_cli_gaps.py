"""Issue 5's remaining agent/CLI behaviours, each against a real xstored, a real agent on
the sim core and the real `xst` binary: top's CPU%, shutdown -w reason codes, soft reset,
coredump actions."""
import json
import os
import re
import signal
import subprocess

import pytest

from agent_util import Host, process_alive, wait_state
from conftest import build_path, wait_for


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path).start()
    yield h
    h.stop()
    assert h.agent_rc == 0, "xst-agent: rc=%s %s" % (h.agent_rc, h.agent_err)


def guest_up(host, domid):
    wait_for(lambda: host.xs("xenstore-read", "/local/domain/%d/data/status" % domid,
                             check=False).stdout == "running\n", what="guest up")


def test_top_cpu_percent(host):
    # A guest dirtying memory as fast as it can keeps its vcpu busy; an idle one sleeps.
    host.create("busy", 'workload = "dirty=4000M/s"\n')
    host.create("idle")
    r = host.xst("top", "-b", "-d", "1", "-i", "2")
    lines = r.stdout.splitlines()
    headers = [i for i, l in enumerate(lines) if l.split()[:4] == ["NAME", "STATE", "CPU(sec)",
                                                                  "CPU(%)"]]
    assert len(headers) == 2, r.stdout
    rows = {}
    for l in lines[headers[1] + 1:]:
        f = l.split()
        rows[f[0]] = float(f[3])
    assert rows["busy"] > 5.0, r.stdout
    assert rows["idle"] < 5.0, r.stdout
    # --json carries the same figure.
    j = json.loads(host.xst("--json", "top", "-b", "-d", "0.5").stdout)
    by = {d["name"]: d for d in j}
    assert by["busy"]["cpu_pct"] > 5.0 and by["idle"]["cpu_pct"] < 5.0, j
    assert host.xst("top", "-b", "-d", "0", check=False).returncode != 0
    assert host.xst("top", "-b", "-i", "x", check=False).returncode != 0


def shutdown_w(host, name):
    env = dict(os.environ, XST_AGENT=host.url)
    return subprocess.Popen([str(build_path("tools", "xst")), "shutdown", "-w", name], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_shutdown_wait_reason(host):
    # Poweroff: the guest acknowledges and stops with SHUTDOWN_poweroff (0).
    d = host.create("p")
    guest_up(host, d["domid"])
    r = host.xst("shutdown", "-w", "p")
    assert "Domain %d has been shut down, reason code 0\n" % d["domid"] in r.stderr, r.stderr
    assert host.dom("p") is None

    # The request is pending in a paused guest when it decides to reboot instead
    # (on_reboot = destroy): -w reports SHUTDOWN_reboot (1).
    d = host.create("b", 'on_reboot = "destroy"\n')
    guest_up(host, d["domid"])
    sd = "/local/domain/%d/control/shutdown" % d["domid"]
    host.xst("pause", "b")
    w = shutdown_w(host, "b")
    wait_for(lambda: host.xs("xenstore-read", sd, check=False).stdout == "poweroff\n",
             what="poweroff request")
    host.xs("xenstore-write", sd, "reboot")
    host.xst("unpause", "b")
    out, err = w.communicate(timeout=30)
    assert w.returncode == 0, err
    assert "Domain %d has been shut down, reason code 1\n" % d["domid"] in err, err

    # The domain process dies while -w waits (on_crash = destroy): SHUTDOWN_crash (3).
    d = host.create("k")
    guest_up(host, d["domid"])
    sd = "/local/domain/%d/control/shutdown" % d["domid"]
    host.xst("pause", "k")
    w = shutdown_w(host, "k")
    wait_for(lambda: host.xs("xenstore-read", sd, check=False).stdout == "poweroff\n",
             what="poweroff request")
    os.kill(d["pid"], signal.SIGKILL)
    out, err = w.communicate(timeout=30)
    assert w.returncode == 0, err
    assert "Domain %d has been shut down, reason code 3\n" % d["domid"] in err, err

    # Destroyed by the toolstack, not shut down: no reason code to report.
    d = host.create("x")
    host.xst("pause", "x")
    w = shutdown_w(host, "x")
    wait_for(lambda: host.xs("xenstore-read", "/local/domain/%d/control/shutdown" % d["domid"],
                             check=False).stdout == "poweroff\n", what="poweroff request")
    host.xst("destroy", "x")
    out, err = w.communicate(timeout=30)
    assert w.returncode == 0 and "Domain %d has been destroyed.\n" % d["domid"] in err, err


def test_soft_reset_reconnects_xenbus(host):
    # on_crash = soft-reset: the domain keeps its id and memory, its vcpus restart, and the
    # agent re-introduces it so the guest's xenbus client connects again and writes its
    # nodes anew through the ring.
    d = host.create("s", 'on_crash = "soft-reset"\n')
    domid = d["domid"]
    st = "/local/domain/%d/data/status" % domid
    guest_up(host, domid)
    host.xs("xenstore-rm", st)
    host.xs("xenstore-write", "/local/domain/%d/control/shutdown" % domid, "crash")
    wait_for(lambda: host.xs("xenstore-read", st, check=False).stdout == "running\n",
             what="status rewritten after the soft reset")
    s = host.dom("s")
    assert s["domid"] == domid and s["pid"] == d["pid"] and s["state"][3] != "s", s
    assert "domain %d soft-reset" % domid in host.xst("dmesg").stdout
    # Twice: the ring is reset again, the guest still answers its control node.
    host.xs("xenstore-rm", st)
    host.xs("xenstore-write", "/local/domain/%d/control/shutdown" % domid, "crash")
    wait_for(lambda: host.xs("xenstore-read", st, check=False).stdout == "running\n",
             what="status rewritten after the second soft reset")
    r = host.xst("shutdown", "-w", "s")
    assert "reason code 0" in r.stderr, r.stderr
