"""The domain process (xst-domain) with the sim core, end to end: a real xstored, the
guest's xenbus client over the shared ring page handed over with SCM_RIGHTS, Debian's
xenstore clients as the toolstack, and the control protocol of docs/domain-process.md."""
import os
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import wait_for
from core_util import Domain, console_connect, domctl_path, recv_until, pid_alive, parse_kv


@pytest.fixture
def domains(xstored, tmp_path):
    made = []

    def make(domid, **cfg):
        d = Domain(xstored, tmp_path, domid, **cfg)
        made.append(d)
        return d

    yield make
    for d in made:
        try:
            d.destroy()
        finally:
            d.kill()
        d.assert_clean_log()


def status_running(xs, domid):
    r = xs.run("xenstore-read", "/local/domain/%d/data/status" % domid, check=False)
    return r.returncode == 0 and r.stdout.strip() == "running"


@pytest.mark.parametrize("request_,reason", [("poweroff", "POWEROFF"), ("reboot", "REBOOT"),
                                             ("crash", "CRASH")])
def test_guest_obeys_control_shutdown(xstored, domains, request_, reason):
    d = domains(5, name="simvm", workload="console=100ms").spawn()
    d.toolstack_nodes("simvm")
    # the sim guest read its name through the ring and wrote data/status itself
    wait_for(lambda: status_running(xstored, 5), timeout=10, what="data/status = running")
    log = d.console_log()
    assert 'xenbus: name is "simvm"' in log
    assert "xenbus: watching control/shutdown" in log
    assert d.info()["state"] == "RUNNING"

    xstored.run("xenstore-write", "/local/domain/5/control/shutdown", request_)
    evs = d.events(0, 5000)
    assert [(e["kind"], e["reason"]) for e in evs] == [("EV_SHUTDOWN", reason)]
    info = d.info()
    assert info["state"] == "SHUTDOWN"
    assert info["shutdown_reason"] == reason
    # the guest acknowledged the request the way Linux does: by clearing the node
    wait_for(lambda: xstored.run("xenstore-read", "/local/domain/5/control/shutdown")
             .stdout.strip() == "", what="control/shutdown cleared")
    # the process stays (like a Xen domain waiting for the toolstack) until destroyed
    assert pid_alive(d.pid)
    d.destroy()
    for f in ("ipc", "console", "state", "events"):
        assert not os.path.exists(os.path.join(d.rundir, "dom-5.%s" % f))


def test_ring_handoff_reaches_xstored_as_domain(xstored, domains):
    d = domains(9, name="ringvm").spawn()
    d.toolstack_nodes("ringvm")
    wait_for(lambda: status_running(xstored, 9), timeout=10, what="data/status")
    # the node the guest wrote is owned by the guest's own domain: xstored took the
    # write from the ring connection of domid 9, not from a privileged socket
    perms = xstored.run("xenstore-ls", "-p", "/local/domain/9/data").stdout
    assert "status" in perms and "(n9)" in perms
    # last page of 16 MiB of sim RAM
    assert d.gfn == 16384 // 4 - 1


def test_guest_waits_for_toolstack_nodes(xstored, domains):
    d = domains(6, name="late").spawn()
    time.sleep(0.5)  # READ name fails (no node): the guest retries
    assert not status_running(xstored, 6)
    assert d.info()["state"] == "RUNNING"
    d.toolstack_nodes("late")
    wait_for(lambda: status_running(xstored, 6), timeout=10, what="data/status")


def test_pause_unpause_stops_the_guest(xstored, domains):
    d = domains(7, name="pausevm", workload="console=20ms").spawn()
    wait_for(lambda: "tick 3" in d.console_log(), what="console ticks")
    d.ctl("pause")
    assert d.info()["state"] == "PAUSED"
    assert "running=0" in d.ctl("vcpu-info").stdout
    before = d.console_log()
    cpu = int(d.info()["cpu_time_ns"])
    time.sleep(0.3)
    assert d.console_log() == before
    assert int(d.info()["cpu_time_ns"]) == cpu
    d.ctl("unpause")
    assert d.info()["state"] == "RUNNING"
    wait_for(lambda: d.console_log() != before, what="console after unpause")
    kinds = [e["kind"] for e in d.events(0)]
    assert kinds == ["EV_PAUSED", "EV_UNPAUSED"]


