"""Built-in plugins, named without importing them (a missing extra costs nothing
until used), with the host roles whose default set includes each."""

ALL_ROLES = ("bridge", "login", "compute", "standalone")

BUILTIN = {
    "sysinfo": "radical_orbit.plugins.sysinfo:SysinfoPlugin",
    "echo": "radical_orbit.plugins.echo:EchoPlugin",
}

DEFAULT_ROLES = {
    "sysinfo": ALL_ROLES,
    "echo": (),
}
