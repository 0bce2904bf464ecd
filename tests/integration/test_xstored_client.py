"""store/xs_client (the project's client library) against a real xstored, through the
C program store/xs_client_check, which asserts every API call's behaviour."""
import subprocess

from conftest import build_path


def test_xs_client_api(xstored):
    r = subprocess.run([str(build_path("store", "xs_client_check")), xstored.socket],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all checks passed" in r.stdout