def test_start_paused(xstored, domains):
    d = domains(8, name="p", workload="console=10ms").spawn("--paused")
    time.sleep(0.2)
    assert d.info()["state"] == "PAUSED"
    assert "booting" not in d.console_log()
    d.ctl("unpause")
    wait_for(lambda: "booting" in d.console_log(), what="boot after unpause")


def test_hard_shutdown_and_destroy(xstored, domains):
    d = domains(10, name="hard").spawn()
    d.ctl("shutdown", "CRASH")
    info = d.info()
    assert (info["state"], info["shutdown_reason"]) == ("SHUTDOWN", "CRASH")
    evs = d.events(0)
    assert evs[0]["kind"] == "EV_SHUTDOWN" and evs[0]["reason"] == "CRASH"
    r = d.ctl("shutdown", "POWEROFF", check=False)
    assert r.returncode == 1 and "error=EINVAL" in r.stdout
    r = d.ctl("unpause", check=False)
    assert "error=EINVAL" in r.stdout
    d.destroy()


def test_console_socket_history_and_input(xstored, domains):
    d = domains(11, name="con", workload="console=50ms").spawn()
    wait_for(lambda: "tick 1" in d.console_log(), what="first tick")
    s = console_connect(os.path.join(d.rundir, "dom-11.console"))
    got = recv_until(s, b"tick 1")
    assert b"sim: con (domid 11) booting" in got  # history first
    s.sendall(b"hello-console\n")
    got = recv_until(s, b"hello-console")
    assert b"hello-console" in got  # the sim console echoes
    # live output keeps coming
    assert b"tick" in recv_until(s, b"tick")
    s.close()


def test_vcpus_memory_sched(xstored, domains):
    d = domains(12, name="res", maxvcpus=4, vcpus=2, mem=8192, maxmem=16384).spawn()
    out = d.ctl("vcpu-info").stdout
    assert out.count("online=1") == 2 and out.count("online=0") == 2
    d.ctl("vcpus", 4)
    assert d.ctl("vcpu-info").stdout.count("online=1") == 4
    d.ctl("vcpus", 1)
    assert d.info()["vcpus_online"] == "1"
    d.ctl("mem-target", 4096)
    assert d.info()["mem_target_kib"] == "4096"
    r = d.ctl("mem-target", 20000, check=False)
    assert r.returncode == 1 and "error=EINVAL" in r.stdout
    r = d.ctl("vcpus", 0, check=False)
    assert "error=EINVAL" in r.stdout and "must be 1..4" in r.stdout
    d.ctl("sched", 512, 100)
    info = d.info()
    assert (info["sched_weight"], info["sched_cap"]) == ("512", "100")
    r = d.ctl("sched", 0, 0, check=False)
    assert "error=EINVAL" in r.stdout
    # the record file follows the changes, for a re-adopting agent
    rec = parse_kv(d.ctl("record").stdout)
    assert rec["pid"] == str(d.pid) and rec["vcpus_online"] == "1"
    assert rec["mem_target_kib"] == "4096" and rec["sched_weight"] == "512"


def test_bad_requests_get_error_replies(xstored, domains):
    d = domains(13, name="bad").spawn()
    r = d.ctl("raw-garbage")
    assert "error=EPROTO" in r.stdout
    assert d.info()["state"] == "RUNNING"  # still serving
    r = d.ctl("state-save", check=False)
    assert "error=EBUSY" in r.stdout  # must be paused first
    d.ctl("pause")
    out = parse_kv(d.ctl("state-save").stdout)
    assert int(out["vm_state_bytes"]) > 0 and out["vcpu_states"] == "1"


