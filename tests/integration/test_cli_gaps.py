"""Issue 5's remaining agent/CLI behaviours, each against a real xstored, a real agent on
the sim core and the real `xst` binary: top's CPU%, shutdown -w reason codes, soft reset,
coredump actions."""
import json
import os
import re

import pytest

from agent_util import Host, process_alive, wait_state
from conftest import wait_for


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
