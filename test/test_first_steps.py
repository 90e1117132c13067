"""What a new user meets first: the README's command tables match the commands, and an
error on a fresh install says what to do."""
import os
import re
import subprocess
import sys

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


def _readme_flags(command):
    """The flags README's synopsis line of ``command`` names, and those its table explains."""
    with open(os.path.join(REPO, "README.md")) as f:
        lines = f.read().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("`%s [" % command))
    synopsis = set(re.findall(r"--[a-z][a-z-]*", lines[start]))
    table = set()
    for ln in lines[start + 1:]:
        if ln.startswith("|"):
            table.update(re.findall(r"--[a-z][a-z-]*", ln.split("|")[1]))
        elif table:
            break
    return synopsis, table


@pytest.mark.parametrize("command", ["radical-orbit-bridge", "radical-orbit-endpoint"])
def test_the_readme_command_tables_name_every_flag_and_no_other(command):
    from radical_orbit.bridge import cli as bridge_cli
    from radical_orbit.endpoint import cli as endpoint_cli
    cli = bridge_cli if command == "radical-orbit-bridge" else endpoint_cli
    flags = {s for a in cli.parser()._actions for s in a.option_strings if s.startswith("--")} - {"--help"}
    flags.discard("--plugins")      # the long form of -p, which the tables name
    synopsis, table = _readme_flags(command)
    assert synopsis == flags, "README synopsis of %s: missing %s, extra %s" % (
        command, sorted(flags - synopsis), sorted(synopsis - flags))
    assert table == flags, "README table of %s: missing %s, extra %s" % (
        command, sorted(flags - table), sorted(table - flags))


EXAMPLES = sorted(f for f in os.listdir(os.path.join(REPO, "examples")) if f.endswith(".py"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_explains_itself_without_a_bridge(tmp_path, example):
    """`example_sysinfo.py --help` asked the bridge for an endpoint named '--help'."""
    env = dict(os.environ, RADICAL_ORBIT_HOME=str(tmp_path), PYTHONPATH=REPO)
    env.pop("RADICAL_ORBIT_BRIDGE_URL", None)
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", example), "--help"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: "), out.stdout + out.stderr


def test_a_plugin_for_a_newer_python_says_so_not_which_extra_to_install():
    """On Python 3.8, `-p rhapsody` said `pip install 'radical.orbit[rhapsody]'`, which
    installs nothing there (rhapsody-py is 3.9+)."""
    from radical_orbit.descriptor import PluginDescriptor
    from radical_orbit.registry import PluginUnavailable, import_class
    future = PluginDescriptor("future", "radical_orbit.plugins.echo:EchoPlugin", extra="radical.orbit[future]",
                              min_python=(99, 0))
    with pytest.raises(PluginUnavailable) as err:
        import_class(future)
    assert str(err.value) == "it needs Python 99.0 or newer, this is %d.%d" % sys.version_info[:2]
    with pytest.raises(NotFound) as missing:
        EndpointClient(_Bridge("hpc1", ["sysinfo"]), "hpc1").get_plugin("rhapsody")
    assert "pip install 'radical.orbit[rhapsody]' where hpc1 runs (Python 3.9 or newer)" in missing.value.detail
