"""xst save / restore / migrate with the kvm core and the project's PVH test guest
(tests/guests/xstguest), which prints `COUNTER n errors=e dirtied=d` and verifies its own
page checksums on every tick.  Skips, printing why, only when /dev/kvm is unusable."""
import json
import os
import re

import pytest

from conftest import build_path, wait_for
from kvm_util import skip_without_kvm
from netns_util import Host, Lab, skip_without_netns

GUEST = build_path("tests", "guests", "xstguest")
CFG = """name = "{name}"
type = "pvh"
core = "kvm"
memory = {mem}
vcpus = {vcpus}
kernel = "{kernel}"
cmdline = "tick=50 dirty=4M rate=4000 xs=1"
"""


@pytest.fixture(scope="module", autouse=True)
def need_kvm():
    skip_without_kvm()
    assert os.path.exists(GUEST), "test guest not built: %s" % GUEST
    assert os.path.exists(build_path("plugins", "kvm", "xst-hv-kvm.so"))


def counters(log):
    return [tuple(map(int, m)) for m in
            re.findall(r"COUNTER (\d+) errors=(\d+) dirtied=(\d+)", log)]


def create(h, tmp_path, name="vk", mem=64, kernel=GUEST, vcpus=1):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(CFG.format(name=name, mem=mem, kernel=kernel, vcpus=vcpus))
    h.xst("create", str(cfg))
    d = h.domid(name)
    wait_for(lambda: len(counters(h.console_log(d))) >= 3, what="guest counters")
    return d


def last_counter(h, d):
    c = counters(h.console_log(d))
    assert all(e == 0 for _, e, _ in c), c
    return c[-1][0]


def wait_counter_after(h, d, n):
    wait_for(lambda: [c for c in counters(h.console_log(d)) if c[0] > n], timeout=20,
             what="counter above %d" % n)
    c = counters(h.console_log(d))
    assert "CHECKSUM-ERROR" not in h.console_log(d)
    assert all(e == 0 for _, e, _ in c), c
    return [x[0] for x in c]


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path, "host", core="kvm").start()
    yield h
    h.stop()


def test_kvm_save_restore_continues(host, tmp_path):
    d = create(host, tmp_path)
    host.xst("pause", "vk")
    n = last_counter(host, d)
    f = tmp_path / "vk.save"
    host.xst("save", "vk", str(f))
    assert host.domains() == {}
    host.xst("restore", str(f))
    d2 = host.domid("vk")
    seen = wait_counter_after(host, d2, n)
    # continued, not rebooted (a line cut by the pause finishes on the new console
    # without its "COUNTER" prefix, hence n + 2)
    assert n < seen[0] <= n + 2, (n, seen[:3])
    # The test guest never registers its watch again: the one carried in the save file
    # brings `xst shutdown` to it through its new ring.
    assert host.log_has("domain %d: 1 xenstore watches carried over" % d2)
    r = host.xst("shutdown", "-w", "vk", timeout=60)
    assert "Domain %d has been shut down, reason code 0" % d2 in r.stderr, r.stderr
    assert host.domains() == {}


def test_kvm_restore_needs_no_kernel_file(host, tmp_path):
    """A restored (or migrated-in) domain loads no kernel: its memory and state come
    from the stream, so the kernel file may be gone, as after an upgrade."""
    kernel = tmp_path / "gone-kernel"
    kernel.write_bytes(GUEST.read_bytes())
    d = create(host, tmp_path, kernel=kernel)
    host.xst("pause", "vk")
    n = last_counter(host, d)
    f = tmp_path / "vk.save"
    host.xst("save", "vk", str(f))
    kernel.unlink()
    host.xst("restore", str(f))
    d2 = host.domid("vk")
    seen = wait_counter_after(host, d2, n)
    assert n < seen[0] <= n + 2, (n, seen[:3])
    host.xst("destroy", "vk")


def test_kvm_two_vcpus_save_restore(host, tmp_path):
    """Every vcpu's state is captured and restored (the test guest runs on vcpu 0; the
    second waits for a startup IPI, its MP state must survive as it is)."""
    d = create(host, tmp_path, vcpus=2)
    n = last_counter(host, d)
    f = tmp_path / "vk.save"
    host.xst("save", "vk", str(f))
    host.xst("restore", str(f))
    d2 = host.domid("vk")
    assert len(json.loads(host.xst("vcpu-list", "--json", "vk").stdout)) == 2
    wait_counter_after(host, d2, n + 1)
    host.xst("save", "-c", "vk", str(f))        # and once more, from the restored state
    wait_counter_after(host, d2, last_counter(host, d2))
    r = host.xst("shutdown", "-w", "vk", timeout=60)
    assert "Domain %d has been shut down, reason code 0" % d2 in r.stderr, r.stderr


def test_kvm_20_save_restore_cycles(host, tmp_path):
    create(host, tmp_path)
    for i in range(20):
        d = host.domid("vk")
        host.xst("pause", "vk")
        n = last_counter(host, d)
        f = tmp_path / ("c%d.save" % (i % 2))
        host.xst("save", "vk", str(f))
        host.xst("restore", str(f))
        d2 = host.domid("vk")
        seen = wait_counter_after(host, d2, n)
        assert n < seen[0] <= n + 2, (i, n, seen[:3])
    host.xst("destroy", "vk")


