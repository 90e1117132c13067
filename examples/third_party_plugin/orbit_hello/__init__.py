"""orbit_hello: a minimal third-party ORBIT plugin.

The entry point ``hello = orbit_hello:DESCRIPTOR`` (group ``radical_orbit.plugins``)
names the descriptor below. ORBIT reads it without importing ``orbit_hello.plugin``,
which only an endpoint that loads the plugin imports; a bridge with this package
installed serves ``hello.js`` from it to the Explorer.
"""
from radical_orbit.descriptor import PluginDescriptor

DESCRIPTOR = PluginDescriptor(
    name="hello",
    target="orbit_hello.plugin:HelloPlugin",
    client_class="orbit_hello.client.HelloClient",
    ui_module="hello.js",
    ui_package="orbit_hello",
)
