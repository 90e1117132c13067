"""The built-in plugins: one descriptor each, read without importing the plugin
(a missing optional dependency costs nothing until the plugin is selected).

A new built-in is one line here; its roles, Explorer module, extra and client
class live in its descriptor and nowhere else.
"""
import importlib.util

from ..descriptor import EVERY_ROLE, PluginDescriptor as P


def _installed(module: str) -> bool:
    """Whether ``module`` could be imported (found, not imported: nothing of it runs)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


#: rhapsody (Python 3.9+) joins every default set where it is installed; elsewhere ``-p
#: rhapsody`` still names it, and is skipped with one line saying what to install.
RHAPSODY_ROLES = EVERY_ROLE if _installed("rhapsody") else ()

#: where a batch scheduler may be: a login node, inside a job, and the bridge (which hosts
#: queue_info with its ``none`` backend where no scheduler is installed)
SCHEDULER_ROLES = ("bridge", "login", "compute")

BUILTIN = (
    P("sysinfo", "radical_orbit.plugins.sysinfo:SysinfoPlugin", EVERY_ROLE, ui_module="sysinfo.js",
      client_class="radical_orbit.plugins.sysinfo_client.SysinfoClient"),
    P("echo", "radical_orbit.plugins.echo:EchoPlugin",
      client_class="radical_orbit.plugins.echo_client.EchoClient"),
    P("staging", "radical_orbit.plugins.staging:StagingPlugin", EVERY_ROLE, ui_module="staging.js",
      client_class="radical_orbit.plugins.staging_client.StagingClient"),
    # not in any default set: it needs a user's Globus credentials to do anything
    P("globus", "radical_orbit.plugins.globus:GlobusPlugin", ui_module="globus.js",
      extra="radical.orbit[globus]", requires=("globus_sdk",),
      client_class="radical_orbit.plugins.globus_client.GlobusClient"),
    P("queue_info", "radical_orbit.plugins.queue_info:QueueInfoPlugin", SCHEDULER_ROLES,
      ui_module="queue_info.js", client_class="radical_orbit.plugins.queue_info_client.QueueInfoClient"),
    P("psij", "radical_orbit.plugins.psij:PsijPlugin", ("bridge", "login"), ui_module="psij.js",
      extra="radical.orbit[psij]", requires=("psij",),
      client_class="radical_orbit.plugins.psij_client.PSIJClient"),
    P("rhapsody", "radical_orbit.plugins.rhapsody:RhapsodyPlugin", RHAPSODY_ROLES, ui_module="rhapsody.js",
      extra="radical.orbit[rhapsody]", requires=("rhapsody",), min_python=(3, 9),
      client_class="radical_orbit.plugins.rhapsody_client.RhapsodyClient"),
)
