"""tests/slow: tests that take minutes (the Linux guest boot on KVM's PVM backend).
tests/run-all runs them once, with the release build, beside the ASan/UBSan suite;
`scons check` leaves them out.  They use the integration tests' helpers."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))
