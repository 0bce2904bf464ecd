"""Smoke test of the benchmark client (tests/bench/xs_bench) against xstored: every
workload runs to completion and reports a number.  Timings are not judged here; the
benchmark itself is `sh tests/bench/run-xenstore`."""
import subprocess

import conftest
import xs_util

KEYS = ["rss_100k", "rss_100k_growth", "write_ops", "write_p50", "write_p99", "read_ops",
        "read_p50", "read_p99", "dir10k_ops", "dir10k_ms", "tx_disjoint_commits",
        "tx_disjoint_eagain", "tx_same_commits", "tx_same_eagain", "fanout_events",
        "fanout_p99", "conn1000_ms"]


def test_bench_client_runs_every_workload(tmp_path):
    exe = conftest.build_path("tests", "bench", "xs_bench")
    assert exe.exists(), "not built: %s" % exe
    d = xs_util.start_daemon("xstored", tmp_path)
    try:
        r = subprocess.run([str(exe), "--pid", str(d.proc.pid), "--scale", "0.05"], env=d.env,
                           capture_output=True, text=True, timeout=300)
    finally:
        d.stop()
    assert r.returncode == 0, r.stderr
    got = {}
    for line in r.stdout.splitlines():
        key, val = line.split()[:2]
        got[key] = val
    assert list(got) == KEYS, r.stdout
    for key in KEYS:
        assert got[key] != "n/a", r.stdout
        assert float(got[key]) >= 0, r.stdout
    assert float(got["write_ops"]) > 0 and float(got["fanout_events"]) > 0
    # Transactions of 4 clients on disjoint nodes never conflict.
    assert float(got["tx_disjoint_eagain"]) == 0.0, r.stdout
    assert float(got["rss_100k"]) > 0
