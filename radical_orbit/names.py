"""Name rules for endpoints and plugin instances (SPEC 3)."""
import re
from typing import FrozenSet

from .errors import BadRequest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def reserved() -> FrozenSet[str]:
    """Names no endpoint can take: ``bridge`` (the bridge's own plugins) and the first
    path segments of the bridge's routes, read from its route table (declared once there)."""
    from .bridge.routes import RESERVED
    return RESERVED


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest("invalid %s %r: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}" % (what, name))
    return name


def check_endpoint_name(name: str) -> str:
    check_name(name, "endpoint name")
    if name in reserved():
        raise BadRequest("endpoint name %r is reserved" % name)
    return name
