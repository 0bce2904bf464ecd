"""Debian's xenstore-utils clients (xenstore-write/-read/-ls/-list/-rm/-chmod/-exists/-watch)
against a real daemon: xstored, and Xen's C xenstored as the check of each expectation.
Exact stdout, stderr and exit codes."""
import os
import select
import subprocess

from xs_util import XsRaw, INTRODUCE, xsd  # noqa: F401  (xsd is a fixture)

def readline(p, timeout=10.0):
    """One line of a client's stdout (read unbuffered, byte by byte, so nothing is held
    back in a Python buffer), or AssertionError after `timeout` seconds."""
    fd = p.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "no output from %s within %ss (got %r)" % (p.args, timeout, line)
        c = os.read(fd, 1)
        assert c, "%s exited (got %r)" % (p.args, line)
        line += c
    return line.decode()


def r(d, *argv):
    return d.run(*argv, check=False)


def expect(d, argv, rc=0, out="", err=""):
    res = r(d, *argv)
    assert (res.returncode, res.stdout, res.stderr) == (rc, out, err), argv


def test_write_read(xsd):
    expect(xsd, ["xenstore-write", "/a/b", "hello", "/a/c", "x y"])
    expect(xsd, ["xenstore-read", "/a/b", "/a/c"], out="hello\nx y\n")
    expect(xsd, ["xenstore-read", "-p", "/a/b"], out="/a/b: hello\n")
    # Parents are created empty.
    expect(xsd, ["xenstore-read", "/a"], out="\n")
    # Overwrite.
    expect(xsd, ["xenstore-write", "/a/b", "bye"])
    expect(xsd, ["xenstore-read", "/a/b"], out="bye\n")
    # Empty value.
    expect(xsd, ["xenstore-write", "/a/e", ""])
    expect(xsd, ["xenstore-read", "/a/e"], out="\n")


def test_read_errors(xsd):
    expect(xsd, ["xenstore-read", "/nope"], rc=1,
           err="xenstore-read: couldn't read path /nope\n")
    expect(xsd, ["xenstore-read", "bad//path"], rc=1,
           err="xenstore-read: couldn't read path bad//path\n")
    expect(xsd, ["xenstore-read", "/trailing/"], rc=1,
           err="xenstore-read: couldn't read path /trailing/\n")
    expect(xsd, ["xenstore-read", "/bad char"], rc=1,
           err="xenstore-read: couldn't read path /bad char\n")
    expect(xsd, ["xenstore-read"], rc=1,
           err="xenstore-read: Usage: xenstore-read [-h] [-p] [-s] [-R] key [...]\n")
    # The first failing key stops the client; earlier output stays.
    expect(xsd, ["xenstore-write", "/x", "1"])
    expect(xsd, ["xenstore-read", "/x", "/nope", "/x"], rc=1, out="1\n",
           err="xenstore-read: couldn't read path /nope\n")


def test_write_errors(xsd):
    expect(xsd, ["xenstore-write", "/a"], rc=1,
           err="xenstore-write: Usage: xenstore-write [-h] [-s] [-R] key value [...]\n")
    res = r(xsd, "xenstore-write", "/bad//p", "v")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("xenstore-write: could not write path /bad//p")
    expect(xsd, ["xenstore-read", "/bad"], rc=1, err="xenstore-read: couldn't read path /bad\n")


def test_relative_paths_are_under_dom0_home(xsd):
    expect(xsd, ["xenstore-write", "rel", "v"])
    expect(xsd, ["xenstore-read", "/local/domain/0/rel"], out="v\n")
    expect(xsd, ["xenstore-read", "rel"], out="v\n")
    expect(xsd, ["xenstore-list", "/local/domain/0"], out="rel\n")


def test_escapes_and_binary_values(xsd):
    expect(xsd, ["xenstore-write", "/e/v", "a\\tb", "/e/n", "l1\nl2", "/e/u", "caf\\xc3\\xa9"])
    # xenstore-read escapes non-printables; -R prints raw bytes.
    expect(xsd, ["xenstore-read", "/e/v", "/e/n", "/e/u"], out="a\\tb\nl1\\nl2\ncaf\\xc3\\xa9\n")
    raw = subprocess.run(["xenstore-read", "-R", "/e/v"], env=xsd.env, capture_output=True)
    assert raw.returncode == 0 and raw.stdout == b"a\tb"
    # -R: no unescaping on write.
    expect(xsd, ["xenstore-write", "-R", "/e/s", "a\\tb"])
    raw = subprocess.run(["xenstore-read", "-R", "/e/s"], env=xsd.env, capture_output=True)
    assert raw.stdout == b"a\\tb"
    expect(xsd, ["xenstore-ls", "/e"],
           out='v = "a\\tb"\nn = "l1\\nl2"\nu = "caf\\xc3\\xa9"\ns = "a\\\\tb"\n')


