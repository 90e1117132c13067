"""The SDK's waits refuse a timeout that is not a number of seconds before they wait:
NaN compares false with every deadline, so a wait given one never ended."""
import math

import pytest

from radical_orbit.client import BridgeClient, seconds
from radical_orbit.plugins.globus_client import GlobusClient
from radical_orbit.plugins.psij_client import PSIJClient
from radical_orbit.plugins.rhapsody_client import RhapsodyClient

BAD = [math.nan, -1, "10", True, [5]]


@pytest.mark.parametrize("value", BAD)
def test_every_wait_refuses_a_timeout_that_is_not_seconds(value):
    # port 9 (discard) on loopback: nothing answers, so a wait that got as far as the
    # network would fail differently (or wait); ValueError means it never started
    bridge = BridgeClient(url="http://127.0.0.1:9", token="t" * 32)
    waits = [lambda: bridge.wait_for_endpoint("hpc1", timeout=value),
             lambda: GlobusClient.__new__(GlobusClient).wait("task", timeout=value),
             lambda: PSIJClient.__new__(PSIJClient).wait_job("job", timeout=value),
             lambda: RhapsodyClient.__new__(RhapsodyClient).wait_tasks(["t.1"], timeout=value),
             lambda: RhapsodyClient.__new__(RhapsodyClient).wait_ready(timeout=value)]
    for wait in waits:
        with pytest.raises(ValueError, match="number of seconds"):
            wait()


def test_seconds_takes_numbers_and_none_where_no_limit_is_allowed():
    assert seconds("t", 0) == 0.0 and seconds("t", 2.5) == 2.5
    assert seconds("t", None, optional=True) is None
    with pytest.raises(ValueError):
        seconds("t", None)
