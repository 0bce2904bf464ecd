"""Live migration between hosts: each host a network namespace with its own xstored and
xst-agent (tests/integration/netns_util.py), agents talking nng over TCP on veth links
(10.77.0.0/24).  Sim-core guests dirty memory while they move; checksums of every page
(paused moves), console continuity, the guest's xenstore connection on the new host,
ping-pong, three hosts, refusal of a core mismatch, and the faults: destination agent
dies, network cut, cancel, source agent dies after the handoff."""
import signal
import subprocess
import threading
import time

import pytest

from conftest import build_path, wait_for
from netns_util import Lab, skip_without_netns, ticks
from xstored_util import SockConn

CFG = """name = "{name}"
core = "sim"
memory = {mem}
vcpus = 2
workload = "{wl}"
"""
WL = "dirty=8M/s,console=50ms,ws=8M"


@pytest.fixture(scope="module")
def netns_ok():
    skip_without_netns()


@pytest.fixture
def lab2(tmp_path, netns_ok):
    with Lab(tmp_path, 2) as lab:
        yield lab


def create(h, tmp_path, name="vm1", mem=64, wl=WL):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(CFG.format(name=name, mem=mem, wl=wl))
    h.xst("create", str(cfg))
    d = h.domid(name)
    wait_for(lambda: len(ticks(h.console_log(d))) >= 2, what="guest ticks")
    return d


def running_copies(hosts, name="vm1"):
    return [(h.name, st) for h in hosts for n, (_, st) in h.domains().items()
            if n == name and st[0] == "r"]


def migrate(src, dst, *opts, name="vm1"):
    r = src.xst("migrate", *opts, name, dst.addr)
    assert r.stdout.startswith("migrated domain "), r.stdout
    assert "to %s: total " % dst.url in r.stdout and " ms, " in r.stdout \
        and " bytes sent" in r.stdout, r.stdout
    return r.stdout


def test_live_migration_two_hosts(lab2, tmp_path):
    a, b = lab2.hosts
    d = create(a, tmp_path, mem=128)
    a.xs("xenstore-write", "/local/domain/%d/data/app" % d, "state-7")
    # a node with its own permissions: the guest owns it, domain 7 may read it
    a.xs("xenstore-write", "/local/domain/%d/device/vif/0/state" % d, "4")
    a.xs("xenstore-chmod", "/local/domain/%d/device/vif/0/state" % d, "n%d" % d, "r7")
    # one more watch of the guest's, absolute under its home
    xa = SockConn(a.socket)
    wait_for(lambda: xa.call("CONTROL", "domain-watches", str(d)) ==
             b"control/shutdown\0shutdown\0\0", what="the guest's own watch")
    assert xa.call("CONTROL", "domain-watch", str(d), "/local/domain/%d/data" % d,
                   "abs") == b"OK\0"
    xa.close()
    before = ticks(a.console_log(d))[-1]
    out = migrate(a, b)
    assert "zero pages skipped" in out
    downtime = float(out.split("downtime ")[1].split(" ms")[0])
    assert downtime < 1000, out
    sent = int(out.split(" bytes sent")[0].rsplit(" ", 1)[1])
    assert sent < 64 << 20, out       # 128 MiB guest, 8 MiB working set: zeros stay home
    assert a.domains() == {} and a.running_domain_processes() == []
    d2, st = b.domains()["vm1"]
    assert st == "r-----"
    # its watches moved with it, home paths to the new domid (the sim guest's own
    # WATCH after the ring reset finds it there: EEXIST, taken as done)
    assert b.log_has("domain %d: 2 xenstore watches carried over" % d2)
    xb = SockConn(b.socket)
    assert xb.call("CONTROL", "domain-watches", str(d2)) == \
        b"control/shutdown\0shutdown\0/local/domain/%d/data\0abs\0\0" % d2
    xb.close()
    wait_for(lambda: len(ticks(b.console_log(d2))) >= 3, what="ticks on the destination")
    log = b.console_log(d2)
    t = ticks(log)
    assert t[0] > before and t == list(range(t[0], t[0] + len(t))), t[:10]
    assert "booting" not in log
    # xenstore state recreated there; the guest's xenbus client works on the new ring
    assert b.xs("xenstore-read", "/local/domain/%d/data/app" % d2).stdout.strip() == "state-7"
    # ... with its permissions, the guest's own domid moved to the new one
    xb = SockConn(b.socket)
    assert xb.call("GET_PERMS", "/local/domain/%d/device/vif/0/state" % d2) == \
        b"n%d\0r7\0" % d2
    assert xb.call("GET_PERMS", "/local/domain/%d/data/app" % d2) == \
        b"n%d\0" % d2
    xb.close()
    assert b.xs("xenstore-read", "/local/domain/%d/name" % d2).stdout.strip() == "vm1"
    b.xst("shutdown", "-w", "vm1", timeout=60)
    assert b.domains() == {}