def test_outlives_spawner_and_readopts(xstored, domains, tmp_path):
    d = domains(14, name="orphan", workload="console=20ms", toolstack="agent-blob-v1").spawn()
    # the spawner (xst-domctl) has exited: a new client finds the domain from the
    # state file and gets its config, toolstack blob and events back
    rec = parse_kv(d.ctl("record").stdout)
    assert rec["ipc_url"] == "ipc://%s/dom-14.ipc" % tmp_path
    cfg = parse_kv(d.ctl("get-config").stdout)
    assert cfg["name"] == "orphan" and cfg["toolstack"] == "agent-blob-v1"
    d.ctl("shutdown", "REBOOT")
    # an agent that was away asks from seq 0 and sees what it missed
    assert [e["reason"] for e in d.events(0)] == ["REBOOT"]


def test_soft_reset_reconnects_after_reintroduce(xstored, domains):
    d = domains(15, name="kexec", workload="console=50ms").spawn()
    d.toolstack_nodes("kexec")
    wait_for(lambda: status_running(xstored, 15), timeout=10, what="data/status")
    xstored.run("xenstore-rm", "/local/domain/15/data/status")
    d.ctl("soft-reset")
    assert [e["kind"] for e in d.events(0)] == ["EV_SOFT_RESET"]
    assert d.info()["state"] == "RUNNING"
    time.sleep(0.3)
    # the reset guest waits for xstored (ring connection field = RECONNECT) ...
    assert not status_running(xstored, 15)
    assert d.console_log().count("booting") == 2
    # ... until the toolstack introduces it again (no fds: xstored resets its ring)
    d.ctl("introduce", xstored.socket, d.gfn)
    wait_for(lambda: status_running(xstored, 15), timeout=10, what="status after reset")
    assert d.console_log().count("xenbus: connected") == 2


def test_bad_config_is_refused_and_process_keeps_serving(xstored, domains):
    d = domains(16, name="typo", workload="memroy=1")
    d.spawn(check=False)
    assert d.result.returncode == 1
    assert "error=EINVAL" in d.result.stdout and "vm_create" in d.result.stdout
    assert d.info()["state"] == "CREATED"
    r = d.ctl("pause", check=False)
    assert "error=ENODEV" in r.stdout and "not created yet" in r.stdout
    d.destroy()


def test_sigterm_destroys_and_cleans_up(xstored, domains):
    d = domains(17, name="term").spawn()
    os.kill(d.pid, signal.SIGTERM)
    wait_for(lambda: not d.alive(), timeout=10, what="exit on SIGTERM")
    for f in ("ipc", "console", "state", "events"):
        assert not os.path.exists(os.path.join(d.rundir, "dom-17.%s" % f))


def ticks(log):
    return [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if " tick " in line]


def test_local_migration_moves_real_bytes(xstored, domains):
    """The save/restore hooks (dirty log, page read/write, state blobs) move a running
    guest that keeps dirtying memory into a second domain process, which continues it."""
    wl = "dirty=4M/s,console=50ms,ws=2M"
    a = domains(20, name="mig", workload=wl, mem=8192).spawn()
    wait_for(lambda: len(ticks(a.console_log())) >= 3, what="source ticks")
    b = domains(21, name="mig", workload=wl, mem=8192).spawn("--restoring")
    assert b.info()["state"] == "PAUSED"
    out = parse_kv(a.ctl("migrate-local", 21).stdout)
    assert int(out["pages_copied"]) >= 2048  # the whole RAM at least once
    assert a.info()["state"] == "PAUSED"
    sum_a = parse_kv(a.ctl("checksum").stdout)["checksum"]
    assert parse_kv(b.ctl("checksum").stdout)["checksum"] == sum_a
    last = ticks(a.console_log())[-1]
    b.ctl("unpause")
    wait_for(lambda: ticks(b.console_log()), what="destination ticks")
    assert ticks(b.console_log())[0] == last + 1  # continued, not rebooted
    assert "booting" not in b.console_log()
    # and it keeps dirtying its (copied) memory
    wait_for(lambda: parse_kv(b.ctl("checksum").stdout)["checksum"] != sum_a,
             what="destination dirtying memory")
    a.destroy()


