"""xst save / xst restore against a real xstored + xst-agent with sim-core domains: the
guest continues exactly where it stopped (memory checksum of every page but the ring,
console tick counter, its xenstore nodes), checkpoints, 20 cycles, and bad files refused
with one line and nothing left behind."""
import os
import pathlib
import time

import pytest

from conftest import wait_for
from netns_util import Host, ticks

CFG = """name = "{name}"
core = "sim"
memory = {mem}
vcpus = 2
workload = "dirty=4M/s,console=50ms,ws=4M"
"""


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path, "host").start()
    yield h
    h.stop()


def create(h, tmp_path, name="vm1", mem=64):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(CFG.format(name=name, mem=mem))
    h.xst("create", str(cfg))
    d = h.domid(name)
    wait_for(lambda: len(ticks(h.console_log(d))) >= 3, what="guest ticks")
    return d


def no_guest_left(h):
    """No domain, no domain process, no guest xenstore nodes."""
    assert h.domains() == {}
    assert h.running_domain_processes() == []
    r = h.xs("xenstore-list", "/local/domain")
    assert r.stdout.split() == ["0"], r.stdout


def test_save_restore_continues_where_it_stopped(host, tmp_path):
    d = create(host, tmp_path)
    host.xs("xenstore-write", "/local/domain/%d/data/app" % d, "state-42")
    host.xst("pause", "vm1")
    before = host.checksum(d)
    last = ticks(host.console_log(d))[-1]
    f = tmp_path / "vm1.save"
    r = host.xst("save", "vm1", str(f))
    assert r.stdout.startswith("saved domain %d (vm1) to %s: " % (d, f)), r.stdout
    assert "zero pages skipped" in r.stdout
    assert host.domains() == {}            # saved without -c: gone
    # 64 MiB guest with a 4 MiB working set: zero pages are not in the file
    assert f.stat().st_size < 16 << 20
    r = host.xst("restore", "-p", str(f))
    assert r.stdout.startswith("restored domain ") and "(vm1)" in r.stdout
    d2 = host.domid("vm1")
    assert host.domains()["vm1"][1][2] == "p"
    assert host.checksum(d2) == before      # every byte of guest memory
    host.xst("unpause", "vm1")
    wait_for(lambda: ticks(host.console_log(d2)), what="ticks after restore")
    log = host.console_log(d2)
    assert ticks(log)[0] == last + 1        # continued, not rebooted
    assert "booting" not in log
    # its xenstore node came along, and its xenbus client works on the new ring: the
    # guest acknowledges a shutdown request written there
    assert host.xs("xenstore-read", "/local/domain/%d/data/app" % d2).stdout.strip() == \
        "state-42"
    host.xst("shutdown", "-w", "vm1", timeout=60)
    no_guest_left(host)


def test_checkpoint_keeps_running(host, tmp_path):
    d = create(host, tmp_path)
    f = tmp_path / "ck.save"
    host.xst("save", "-c", "vm1", str(f))
    assert host.domains()["vm1"][0] == d
    n = len(ticks(host.console_log(d)))
    wait_for(lambda: len(ticks(host.console_log(d))) > n + 2, what="still ticking")
    r = host.xst("restore", str(f), check=False)   # the name is still in use
    assert r.returncode == 1
    assert r.stderr == 'xst: restore: %s: domain name "vm1" is already in use (domain %d)\n' \
        % (f, d)
    assert sorted(host.domains()) == ["vm1"]
    host.xst("destroy", "vm1")
    host.xst("restore", str(f))
    d2 = host.domid("vm1")
    wait_for(lambda: ticks(host.console_log(d2)), what="ticks after restore")
    host.xst("destroy", "vm1")


def test_checkpoint_paused(host, tmp_path):
    d = create(host, tmp_path)
    host.xst("save", "-c", "-p", "vm1", str(tmp_path / "p.save"))
    assert host.domains()["vm1"] == (d, "--p---")
    host.xst("destroy", "vm1")