def test_kvm_bad_files_refused(host, tmp_path):
    create(host, tmp_path)
    good = tmp_path / "good.save"
    host.xst("save", "vk", str(good))
    data = good.read_bytes()
    for name, blob in (("truncated", data[:len(data) - 5000]),
                       ("flipped", data[:4096] + bytes([data[4096] ^ 1]) + data[4097:])):
        f = tmp_path / name
        f.write_bytes(blob)
        r = host.xst("restore", str(f), check=False)
        assert r.returncode == 1 and r.stderr.startswith("xst: restore: %s: " % f), r.stderr
        assert r.stderr.count("\n") == 1
        assert host.domains() == {} and host.running_domain_processes() == []
    host.xst("restore", str(good))
    host.xst("destroy", "vk")


def test_kvm_live_migration_ping_pong(tmp_path):
    skip_without_netns()
    with Lab(tmp_path, 2, core="kvm") as lab:
        a, b = lab.hosts
        create(a, tmp_path, mem=128)
        src, dst = a, b
        for i in range(6):
            d = src.domid("vk")
            n = last_counter(src, d)
            r = src.xst("migrate", "vk", dst.addr)
            assert r.stdout.startswith("migrated domain "), r.stdout
            d2 = dst.domid("vk")
            seen = wait_counter_after(dst, d2, n)
            assert seen[0] > n, (i, n, seen[:3])
            assert src.domains() == {}
            assert dst.log_has("domain %d: 1 xenstore watches carried over" % d2)
            src, dst = dst, src
        # its xenstore watch moved with it six times: shutdown reaches it
        r = src.xst("shutdown", "-w", "vk", timeout=60)
        assert "has been shut down, reason code 0" in r.stderr, r.stderr
        assert src.domains() == {}


def test_kvm_to_sim_refused(tmp_path):
    skip_without_netns()
    with Lab(tmp_path, 2, cores=["kvm", "sim"]) as lab:
        a, b = lab.hosts
        d = create(a, tmp_path)
        r = a.xst("migrate", "vk", b.addr, check=False)
        assert r.returncode == 1
        assert "core mismatch: the domain runs on the kvm core, this host's agent uses sim" \
            in r.stderr, r.stderr
        assert b.domains() == {}
        assert a.domains()["vk"] == (d, "r-----")


def test_kvm_cpu_mismatch_refused_before_anything_moves(tmp_path):
    """The destination hides a CPU feature the source offers (xst-agent --cpuid-mask,
    levelling): the guest may use it, so the migration is refused at the prepare step, and
    so is a restore of its save file there.  A guest started under the mask keeps its
    features when it moves to a wider host, so it may move on to a host with the mask,
    not to a narrower one.  (clflush and mmx: in KVM's supported CPUID everywhere, PVM
    included; the test guest uses neither.)"""
    skip_without_netns()
    with Lab(tmp_path, 3, core="kvm",
             agent_args=[[], ["--cpuid-mask", "clflush"], ["--cpuid-mask", "clflush,mmx"]]) as lab:
        a, b, c = lab.hosts
        d = create(a, tmp_path)
        r = a.xst("migrate", "vk", b.addr, check=False)
        assert r.returncode == 1
        assert r.stderr == (
            "xst: migrate: migration of domain %d (vk) failed while preparing the "
            "destination: destination: CPU mismatch: the guest may use clflush (CPUID "
            "0x1.0 edx bit 19), which this host does not offer; the domain keeps running "
            "here\n" % d), r.stderr
        assert b.domains() == {} and b.running_domain_processes() == []
        assert a.domains()["vk"] == (d, "r-----")
        # a save file carries the same check: restoring it on b is refused too
        f = tmp_path / "vk.save"
        a.xst("save", "-c", "vk", str(f))
        r = b.xst("restore", str(f), check=False)
        assert r.returncode == 1 and "CPU mismatch: the guest may use clflush" in r.stderr, \
            r.stderr
        assert b.domains() == {} and b.running_domain_processes() == []
        a.xst("destroy", "vk")
        # a guest started under the mask moves to a host with the same or a wider set
        d = create(b, tmp_path)
        r = b.xst("migrate", "vk", a.addr)
        assert r.stdout.startswith("migrated domain "), r.stdout
        d2 = a.domid("vk")
        wait_for(lambda: counters(a.console_log(d2)), what="counters on host1")
        n = last_counter(a, d2)
        r = a.xst("migrate", "vk", c.addr, check=False)   # c hides mmx too
        assert r.returncode == 1 and "the guest may use mmx" in r.stderr, r.stderr
        wait_counter_after(a, a.domid("vk"), n)
        a.xst("destroy", "vk")


def test_kvm_cpuid_mask_unknown_feature(tmp_path):
    h = Host(tmp_path, "host", core="kvm", agent_args=["--cpuid-mask", "mmx,nosuch"]).start()
    try:
        cfg = tmp_path / "vk.cfg"
        cfg.write_text(CFG.format(name="vk", mem=64, kernel=GUEST, vcpus=1))
        r = h.xst("create", str(cfg), check=False)
        assert r.returncode == 1
        assert r.stderr.startswith(
            'xst: create: domain process for domain 1 did not start: core kvm: kvm: '
            'XST_KVM_CPUID_MASK: unknown CPU feature "nosuch"; see '), r.stderr
        assert h.domains() == {} and h.running_domain_processes() == []
    finally:
        h.stop()
