"""What the rhapsody tests share: a module's ORBIT (one bridge, one endpoint -p rhapsody)
and the skip line where rhapsody cannot run (Python 3.8, or rhapsody-py missing)."""
import importlib.util
import os
import sys
import time

import pytest

from orbit_procs import Orbit


def require_rhapsody() -> None:
    if sys.version_info < (3, 9) or importlib.util.find_spec("rhapsody") is None:
        pytest.skip("rhapsody-py needs Python 3.9+ and is not installed here: rhapsody tests skipped")


def start_orbit(home: str, endpoint: str = "tasks", endpoint_args=(), **env: str) -> Orbit:
    """A plain-HTTP bridge with its default plugins (rhapsody on the bridge too) and one
    endpoint ``-p rhapsody``; the caller stops it."""
    o = Orbit(home, tls=False)
    try:
        o.start_bridge()
        o.start_endpoint(endpoint, "-p", "rhapsody", *endpoint_args, **env)
    except BaseException:
        o.stop()
        raise
    return o


def wait_for_file(path: str, limit: float = 60.0) -> str:
    """A task that holds its worker until the test creates ``path`` (at most ``limit`` s):
    cancelling tasks is then a matter of order, not of timing."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return path
