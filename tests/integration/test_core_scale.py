"""1,000 sim domains on one host: each a real xst-domain introduced to one real xstored,
each guest talking xenstore over its ring; idle domains cost (almost) no CPU and little
memory, and all of them go away cleanly.  XST_CORE_SCALE overrides the count."""
import concurrent.futures
import os
import re
import time

from conftest import wait_for
from core_util import Domain, cpu_ticks

# Sanitizer builds carry ~6 MiB of shadow and quarantine per process: the count and the
# memory bound are scaled down there (the behaviour under test is the same).
SAN = os.environ.get("XST_BUILD", "").rstrip("/").endswith("san")
N = int(os.environ.get("XST_CORE_SCALE", "200" if SAN else "1000"))
PSS_MAX_KIB = 16384 if SAN else 2048
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pss_kib(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def test_thousand_sim_domains(xstored, tmp_path):
    doms = [Domain(xstored, tmp_path, i, name="s%d" % i, mem=4096) for i in range(1, N + 1)]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    try:
        t0 = time.monotonic()
        list(pool.map(lambda d: d.spawn(), doms))
        spawn_s = time.monotonic() - t0

        # the toolstack's nodes, after the introductions (perms name the domains)
        args = []
        for d in doms:
            base = "/local/domain/%d" % d.domid
            args += [base + "/name", "s%d" % d.domid, base + "/data", ""]
        xstored.run("xenstore-write", *args, timeout=120)

        def perms(d):
            base = "/local/domain/%d" % d.domid
            xstored.run("xenstore-chmod", base + "/name", "n0", "r%d" % d.domid)
            xstored.run("xenstore-chmod", base + "/data", "n%d" % d.domid)
        list(pool.map(perms, doms))

        def all_running():
            out = xstored.run("xenstore-ls", "/local/domain", timeout=120).stdout
            return len(re.findall(r'status = "running"', out)) == N
        wait_for(all_running, timeout=120, what="every guest's data/status")

        # idle cost: CPU over 3 s summed over all domain processes, memory per domain
        pids = [d.pid for d in doms]
        before = sum(cpu_ticks(p) for p in pids)
        time.sleep(3)
        cpu_s = (sum(cpu_ticks(p) for p in pids) - before) / CLK_TCK
        pss = sum(pss_kib(p) for p in pids) / N
        print("\n%d domains: spawn+introduce %.1f s, idle CPU %.2f s in 3 s, PSS %.0f KiB/domain"
              % (N, spawn_s, cpu_s, pss))
        assert cpu_s < 0.05 * N / 100 + 0.3, "idle domains burn CPU: %.2f s" % cpu_s
        assert pss < PSS_MAX_KIB, "PSS %.0f KiB per domain" % pss

        # a sample still obeys the toolstack
        for d in doms[:: max(1, N // 10)]:
            xstored.run("xenstore-chmod", "/local/domain/%d/data" % d.domid, "n%d" % d.domid)
            xstored.run("xenstore-write", "/local/domain/%d/control/shutdown" % d.domid,
                        "poweroff")
            xstored.run("xenstore-chmod", "/local/domain/%d/control/shutdown" % d.domid,
                        "n0", "b%d" % d.domid)
            xstored.run("xenstore-write", "/local/domain/%d/control/shutdown" % d.domid,
                        "poweroff")
            assert [e["reason"] for e in d.events(0, 10000)] == ["POWEROFF"]
    finally:
        list(pool.map(lambda d: (d.destroy(), d.kill()), doms))
        pool.shutdown()
    wait_for(lambda: not any(d.alive() for d in doms), timeout=30,
             what="all domain processes gone")
    left = [f for f in os.listdir(tmp_path) if not f.endswith(".log")
            and f not in ("socket", "trace")]
    assert left == []
    for d in doms:
        d.assert_clean_log()