def test_large_value(xsd):
    val = "".join(chr(ord("a") + i % 26) for i in range(4000))
    expect(xsd, ["xenstore-write", "/big", val])
    expect(xsd, ["xenstore-read", "/big"], out=val + "\n")


def test_ls(xsd):
    expect(xsd, ["xenstore-ls", "/"], out='tool = ""\n xenstored = ""\n')
    expect(xsd, ["xenstore-write", "/a/b/c", "1", "/a/d", "2", "/z", "3"])
    expect(xsd, ["xenstore-ls", "/"],
           out='tool = ""\n xenstored = ""\na = ""\n b = ""\n  c = "1"\n d = "2"\nz = "3"\n')
    expect(xsd, ["xenstore-ls", "/a"], out='b = ""\n c = "1"\nd = "2"\n')
    expect(xsd, ["xenstore-ls", "-f", "/a"], out='/a/b = ""\n/a/b/c = "1"\n/a/d = "2"\n')
    expect(xsd, ["xenstore-ls", "/nope"], rc=1,
           err="xenstore-ls: xs_directory (/nope): No such file or directory\n")
    expect(xsd, ["xenstore-ls", "-h"], rc=1,
           err="xenstore-ls: Usage: xenstore-ls [-h] [-f] [-p] [-s] [path]\n")


def test_ls_perms_and_chmod(xsd):
    expect(xsd, ["xenstore-write", "/e/v", "1", "/e/n", "2", "/e/u", "3"])
    expect(xsd, ["xenstore-chmod", "/e/v", "r0"])
    expect(xsd, ["xenstore-chmod", "/e/n", "w0", "b0"])
    res = r(xsd, "xenstore-ls", "-p", "/e")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["v", "n", "u"]
    assert [ln.rsplit(" ", 1)[1] for ln in lines] == ["(r0)", "(w0,b0)", "(n0)"]
    assert all(ln.startswith('%s = "%s"' % kv) for ln, kv in
               zip(lines, [("v", "1"), ("n", "2"), ("u", "3")]))
    assert all(" . . . " in ln for ln in lines)
    # Recursive chmod.
    expect(xsd, ["xenstore-chmod", "-r", "/e", "n0", "r0"])
    res = r(xsd, "xenstore-ls", "-p", "/")
    assert [ln.rsplit(" ", 1)[1] for ln in res.stdout.splitlines()] == \
        ["(n0)", "(n0)", "(n0,r0)", "(n0,r0)", "(n0,r0)", "(n0,r0)"]
    # Exact rendering of one line (column layout of xenstore-ls -p).
    assert res.stdout.splitlines()[0] == \
        'tool = ""  . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)'


def test_chmod_other_domains(xsd):
    # A permission naming a domain that does not exist is refused with ENOENT.
    expect(xsd, ["xenstore-write", "/p", "v"])
    expect(xsd, ["xenstore-chmod", "/p", "r1", "w2"], rc=1,
           err="xenstore-chmod: Error occurred setting permissions on '/p': "
               "No such file or directory\n")
    # Introduce domain 5 (raw XS_INTRODUCE; the daemons' socket clients are privileged).
    c = XsRaw(xsd.socket)
    assert c.ok(INTRODUCE, b"5\0" + b"4660\0" + b"1\0") == b"OK\0"
    expect(xsd, ["xenstore-chmod", "/p", "b5", "r0"])
    res = r(xsd, "xenstore-ls", "-p", "/")
    assert res.stdout.splitlines()[2].endswith(" (b5,r0)"), res.stdout
    c.close()


def test_chmod_errors(xsd):
    expect(xsd, ["xenstore-chmod", "/nope", "r0"], rc=1,
           err="xenstore-chmod: Error occurred setting permissions on '/nope': "
               "No such file or directory\n")
    expect(xsd, ["xenstore-chmod", "/tool"], rc=1,
           err="xenstore-chmod: Error occurred setting permissions on '/tool': "
               "Invalid argument\n")
    expect(xsd, ["xenstore-chmod"], rc=1,
           err="xenstore-chmod: Usage: xenstore-chmod [-h] [-u] [-r] [-s] key "
               "<mode [modes...]>\n")