def test_incoming_stream_in_odd_pieces(lab2, tmp_path):
    """The destination reassembles records cut anywhere by chunk boundaries: a save file
    sent as one incoming migration in 65,543-byte pieces gives the same guest memory."""
    a, b = lab2.hosts
    d = create(a, tmp_path)
    a.xst("pause", "vm1")
    before = a.checksum(d)
    f = tmp_path / "vm1.save"
    a.xst("save", "vm1", str(f))
    data = bytearray(f.read_bytes())
    assert len(data) > 4 * 65543
    # as a migration of a paused guest would (header flag bit 0; docs/save-format.md):
    # the copy stays paused, so its memory can be compared; END's checksum follows
    data[16 + 40] |= 1
    h = 0xcbf29ce484222325
    for i in range(0, len(data) - 24, 8):
        h = ((h ^ int.from_bytes(data[i:i + 8], "little")) * 0x100000001b3) % (1 << 64)
    data[-8:] = h.to_bytes(8, "little")
    f.write_bytes(bytes(data))
    out = raw(a, b.url, "migfile", "4242", str(f), "65543")
    assert out.startswith("error=0 "), out
    d2, st = b.domains()["vm1"]
    assert st == "--p---"
    assert b.checksum(d2) == before
    b.xst("destroy", "vm1")


def records(data):
    """[(type, payload)] of a save stream (docs/save-format.md)."""
    out, off = [], 0
    while off < len(data):
        t = int.from_bytes(data[off:off + 4], "little")
        n = int.from_bytes(data[off + 8:off + 16], "little")
        out.append((t, bytes(data[off + 16:off + 16 + n])))
        off += 16 + (n + 7) // 8 * 8
    return out


def stream(recs):
    """Records back to a stream, END's checksum recomputed."""
    data = bytearray()
    for t, p in recs:
        data += t.to_bytes(4, "little") + bytes(4) + len(p).to_bytes(8, "little") + p
        data += bytes(-len(p) % 8)
    h = 0xcbf29ce484222325
    for i in range(0, len(data) - 24, 8):
        h = ((h ^ int.from_bytes(data[i:i + 8], "little")) * 0x100000001b3) % (1 << 64)
    data[-8:] = h.to_bytes(8, "little")
    return bytes(data)


