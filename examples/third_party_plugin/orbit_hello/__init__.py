"""orbit_hello: a minimal third-party ORBIT plugin.

The entry point ``hello = orbit_hello:HelloPlugin`` (group ``radical_orbit.plugins``)
makes it known to every endpoint that can import this package.
"""
from .plugin import HelloPlugin, HelloSession

__all__ = ["HelloPlugin", "HelloSession"]
