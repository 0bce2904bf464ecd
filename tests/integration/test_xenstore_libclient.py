"""The C test client tests/clients/xs_libclient (linked with Debian's libxenstore) against
the daemon: plain operations, permissions, transactions with EAGAIN and retry, watches via
xs_fileno, a >4096-byte directory (XS_DIRECTORY_PART), domain introduce/release/set_target/
resume and control commands.  The expected transcript was taken from Xen's C xenstored 4.17,
and the test runs against that daemon too."""
import subprocess

import conftest
from xs_util import xsd  # noqa: F401  (xsd is a fixture)

EXPECTED = """\
write /lc/a: ok
read /lc/a: "hello" len 5
write /lc/bin: ok
read /lc/bin: "a" len 3
write /lc/empty: ok
read /lc/empty: "" len 0
mkdir /lc/d/e: ok
mkdir /lc/a (exists): ok
read /lc/a: "hello" len 5
directory /lc: a bin empty d (4)
directory /lc/d/e: (0)
read /lc/missing: error ENOENT
directory /lc/missing: error ENOENT
read /lc//bad: error EINVAL
read @introduceDomain: error EINVAL
write relative lcrel2: ok
read /local/domain/0/lcrel2: "r" len 1
rm lcrel2: ok
get_permissions /lc/a: n0
set_permissions /lc/a n0 r0 b0: ok
get_permissions /lc/a: n0 r0 b0
write /lc/a/child: ok
get_permissions /lc/a/child: n0 r0 b0
set_permissions /lc/a with unknown domain 42: ok
set_permissions /lc/missing: error ENOENT
get_permissions /lc/missing: error ENOENT
rm /lc/d: ok
rm /lc/d (gone, parent exists): ok
rm /lc/nope/x: error ENOENT
rm /: error EINVAL
directory /lc: a bin empty (3)
write /lc/tx/a: ok
transaction_start: ok
write /lc/tx/new in tx: ok
read /lc/tx/new: "n" len 1
read /lc/tx/new: error ENOENT
transaction_end commit: ok
read /lc/tx/new: "n" len 1
write /lc/tx/a in tx: ok
transaction_end abort: ok
read /lc/tx/a: "a" len 1
read /lc/tx/a: "a" len 1
write /lc/tx/a outside tx: ok
read /lc/tx/a: "a" len 1
write /lc/tx/a in tx: ok
transaction_end conflict: error EAGAIN
read /lc/tx/a: "b" len 1
retry loop: committed after 2 attempts
read /lc/tx/a: "e" len 1
two transactions distinct: yes
write /lc/tx/t1 in tx1: ok
read /lc/tx/t1: error ENOENT
transaction_end tx2: ok
transaction_end tx1: ok
directory /lc/tx: a new t1 (3)
transaction_end unknown: error ENOENT
watch /lc/w: ok
read_watch: /lc/w tok1 (2)
write /lc/w/x: ok
after write /lc/w/x: event /lc/w/x tok1
write /lc/other: ok
after write /lc/other: none
watch relative: ok
after watch relative: event lcrel tok2
write /local/domain/0/lcrel/k: ok
after write lcrel/k: event lcrel/k tok2
watch /lc/w again: error EEXIST
unwatch /lc/w: ok
unwatch /lc/w again: error ENOENT
write /lc/w/y: ok
after unwatch: none
rm /local/domain/0/lcrel: ok
after rm lcrel: event lcrel tok2
unwatch relative: ok
create big directory: ok
directory big: 600 children, in creation order, first child-0000, last child-0599
watch @introduceDomain: ok
watch @releaseDomain: ok
special watches: event @introduceDomain intro
special watches: event @releaseDomain release
is_domain_introduced 7: no
is_domain_introduced 0: yes
introduce_domain 7: ok
after introduce 7: event @introduceDomain intro
introduce_domain 8: ok
after introduce 8: event @introduceDomain intro
introduce_domain 9: ok
after introduce 9: event @introduceDomain intro
introduce_domain 7 again: ok
after introduce 7 again: none
is_domain_introduced 7: yes
is_domain_introduced 10: no
get_domain_path 7: /local/domain/7
get_domain_path 32000: /local/domain/32000
set_target 9 8: ok
set_target 9 10: error ENOENT
set_target 10 9: error ENOENT
resume_domain 7: ok
resume_domain 0: error EINVAL
resume_domain 10: error ENOENT
write /lc/dom7/sub: ok
set_permissions /lc/dom7 n7 r0: ok
get_permissions /lc/dom7: n7 r0
release_domain 7: ok
after release 7: event @releaseDomain release
is_domain_introduced 7: no
read /lc/dom7/sub: error ENOENT
get_permissions /lc/dom7: error ENOENT
release_domain 7 again: error ENOENT
release_domain 0: error EINVAL
release_domain 9: ok
after release 9: event @releaseDomain release
release_domain 8: ok
after release 8: event @releaseDomain release
is_domain_introduced 8: no
control check: OK
control print: OK
control no-such-command: EINVAL
done
"""


def test_libclient(xsd):
    exe = conftest.build_path("tests", "clients", "xs_libclient")
    assert exe.exists(), "not built: %s" % exe
    r = subprocess.run([str(exe)], env=xsd.env, capture_output=True, text=True, timeout=120)
    assert r.stderr == ""
    got = r.stdout.splitlines()
    want = EXPECTED.splitlines()
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, "line %d differs:\n got: %s\nwant: %s\n%s" % (i + 1, g, w, r.stdout)
    assert len(got) == len(want), r.stdout
    assert r.returncode == 0
