"""Xen's own test-xenstore suite and xenstore-control (Debian xen-utils-4.17) against the
daemon; expectations are checked against Xen's C xenstored too."""
import re

import pytest

from xs_util import XEN_BIN, start_daemon, xsd  # noqa: F401  (xsd is a fixture)

TESTS = ["read 1", "read 2000", "write 1", "write 2000", "dir", "rm node", "rm dir",
         "ta empty", "ta empty x", "ta rmw", "ta rmw x", "ta err"]

HELP = ("check\t\n"
        "log\ton|off\n"
        "live-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
        "    Default timeout is 60 seconds.\n"
        "logfile\t<file>\n"
        "memreport\t[<file>]\n"
        "print\t<string>\n"
        "quota\t[set <name> <val>|<domid>]\n"
        "quota-soft\t[set <name> <val>]\n"
        "help\t\n")

QUOTA = ("Quota settings:\n"
         "nodes            :     1000 Nodes per domain\n"
         "watches          :      128 Watches per domain\n"
         "transactions     :       10 Transactions per domain\n"
         "outstanding      :       20 Outstanding requests per domain\n"
         "transaction-nodes:     1024 Max. number of accessed nodes per transaction\n"
         "memory           :  2621440 Total Xenstore memory per domain (error level)\n"
         "node-size        :     2048 Max. size of a node\n"
         "path-max         :     2048 Max. length of a node path\n"
         "permissions      :        5 Max. number of permissions per node\n")

CTL = str(XEN_BIN / "xenstore-control")


def ctl(d, *args):
    return d.run(CTL, *args, check=False)


def test_test_xenstore_list(xsd):
    r = xsd.run(str(XEN_BIN / "test-xenstore"), "-l", check=False)
    assert r.returncode == 0
    for name in TESTS:
        assert name in r.stdout