def test_second_xenstore_record_replaces_the_first(lab2, tmp_path):
    """A migration sends the guest's xenstore subtree before the pause and again during
    it when a node changed meanwhile: the destination recreates the first on arrival;
    then a node the second lacks (removed at the source in between) goes there too, a
    value it changed is written, a node it adds is created."""
    a, b = lab2.hosts
    d = create(a, tmp_path)
    a.xs("xenstore-write", "/local/domain/%d/data/keep" % d, "k")
    a.xs("xenstore-write", "/local/domain/%d/data/gone" % d, "g")
    a.xst("pause", "vm1")
    f = tmp_path / "vm1.save"
    a.xst("save", "vm1", str(f))
    recs = records(f.read_bytes())
    i = [t for t, _ in recs].index(4)  # XENSTORE
    xs = recs[i][1]
    entries, off = [], 8
    while off + 16 <= len(xs):
        pl, vl, ml = (int.from_bytes(xs[off + k:off + k + 4], "little") for k in (0, 4, 8))
        entries.append(xs[off:off + 16 + pl + vl + ml])
        off += 16 + pl + vl + ml
    assert any(e[16:16 + 9] == b"data/gone" for e in entries)
    def entry(path, value, perms):
        return b"".join(len(x).to_bytes(4, "little") for x in (path, value, perms)) + \
            bytes(4) + path + value + perms

    perms = b"n%d\0" % d
    second = xs[:8] + b"".join(e for e in entries if e[16:16 + 9] not in
                               (b"data/gone", b"data/keep"))
    second += entry(b"data/keep", b"k2", perms) + entry(b"data/new", b"n", perms)
    recs.insert(i + 1, (4, second))
    hdr = bytearray(recs[0][1])
    hdr[40] |= 1  # a paused guest's migration: the copy stays paused
    recs[0] = (recs[0][0], bytes(hdr))
    f.write_bytes(stream(recs))
    out = raw(a, b.url, "migfile", "4243", str(f), "65543")
    assert out.startswith("error=0 "), out
    d2, st = b.domains()["vm1"]
    assert b.xs("xenstore-read", "/local/domain/%d/data/keep" % d2).stdout.strip() == "k2"
    assert b.xs("xenstore-read", "/local/domain/%d/data/new" % d2).stdout.strip() == "n"
    r = b.xs("xenstore-read", "/local/domain/%d/data/gone" % d2, check=False)
    assert r.returncode != 0, r.stdout
    b.xst("destroy", "vm1")


def test_xenstore_writes_during_the_migration(lab2, tmp_path):
    """The subtree goes before the pause, read in a transaction; a node written after
    that read makes its commit fail, and the subtree is read and sent again while the
    guest is paused: the destination has the value of the pause, not an older one."""
    a, b = lab2.hosts
    d = create(a, tmp_path)
    base = "/local/domain/%d/data/" % d
    x = SockConn(a.socket)
    x.write(base + "n", "0")
    done, last = threading.Event(), [0]

    def writer():
        i = 0
        while not done.is_set():
            i += 1
            try:
                x.write(base + "n", str(i))
                if i % 2:
                    x.write(base + "odd", str(i))
                else:
                    x.call("RM", base + "odd")
            except Exception:  # the domain is gone from the source: stop
                break
            last[0] = i

    th = threading.Thread(target=writer)
    th.start()
    wait_for(lambda: last[0] > 100, what="writes")
    first = last[0]
    try:
        migrate(a, b)
    finally:
        done.set()
        th.join()
        x.close()
    assert not a.log_has("subtree unchanged since sent")
    assert a.log_has("(pause, last bitmap and state")
    assert not a.log_has("has no stop_copy")  # one call stopped it
    d2, _ = b.domains()["vm1"]
    v = int(b.xs("xenstore-read", "/local/domain/%d/data/n" % d2).stdout)
    assert first < v <= last[0]
    # (the writer, dom0, goes on while the guest is paused: the subtree read during the
    # pause is not one atomic snapshot, so odd is checked only against the writer's range)
    r = b.xs("xenstore-read", "/local/domain/%d/data/odd" % d2, check=False)
    assert r.returncode != 0 or first < int(r.stdout) <= last[0], r.stdout
    b.xst("destroy", "vm1")


def test_paused_migration_moves_every_byte(lab2, tmp_path):
    a, b = lab2.hosts
    d = create(a, tmp_path)
    a.xst("pause", "vm1")
    before = a.checksum(d)
    migrate(a, b)
    d2, st = b.domains()["vm1"]
    assert st == "--p---"                      # paused stays paused
    assert b.checksum(d2) == before
    b.xst("destroy", "vm1")


