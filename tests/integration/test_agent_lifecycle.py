"""xst-agent end to end on the sim core: real xstored, real agent, real xst-domain
processes, driven through the real `xst` binary; the xenstore layout is checked with
Debian's xenstore-ls, and guest requests travel through the sim guest's xenstore ring."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from agent_util import Host, process_alive, rss_kib, wait_state
from conftest import BUILD, build_path, wait_for


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path).start()
    yield h
    h.stop()
    assert h.agent_rc == 0, "xst-agent: rc=%s %s" % (h.agent_rc, h.agent_err)


def ls_perms(host, path):
    """xenstore-ls -p PATH as {relative path: (value, perms)}."""
    out = host.xs("xenstore-ls", "-f", "-p", path).stdout
    nodes = {}
    for line in out.splitlines():
        m = re.match(r'^(\S+) = "(.*?)"[ .]*\((.*)\)$', line)
        assert m, line
        nodes[m.group(1)[len(path):]] = (m.group(2), m.group(3))
    return nodes


def test_lifecycle_and_layout(host):
    base = host.node_count()
    d = host.create("vm1", 'maxvcpus = 3\nmaxmem = 128\nworkload = "console=200ms"\n'
                           'uuid = "11111111-2222-4333-8444-555555555555"\n')
    domid = d["domid"]
    assert d["state"] == "r-----"
    assert (d["vcpus"], d["maxvcpus"], d["pool"], d["core"]) == (2, 3, "Pool-0", "sim")
    assert d["uuid"] == "11111111-2222-4333-8444-555555555555"
    assert process_alive(d["pid"])

    # The guest's xenbus client reached xstored over the ring and wrote its status.
    dp = "/local/domain/%d" % domid
    wait_for(lambda: host.xs("xenstore-read", dp + "/data/status", check=False).stdout
             == "running\n", what="guest status")

    ro = "n0,r%d" % domid
    rw = "n%d" % domid
    nodes = ls_perms(host, dp)
    expect = {
        "/name": ("vm1", ro), "/domid": (str(domid), ro),
        "/vm": ("/vm/11111111-2222-4333-8444-555555555555", ro),
        "/memory/target": ("65536", ro), "/memory/static-max": ("131072", ro),
        "/cpu/0/availability": ("online", ro), "/cpu/1/availability": ("online", ro),
        "/cpu/2/availability": ("offline", ro),
        "/control/shutdown": ("", rw), "/control/feature-poweroff": ("", rw),
        "/control/feature-reboot": ("", rw), "/control/sysrq": ("", rw),
        "/control/platform-feature-xs_reset_watches": ("1", ro),
        "/data": ("", rw), "/data/status": ("running", rw), "/device": ("", rw),
        "/drivers": ("", rw), "/feature": ("", rw), "/attr": ("", rw), "/error": ("", rw),
        "/console/type": ("xst", ro), "/store/port": ("1", ro),
    }
    for k, v in expect.items():
        assert nodes.get(k) == v, (k, nodes.get(k))
    assert int(nodes["/store/ring-ref"][0]) > 0
    assert nodes["/console/tty"][0].endswith("/dom-%d.console" % domid)
    vm = ls_perms(host, "/vm/11111111-2222-4333-8444-555555555555")
    assert vm["/name"] == ("vm1", ro)
    assert vm["/uuid"] == ("11111111-2222-4333-8444-555555555555", ro)
    lx = ls_perms(host, "/libxl/%d" % domid)
    assert lx["/on_reboot"] == ("restart", "n0")
    assert lx["/sched/weight"] == ("256", "n0")
    # Console: the guest's boot banner and periodic lines.
    p = subprocess.Popen([str(build_path("tools", "xst")), "console", "vm1"],
                         env=dict(os.environ, XST_AGENT=host.url), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE)
    time.sleep(1.0)
    p.kill()
    out = p.stdout.read().decode(errors="replace")
    p.wait()
    assert "vm1" in out and "booting" in out, out

    # Pause / unpause.
    host.xst("pause", "vm1")
    assert host.dom("vm1")["state"] == "--p---"
    host.xst("unpause", str(domid))
    assert host.dom("vm1")["state"] == "r-----"

    # Memory and vcpus.
    host.xst("mem-set", "vm1", "32m")
    assert host.xs("xenstore-read", dp + "/memory/target").stdout == "32768\n"
    assert host.dom("vm1")["target_kib"] == 32768
    host.xst("mem-max", "vm1", "96")
    assert host.xs("xenstore-read", dp + "/memory/static-max").stdout == "98304\n"
    r = host.xst("mem-set", "vm1", "1g", check=False)
    assert r.returncode == 1 and r.stderr.startswith("xst: mem-set: domain %d: " % domid)
    host.xst("vcpu-set", "vm1", "3")
    assert host.xs("xenstore-read", dp + "/cpu/2/availability").stdout == "online\n"
    assert host.dom("vm1")["vcpus"] == 3
    r = host.xst("vcpu-set", "vm1", "4", check=False)
    assert (r.returncode, r.stderr) == (
        1, "xst: vcpu-set: domain %d has 3 vcpus at most (maxvcpus); asked for 4\n" % domid)
    host.xst("vcpu-pin", "vm1", "1", "0")
    vl = json.loads(host.xst("vcpu-list", "--json", "vm1").stdout)
    assert [v["affinity"] for v in vl] == ["all", "0", "all"]
    assert host.xs("xenstore-read", "/libxl/%d/vcpu/1/affinity" % domid).stdout == "0\n"

    # Names.
    assert host.xst("domid", "vm1").stdout == "%d\n" % domid
    host.xst("rename", "vm1", "web")
    assert host.xst("domname", str(domid)).stdout == "web\n"
    assert host.xs("xenstore-read", dp + "/name").stdout == "web\n"
    r = host.xst("domid", "vm1", check=False)
    assert (r.returncode, r.stderr) == (1, 'xst: domid: domain "vm1" does not exist\n')

    # list (xl format), uptime, info, dmesg, debug-keys, top.
    out = host.xst("list").stdout.splitlines()
    assert out[0] == "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    assert out[1].startswith("Domain-0 ")
    assert re.match(r"^web +%d +\d+ +3 +r----- +\d+\.\d$" % domid, out[2]), out[2]
    assert re.search(r"^web +%d \d+:\d\d:\d\d$" % domid, host.xst("uptime").stdout, re.M)
    info = json.loads(host.xst("info", "--json").stdout)
    assert info["nr_domains"] == 1 and info["scheduler"] == "credit"
    assert "domain %d (vm1) created" % domid in host.xst("dmesg").stdout
    dk = host.xst("debug-keys").stdout
    assert "domain %d web uuid 11111111-2222-4333-8444-555555555555" % domid in dk
    top = host.xst("top", "-b").stdout.splitlines()
    assert top[0].split()[:3] == ["NAME", "STATE", "CPU(sec)"]
    assert any(line.split()[0] == "web" for line in top[1:])

    # Destroy: process gone, nodes gone, node count back to where it was.
    pid = host.dom("web")["pid"]
    host.xst("destroy", "web")
    assert host.dom("web") is None
    wait_for(lambda: not process_alive(pid), what="domain process exit")
    assert host.xs("xenstore-exists", dp, check=False).returncode == 1
    assert host.node_count() == base
    assert not [f for f in os.listdir(host.rundir) if f.startswith("dom-%d." % domid)
                and not f.endswith(".log")]


def test_errors(host):
    r = host.xst("destroy", "nope", check=False)
    assert (r.returncode, r.stdout, r.stderr) == \
        (1, "", 'xst: destroy: domain "nope" does not exist\n')
    r = host.xst("pause", "0", check=False)
    assert (r.returncode, r.stderr) == \
        (1, "xst: pause: domain 0 (Domain-0) is the host: not supported\n")
    host.create("a")
    path = host.cfg("dup", 'name = "a"\n')
    r = host.xst("create", path, check=False)
    assert (r.returncode, r.stderr) == \
        (1, 'xst: create: domain name "a" is already in use (domain 1)\n')
    path = host.cfg("badpool", 'name = "b"\npool = "nopool"\n')
    r = host.xst("create", path, check=False)
    assert (r.returncode, r.stderr) == (1, 'xst: create: no cpupool "nopool"\n')
    r = host.xst("rename", "a", "9x", check=False)
    assert (r.returncode, r.stderr) == (1, 'xst: rename: invalid domain name "9x"\n')
    r = host.xst("mem-set", "a", "lots", check=False)
    assert (r.returncode, r.stderr) == (1, 'xst: mem-set: invalid memory size "lots"\n')


def test_create_paused(host):
    d = host.create("p", "", "-p")
    assert d["state"] == "--p---"
    host.xst("unpause", "p")
    assert host.dom("p")["state"] == "r-----"


def test_guest_shutdown_and_reboot(host):
    # Guest-side requests go through control/shutdown; the sim guest acknowledges over its
    # ring and stops with the matching reason; the agent applies on_*.
    d = host.create("r", 'on_reboot = "restart"\n')
    wait_for(lambda: host.xs("xenstore-read", "/local/domain/%d/data/status" % d["domid"],
                             check=False).stdout == "running\n", what="guest up")
    host.xst("reboot", "r")
    wait_state(host, "r", lambda x: x and x["domid"] != d["domid"], what="restart")
    nd = host.dom("r")
    assert nd["uuid"] == d["uuid"] and nd["state"] == "r-----"
    wait_for(lambda: not process_alive(d["pid"]), what="old domain process exit")
    assert host.xs("xenstore-exists", "/local/domain/%d" % d["domid"],
                   check=False).returncode == 1

    # on_crash = preserve: the guest crashes (its control/shutdown says so) and is kept.
    c = host.create("c", 'on_crash = "preserve"\n')
    wait_for(lambda: host.xs("xenstore-read", "/local/domain/%d/data/status" % c["domid"],
                             check=False).stdout == "running\n", what="guest up")
    host.xs("xenstore-write", "/local/domain/%d/control/shutdown" % c["domid"], "crash")
    wait_state(host, "c", lambda x: x and x["state"] == "---sc-", what="crashed, preserved")
    # The guest acknowledged by clearing the node through its ring.
    assert host.xs("xenstore-read", "/local/domain/%d/control/shutdown" % c["domid"]).stdout \
        == "\n"
    host.xst("destroy", "c")

    # rename-restart: the old domain is kept under a new name.
    rr = host.create("rr", 'on_poweroff = "rename-restart"\n')
    wait_for(lambda: host.xs("xenstore-read", "/local/domain/%d/data/status" % rr["domid"],
                             check=False).stdout == "running\n", what="guest up")
    host.xst("shutdown", "rr")
    wait_state(host, "rr-%d" % rr["domid"], lambda x: x and x["state"] == "---s--",
               what="renamed")
    assert host.dom("rr")["state"] == "r-----"

    # shutdown -w (on_poweroff = destroy) waits until the domain is gone.
    pid = host.dom("r")["pid"]
    r = host.xst("shutdown", "-w", "r")
    assert host.dom("r") is None
    assert "has been shut down" in r.stderr
    wait_for(lambda: not process_alive(pid), what="process exit")

    # Hard shutdown needs no guest cooperation.
    host.create("h")
    host.xst("shutdown", "-F", "h")
    wait_state(host, "h", lambda x: x is None, what="hard shutdown")


def test_domain_process_killed(host):
    d = host.create("k", 'on_crash = "restart"\n')
    os.kill(d["pid"], signal.SIGKILL)
    wait_state(host, "k", lambda x: x and x["domid"] != d["domid"], what="restart after kill")
    assert host.xs("xenstore-exists", "/local/domain/%d" % d["domid"],
                   check=False).returncode == 1


def test_agent_kill9_readopt(host):
    a = host.create("a", 'workload = "console=100ms"\n')
    b = host.create("b", 'on_poweroff = "preserve"\n')
    host.xst("sched-credit", "-d", "a", "-w", "512", "-c", "50")
    host.xst("cpupool-cpu-remove", "Pool-0", "0")
    host.xst("cpupool-create", "fast", "cpus=0")
    host.xst("cpupool-migrate", "b", "fast")
    host.xst("rename", "a", "a2")
    host.xst("vcpu-pin", "a2", "1", "1")
    host.xst("pause", "b")
    before = {d["domid"]: d for d in host.domains()}

    host.kill_agent()
    # While no agent runs: domains keep running, and a guest asks to power off.
    assert process_alive(a["pid"]) and process_alive(b["pid"])
    assert host.xst("list", check=False).returncode == 1  # no agent
    host.start_agent()
    after = {d["domid"]: d for d in host.domains()}
    assert sorted(after) == sorted(before)
    for k in ("name", "uuid", "pid", "pool", "weight", "cap", "maxmem_kib"):
        for domid in before:
            if domid:  # Domain-0's "pid" is the agent's
                assert after[domid][k] == before[domid][k], (domid, k)
    assert after[b["domid"]]["state"] == "--p---"
    pools = {p["name"]: p for p in json.loads(host.xst("cpupool-list", "--json").stdout)}
    assert pools["fast"]["cpus"] == "0" and pools["fast"]["ndomains"] == 1
    vl = json.loads(host.xst("vcpu-list", "--json", "a2").stdout)
    assert [v["affinity"] for v in vl] == ["all", "1"]
    assert "re-adopted domain %d (a2)" % a["domid"] in host.xst("dmesg").stdout

    # A shutdown that happens while the agent is dead is acted on after re-adoption.
    host.xst("unpause", "b")
    host.kill_agent()
    wait_for(lambda: host.xs("xenstore-read", "/local/domain/%d/data/status" % b["domid"],
                             check=False).stdout == "running\n", what="guest b up")
    host.xs("xenstore-write", "/local/domain/%d/control/shutdown" % b["domid"], "poweroff")
    time.sleep(0.5)
    host.start_agent()
    wait_state(host, "b", lambda x: x and x["state"] == "---s--", what="preserved")
    # The new agent allocates fresh domids above the adopted ones and works normally.
    c = host.create("c")
    assert c["domid"] > max(before)
    host.xst("destroy", "a2")
    host.xst("destroy", "b")
    host.xst("destroy", "c")
    assert [d["name"] for d in host.domains()] == ["Domain-0"]


def test_cpupools_and_sched(host):
    out = host.xst("cpupool-list").stdout.splitlines()
    assert out[0] == "Name               CPUs   Sched     Active   Domain count"
    assert out[1].startswith("Pool-0 ")
    r = host.xst("cpupool-create", "p", "cpus=0", check=False)
    assert (r.returncode, r.stderr) == (1, "xst: cpupool-create: cpu 0 is in cpupool Pool-0\n")
    host.xst("cpupool-cpu-remove", "Pool-0", "0")
    host.xst("cpupool-create", "p", "cpus=0")
    d = host.create("d", 'pool = "p"\n')
    assert d["pool"] == "p"
    r = host.xst("cpupool-destroy", "p", check=False)
    assert (r.returncode, r.stderr) == (1, "xst: cpupool-destroy: cpupool p still has 1 domains\n")
    host.xst("cpupool-migrate", "d", "Pool-0")
    host.xst("cpupool-destroy", "p")
    host.xst("cpupool-cpu-add", "Pool-0", "0")
    assert json.loads(host.xst("cpupool-list", "--json").stdout)[0]["cpus"].startswith("0")

    host.xst("sched-credit", "-d", "d", "-w", "1024", "-c", "150")
    out = host.xst("sched-credit").stdout.splitlines()
    assert out[1] == "Name                                ID Weight  Cap"
    assert re.match(r"^d +%d +1024  150$" % d["domid"], out[3]), out[3]
    assert host.xs("xenstore-read", "/libxl/%d/sched/weight" % d["domid"]).stdout == "1024\n"
    r = host.xst("sched-credit", "-d", "d", "-c", "300", check=False)
    assert (r.returncode, r.stderr) == \
        (1, "xst: sched-credit: cap 300 out of range 0..200\n")
    js = json.loads(host.xst("sched-credit", "--json").stdout)
    assert {"name": "d", "domid": d["domid"], "weight": 1024, "cap": 150, "pool": "Pool-0"} in js


N_MANY = int(os.environ.get("XST_MANY_DOMAINS", "200"))


def talloc_blocks(host):
    m = re.search(r"talloc blocks (\d+) bytes (\d+)", host.xst("debug-keys").stdout)
    return int(m.group(1)), int(m.group(2))


def test_many_domains_no_leak(host):
    path = host.cfg("m", 'name = "m"\nmemory = 16\n')

    def cycle():
        t0 = time.monotonic()
        for i in range(N_MANY):
            host.xst("create", path, "name=m%d" % i)
        doms = host.domains()
        assert len(doms) == N_MANY + 1
        assert host.node_count() > base_nodes + 20 * N_MANY
        pids = [d["pid"] for d in doms if d["domid"]]
        for i in range(N_MANY):
            host.xst("destroy", "m%d" % i)
        assert [d["name"] for d in host.domains()] == ["Domain-0"]
        # xstored: every node of every domain is gone.
        assert host.node_count() == base_nodes
        wait_for(lambda: not any(process_alive(p) for p in pids), timeout=30,
                 what="domain processes exit")
        assert sorted(f for f in os.listdir(host.rundir)
                      if not f.endswith(".log")) == ["agent.ipc"]
        return time.monotonic() - t0

    base_nodes = host.node_count()
    # The first cycle grows the heaps to their working size (malloc keeps freed memory);
    # a leak shows as growth in the second.
    t1 = cycle()
    rss1 = rss_kib(host.agent.pid)
    blocks1 = talloc_blocks(host)
    t2 = cycle()
    rss2 = rss_kib(host.agent.pid)
    blocks2 = talloc_blocks(host)
    print("%d domains created+destroyed: %.1fs, %.1fs; agent RSS %d -> %d KiB; talloc %s -> %s"
          % (N_MANY, t1, t2, rss1, rss2, blocks1, blocks2))
    # Every object the agent allocates is on its talloc tree: back to the same count.
    assert blocks2 == blocks1
    # ASan's allocator keeps per-size caches and an ever-growing stack depot, so its RSS
    # moves by a few MiB without any leak (the talloc count above is the exact check).
    slack = 8192 if BUILD.name == "san" else 1024
    assert rss2 < rss1 + slack, (rss1, rss2)


def test_create_console_both_ways(host):
    """`xst create -c` attaches to the new domain's console; input reaches the guest (the
    sim guest's console echoes it back)."""
    path = host.cfg("cc", 'name = "cc"\nmemory = 16\n')
    p = subprocess.Popen([str(build_path("tools", "xst")), "create", "-c", path],
                         env=dict(os.environ, XST_AGENT=host.url), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        wait_for(lambda: host.dom("cc") is not None, what="domain cc")
        p.stdin.write(b"hello-console\n")
        p.stdin.flush()
        time.sleep(1.0)
    finally:
        p.kill()
    out = p.stdout.read().decode(errors="replace")
    p.wait()
    assert "cc (domid" in out and "booting" in out, out
    assert "hello-console" in out, out
    # The console socket stays usable by the next client, which gets the buffered output.
    r = subprocess.Popen([str(build_path("tools", "xst")), "console", "cc"],
                         env=dict(os.environ, XST_AGENT=host.url), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE)
    time.sleep(0.5)
    r.kill()
    assert "hello-console" in r.stdout.read().decode(errors="replace")
    r.wait()
    # Destroying the domain ends an attached console with status 0.
    c = subprocess.Popen([str(build_path("tools", "xst")), "console", "cc"],
                         env=dict(os.environ, XST_AGENT=host.url), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    host.xst("destroy", "cc")
    assert c.wait(10) == 0


def raw(host, *argv):
    r = subprocess.run([str(build_path("agent", "agent-rawclient")), host.url] + list(argv),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_agent_refuses_bad_requests(host):
    """Requests the CLI would never send get an error reply; the agent keeps serving."""
    assert raw(host, "garbage") == "error=-71 message=malformed request\n"
    assert raw(host, "create", "x", "1", "100000", "16", "destroy") == \
        "error=-22 message=vcpus 1 / maxvcpus 100000 out of range " \
        "(1 <= vcpus <= maxvcpus <= 128)\n"
    assert raw(host, "create", "x", "1", "1", "0", "destroy") == \
        "error=-22 message=memory 0 / maxmem 0 MiB out of range\n"
    assert raw(host, "create", "x", "1", "1", "16", "explode") == \
        'error=-22 message=unknown action "explode"\n'
    assert raw(host, "create", "a/b", "1", "1", "16", "destroy") == \
        'error=-22 message=invalid domain name "a/b"\n'
    assert raw(host, "create", "ok", "1", "1", "16", "destroy") == "error=0 message=\n"
    assert [d["name"] for d in host.domains()] == ["Domain-0", "ok"]
