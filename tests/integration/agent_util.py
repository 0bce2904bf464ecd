"""A host for agent/CLI tests: a real xstored, a real xst-agent on the sim core, and the
real `xst` binary, all on private sockets under the test's tmp directory."""
import json
import os
import signal
import subprocess
import time

from conftest import Xstored, build_path, wait_for


class Host:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.rundir = str(tmp_path / "run")
        self.xsd = Xstored(tmp_path / "xs")
        (tmp_path / "xs").mkdir()
        self.agent = None
        self.agent_rc = 0
        self.agent_err = ""
        self.url = "ipc://" + self.rundir + "/agent.ipc"

    def start(self):
        self.xsd.start()
        self.start_agent()
        return self

    def start_agent(self):
        self.agent = subprocess.Popen(
            [str(build_path("agent", "xst-agent")), "--rundir", self.rundir, "--xenstored",
             self.xsd.socket, "--core", "sim", "-N", "--log", str(self.tmp / "agent.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.agent_env())
        wait_for(lambda: self.xst("info", check=False).returncode == 0
                 or self.agent.poll() is not None, timeout=20, what="agent")
        assert self.agent.poll() is None, "agent exited: " + self.agent.stderr.read()

    @staticmethod
    def agent_env():
        # In the ASan build freed memory would sit in ASan's quarantine and RSS would only
        # grow; without it RSS reflects what the agent really holds.  (Ignored by the
        # release build.)
        e = dict(os.environ)
        opts = e.get("ASAN_OPTIONS", "")
        e["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "quarantine_size_mb=0"
        return e

    def kill_agent(self):
        self.agent.kill()
        self.agent.wait()

    def xst(self, *argv, check=True, timeout=120, input=None):
        env = dict(os.environ, XST_AGENT=self.url)
        r = subprocess.run([str(build_path("tools", "xst"))] + list(argv), env=env,
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError("xst %s failed (%d): %s" % (argv, r.returncode, r.stderr))
        return r

    def xs(self, *argv, check=True):
        return self.xsd.run(*argv, check=check)

    def domains(self):
        return json.loads(self.xst("list", "--json").stdout)

    def dom(self, name):
        for d in self.domains():
            if d["name"] == name:
                return d
        return None

    def cfg(self, name, text):
        p = self.tmp / (name + ".cfg")
        p.write_text(text)
        return str(p)

    def create(self, name, extra="", *args):
        path = self.cfg(name, 'name = "%s"\nmemory = 64\nvcpus = 2\n%s' % (name, extra))
        self.xst("create", *(list(args) + [path]))
        return self.dom(name)

    def node_count(self):
        return len(self.xs("xenstore-ls", "-f", "/").stdout.splitlines())

    def stop(self):
        pids = []
        if self.agent and self.agent.poll() is None:
            try:
                for d in self.domains():
                    if d["domid"] != 0:
                        pids.append(d["pid"])
                        self.xst("destroy", str(d["domid"]), check=False)
            except Exception:
                pass
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
            # A clean stop (no sanitizer report) exits 0.
            self.agent_rc = self.agent.wait()
            self.agent_err = self.agent.stderr.read()
        # Nothing may outlive the test: domain processes left by a failure are killed.
        for name in os.listdir(self.rundir) if os.path.isdir(self.rundir) else []:
            if name.endswith(".state"):
                pids.append(None)
        for p in pids:
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.xsd.stop()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_state(host, name, pred, timeout=20, what="state"):
    wait_for(lambda: pred(host.dom(name)), timeout=timeout, what=what)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def sleep(s):
    time.sleep(s)