def test_20_ping_pong_migrations(lab2, tmp_path):
    a, b = lab2.hosts
    create(a, tmp_path, mem=64)
    src, dst = a, b
    last = 0
    for i in range(20):
        d = src.domid("vm1")
        check = i % 2 == 1
        if check:
            src.xst("pause", "vm1")
            before = src.checksum(d)
        t = ticks(src.console_log(d))
        assert t and t[-1] >= last, (i, last, t[-3:])
        last = t[-1]
        migrate(src, dst)
        d2 = dst.domid("vm1")
        assert src.domains() == {}
        if check:
            assert dst.checksum(d2) == before, "checksum error after migration %d" % i
            dst.xst("unpause", "vm1")
        wait_for(lambda: ticks(dst.console_log(d2)), what="ticks after migration %d" % i)
        first = ticks(dst.console_log(d2))[0]
        assert first > last, (i, last, first)
        if check:
            assert first == last + 1, (i, last, first)
        assert "booting" not in dst.console_log(d2)
        src, dst = dst, src
    src.xst("shutdown", "-w", "vm1", timeout=60)   # its ring still works after 20 moves


def test_three_hosts_round_trip(tmp_path, netns_ok):
    with Lab(tmp_path, 3) as lab:
        a, b, c = lab.hosts
        create(a, tmp_path)
        for src, dst in ((a, b), (b, c), (c, a)):
            migrate(src, dst)
            assert running_copies(lab.hosts) == [(dst.name, "r-----")]
        d = a.domid("vm1")
        n = len(ticks(a.console_log(d)))
        wait_for(lambda: len(ticks(a.console_log(d))) > n + 2, what="ticking at home")
        a.xst("destroy", "vm1")


def test_core_mismatch_refused_before_anything_moves(tmp_path, netns_ok):
    with Lab(tmp_path, 2, cores=["sim", "kvm"]) as lab:
        a, b = lab.hosts
        d = create(a, tmp_path)
        r = a.xst("migrate", "vm1", b.addr, check=False)
        assert r.returncode == 1
        assert r.stderr == (
            "xst: migrate: migration of domain %d (vm1) failed while preparing the "
            "destination: destination: core mismatch: the domain runs on the sim core, "
            "this host's agent uses kvm; the domain keeps running here\n" % d), r.stderr
        assert b.domains() == {} and b.running_domain_processes() == []
        assert a.domains()["vm1"] == (d, "r-----")
        assert b.log_has("incoming migration refused: core mismatch")


def test_unreachable_destination(lab2, tmp_path):
    a, b = lab2.hosts
    d = create(a, tmp_path)
    b.kill_agent()
    r = a.xst("migrate", "vm1", b.addr, check=False)
    assert r.returncode == 1
    assert r.stderr == ("xst: migrate: cannot reach the destination agent at %s: "
                        "Connection refused\n" % b.url), r.stderr
    assert a.domains()["vm1"] == (d, "r-----")
    a.xst("destroy", "vm1")


# The fault cases need a migration that lasts: 4 MiB/s, and --downtime 0 never fits, so
# it runs its rounds (throttled) until the bound.
SLOW = ("--downtime", "0", "--max-rounds", "1000", "--bandwidth", "4")
BUSY = "dirty=64M/s,console=50ms,ws=32M"


def start_slow(a, b):
    p = a.xst_bg("migrate", *SLOW, "vm1", b.addr)
    wait_for(lambda: b.log_has("(vm1) created"), timeout=20, what="incoming domain")
    return p


def test_destination_agent_dies(lab2, tmp_path):
    a, b = lab2.hosts
    d = create(a, tmp_path, mem=128, wl=BUSY)
    p = start_slow(a, b)
    time.sleep(0.3)
    b.kill_agent()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)
    assert err.startswith("xst: migrate: migration of domain %d (vm1) failed while " % d), err
    assert err.endswith("the domain keeps running here\n"), err
    assert a.domains()["vm1"] == (d, "r-----")
    n = len(ticks(a.console_log(d)))
    wait_for(lambda: len(ticks(a.console_log(d))) > n + 2, what="source keeps running")
    # the destination's half-built copy never ran
    b.start_agent()
    assert running_copies(lab2.hosts) == [("host1", "r-----")]


