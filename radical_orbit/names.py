"""Name rules for endpoints and plugin instances (SPEC 3)."""
import re

from .errors import BadRequest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: ``bridge`` names the bridge's own plugins; the rest are the bridge's route prefixes.
RESERVED = frozenset(("bridge", "auth", "endpoint", "endpoints", "events", "health",
                      "plugins", "register"))


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest("invalid %s %r: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}" % (what, name))
    return name


def check_endpoint_name(name: str) -> str:
    check_name(name, "endpoint name")
    if name in RESERVED:
        raise BadRequest("endpoint name %r is reserved" % name)
    return name
