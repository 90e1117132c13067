"""Plugin discovery and ``-p`` resolution.

Plugins are named by dotted path (``module:Class``): built-ins from
``radical_orbit.plugins.BUILTIN`` plus the entry-point group
``radical_orbit.plugins``. A class is imported only when it is wanted, and a
plugin whose extra is missing is skipped with one log line.
"""
import fnmatch
import logging
from typing import Dict, List, Optional, Type

from .dotted import import_dotted
from .plugins import BUILTIN, DEFAULT_ROLES

ENTRY_POINT_GROUP = "radical_orbit.plugins"
log = logging.getLogger("radical_orbit.registry")


class PluginSpecError(ValueError):
    """An unknown or ambiguous ``-p`` token: a startup error."""


def _entry_points() -> Dict[str, str]:
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8 is not supported, but fail soft
        return {}
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        selected = eps.select(group=ENTRY_POINT_GROUP)
    else:
        selected = eps.get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep.value for ep in selected}


def available() -> Dict[str, str]:
    """name -> ``module:Class`` of every known plugin; built-ins win name clashes."""
    found = _entry_points()
    found.update(BUILTIN)
    return found


def load_class(target: str, name: str = "") -> Optional[Type]:
    """Import ``module:Class``; None (with one log line) when its dependency is missing."""
    name = name or target
    try:
        return import_dotted(target)
    except ImportError as exc:
        log.warning("plugin %s skipped: %s (install its extra, e.g. pip install 'radical.orbit[%s]')",
                    name, exc, name)
    except AttributeError as exc:
        log.warning("plugin %s skipped: %s", name, exc)
    except Exception as exc:
        log.warning("plugin %s skipped: importing %s failed: %s: %s", name, target, type(exc).__name__, exc)
    return None


def resolve(spec: str, role: str, names: Optional[Dict[str, str]] = None) -> List[str]:
    """Turn ``-p`` tokens into plugin names, in order, without duplicates.

    Tokens: exact names, unique prefixes, globs, ``all`` and ``default`` (the
    plugins whose ``default_roles`` include ``role``).
    """
    names = available() if names is None else names
    out: List[str] = []
    for token in (t.strip() for t in (spec or "default").split(",")):
        if not token:
            continue
        if token == "all":
            picked = sorted(names)
        elif token == "default":
            picked = [n for n in sorted(names) if _in_default(n, names[n], role)]
        elif any(c in token for c in "*?["):
            picked = sorted(fnmatch.filter(names, token))
            if not picked:
                raise PluginSpecError("plugin pattern %r matches none of: %s"
                                      % (token, ", ".join(sorted(names))))
        elif token in names:
            picked = [token]
        else:
            picked = [n for n in sorted(names) if n.startswith(token)]
            if len(picked) != 1:
                what = "ambiguous" if picked else "unknown"
                raise PluginSpecError("%s plugin %r (known: %s)" % (what, token, ", ".join(sorted(names))))
        out.extend(p for p in picked if p not in out)
    return out


def _in_default(name: str, target: str, role: str) -> bool:
    if name in DEFAULT_ROLES and BUILTIN.get(name) == target:
        return role in DEFAULT_ROLES[name]
    cls = load_class(target, name)
    return cls is not None and role in getattr(cls, "default_roles", ())