def test_20_save_restore_cycles(host, tmp_path):
    create(host, tmp_path, mem=32)
    last = None
    for i in range(20):
        d = host.domid("vm1")
        host.xst("pause", "vm1")
        before = host.checksum(d)
        t = ticks(host.console_log(d))[-1]
        if last is not None:
            assert t > last, (i, last, t)
        f = tmp_path / ("c%d.save" % (i % 2))
        host.xst("save", "vm1", str(f))
        host.xst("restore", "-p", str(f))
        d2 = host.domid("vm1")
        assert d2 != d
        assert host.checksum(d2) == before, "checksum differs after cycle %d" % i
        host.xst("unpause", "vm1")
        wait_for(lambda: ticks(host.console_log(d2)), what="ticks, cycle %d" % i)
        assert ticks(host.console_log(d2))[0] == t + 1, i
        last = t
    host.xst("destroy", "vm1")


def test_bad_files_refused_and_nothing_left(host, tmp_path):
    create(host, tmp_path)
    good = tmp_path / "good.save"
    host.xst("save", "vm1", str(good))
    data = good.read_bytes()
    cases = {
        "truncated": (data[:len(data) // 2], "truncated (no end record after "),
        "no-end": (data[:-24], "truncated (no end record after "),
        "flipped": (data[:len(data) // 3] + bytes([data[len(data) // 3] ^ 0x40])
                    + data[len(data) // 3 + 1:], "checksum mismatch: the file is corrupted"),
        "garbage": (os.urandom(100000), ""),
        "empty": (b"", "not an xst save file (empty)"),
        "text": (b"name = 'vm1'\n" * 10, "not an xst save stream"),
    }
    for name, (blob, msg) in cases.items():
        f = tmp_path / ("bad-" + name)
        f.write_bytes(blob)
        r = host.xst("restore", str(f), check=False)
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert r.stderr.startswith("xst: restore: %s: " % f), (name, r.stderr)
        assert msg in r.stderr and r.stderr.count("\n") == 1, (name, r.stderr)
        no_guest_left(host)
    r = host.xst("restore", str(tmp_path / "missing"), check=False)
    assert r.returncode == 1
    assert r.stderr == "xst: restore: %s: No such file or directory\n" % (tmp_path / "missing")
    # the good file still restores after all that
    host.xst("restore", str(good))
    assert "vm1" in host.domains()
    host.xst("destroy", "vm1")


def test_failed_save_leaves_domain_running(host, tmp_path):
    d = create(host, tmp_path)
    bad = tmp_path / "no-such-dir" / "x.save"
    r = host.xst("save", "vm1", str(bad), check=False)
    assert r.returncode == 1
    assert r.stderr == "xst: save: %s: No such file or directory\n" % bad
    assert host.domains()["vm1"] == (d, "r-----")
    r = host.xst("save", "nosuch", str(tmp_path / "y"), check=False)
    assert r.stderr == 'xst: save: domain "nosuch" does not exist\n'
    host.xst("destroy", "vm1")


def test_file_rewritten_during_restore_refused(host, tmp_path):
    """A restore checks the file's checksum once, then acts on the mapped file: a file
    rewritten in the meantime (here only its times change, as any write changes them)
    is refused before the guest resumes, and nothing is left behind."""
    cfg = tmp_path / "big.cfg"
    cfg.write_text(CFG.format(name="big", mem=512).replace(
        "dirty=4M/s,console=50ms,ws=4M", "dirty=4000M/s,console=50ms,ws=384M"))
    host.xst("create", str(cfg))
    time.sleep(1)                       # the working set filled: a file of ~384 MiB
    f = tmp_path / "big.save"
    host.xst("save", "big", str(f))
    assert f.stat().st_size > 256 << 20
    p = host.xst_bg("restore", str(f))
    while p.poll() is None:
        os.utime(f)
        time.sleep(0.002)
    out, err = p.communicate()
    assert p.returncode == 1, (out, err)
    assert err == ("xst: restore: %s: the file changed while it was being restored\n" % f)
    no_guest_left(host)
    # left alone, the same file restores
    host.xst("restore", str(f))
    assert "big" in host.domains()
    host.xst("destroy", "big")
