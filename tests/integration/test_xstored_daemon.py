"""xstored as a process: daemon mode, pid file, trace file, default socket location,
clean exit on SIGTERM, 10,000 concurrent connections."""
import os
import resource
import signal
import socket
import subprocess
import time

import pytest

from conftest import Xstored, build_path, wait_for
from xstored_util import SockConn, pack, args

XSTORED = str(build_path("store", "xstored"))


def test_daemon_mode_pid_file_and_sigterm(tmp_path):
    sock, pidfile = str(tmp_path / "s"), str(tmp_path / "pid")
    r = subprocess.run([XSTORED, "--socket", sock, "-F", pidfile], timeout=10)
    assert r.returncode == 0  # parent returns once the daemon is set up
    wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, what="pid file")
    pid = int(open(pidfile).read())
    c = SockConn(sock)
    c.write("/d", "1")
    assert c.read("/d") == b"1"
    c.close()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
             open("/proc/%d/stat" % pid).read().split()[2] == "Z", what="daemon exit")
    assert not os.path.exists(sock)


def test_sigterm_exit_status_and_trace(xstored):
    c = SockConn(xstored.socket)
    c.write("/traced", "v")
    c.close()
    assert xstored.stop() == 0
    trace = open(xstored.trace).read()
    assert "WRITE (/traced v)" in trace
    assert "OK" in trace


def test_default_socket_from_xenstored_rundir(tmp_path):
    env = dict(os.environ, XENSTORED_RUNDIR=str(tmp_path))
    env.pop("XENSTORED_PATH", None)
    p = subprocess.Popen([XSTORED, "-N"], env=env)
    try:
        wait_for(lambda: os.path.exists(tmp_path / "socket"), what="socket in rundir")
        c = SockConn(str(tmp_path / "socket"))
        assert c.read("/tool") == b""
        c.close()
    finally:
        p.terminate()
        assert p.wait(10) == 0


def test_xenstored_path_env(tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "xp"))
    p = subprocess.Popen([XSTORED, "-N"], env=env)
    try:
        wait_for(lambda: os.path.exists(tmp_path / "xp"), what="socket at XENSTORED_PATH")
    finally:
        p.terminate()
        assert p.wait(10) == 0


def test_bad_option_fails_with_message(tmp_path):
    r = subprocess.run([XSTORED, "--socket", str(tmp_path / "s"), "-N", "-E", "abc"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "invalid argument" in r.stderr


def test_ten_thousand_concurrent_connections(xstored):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 10000 + 200
    if hard < want:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d: cannot open that many sockets" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    socks = []
    try:
        for i in range(10000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(xstored.socket)
            socks.append(s)
        # every one of them is served
        for i, s in enumerate(socks):
            s.sendall(pack("WRITE", b"/many/%d\0x" % i))
        for s in socks:
            s.settimeout(30)
            got = b""
            while len(got) < 19:
                got += s.recv(19 - len(got))
            assert got.endswith(b"OK\0")
        c = SockConn(xstored.socket)
        assert c.read("/many/0") == b"x" and c.read("/many/9999") == b"x"
        assert c.err("DIRECTORY", "/many") == "E2BIG"  # 10,000 names exceed one reply
        c.close()
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_valgrind_clean_after_workload(tmp_path):
    import shutil
    from conftest import XEN_BIN
    vg = shutil.which("valgrind")
    if not vg:
        pytest.skip("valgrind is not installed (.ci/install-deps installs it)")
    if "san" in XSTORED.split("/"):
        pytest.skip("the ASan build cannot run under valgrind")
    sock = str(tmp_path / "s")
    p = subprocess.Popen([vg, "--leak-check=full", "--show-leak-kinds=all", "--error-exitcode=9",
                          XSTORED, "--socket", sock, "-N", "-T", str(tmp_path / "trace")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.exists(sock), timeout=30, what="xstored under valgrind")
        env = dict(os.environ, XENSTORED_PATH=sock)
        r = subprocess.run([str(XEN_BIN / "test-xenstore"), "-i", "2"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        c = SockConn(sock)
        c.call("WATCH", "/v", "t")
        tx = int(c.call("TRANSACTION_START", "").rstrip(b"\0"))
        c.write("/v/a", "1", tx=tx)  # left open: freed with the connection at exit
        c.write("/v/b", "2")
        c.sock.sendall(pack("WRITE", b"/v/partial\0value")[:20])  # a partial request
        time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-3000:]
    assert "All heap blocks were freed -- no leaks are possible" in err, err[-3000:]


def _cpu_ticks(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


@pytest.mark.parametrize("poll", [None, "0", "1000"])
def test_busy_poll_only_right_after_activity(tmp_path, poll):
    """--poll-us N: the daemon may spin up to N us after serving requests, never
    when idle (the one-second timer does not start a spin)."""
    d = Xstored(tmp_path, [] if poll is None else ["--poll-us", poll]).start()
    try:
        c = SockConn(d.socket)
        c.write("/p", "v")
        for _ in range(2000):
            assert c.read("/p") == b"v"
        time.sleep(0.2)
        hz = os.sysconf("SC_CLK_TCK")
        t0 = _cpu_ticks(d.proc.pid)
        time.sleep(3)
        idle = _cpu_ticks(d.proc.pid) - t0
        assert idle * 1000 // hz <= 30, "idle xstored used %d ms of CPU in 3 s" % (
            idle * 1000 // hz)
        assert c.read("/p") == b"v"  # and it still answers
        c.close()
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("bad", ["1001", "-1", "x"])
def test_poll_us_rejects_bad_values(tmp_path, bad):
    r = subprocess.run([XSTORED, "--socket", str(tmp_path / "s"), "-N", "--poll-us", bad],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "invalid argument for --poll-us" in r.stderr