def test_network_cut(lab2, tmp_path):
    a, b = lab2.hosts
    d = create(a, tmp_path, mem=128, wl=BUSY)
    p = start_slow(a, b)
    time.sleep(0.3)
    lab2.cut(1)
    out, err = p.communicate(timeout=90)
    assert p.returncode == 1, (out, err)
    assert "failed while" in err and "the domain keeps running here" in err, err
    assert a.domains()["vm1"] == (d, "r-----")
    assert running_copies(lab2.hosts) == [("host1", "r-----")]
    # after the link is back, a new migration replaces the stale incoming one
    lab2.heal(1)
    migrate(a, b)
    assert running_copies(lab2.hosts) == [("host2", "r-----")]
    assert len(b.running_domain_processes()) == 1


def raw(host, *argv):
    """agent-rawclient from HOST's namespace."""
    r = subprocess.run(host._wrap([str(build_path("agent", "agent-rawclient"))] +
                                  [str(x) for x in argv]),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_stray_chunks_leave_the_incoming_migration_alone(lab2, tmp_path):
    """Chunks and aborts of a session the destination does not run (a cut link
    delivers what a dead sender had buffered) are refused or ignored; the migration in
    progress completes."""
    a, b = lab2.hosts
    create(a, tmp_path, mem=128, wl=BUSY)
    t0 = time.monotonic()
    p = a.xst_bg("migrate", "--downtime", "0", "--max-rounds", "12", "--bandwidth", "16",
                 "vm1", b.addr)
    wait_for(lambda: b.log_has("(vm1) created"), timeout=20, what="incoming domain")
    assert raw(a, b.url, "migdata", "12345", "7") == \
        "error=-116 message=a chunk of an unknown migration session " \
        "(another one is in progress)\n"
    assert raw(a, b.url, "migabort", "12345") == "error=0 message=\n"
    out, err = p.communicate(timeout=120)
    took = time.monotonic() - t0
    assert p.returncode == 0, (out, err)
    assert out.startswith("migrated domain "), out
    # --bandwidth 16: the stream never ran ahead of 16 MiB/s
    sent = int(out.split(" bytes sent")[0].rsplit(" ", 1)[1])
    assert took >= sent / (16 << 20), (took, out)
    assert running_copies(lab2.hosts) == [("host2", "r-----")]
    assert not b.log_has("superseded")
    # with nothing incoming, a chunk that does not open a session is refused too
    assert raw(a, b.url, "migdata", "12345", "3") == \
        "error=-116 message=a chunk of an unknown migration session\n"


@pytest.mark.parametrize("how", ["ctrl-c", "migrate-cancel"])
def test_cancel(lab2, tmp_path, how):
    a, b = lab2.hosts
    d = create(a, tmp_path, mem=128, wl=BUSY)
    p = start_slow(a, b)
    time.sleep(0.3)
    if how == "ctrl-c":
        p.send_signal(signal.SIGINT)
    else:
        r = a.xst("migrate-cancel", "vm1")
        assert r.stdout == "migration of vm1 cancelled at %s\n" % b.url
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)
    assert "destination: migration cancelled; the domain keeps running here" in err, err
    assert a.domains()["vm1"] == (d, "r-----")
    wait_for(lambda: b.domains() == {} and b.running_domain_processes() == [],
             what="the incoming copy gone")


def test_source_agent_dies_after_handoff(lab2, tmp_path):
    a, b = lab2.hosts
    create(a, tmp_path)
    p = a.xst_bg("migrate", "vm1", b.addr)
    wait_for(lambda: b.log_has("migrated in and running"), timeout=60, what="handoff")
    a.kill_agent()
    p.communicate(timeout=30)
    a.start_agent()        # re-adopts whatever is left of its copy
    assert running_copies(lab2.hosts) == [("host2", "r-----")]
    d2 = b.domid("vm1")
    n = len(ticks(b.console_log(d2)))
    wait_for(lambda: len(ticks(b.console_log(d2))) > n + 2, what="running on host2")
