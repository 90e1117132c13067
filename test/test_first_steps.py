"""What a new user meets first: the README's command tables match the commands, and an
error on a fresh install says what to do."""
import os

import pytest

from radical_orbit.client import EndpointClient
from radical_orbit.errors import NotFound

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Bridge:
    """Only what EndpointClient.describe reads."""

    def __init__(self, name, plugins):
        self.name, self.plugins = name, plugins

    def topology(self):
        return {"endpoints": {self.name: {"plugins": dict.fromkeys(self.plugins, {})}}}


def test_a_missing_builtin_plugin_names_its_extra():
    """`pip install .` brings no psij: the examples said only `404: endpoint bridge has no
    plugin 'psij'`, not what the endpoint has nor what to install."""
    with pytest.raises(NotFound) as err:
        EndpointClient(_Bridge("bridge", ["staging", "sysinfo"]), "bridge").get_plugin("psij")
    detail = err.value.detail
    assert "loaded: staging, sysinfo" in detail, detail
    assert "pip install 'radical.orbit[psij]' where bridge runs" in detail, detail


def test_a_missing_plugin_without_an_extra_names_what_is_loaded():
    with pytest.raises(NotFound) as err:
        EndpointClient(_Bridge("hpc1", []), "hpc1").get_plugin("echo")
    assert err.value.detail == "endpoint hpc1 has no plugin 'echo' (loaded: none)"
