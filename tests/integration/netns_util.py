"""Hosts for the save/restore and migration tests: each host is a real xstored and a
real xst-agent with its own run directory, optionally inside its own network namespace
(ip netns + veth, addresses in 10.77.0.0/24 only) so that agents talk over real TCP.

Namespaces are named xstmig<pid>-<n>; `Lab.close()` deletes every one it made, even
after a failure (use it as a context manager or fixture)."""
import os
import pathlib
import re
import shutil
import signal
import subprocess

import pytest

from conftest import build_path, wait_for

AGENT_PORT = 8003


def xst_path():
    return str(build_path("tools", "xst"))


def domctl_path():
    return str(build_path("core", "xst-domctl"))


def ticks(log):
    return [int(line.rsplit(" ", 1)[1]) for line in log.splitlines()
            if " tick " in line and line.rsplit(" ", 1)[1].isdigit()]


def netns_usable():
    """None when `ip netns` works here, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "no ip(8) (iproute2)"
    name = "xstprobe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return "ip netns add: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def skip_without_netns():
    """Skip the calling test, printing why, only when network namespaces are unusable."""
    why = netns_usable()
    if why:
        print("skipping: " + why)
        pytest.skip(why)


class Host:
    """xstored + xst-agent, in netns `ns` (None: this namespace, agent ipc only)."""

    def __init__(self, root, name, ns=None, addr=None, core="sim", agent_args=()):
        self.name = name
        self.ns = ns
        self.addr = addr
        self.dir = pathlib.Path(root) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rundir = str(self.dir / "run")
        self.socket = str(self.dir / "xenstored.sock")
        self.log = str(self.dir / "agent.log")
        self.core = core
        self.agent_args = list(agent_args)
        self.xs_proc = None
        self.agent_proc = None

    @property
    def url(self):
        return "tcp://%s:%d" % (self.addr, AGENT_PORT)

    def _wrap(self, argv):
        argv = [str(a) for a in argv]
        return (["ip", "netns", "exec", self.ns] + argv) if self.ns else argv

    @property
    def env(self):
        e = dict(os.environ)
        e["XENSTORED_PATH"] = self.socket
        e["XST_AGENT"] = "ipc://%s/agent.ipc" % self.rundir
        return e

    def start(self):
        self.xs_proc = subprocess.Popen(
            self._wrap([build_path("store", "xstored"), "--socket", self.socket, "--no-fork",
                        "-T", self.dir / "xenstored.trace"]),
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "xenstored.err", "w"))
        wait_for(lambda: os.path.exists(self.socket), what="xstored socket of " + self.name)
        self.start_agent()
        return self

    def start_agent(self):
        argv = [build_path("agent", "xst-agent"), "--rundir", self.rundir, "--xenstored",
                self.socket, "--log", self.log, "-N", "--core", self.core]
        if self.addr:
            argv += ["--listen", self.url]
        argv += self.agent_args
        ipc = os.path.join(self.rundir, "agent.ipc")
        if os.path.exists(ipc):       # left by a killed agent
            os.unlink(ipc)
        self.agent_proc = subprocess.Popen(self._wrap(argv), stdout=subprocess.DEVNULL,
                                           stderr=open(self.dir / "agent.err", "a"))
        wait_for(lambda: os.path.exists(ipc) or self.agent_proc.poll() is not None,
                 what="agent of " + self.name)
        assert self.agent_proc.poll() is None, open(self.dir / "agent.err").read()
        # the tcp listener is up once the ipc one is (both before the main loop)
        return self

    def kill_agent(self, sig=signal.SIGKILL):
        if self.agent_proc and self.agent_proc.poll() is None:
            self.agent_proc.send_signal(sig)
            self.agent_proc.wait(10)

    def xst(self, *args, check=True, timeout=120):
        r = subprocess.run(self._wrap([xst_path()] + list(args)), env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("%s: xst %s failed (%d): %s%s" % (
                self.name, " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        return r

    def xst_bg(self, *args, stdin=None):
        return subprocess.Popen(self._wrap([xst_path()] + list(args)), env=self.env,
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def domctl(self, domid, *args, check=True, timeout=60):
        r = subprocess.run([domctl_path(), "--rundir", self.rundir, "--domid", str(domid)]
                           + [str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("%s: xst-domctl %s failed: %s%s" % (
                self.name, args, r.stdout, r.stderr))
        return r

    def checksum(self, domid):
        out = self.domctl(domid, "checksum").stdout
        return re.search(r"checksum=(\w+)", out).group(1)

    def console_log(self, domid):
        return self.domctl(domid, "console-log").stdout

    def xs(self, tool, *args, check=True):
        r = subprocess.run([tool] + list(args), env=self.env, capture_output=True, text=True,
                           timeout=30)
        if check and r.returncode != 0:
            raise AssertionError("%s %s: %s" % (tool, args, r.stderr))
        return r

    def domains(self):
        """{name: (domid, state)} from `xst list`."""
        out = {}
        for line in self.xst("list").stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] != "Domain-0":
                out[f[0]] = (int(f[1]), f[4])
        return out

    def log_has(self, text):
        try:
            with open(self.log) as f:
                return text in f.read()
        except FileNotFoundError:
            return False

    def domid(self, name):
        return int(self.xst("domid", name).stdout.strip())

    def running_domain_processes(self):
        return sorted(p.name for p in pathlib.Path(self.rundir).glob("dom-*.ipc"))

    def stop(self):
        for p in (self.agent_proc, self.xs_proc):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        # domain processes outlive the agent by design: end ours
        for st in pathlib.Path(self.rundir).glob("dom-*.state"):
            m = re.match(r"dom-(\d+)\.state", st.name)
            if m:
                subprocess.run([domctl_path(), "--rundir", self.rundir, "--domid", m.group(1),
                                "destroy"], capture_output=True, timeout=30)


class Lab:
    """n hosts; with netns=True each in its own namespace, joined by veth pairs to a
    bridge namespace (10.77.0.1..n/24)."""

    def __init__(self, root, n, netns=True, core="sim", cores=None, agent_args=None):
        self.root = pathlib.Path(root)
        self.prefix = "xstmig%d" % os.getpid()
        self.namespaces = []
        self.hosts = []
        try:
            if netns:
                br = self.prefix + "-br"
                self._ns_add(br)
                self._ip(br, "link", "add", "br0", "type", "bridge")
                self._ip(br, "link", "set", "br0", "up")
            for i in range(n):
                ns = addr = None
                if netns:
                    ns = "%s-%d" % (self.prefix, i + 1)
                    addr = "10.77.0.%d" % (i + 1)
                    self._ns_add(ns)
                    self._ip(ns, "link", "set", "lo", "up")
                    self._ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                             "p%d" % (i + 1), "netns", br)
                    self._ip(br, "link", "set", "p%d" % (i + 1), "master", "br0")
                    self._ip(br, "link", "set", "p%d" % (i + 1), "up")
                    self._ip(ns, "addr", "add", addr + "/24", "dev", "eth0")
                    self._ip(ns, "link", "set", "eth0", "up")
                c = cores[i] if cores else core
                aa = agent_args[i] if agent_args else ()
                self.hosts.append(Host(self.root, "host%d" % (i + 1), ns, addr, c,
                                       aa).start())
        except BaseException:
            self.close()
            raise

    def _ns_add(self, ns):
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        self.namespaces.append(ns)

    def _ip(self, ns, *args):
        r = subprocess.run(["ip", "-n", ns] + list(args), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("ip -n %s %s: %s" % (ns, " ".join(args), r.stderr))

    def cut(self, i):
        """Network cut: host i's link goes down."""
        self._ip(self.hosts[i].ns, "link", "set", "eth0", "down")

    def heal(self, i):
        self._ip(self.hosts[i].ns, "link", "set", "eth0", "up")

    def close(self):
        for h in self.hosts:
            try:
                h.stop()
            except Exception:
                pass
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
