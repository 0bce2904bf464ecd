"""The agent's spare domain process (docs/agent.md, "Spare domain process"): a real
xstored, xst-agent and `xst`, the kvm core and the project's PVH test guest.  A create of
a kvm domain whose maxmem matches the spare takes it; the agent then starts another; a
mismatch is created cold; the spare is never a domain; it dies with the agent and a
dead spare only means a cold create.  The kvm tests skip, printing why, only when
/dev/kvm is unusable; the sim ones always run."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import build_path, wait_for
from kvm_util import skip_without_kvm
from netns_util import Host

GUEST = build_path("tests", "guests", "xstguest")
CFG = """name = "{name}"
type = "pvh"
core = "{core}"
memory = {mem}
vcpus = 1
kernel = "{kernel}"
cmdline = "tick=100"
"""


@pytest.fixture
def kvm():
    skip_without_kvm()
    assert os.path.exists(GUEST), "test guest not built: %s" % GUEST


def log(h):
    with open(h.log) as f:
        return f.read()


def spares_ready(h):
    """[(pid, MiB)] of every spare the agent reported ready, oldest first."""
    return [(int(p), int(m)) for p, m in
            re.findall(r"spare process (\d+) ready: core kvm, (\d+) MiB prepared", log(h))]


def wait_spare(h, n, mib=None):
    """Wait for the n-th spare to be ready; its pid."""
    wait_for(lambda: len(spares_ready(h)) >= n, timeout=20, what="spare #%d ready" % n)
    pid, m = spares_ready(h)[n - 1]
    if mib is not None:
        assert m == mib, spares_ready(h)
    return pid


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def spare_files(h):
    return sorted(n for n in os.listdir(h.rundir) if n.startswith("spare-"))


def created_from_spare(h, name):
    return re.search(r"\(%s\) created: .* from the spare" % re.escape(name), log(h)) is not None


def create(h, tmp_path, name, mem=64, core="kvm", check=True):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(CFG.format(name=name, mem=mem, kernel=GUEST, core=core))
    return h.xst("create", str(cfg), check=check)


def wait_boot(h, name):
    d = h.domid(name)
    wait_for(lambda: "COUNTER 2 " in h.console_log(d), timeout=20, what=name + " counting")
    assert "xstguest: boot" in h.console_log(d)
    return d


@pytest.fixture
def host(tmp_path, kvm):
    h = Host(tmp_path, "host", core="kvm").start()
    yield h
    h.stop()


def test_spare_taken_and_replaced(host, tmp_path):
    h = host
    create(h, tmp_path, "first")
    assert not created_from_spare(h, "first")  # nothing of the size ran before
    pid1 = wait_spare(h, 1, mib=64)
    assert alive(pid1)
    assert spare_files(h) == ["spare-%d.%s" % (pid1, s) for s in ("console", "events", "ipc")]
    # never a domain: not listed, nothing in xenstore, no state file
    assert sorted(h.domains()) == ["first"]
    ids = h.xs("xenstore-list", "/local/domain").stdout.split()
    assert sorted(ids) == ["0", str(h.domid("first"))]
    assert "spare pid %d, 64 MiB, ready" % pid1 in h.xst("debug-keys").stdout

    create(h, tmp_path, "second")
    assert created_from_spare(h, "second")
    d2 = wait_boot(h, "second")
    # the spare process became domain d2, under the domain's own names
    rec = open(os.path.join(h.rundir, "dom-%d.log" % d2)).read()
    assert "domain %d: taken from spare (kvm, 64 MiB prepared)" % d2 in rec
    assert re.search(r"\(second\) created: .* pid %d, from the spare" % pid1, log(h))
    for s in ("ipc", "events", "console", "state"):
        assert os.path.exists(os.path.join(h.rundir, "dom-%d.%s" % (d2, s)))
    assert h.xs("xenstore-read", "/local/domain/%d/name" % d2).stdout.strip() == "second"
    assert h.xs("xenstore-read", "/local/domain/%d/console/tty" % d2).stdout.strip() == \
        os.path.join(h.rundir, "dom-%d.console" % d2)
    # replaced
    pid2 = wait_spare(h, 2, mib=64)
    assert pid2 != pid1 and alive(pid2)
    assert spare_files(h) == ["spare-%d.%s" % (pid2, s) for s in ("console", "events", "ipc")]
    assert sorted(h.domains()) == ["first", "second"]
    # the taken domain behaves like any other: console, pause, shutdown, destroy
    h.xst("pause", "second")
    assert h.domains()["second"][1].startswith("--p")
    h.xst("unpause", "second")
    h.xst("destroy", "second")
    wait_for(lambda: not alive(pid1), what="domain process of second gone")
    assert not any(n.startswith("dom-%d." % d2) and not n.endswith(".log")
                   for n in os.listdir(h.rundir))


def test_spare_size_mismatch_is_cold_and_spare_follows(host, tmp_path):
    h = host
    create(h, tmp_path, "small", mem=64)
    pid1 = wait_spare(h, 1, mib=64)
    create(h, tmp_path, "big", mem=96)
    assert not created_from_spare(h, "big")
    wait_boot(h, "big")
    assert "spare process %d: replaced by one of 96 MiB" % pid1 in log(h)
    wait_for(lambda: not alive(pid1), what="the 64 MiB spare gone")
    wait_spare(h, 2, mib=96)
    create(h, tmp_path, "big2", mem=96)
    assert created_from_spare(h, "big2")
    wait_boot(h, "big2")


def test_two_creates_in_quick_succession(host, tmp_path):
    h = host
    create(h, tmp_path, "seed")
    wait_spare(h, 1)
    cfgs = []
    for name in ("q1", "q2", "q3"):
        p = tmp_path / (name + ".cfg")
        p.write_text(CFG.format(name=name, mem=64, kernel=GUEST, core="kvm"))
        cfgs.append(str(p))
    procs = [h.xst_bg("create", c) for c in cfgs]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    for name in ("q1", "q2", "q3"):
        wait_boot(h, name)
    # the first takes the spare; the next ones take the spare started after each reply
    # (waiting for it to be ready) or start cold if none is running yet: never both
    assert created_from_spare(h, "q1")
    assert sorted(h.domains()) == ["q1", "q2", "q3", "seed"]
    ids = [h.domid(n) for n in ("seed", "q1", "q2", "q3")]
    assert len(set(ids)) == 4


def test_create_failure_on_spare_reports_and_next_works(host, tmp_path):
    h = host
    create(h, tmp_path, "seed")
    pid1 = wait_spare(h, 1)
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(CFG.format(name="bad", mem=64, kernel="/nonexistent/kernel", core="kvm"))
    r = h.xst("create", str(cfg), check=False)
    assert r.returncode != 0
    assert "/nonexistent/kernel" in r.stderr or "No such file" in r.stderr, r.stderr
    assert "create bad failed (on the spare)" in log(h)
    wait_for(lambda: not alive(pid1), what="the failed spare gone")
    assert sorted(h.domains()) == ["seed"]
    assert not [n for n in spare_files(h) if n.startswith("spare-%d." % pid1)]
    wait_spare(h, 2)
    create(h, tmp_path, "good")
    assert created_from_spare(h, "good")
    wait_boot(h, "good")


def test_spare_killed_externally_create_still_works(host, tmp_path):
    h = host
    create(h, tmp_path, "seed")
    pid1 = wait_spare(h, 1)
    os.kill(pid1, signal.SIGKILL)
    # at once, racing the agent noticing: the create must work (cold, or a new spare)
    create(h, tmp_path, "after")
    wait_boot(h, "after")
    assert re.search(r"spare process %d: (exited|gone before it was taken)|the spare process "
                     r"%d did not answer create" % (pid1, pid1), log(h))
    assert not [n for n in spare_files(h) if n.startswith("spare-%d." % pid1)]
    pid2 = wait_spare(h, 2)
    os.kill(pid2, signal.SIGKILL)
    wait_for(lambda: "spare process %d: exited: nothing logged (killed?)" % pid2 in log(h),
             what="agent noticing")
    # a new one follows on the next tick
    pid3 = wait_spare(h, 3)
    create(h, tmp_path, "again")
    assert re.search(r"\(again\) created: .* pid %d, from the spare" % pid3, log(h))
    wait_boot(h, "again")


def test_spare_stopped_is_not_taken(host, tmp_path):
    """A spare that is stopped (SIGSTOP, a debugger) would make its create wait for the
    create timeout: it is dropped instead, and the create goes cold at once."""
    h = host
    create(h, tmp_path, "seed")
    pid = wait_spare(h, 1)
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    create(h, tmp_path, "after")
    assert time.monotonic() - t0 < 10
    assert "spare process %d: stopped when it was to be taken" % pid in log(h)
    assert not created_from_spare(h, "after")
    wait_boot(h, "after")
    wait_for(lambda: not alive(pid), what="the stopped spare killed")
    assert not [n for n in spare_files(h) if n.startswith("spare-%d." % pid)]


def test_agent_stop_leaves_no_spare(tmp_path, kvm):
    h = Host(tmp_path, "host", core="kvm").start()
    try:
        create(h, tmp_path, "dom")
        pid = wait_spare(h, 1)
        h.agent_proc.terminate()
        h.agent_proc.wait(10)
        assert not alive(pid)
        assert spare_files(h) == []
        assert alive(int(re.search(r"\(dom\) created: .* pid (\d+)", log(h)).group(1)))

        # a killed agent: the spare sees its handoff socket close and exits by itself
        h.start_agent()
        wait_for(lambda: "re-adopted domain" in log(h), what="re-adoption")
        create(h, tmp_path, "dom2")  # a kvm create: auto now wants a 64 MiB spare
        pid = wait_spare(h, 2)
        h.kill_agent(signal.SIGKILL)
        wait_for(lambda: not alive(pid), timeout=5, what="orphaned spare exiting")
        wait_for(lambda: spare_files(h) == [], timeout=5, what="its files gone")
        # the domains stay, and a new agent adopts them and makes no stale spare
        h.start_agent()
        wait_for(lambda: sorted(h.domains()) == ["dom", "dom2"], what="re-adoption")
    finally:
        h.stop()


def test_spare_explicit_size_and_off(tmp_path, kvm):
    h = Host(tmp_path, "fixed", core="kvm", agent_args=["--spare", "80"]).start()
    try:
        pid = wait_spare(h, 1, mib=80)  # at start, before any create
        create(h, tmp_path, "m64", mem=64)  # another size: cold, the 80 MiB one stays
        assert not created_from_spare(h, "m64")
        assert alive(pid) and len(spares_ready(h)) == 1
        create(h, tmp_path, "m80", mem=80)
        assert created_from_spare(h, "m80")
        wait_boot(h, "m80")
        wait_spare(h, 2, mib=80)
    finally:
        h.stop()
    h = Host(tmp_path, "off", core="kvm", agent_args=["--spare", "off"]).start()
    try:
        create(h, tmp_path, "c1")
        create(h, tmp_path, "c2")
        wait_boot(h, "c2")
        time.sleep(1.2)  # a tick
        assert spares_ready(h) == [] and spare_files(h) == []
        assert not created_from_spare(h, "c2")
        assert "spare: off" in log(h)
    finally:
        h.stop()


def test_sim_core_makes_no_spare(tmp_path):
    """Spares follow kvm domains only: a sim host keeps exactly its old behaviour."""
    h = Host(tmp_path, "sim", core="sim").start()
    try:
        cfg = tmp_path / "s.cfg"
        cfg.write_text('name = "s"\nmemory = 64\nvcpus = 1\n')
        h.xst("create", str(cfg))
        time.sleep(1.2)
        assert spares_ready(h) == [] and spare_files(h) == []
        assert sorted(h.domains()) == ["s"]
    finally:
        h.stop()


def test_bad_spare_option_refused(tmp_path):
    r = subprocess.run([str(build_path("agent", "xst-agent")), "--rundir", str(tmp_path),
                        "--spare", "lots", "-N"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "--spare: auto, off or MiB" in r.stderr