def test_list(xsd):
    expect(xsd, ["xenstore-write", "/l/b", "1", "/l/a", "2", "/l/c/d", "3"])
    expect(xsd, ["xenstore-list", "/l"], out="b\na\nc\n")   # creation order
    expect(xsd, ["xenstore-list", "-p", "/l"], out="/l/b\n/l/a\n/l/c\n")
    expect(xsd, ["xenstore-list", "/l/b"], out="")
    expect(xsd, ["xenstore-list", "/nope"], rc=1,
           err="xenstore-list: could not list path /nope\n")
    expect(xsd, ["xenstore-list", "-h"], rc=1,
           err="xenstore-list: Usage: xenstore-list [-h] [-p] [-s] key [...]\n")


def test_exists(xsd):
    expect(xsd, ["xenstore-write", "/x/y", "1"])
    expect(xsd, ["xenstore-exists", "/x/y"])
    expect(xsd, ["xenstore-exists", "/x"])
    expect(xsd, ["xenstore-exists", "/x/y", "/zz"], rc=1)
    expect(xsd, ["xenstore-exists", "/zz"], rc=1)
    expect(xsd, ["xenstore-exists", "bad//p"], rc=1)
    expect(xsd, ["xenstore-exists"], rc=1,
           err="xenstore-exists: Usage: xenstore-exists [-h] [-p] [-s] key [...]\n")


def test_rm(xsd):
    expect(xsd, ["xenstore-write", "/r/a/b", "1", "/r/c", "2", "/r/d", "3"])
    expect(xsd, ["xenstore-rm", "/r/a"])           # recursive
    expect(xsd, ["xenstore-list", "/r"], out="c\nd\n")
    expect(xsd, ["xenstore-read", "/r/a/b"], rc=1,
           err="xenstore-read: couldn't read path /r/a/b\n")
    expect(xsd, ["xenstore-rm", "/r/zz"])          # missing, parent exists: OK
    expect(xsd, ["xenstore-rm", "/nope/x"], rc=1,
           err="xenstore-rm: could not remove path /nope/x\n")
    expect(xsd, ["xenstore-rm", "/r/c", "/r/d"])
    expect(xsd, ["xenstore-list", "/r"], out="")
    expect(xsd, ["xenstore-rm", "/"], rc=1, err="xenstore-rm: could not remove path /\n")
    expect(xsd, ["xenstore-rm"], rc=1,
           err="xenstore-rm: Usage: xenstore-rm [-h] [-s] [-t] key [...]\n")


def test_rm_tidy(xsd):
    expect(xsd, ["xenstore-write", "/t/a/b/c", "1", "/t/x", "2"])
    expect(xsd, ["xenstore-rm", "-t", "/t/a/b/c"])   # removes empty parents up to /t
    expect(xsd, ["xenstore-ls", "/t"], out='x = "2"\n')
    expect(xsd, ["xenstore-rm", "-t", "/t/x"])
    expect(xsd, ["xenstore-ls", "/"], out='tool = ""\n xenstored = ""\n')


def test_watch(xsd):
    p = subprocess.Popen(["xenstore-watch", "/w"], env=xsd.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, bufsize=0)
    try:
        assert readline(p) == "/w\n"          # initial event
        expect(xsd, ["xenstore-write", "/w/x", "1"])
        assert readline(p) == "/w/x\n"
        expect(xsd, ["xenstore-write", "/other", "1"])  # not under /w: no event
        expect(xsd, ["xenstore-write", "/w", "2"])
        assert readline(p) == "/w\n"
        expect(xsd, ["xenstore-chmod", "/w/x", "r0"])
        assert readline(p) == "/w/x\n"
        expect(xsd, ["xenstore-rm", "/w"])
        assert readline(p) == "/w\n"
    finally:
        p.kill()
        p.wait()


def test_watch_count_and_rm_children(xsd):
    expect(xsd, ["xenstore-write", "/w/a/b", "1"])
    p = subprocess.Popen(["xenstore-watch", "-n", "3", "/w/a/b"], env=xsd.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert readline(p) == "/w/a/b\n"
    except AssertionError:
        p.kill()
        raise
    expect(xsd, ["xenstore-write", "/w/a/b", "2"])
    # Removing an ancestor fires the watch on the descendant with its own path.
    expect(xsd, ["xenstore-rm", "/w"])
    try:
        out, err = p.communicate(timeout=10)
    finally:
        p.kill()
    assert (p.returncode, out, err) == (0, "/w/a/b\n/w/a/b\n", "")


def test_watch_usage(xsd):
    expect(xsd, ["xenstore-watch", "-h"], rc=1,
           err="xenstore-watch: Usage: xenstore-watch [-h] [-n NR] key\n")


def test_no_daemon(tmp_path):
    env_sock = str(tmp_path / "nosocket")
    res = subprocess.run(["xenstore-read", "/x"], env={"XENSTORED_PATH": env_sock},
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr == "xenstore-read: xs_open: No such file or directory\n"
