"""Name rules for endpoint and plugin instance names (SPEC 3).

A name matches as a whole (``bridge\\n`` is no name), and names are compared
case-insensitively for reservation and uniqueness: ``EP1`` and ``ep1`` look alike in
the Explorer and in a URL typed by hand, so only one of them may be live.
"""
import re
from typing import FrozenSet

from .errors import BadRequest

#: Anchored at both ends (``\\Z``, not ``$``, which also matches before a final newline),
#: so ``match`` and ``fullmatch`` agree.
NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def reserved() -> FrozenSet[str]:
    """Names no endpoint can take: ``bridge`` (the bridge's own plugins) and the first
    path segments of the bridge's routes, read from its route table (declared once there)."""
    from .bridge.routes import RESERVED
    return RESERVED


def is_name(name: object) -> bool:
    """True for a str that is a whole valid name."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def fold(name: str) -> str:
    """The form names are compared in (valid names are ASCII, so lower() is exact)."""
    return name.lower()


def is_reserved(name: str) -> bool:
    return fold(name) in reserved()


def check_name(name: str, what: str = "name") -> str:
    if not is_name(name):
        raise BadRequest("invalid %s %r: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}" % (what, name))
    return name


def check_endpoint_name(name: str) -> str:
    check_name(name, "endpoint name")
    if is_reserved(name):
        raise BadRequest("endpoint name %r is reserved" % name)
    return name
