"""The README's main job (tools/demo) works end to end: a domain boots and is shown."""
import os
import re
import subprocess

from conftest import BUILD, ROOT


def test_demo_boots_and_shows_a_domain():
    env = dict(os.environ, XST_BUILD=str(BUILD))
    env.pop("XENSTORED_PATH", None)
    r = subprocess.run(["sh", str(ROOT / "tools" / "demo")], env=env, capture_output=True,
                       text=True, timeout=120)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    # `xst list` after create shows the domain running
    listing = out.split("+ xst list")[1]
    assert re.search(r"^demo\s+\d+\s+64\s+\d+\s+[r-]", listing, re.M), listing
    # the guest reached xenstore through its ring
    assert 'status = "running"' in out
    # its console is shown: test guest counter lines, or sim ticks
    assert re.search(r"^(COUNTER \d+ errors=0|sim: demo tick \d+)", out, re.M), out
    assert "CHECKSUM-ERROR" not in out
    # and it is gone after the shutdown
    assert not re.search(r"^demo\s", out.split("+ xst list")[-1], re.M)
