"""The kvm core (plugins/kvm) running the test guest (tests/guests/xstguest) on /dev/kvm:
console, pause/unpause, dirty log, save -> destroy -> create -> load, poweroff, bad
state blobs.  Every test boots a real KVM guest through libxstcore."""
import os
import time

import pytest

from kvm_util import Drive, DriveError


@pytest.fixture
def drive_factory():
    made = []

    def make(*a, **kw):
        d = Drive(*a, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


def test_kvm_boot_console_counter(drive_factory):
    d = drive_factory("tick=100")
    d.expect(r"^CON xstguest: boot$", 10)
    first = d.last_time - d.t0
    d.expect(r"^CON xstguest: ready pages=0$")
    got = [d.counter(5)[0] for _ in range(5)]
    assert got == [1, 2, 3, 4, 5]
    print("process start to first console line: %.1f ms" % (first * 1000))


def test_kvm_counter_interval(drive_factory):
    d = drive_factory("tick=200")
    d.counter(5)
    t1 = d.last_time
    for _ in range(5):
        d.counter(5)
    per = (d.last_time - t1) / 5
    assert 0.15 < per < 0.3, per


def test_kvm_pause_unpause(drive_factory):
    d = drive_factory("tick=100")
    n, _, _ = d.counter(5)
    d.cmd("pause")
    quiet = d.lines_for(0.8)
    assert not [l for l in quiet if l.startswith("CON COUNTER")], quiet
    assert "state=paused" in d.cmd("info")
    d.cmd("unpause")
    later = d.counter(5)[0]
    # at most one line can have been in flight when the pause landed
    assert n + 1 <= later <= n + 3, (n, later, quiet)
    assert d.counter(5)[0] == later + 1


def test_kvm_dirty_log_reports_working_set(drive_factory):
    d = drive_factory("tick=100 dirty=8M rate=4000")   # 2048 pages, all rewritten in ~0.5s
    d.counter(10)
    d.cmd("dirty on")
    d.cmd("dirty fetch")  # clears what enabling saw
    time.sleep(1.0)
    d.cmd("pause")
    n = int(d.cmd("dirty fetch").split()[-1])
    assert 2048 <= n <= 2048 + 64, n   # working set + checksum table, stack, clock page, ring
    n = int(d.cmd("dirty fetch").split()[-1])
    assert n <= 1, n                   # paused: only the ring page (always reported)
    d.cmd("unpause")
    assert d.counter(5)[1] == 0


def test_kvm_dirty_log_idle_guest_is_small(drive_factory):
    d = drive_factory("tick=100 dirty=8M rate=0")
    d.counter(10)
    d.cmd("dirty on")
    d.cmd("dirty fetch")
    time.sleep(0.5)
    n = int(d.cmd("dirty fetch").split()[-1])
    assert n < 32, n


def test_kvm_dirty_fetch_needs_enable(drive_factory):
    d = drive_factory("tick=0")
    with pytest.raises(DriveError, match="Invalid argument"):
        d.cmd("dirty fetch")


def save_restore(d, prefix):
    d.cmd("pause")
    d.cmd("save " + prefix)
    d.cmd("destroy")
    d.cmd("create")
    d.cmd("load " + prefix)
    d.cmd("unpause")


def test_kvm_save_restore_continues(drive_factory, tmp_path):
    d = drive_factory("tick=100 dirty=4M rate=2000")
    for _ in range(3):
        n, err, dirtied = d.counter(10)
    save_restore(d, str(tmp_path / "s"))
    n2, err2, dirtied2 = d.counter(10)
    assert n < n2 <= n + 2, (n, n2)
    assert err2 == 0 and dirtied2 > dirtied
    n3, err3, _ = d.counter(10)
    assert n3 == n2 + 1 and err3 == 0


def test_kvm_save_restore_20_cycles(drive_factory, tmp_path):
    d = drive_factory("tick=50 dirty=4M rate=8000")
    last = d.counter(10)[0]
    for i in range(20):
        save_restore(d, str(tmp_path / ("c%d" % (i % 2))))
        n, err, _ = d.counter(10)
        assert err == 0, "checksum errors after cycle %d" % i
        assert last < n <= last + 3, (i, last, n)
        last = n
    assert not [l for l in d.log if "CHECKSUM-ERROR" in l]


def test_kvm_restore_detects_lost_page(drive_factory, tmp_path):
    """The guest's own checksums catch a page the restore got wrong: the negative
    control for the save/restore tests."""
    d = drive_factory("tick=100 dirty=4M rate=0")
    d.counter(10)
    prefix = str(tmp_path / "s")
    d.cmd("pause")
    d.cmd("save " + prefix)
    d.cmd("destroy")
    with open(prefix + ".mem", "r+b") as f:   # zero one page of the working set (4 MiB in)
        f.seek(4 << 20)
        f.write(bytes(4096))
    d.cmd("create")
    d.cmd("load " + prefix)
    d.cmd("unpause")
    d.expect(r"^CON CHECKSUM-ERROR page \d+$", 10)


def test_kvm_bad_state_rejected(drive_factory, tmp_path):
    d = drive_factory("tick=100")
    d.counter(10)
    prefix = str(tmp_path / "s")
    d.cmd("pause")
    d.cmd("save " + prefix)
    for suffix in (".vcpu0", ".vm"):
        blob = open(prefix + suffix, "rb").read()
        open(prefix + suffix, "wb").write(blob[: len(blob) // 2])
        with pytest.raises(DriveError, match="Invalid argument"):
            d.cmd("load " + prefix)
        open(prefix + suffix, "wb").write(blob)
    d.cmd("load " + prefix)   # the intact files still load into the same vm
    d.cmd("unpause")
    d.counter(10)


def test_kvm_poweroff(drive_factory):
    d = drive_factory("tick=50 ticks=3")
    assert [d.counter(5)[0] for _ in range(3)] == [1, 2, 3]
    d.expect(r"^CON xstguest: done$")
    d.expect(r"^EXIT shutdown poweroff$", 5)
    assert "state=shutdown reason=poweroff" in d.cmd("info")


def test_kvm_console_input(drive_factory):
    d = drive_factory("tick=0")
    d.expect(r"^CON xstguest: ready")
    d.cmd("input hello")   # the test guest ignores input; the uart must not block or crash
    assert "state=running" in d.cmd("info")


def test_kvm_bad_kernel_refused(drive_factory, tmp_path):
    bad = tmp_path / "notakernel"
    bad.write_bytes(b"\x7fELF" + bytes(60))
    with pytest.raises(DriveError, match="Invalid argument"):
        drive_factory("", kernel=bad)
    with pytest.raises(DriveError, match="No such file"):
        drive_factory("", kernel=tmp_path / "missing")


def test_kvm_save_restore_512m(drive_factory, tmp_path):
    """A 512 MiB guest with a 448 MiB working set being rewritten: every page survives
    save -> destroy -> create -> load (the guest verifies all of them each tick)."""
    d = drive_factory("tick=300 dirty=448M rate=20000", mem_mib=512)
    n, err, _ = d.counter(60)
    prefix = str(tmp_path / "big")
    d.cmd("pause")
    t = time.monotonic()
    d.cmd("save " + prefix, 300)
    save = time.monotonic() - t
    d.cmd("destroy")
    d.cmd("create")
    t = time.monotonic()
    d.cmd("load " + prefix, 300)
    load = time.monotonic() - t
    d.cmd("unpause")
    for _ in range(2):
        n2, err2, _ = d.counter(60)
        assert err2 == 0
    assert n2 > n
    assert not [l for l in d.log if "CHECKSUM-ERROR" in l]
    print("\n512 MiB save %.2fs (%.0f MiB/s), load %.2fs (%.0f MiB/s)" %
          (save, 512 / save, load, 512 / load))
