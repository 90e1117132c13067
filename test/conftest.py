import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if os.environ.get("ORBIT_TEST_INSTALLED") != "1":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from orbit_procs import Orbit  # noqa: E402


@pytest.fixture
def orbit(tmp_path):
    """A bridge over TLS with auth on (started by the test) and its endpoints; all stopped after."""
    o = Orbit(str(tmp_path / "home"), tls=True)
    yield o
    o.stop()


@pytest.fixture
def orbit_plain(tmp_path):
    o = Orbit(str(tmp_path / "home"), tls=False)
    yield o
    o.stop()