def test_test_xenstore_all(xsd):
    r = xsd.run(str(XEN_BIN / "test-xenstore"), "-i", "10", check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(TESTS), r.stdout
    for name, line in zip(TESTS, lines):
        assert re.fullmatch(re.escape("%-10s" % name) + r": avg: \d+ ns \(\d+ ns \.\. \d+ ns\)",
                            line), line
    # The suite cleans up after itself: nothing left below the test base.
    r = xsd.run("xenstore-list", "/local/domain/0", check=False)
    assert "xenstore-test" not in r.stdout


@pytest.mark.parametrize("name", ["ta err", "rm dir", "dir"])
def test_test_xenstore_single(xsd, name):
    r = xsd.run(str(XEN_BIN / "test-xenstore"), "-t", name, "-i", "3", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("%-10s: avg: " % name)


def test_test_xenstore_random(xsd):
    # -r: random tests (random order and iterations) for 2 seconds; silent when all pass.
    r = xsd.run(str(XEN_BIN / "test-xenstore"), "-r", "2", check=False, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stdout + r.stderr


def test_test_xenstore_no_daemon(tmp_path):
    import subprocess
    r = subprocess.run([str(XEN_BIN / "test-xenstore"), "-i", "1"],
                       env={"XENSTORED_PATH": str(tmp_path / "none")},
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "could not connect to xenstore" in r.stdout + r.stderr


def test_control_help(xsd):
    r = ctl(xsd, "help")
    assert (r.returncode, r.stdout, r.stderr) == (0, HELP + "\n", "")


def test_control_quota(xsd):
    r = ctl(xsd, "quota")
    assert (r.returncode, r.stdout, r.stderr) == (0, QUOTA + "\n", "")
    r = ctl(xsd, "quota-soft")
    assert (r.returncode, r.stdout) == (0, "Quota settings:\n"
                                        "memory           :  2097152 Total Xenstore memory"
                                        " per domain (warning level)\n\n")
    r = ctl(xsd, "quota", "set", "nodes", "100")
    assert (r.returncode, r.stdout) == (0, "OK\n")
    r = ctl(xsd, "quota")
    assert "nodes            :      100 Nodes per domain\n" in r.stdout
    r = ctl(xsd, "quota", "set", "watches", "0")      # < 1: EINVAL
    assert r.returncode == 3
    assert r.stderr.startswith("Command not supported. Valid commands are:\n")
    r = ctl(xsd, "quota", "set", "bogus", "5")
    assert r.returncode == 3
    r = ctl(xsd, "quota", "set", "watches", "7")
    assert (r.returncode, r.stdout) == (0, "OK\n")
    r = ctl(xsd, "quota")
    assert "watches          :        7 Watches per domain\n" in r.stdout


def test_control_quota_domain(xsd):
    r = ctl(xsd, "quota", "0")
    assert r.returncode == 0
    # Usage counters legitimately differ between implementations; the layout does not.
    assert re.fullmatch(r"Domain 0:\n"
                        r"nodes           : +\d+\n"
                        r"watches         : +0\n"
                        r"transactions    : +0\n"
                        r"outstanding     : +0\n"
                        r"memory          : +\d+\n\n", r.stdout), r.stdout
    r = ctl(xsd, "quota", "5")                        # unknown domain: ENOENT
    assert (r.returncode, r.stdout, r.stderr) == (3, "", "Error 2 when trying to execute command.\n")


def test_control_check_log_print(xsd):
    for args in (["check"], ["log", "on"], ["log", "off"], ["print", "hello"]):
        r = ctl(xsd, *args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "OK\n", ""), args


def test_control_bad_args(xsd):
    for args in (["bogus"], ["print", "hello", "world"], ["log"], ["log", "maybe"],
                 ["check", "extra"]):
        r = ctl(xsd, *args)
        assert r.returncode == 3, args
        assert (r.stdout, r.stderr) == \
            ("", "Command not supported. Valid commands are:\n" + HELP + "\n"), args


def test_control_logfile_memreport(xsd, tmp_path):
    log = tmp_path / "xs.log"
    r = ctl(xsd, "logfile", str(log))
    assert (r.returncode, r.stdout) == (0, "OK\n")
    r = ctl(xsd, "memreport", str(tmp_path / "mem.txt"))
    assert (r.returncode, r.stdout) == (0, "OK\n")
    assert (tmp_path / "mem.txt").exists()


QUOTA_FLAGS = ["-E", "5", "-W", "3", "-t", "2", "-S", "100", "-M", "50", "-A", "2",
               "-Q", "outstanding=7", "-Q", "transaction-nodes=9", "-Q", "memory=12345",
               "-q", "memory=999"]


@pytest.mark.parametrize("kind", ["xstored", "cxenstored"])
def test_quota_command_line_flags(tmp_path, kind):
    d = start_daemon(kind, tmp_path, QUOTA_FLAGS)
    try:
        r = ctl(d, "quota")
        assert (r.returncode, r.stdout) == (0, (
            "Quota settings:\n"
            "nodes            :        5 Nodes per domain\n"
            "watches          :        3 Watches per domain\n"
            "transactions     :        2 Transactions per domain\n"
            "outstanding      :        7 Outstanding requests per domain\n"
            "transaction-nodes:        9 Max. number of accessed nodes per transaction\n"
            "memory           :    12345 Total Xenstore memory per domain (error level)\n"
            "node-size        :      100 Max. size of a node\n"
            "path-max         :       50 Max. length of a node path\n"
            "permissions      :        2 Max. number of permissions per node\n\n"))
        r = ctl(d, "quota-soft")
        assert (r.returncode, r.stdout) == (0, (
            "Quota settings:\n"
            "memory           :      999 Total Xenstore memory per domain (warning level)\n\n"))
        # path-max applies to every caller, privileged ones too.
        assert d.run("xenstore-write", "/" + "p" * 49, "v", check=False).returncode == 0
        assert d.run("xenstore-write", "/" + "p" * 50, "v", check=False).returncode == 1
    finally:
        d.stop()
