"""The xenstore ring of a kvm guest with a real xstored: the plugin's ring page (guest
RAM, memfd), ioeventfd kick and irqfd notification are handed to xstored with
XS_INTRODUCE + SCM_RIGHTS; the test guest reads its name, writes data/status and obeys
control/shutdown.  The test side uses Debian's xenstore-* clients."""
import time

import pytest

from conftest import wait_for
from kvm_util import Drive

DOMID = 7


def setup_domain(xs, domid, name, perms=True):
    """Nodes of the domain, owned by it (SET_PERMS needs the domain introduced)."""
    base = "/local/domain/%d" % domid
    xs.run("xenstore-write", base + "/name", name, base + "/control/shutdown", "",
           base + "/data/status", "booting")
    # "name" last: a guest that runs already starts once it can read its name, and
    # then writes data/status, which must be its own by then
    for p in (() if not perms else
              ("", "/control", "/control/shutdown", "/data", "/data/status", "/name")):
        xs.run("xenstore-chmod", base + p, "n%d" % domid)
    return base


def read(xs, path):
    r = xs.run("xenstore-read", path, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def test_kvm_xenstore_ring_name_status_shutdown(xstored):
    d = Drive("tick=100 xs=1", domid=DOMID, paused=True)
    try:
        d.cmd("introduce %s %d" % (xstored.socket, DOMID))
        base = setup_domain(xstored, DOMID, "kvmguest")
        d.cmd("unpause")
        d.expect(r"^CON xstguest: name=kvmguest$", 10)
        wait_for(lambda: read(xstored, base + "/data/status") == "running", 10,
                 "data/status = running")
        d.counter(5)
        xstored.run("xenstore-write", base + "/control/shutdown", "poweroff")
        d.expect(r"^CON xstguest: shutdown poweroff$", 10)
        d.expect(r"^EXIT shutdown poweroff$", 10)
        assert read(xstored, base + "/control/shutdown") == ""
        assert read(xstored, base + "/data/status") == "poweroff"
    finally:
        d.close()


def test_kvm_xenstore_ring_reboot_request(xstored):
    d = Drive("tick=100 xs=1", domid=DOMID, paused=True)
    try:
        d.cmd("introduce %s %d" % (xstored.socket, DOMID))
        base = setup_domain(xstored, DOMID, "rebooter")
        d.cmd("unpause")
        d.expect(r"^CON xstguest: name=rebooter$", 10)
        xstored.run("xenstore-write", base + "/control/shutdown", "reboot")
        d.expect(r"^EXIT shutdown reboot$", 10)
    finally:
        d.close()


def test_kvm_xenstore_without_introduce_guest_keeps_running(xstored):
    """Negative control: without the ring handoff nothing answers the guest; it keeps
    retrying without stalling its workload."""
    setup_domain(xstored, DOMID, "lonely", perms=False)
    d = Drive("tick=100 xs=1", domid=DOMID)
    try:
        lines = d.lines_for(1.5)
        assert not [l for l in lines if "name=" in l], lines
        assert len([l for l in lines if l.startswith("CON COUNTER")]) >= 10, lines
        assert read(xstored, "/local/domain/%d/data/status" % DOMID) == "booting"
    finally:
        d.close()


def test_kvm_xenstore_introduced_after_guest_started(xstored):
    """The agent's order: the guest runs first, then the ring is introduced and the
    domain's nodes are written; the guest's requests from before the introduction (which
    resets the ring) are retried and it connects."""
    d = Drive("tick=100 xs=1", domid=DOMID)
    try:
        d.counter(5)
        time.sleep(0.5)
        d.cmd("introduce %s %d" % (xstored.socket, DOMID))
        base = setup_domain(xstored, DOMID, "late")
        d.expect(r"^CON xstguest: name=late$", 10)
        wait_for(lambda: read(xstored, base + "/data/status") == "running", 10,
                 "data/status = running")
        xstored.run("xenstore-write", base + "/control/shutdown", "poweroff")
        d.expect(r"^EXIT shutdown poweroff$", 10)
    finally:
        d.close()
