"""`xst create -n` (dry run): xl.cfg files resolved to JSON, and bad files rejected with
exact one-line messages naming file and line.  No agent is running: the dry run must not
need one, and other commands must say clearly that none answers."""
import json
import os
import subprocess

import pytest

from conftest import build_path


def xst(*argv, cwd=None, env=None):
    e = dict(os.environ)
    e.pop("XST_AGENT", None)
    if env:
        e.update(env)
    return subprocess.run([str(build_path("tools", "xst"))] + list(argv), cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=30)


def write(tmp_path, text, name="vm1.cfg"):
    (tmp_path / name).write_text(text)
    return name


FULL = """# a demo guest
name = "vm1"
uuid = "6f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
type = "pvh"
memory = 256
maxmem = 512
vcpus = 2; maxvcpus = 4
cpus = ["0-1",
        "3"]
cpu_weight = 512
cpu_cap = 50
pool = "Pool-0"
kernel = "/boot/vmlinuz"
ramdisk = '/boot/initrd.img'
root = "/dev/xvda1 ro"
extra = "console=hvc0"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "preserve"
on_soft_reset = "soft-reset"
workload = "dirty=1M/s,console=1s"
core = "sim"
"""


def test_dry_run_full(tmp_path):
    write(tmp_path, FULL)
    r = xst("create", "-n", "vm1.cfg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    cfg = json.loads(r.stdout)
    assert cfg == {
        "name": "vm1", "uuid": "6f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "type": "pvh",
        "memory": 256, "maxmem": 512, "vcpus": 2, "maxvcpus": 4, "cpus": "0-1,3",
        "cpu_weight": 512, "cpu_cap": 50, "pool": "Pool-0", "kernel": "/boot/vmlinuz",
        "ramdisk": "/boot/initrd.img", "cmdline": "root=/dev/xvda1 ro console=hvc0",
        "on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "preserve",
        "on_soft_reset": "soft-reset", "workload": "dirty=1M/s,console=1s", "core": "sim",
    }


def test_dry_run_defaults_and_overrides(tmp_path):
    write(tmp_path, "name='small'\n")
    r = xst("create", "--dry-run", "vm1.cfg", "memory=64", "vcpus=2", 'on_crash="restart"',
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["name"] == "small"
    assert cfg["uuid"] is None
    assert (cfg["memory"], cfg["maxmem"], cfg["vcpus"], cfg["maxvcpus"]) == (64, 64, 2, 2)
    assert (cfg["cpu_weight"], cfg["cpu_cap"], cfg["pool"]) == (256, 0, "Pool-0")
    assert (cfg["on_poweroff"], cfg["on_reboot"], cfg["on_crash"]) == \
        ("destroy", "restart", "restart")
    assert cfg["core"] == "auto" and cfg["type"] == "pvh"


def test_dry_run_needs_no_agent(tmp_path):
    write(tmp_path, "name='a'\n")
    r = xst("-a", "ipc://" + str(tmp_path / "nobody.ipc"), "create", "-n", "vm1.cfg",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr


BAD = [
    ('name="vm1"\nmemory=256\nmemroy=3\n', 'vm1.cfg:3: unknown key "memroy"'),
    ("memory=256\n", 'vm1.cfg: missing key "name"'),
    ('name="vm1"\nmemory="lots"\n', 'vm1.cfg:2: "memory" must be a number, got "lots"'),
    ('name="vm1"\nmemory=512\nmaxmem=256\n', 'vm1.cfg:3: "maxmem" (256) is below "memory" (512)'),
    ('name="vm1"\nvcpus=4\nmaxvcpus=2\n', 'vm1.cfg:3: "maxvcpus" (2) is below "vcpus" (4)'),
    ('name="vm1"\non_crash="explode"\n', 'vm1.cfg:2: "on_crash": unknown action "explode"'),
    ('name="vm1"\ncpu_weight=0\n', 'vm1.cfg:2: "cpu_weight" must be between 1 and 65535, got 0'),
    ('name="vm1"\ncpus="2-1"\n', 'vm1.cfg:2: "cpus": invalid cpu list "2-1"'),
    ('name="vm1"\nuuid="nope"\n', 'vm1.cfg:2: "uuid": invalid uuid "nope"'),
    ('name="vm1"\nname="vm2"\n', 'vm1.cfg:2: duplicate key "name" (first set on line 1)'),
    ('name="vm1\n', "vm1.cfg:1: syntax error: unterminated string"),
    ('name="vm1"\ncpus=["0",\n"1"\n', 'vm1.cfg:2: syntax error: unterminated list for "cpus"'),
    ('\n\nname "vm1"\n', "vm1.cfg:3: syntax error: expected '=' after \"name\", got '\"'"),
    ('name="vm1"\nmemory=\n', 'vm1.cfg:2: syntax error: expected a value for "memory", got end of line'),
    ('name="vm1"\ndisk=["phy:/dev/sda,xvda,w"]\n', 'vm1.cfg:2: unknown key "disk"'),
]


@pytest.mark.parametrize("text,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_config(tmp_path, text, msg):
    write(tmp_path, text)
    r = xst("create", "-n", "vm1.cfg", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "xst: create: " + msg + "\n")


def test_bad_override(tmp_path):
    write(tmp_path, "name='a'\n")
    r = xst("create", "-n", "vm1.cfg", "memroy=1", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, 'xst: create: argument 1: unknown key "memroy"\n')
    r = xst("create", "-n", "vm1.cfg", "vcpus=1", "memory=x", cwd=tmp_path)
    assert (r.returncode, r.stderr) == \
        (1, 'xst: create: argument 2: "memory" must be a number, got "x"\n')
    r = xst("create", "-n", "vm1.cfg", "vcpus=1", "memory=", cwd=tmp_path)
    assert (r.returncode, r.stderr) == \
        (1, 'xst: create: argument 2: syntax error: expected a value for "memory", '
            'got end of file\n')
    # Unquoted words are strings on the command line (not in files).
    r = xst("create", "-n", "vm1.cfg", "name=other", "on_crash=preserve", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "other"
    r = xst("create", "-n", "vm1.cfg", "vcpus", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith('xst: create: expected KEY=VALUE, got "vcpus"\n')


def test_missing_file(tmp_path):
    r = xst("create", "-n", "nope.cfg", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "xst: create: nope.cfg: No such file or directory\n")


def test_no_agent(tmp_path):
    url = "ipc://" + str(tmp_path / "nobody.ipc")
    r = xst("list", env={"XST_AGENT": url})
    assert r.returncode == 1
    assert r.stderr == "xst: list: cannot reach the agent at %s: Connection refused\n" % url \
        or r.stderr == "xst: list: cannot reach the agent at %s: No such file or directory\n" % url


def test_help():
    r = xst("help", "create")
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: xst create [-p] [-c] [-n|--dry-run] CONFIG_FILE")
    r = xst("help")
    for cmd in ["create", "list", "destroy", "shutdown", "reboot", "pause", "unpause",
                "rename", "console", "mem-set", "mem-max", "vcpu-set", "vcpu-list",
                "vcpu-pin", "sched-credit", "cpupool-list", "cpupool-create",
                "cpupool-destroy", "cpupool-cpu-add", "cpupool-cpu-remove",
                "cpupool-migrate", "info", "uptime", "domid", "domname", "dmesg",
                "debug-keys", "top", "help"]:
        assert "\n " + cmd + " " in r.stdout, cmd
    r = xst("frobnicate")
    assert (r.returncode, r.stderr) == (2, 'xst: unknown command "frobnicate" (try `xst help`)\n')