def test_events_channel_publishes(xstored, domains):
    d = domains(22, name="pub").spawn()
    sub = subprocess.Popen([domctl_path(), "--rundir", d.rundir, "--domid", "22",
                            "subscribe", "20"], stdout=subprocess.PIPE, text=True)
    try:
        assert sub.stdout.readline().strip() == "subscribed"
        # pub/sub drops what is sent before the subscription is connected: pause and
        # unpause until the subscriber hears something
        end = time.monotonic() + 10
        first = None
        while first is None and time.monotonic() < end:
            d.ctl("pause")
            d.ctl("unpause")
            if select.select([sub.stdout], [], [], 0.2)[0]:
                first = sub.stdout.readline().strip()
        assert first is not None, "no event reached the subscriber"
        assert "kind=EV_PAUSED" in first or "kind=EV_UNPAUSED" in first
        d.ctl("shutdown", "WATCHDOG")
        seq = int(d.info()["last_event_seq"])
        line = ""
        while "EV_SHUTDOWN" not in line:
            line = sub.stdout.readline().strip()
    finally:
        sub.kill()
        sub.wait()
    assert line == ("event seq=%d kind=EV_SHUTDOWN reason=WATCHDOG "
                    "detail=hard shutdown (watchdog) by the toolstack" % seq)


def test_console_input_of_a_client_that_left_at_once(xstored, domains):
    """`echo cmd | xst console dom`: the client sends its input and closes before the
    domain process has accepted it and sent it the log; the input still reaches the
    guest (the sim guest echoes it)."""
    d = domains(24, name="piped", workload="console=10ms").spawn()
    path = os.path.join(d.rundir, "dom-24.console")
    wait_for(lambda: len(d.console_log()) > 200, what="some console log")
    for i in range(20):
        s = console_connect(path)
        s.sendall(b"piped input %02d\n" % i)
        s.close()
        wait_for(lambda: "piped input %02d" % i in d.console_log(),
                 what="piped input %d echoed" % i)


def test_console_log_is_bounded_and_slow_clients_do_not_stall(xstored, domains):
    d = domains(23, name="chatty", workload="console=10ms").spawn()
    stuck = console_connect(os.path.join(d.rundir, "dom-23.console"))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never reads
    writer = console_connect(os.path.join(d.rundir, "dom-23.console"))
    writer.setblocking(False)
    blob = b"".join(b"line %06d of console input\n" % i for i in range(5000))  # 140 KB
    sent, echoed = 0, b""
    end = time.monotonic() + 20
    # a well-behaved client: keeps reading (the echo comes back to it) while writing
    while b"line 004999" not in echoed and time.monotonic() < end:
        if sent < len(blob):
            try:
                sent += writer.send(blob[sent:sent + 4096])
            except BlockingIOError:
                pass
        try:
            while True:
                chunk = writer.recv(65536)
                assert chunk, "the console dropped a client that reads"
                echoed += chunk
        except BlockingIOError:
            time.sleep(0.001)
    assert b"line 004999" in echoed
    log = d.console_log()
    assert len(log.encode()) == 65536  # the last 64 KiB only
    assert "line 000000 " not in log and "line 004999" in log
    t1 = ticks(log)[-1]
    wait_for(lambda: ticks(d.console_log())[-1] > t1 + 5,
             what="ticks after a client stopped reading")
    # the one that never read was dropped rather than stalling the guest
    stuck.settimeout(5)
    data = b""
    while True:
        chunk = stuck.recv(65536)
        if not chunk:
            break
        data += chunk
    assert len(data) < len(blob)
    stuck.close()
    writer.close()
