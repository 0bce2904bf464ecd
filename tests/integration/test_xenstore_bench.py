"""Smoke test of the benchmark client (tests/bench/xs_bench) against xstored: every
workload runs to completion and reports a number.  Timings are not judged here; the
benchmark itself is `sh tests/bench/run-xenstore`."""
import os
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


def test_floor_responder_and_only(tmp_path):
    """xs_floor (the zero-work responder run-xenstore prints as the "floor" column)
    answers libxenstore's rw and tx workloads; --only selects exactly those."""
    floor = conftest.build_path("tests", "bench", "xs_floor")
    exe = conftest.build_path("tests", "bench", "xs_bench")
    sock = str(tmp_path / "floor")
    p = subprocess.Popen([str(floor), "--socket", sock])
    try:
        conftest.wait_for(lambda: os.path.exists(sock), what="xs_floor socket")
        env = dict(os.environ, XENSTORED_PATH=sock)
        r = subprocess.run([str(exe), "--only", "rw,tx", "--scale", "0.05"], env=env,
                           capture_output=True, text=True, timeout=120)
    finally:
        p.kill()
        p.wait()
    assert r.returncode == 0, r.stderr
    got = dict(line.split()[:2] for line in r.stdout.splitlines())
    assert list(got) == [k for k in KEYS if k.startswith(("write", "read", "tx_"))], r.stdout
    assert all(v != "n/a" and float(v) >= 0 for v in got.values()), r.stdout
    assert float(got["read_ops"]) > 0
    assert float(got["tx_same_eagain"]) == 0.0  # no store, so nothing can conflict
