"""Issue 5's remaining agent/CLI behaviours, each against a real xstored, a real agent on
the sim core and the real `xst` binary: top's CPU%, shutdown -w reason codes, soft reset,
coredump actions."""
import json
import os
import re
import signal
import struct
import subprocess
import time

import pytest

from agent_util import Host, process_alive, wait_state
from conftest import build_path, wait_for
from kvm_util import skip_without_kvm


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
    j = json.loads(host.xst("--json", "top", "-b", "-d", "1").stdout)
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


class DumpHost(Host):
    """The agent with --dump-dir in the test's tmp directory."""

    def start_agent(self):
        self.dump_dir = str(self.tmp / "dump")
        self.agent = subprocess.Popen(
            [str(build_path("agent", "xst-agent")), "--rundir", self.rundir, "--xenstored",
             self.xsd.socket, "--core", "sim", "-N", "--log", str(self.tmp / "agent.log"),
             "--dump-dir", self.dump_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.agent_env())
        wait_for(lambda: self.xst("info", check=False).returncode == 0
                 or self.agent.poll() is not None, timeout=20, what="agent")
        assert self.agent.poll() is None, "agent exited: " + self.agent.stderr.read()


def read_dump(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, ver, psz, domid, reason, npages, when = struct.unpack_from("<8sIIIIQQ", data)
    uuid = data[40:56]
    return dict(magic=magic, ver=ver, psz=psz, domid=domid, reason=reason, npages=npages,
                when=when, uuid=uuid, size=len(data), data=data)


def test_coredump_actions(tmp_path):
    host = DumpHost(tmp_path).start()
    try:
        # coredump-destroy: a crashed guest's memory (maxmem 96 MiB) lands in
        # <dump-dir>/<name>, then the domain is destroyed.
        d = host.create("cd", 'maxmem = 96\non_crash = "coredump-destroy"\n')
        guest_up(host, d["domid"])
        host.xs("xenstore-write", "/local/domain/%d/control/shutdown" % d["domid"], "crash")
        wait_state(host, "cd", lambda x: x is None, what="destroyed after the dump")
        path = os.path.join(host.dump_dir, "cd")
        h = read_dump(path)
        assert h["magic"] == b"XSTCORE\0" and h["ver"] == 1 and h["psz"] == 4096
        assert h["domid"] == d["domid"] and h["reason"] == 3
        assert h["npages"] == 96 * 256 and h["size"] == 64 + 96 * 1024 * 1024
        assert h["uuid"] == bytes.fromhex(d["uuid"].replace("-", ""))
        # Real guest memory: the sim guest wrote its boot banner and xenstore ring.
        assert h["data"][64:].count(b"\0") < len(h["data"]) - 64
        assert "core dumped to %s" % path in host.xst("dmesg").stdout
        assert not [f for f in os.listdir(host.dump_dir) if f.startswith(".")]

        # coredump-restart: dumped, then a new domain with the same name and uuid.
        d = host.create("cr", 'on_crash = "coredump-restart"\n')
        guest_up(host, d["domid"])
        host.xs("xenstore-write", "/local/domain/%d/control/shutdown" % d["domid"], "crash")
        wait_state(host, "cr", lambda x: x and x["domid"] != d["domid"], what="restart")
        h = read_dump(os.path.join(host.dump_dir, "cr"))
        assert h["domid"] == d["domid"] and h["size"] == 64 + 64 * 1024 * 1024
        assert host.dom("cr")["uuid"] == d["uuid"]
        host.xst("destroy", "cr")

        # An unwritable dump dir: logged, and the action still happens.
        os.chmod(host.dump_dir, 0o500)
        if os.access(host.dump_dir, os.W_OK):
            os.chmod(host.dump_dir, 0o700)
            os.rename(host.dump_dir, host.dump_dir + ".old")
            with open(host.dump_dir, "w") as f:
                f.write("not a directory")
        d = host.create("cf", 'on_crash = "coredump-destroy"\n')
        guest_up(host, d["domid"])
        host.xs("xenstore-write", "/local/domain/%d/control/shutdown" % d["domid"], "crash")
        wait_state(host, "cf", lambda x: x is None, what="destroyed without a dump")
        assert "domain %d: core dump failed" % d["domid"] in host.xst("dmesg").stdout
    finally:
        host.stop()
    assert host.agent_rc == 0, "xst-agent: rc=%s %s" % (host.agent_rc, host.agent_err)


def thread_cpus(pid):
    """Cpus_allowed_list of every thread of a process, as the kernel has it."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                out += [l.split()[1] for l in f if l.startswith("Cpus_allowed_list:")]
        except FileNotFoundError:
            pass
    return sorted(out)


def vcpu_affinity(host, name):
    return [v["affinity"] for v in json.loads(host.xst("vcpu-list", "--json", name).stdout)]


def check_pinning(host, name, core, extra):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("pinning needs 2 usable cpus, this process has %s"
                    % sorted(os.sched_getaffinity(0)))
    cpus = sorted(os.sched_getaffinity(0))
    a, b = str(cpus[0]), str(cpus[1])
    # cpus = B in the config: both vcpu threads start pinned there.
    d = host.create(name, 'cpus = "%s"\n%s' % (b, extra))
    pid = d["pid"]
    assert d["core"] == core, d
    assert thread_cpus(pid).count(b) == 2, thread_cpus(pid)
    assert vcpu_affinity(host, name) == [b, b]
    host.xst("vcpu-pin", name, "0", a)
    assert thread_cpus(pid).count(a) == 1 and thread_cpus(pid).count(b) == 1, thread_cpus(pid)
    assert vcpu_affinity(host, name) == [a, b]
    text = host.xst("vcpu-list", name).stdout.splitlines()
    assert text[1].split()[-3:] == [a, "/", "all"] and text[2].split()[-3:] == [b, "/", "all"], \
        text
    host.xst("vcpu-pin", name, "all", "all")
    assert vcpu_affinity(host, name) == ["all", "all"]
    assert thread_cpus(pid).count(a) == 0 and thread_cpus(pid).count(b) == 0, thread_cpus(pid)
    # Kernel state survives the agent: kill -9, re-adopt, the affinity is still reported.
    host.xst("vcpu-pin", name, "1", a)
    host.kill_agent()
    host.start_agent()
    assert vcpu_affinity(host, name) == ["all", a]
    r = host.xst("vcpu-pin", name, "0", "99", check=False)
    assert r.returncode != 0 and "cpu 99 does not exist" in r.stderr, r.stderr
    assert host.dom(name)["state"][3] != "s"
    host.xst("destroy", name)


def test_vcpu_pin_sim(host):
    check_pinning(host, "pin", "sim", "")


def test_vcpu_pin_kvm(host):
    skip_without_kvm()
    guest = build_path("tests", "guests", "xstguest")
    assert os.path.exists(guest), "test guest not built: %s" % guest
    check_pinning(host, "pinkvm", "kvm", 'core = "kvm"\ntype = "pvh"\nkernel = "%s"\n'
                  'cmdline = "tick=50"\n' % guest)


def test_list_answers_while_a_domain_process_is_stopped(host):
    a = host.create("alive")
    s = host.create("stopped")
    guest_up(host, s["domid"])
    os.kill(s["pid"], signal.SIGSTOP)
    try:
        times = []
        for _ in range(4):
            t0 = time.monotonic()
            doms = {d["name"]: d for d in host.domains()}
            times.append(time.monotonic() - t0)
            assert set(doms) == {"Domain-0", "alive", "stopped"}, doms
            # The stopped one is shown from what it last said, not as dying.
            assert doms["stopped"]["state"] == "r-----", doms["stopped"]
            assert doms["stopped"]["mem_kib"] == 65536
        # The first call waits for one short query timeout, later ones barely at all
        # (the old agent waited 10 s per call).
        assert times[0] < 3.0 and max(times[1:]) < 1.5, times
        # Other domains are served as usual meanwhile.
        host.xst("pause", "alive")
        assert host.dom("alive")["state"] == "--p---"
        host.xst("unpause", "alive")
        assert "domain %d (stopped): domain process does not answer" % s["domid"] \
            in host.xst("dmesg").stdout
    finally:
        os.kill(s["pid"], signal.SIGCONT)
    # It answers again: commands reach it with their full timeout.
    host.xst("pause", "stopped")
    wait_state(host, "stopped", lambda x: x and x["state"] == "--p---", what="paused")
    assert "domain %d (stopped): domain process answers again" % s["domid"] \
        in host.xst("dmesg").stdout
    host.xst("destroy", "stopped")
    host.xst("destroy", "alive")
    assert a["pid"] != s["pid"]


def thread_nices(pid):
    """The nice value of each vcpu thread (named vcpuN) of a domain process."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                comm, rest = f.read().split("(", 1)[1].rsplit(")", 1)
            if comm.startswith("vcpu"):
                out.append(int(rest.split()[16]))
        except FileNotFoundError:
            pass
    return sorted(out)


def cpu_pct(pid, seconds=2.0):
    """CPU use of a process (all threads) over `seconds`, in percent of one cpu."""
    def ticks():
        with open("/proc/%d/stat" % pid) as f:
            f = f.read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    t0, c0 = time.monotonic(), ticks()
    time.sleep(seconds)
    return (ticks() - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0) * 100


def test_sched_credit_weight_and_cap_sim(host):
    """weight: the vcpu threads' nice value (256 = 0, x1.25 per step); cap: the domain's
    vcpus get at most cap% of one cpu, enforced by its domain process."""
    d = host.create("busy", 'workload = "dirty=4000M/s"\n')     # 2 vcpus
    pid = d["pid"]
    assert thread_nices(pid) == [0, 0]
    host.xst("sched-credit", "-d", "busy", "-w", "512")
    assert thread_nices(pid).count(-3) == 2, thread_nices(pid)
    host.xst("sched-credit", "-d", "busy", "-w", "64")
    assert thread_nices(pid).count(6) == 2, thread_nices(pid)
    # back to the default weight: at nice 6 a loaded host leaves the domain too little
    # cpu for the cap's effect to show
    host.xst("sched-credit", "-d", "busy", "-w", "256")
    free = cpu_pct(pid)
    assert free > 35, free
    host.xst("sched-credit", "-d", "busy", "-c", "20")
    capped = cpu_pct(pid)
    assert capped < 30, (free, capped)
    assert host.dom("busy")["state"][0] == "r"        # throttled, not paused
    host.xst("sched-credit", "-d", "busy", "-c", "0")
    assert cpu_pct(pid) > 35
    # the parameters survive the agent (the domain process keeps them)
    host.xst("sched-credit", "-d", "busy", "-c", "20")
    host.kill_agent()
    host.start_agent()
    assert cpu_pct(pid) < 30
    host.xst("destroy", "busy")


def test_sched_credit_kvm(host):
    skip_without_kvm()
    guest = build_path("tests", "guests", "xstguest")
    d = host.create("sk", 'core = "kvm"\ntype = "pvh"\nkernel = "%s"\n'
                    'cmdline = "tick=50 dirty=4M rate=100000"\ncpu_weight = 2560\n' % guest)
    assert thread_nices(d["pid"]) == [-10, -10]
    host.xst("sched-credit", "-d", "sk", "-w", "256", "-c", "10")
    assert thread_nices(d["pid"]) == [0, 0]
    assert cpu_pct(d["pid"]) < 20
    host.xst("destroy", "sk")


def vcpu_effective(host, name):
    return [v["effective"] for v in json.loads(host.xst("vcpu-list", "--json", name).stdout)]


def test_cpupool_confines_its_domains(host):
    """A domain's vcpu threads run only on its cpupool's cpus (hard affinity within the
    pool), when it is created there, moved, and when the pool's cpus change."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("pools need 2 usable cpus, this process has %s"
                    % sorted(os.sched_getaffinity(0)))
    cpus = sorted(os.sched_getaffinity(0))
    a, b = str(cpus[0]), str(cpus[1])
    host.xst("cpupool-cpu-remove", "Pool-0", b)
    host.xst("cpupool-create", "p1", "cpus=%s" % b)
    d = host.create("pooled", 'pool = "p1"\n')
    vcpus = lambda: [c for c in thread_cpus(d["pid"]) if c in (a, b)]  # noqa: E731
    assert vcpus() == [b, b], thread_cpus(d["pid"])
    assert vcpu_affinity(host, "pooled") == ["all", "all"]        # as set, like xl
    assert vcpu_effective(host, "pooled") == [b, b]
    # into Pool-0, which now has only cpu a
    host.xst("cpupool-migrate", "pooled", "Pool-0")
    assert vcpus() == [a, a], thread_cpus(d["pid"])
    # a hard affinity outside the pool is refused
    r = host.xst("vcpu-pin", "pooled", "0", b, check=False)
    assert r.returncode == 1 and "none is in cpupool Pool-0" in r.stderr, r.stderr
    # the pool grows: its domains may use the new cpu
    host.xst("cpupool-destroy", "p1")
    host.xst("cpupool-cpu-add", "Pool-0", b)
    assert vcpus() == [], thread_cpus(d["pid"])        # all cpus again
    assert vcpu_effective(host, "pooled") == ["all", "all"] or \
        vcpu_effective(host, "pooled") == ["%s-%s" % (a, b)] * 2, vcpu_effective(host, "pooled")
    host.xst("destroy", "pooled")


def rss_shmem_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1])
    return 0


def test_mem_set_balloons_a_sim_guest(host):
    """The sim guest's balloon follows memory/target: pages above it go back to the host
    and the guest keeps to the rest; xst list shows the new size; it can grow again."""
    host.xst("create", host.cfg("bal", 'name = "bal"\nmemory = 128\nvcpus = 1\n'
                                'workload = "dirty=256M/s,ws=96M"\n'))
    d = host.dom("bal")
    pid = d["pid"]
    wait_for(lambda: rss_shmem_kib(pid) > 90 * 1024, timeout=20, what="96 MiB dirtied")
    host.xst("mem-set", "bal", "32m")
    assert host.dom("bal")["mem_kib"] == 32 * 1024
    assert host.xs("xenstore-read", "/local/domain/%d/memory/target" % d["domid"]) \
        .stdout.strip() == str(32 * 1024)
    time.sleep(1)
    assert rss_shmem_kib(pid) < 40 * 1024, rss_shmem_kib(pid)
    host.xst("mem-set", "bal", "128m")
    wait_for(lambda: rss_shmem_kib(pid) > 90 * 1024, timeout=20, what="the guest grew back")
    host.xst("destroy", "bal")
