"""Runs every cmocka unit-test program the build registered (env.XstUnitTest)."""
import os
import subprocess

import pytest

UNITS = [p for p in os.environ.get("XST_UNIT_TESTS", "").split(":") if p]


@pytest.mark.parametrize("prog", UNITS, ids=[os.path.basename(p) for p in UNITS])
def test_unit(prog):
    r = subprocess.run([prog], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_units_registered():
    # `scons check` always passes the list; running pytest by hand without it is a mistake.
    assert UNITS, "XST_UNIT_TESTS is empty: run the suite through `scons check`"
