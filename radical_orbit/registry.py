"""Plugin discovery, ``-p`` resolution and plugin Explorer modules, from descriptors.

Every plugin has a ``PluginDescriptor`` (see ``descriptor.py``): the built-ins' are
``radical_orbit.plugins.BUILTIN``; a third-party package names its own with an entry
point of the group ``radical_orbit.plugins`` (``hello = "orbit_hello:DESCRIPTOR"``).
An entry point may instead name the plugin class, as before descriptors; its
descriptor is then read from the class, which imports it.

The plugin class is imported only when the plugin is loaded. A plugin that cannot
be read or imported (a missing module or dependency) is one log line and a skip.
"""
import fnmatch
import importlib.util
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Type, Union

from .descriptor import UI_MODULE_RE, PluginDescriptor, owns_module
from .dotted import import_dotted
from .plugin import Plugin
from .plugins import BUILTIN

ENTRY_POINT_GROUP = "radical_orbit.plugins"
log = logging.getLogger("radical_orbit.registry")

#: a built-in's descriptor, or an entry point (``importlib.metadata.EntryPoint``) read on demand
Entry = Union[PluginDescriptor, Any]


class PluginSpecError(ValueError):
    """An unknown or ambiguous ``-p`` token: a startup error."""


def _entry_points() -> Dict[str, Any]:
    from importlib import metadata
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        selected = eps.select(group=ENTRY_POINT_GROUP)
    else:                                   # Python 3.8, 3.9
        selected = eps.get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in selected}


def available() -> Dict[str, Entry]:
    """name -> descriptor or entry point of every known plugin, nothing imported;
    built-ins win name clashes."""
    found = _entry_points()
    found.update((d.name, d) for d in BUILTIN)
    return found


def read(name: str, entry: Entry) -> Optional[PluginDescriptor]:
    """The descriptor of one entry; None, with one log line, when it cannot be read."""
    if isinstance(entry, PluginDescriptor):
        return entry
    value = getattr(entry, "value", entry)
    try:
        obj = entry.load()
    except ImportError as exc:
        log.warning("plugin %s skipped: its entry point %s cannot be imported: %s", name, value, exc)
        return None
    except Exception as exc:
        log.warning("plugin %s skipped: loading its entry point %s failed: %s: %s",
                    name, value, type(exc).__name__, exc)
        return None
    if isinstance(obj, PluginDescriptor):
        if obj.name != name:
            log.warning("plugin %s skipped: its entry point %s names the descriptor of %r",
                        name, value, obj.name)
            return None
        return obj
    if isinstance(obj, type):
        try:
            return PluginDescriptor.from_class(name, obj, value)
        except ValueError as exc:
            log.warning("plugin %s skipped: %s", name, exc)
            return None
    log.warning("plugin %s skipped: its entry point %s is neither a PluginDescriptor nor a class",
                name, value)
    return None


class PluginUnavailable(Exception):
    """A plugin that cannot be imported here; the message says why, in one line."""


def import_class(descriptor: PluginDescriptor) -> Type[Plugin]:
    """Import the plugin's class; PluginUnavailable says why that is not possible here."""
    if descriptor.min_python and sys.version_info[:2] < tuple(descriptor.min_python):
        raise PluginUnavailable("it needs Python %d.%d or newer, this is %d.%d"
                                % (tuple(descriptor.min_python) + sys.version_info[:2]))
    hint = " (pip install '%s')" % descriptor.extra if descriptor.extra else ""
    missing = descriptor.missing()
    if missing:
        raise PluginUnavailable("it needs %s, not installed%s" % (", ".join(missing), hint))
    try:
        cls = import_dotted(descriptor.target)
    except ImportError as exc:
        raise PluginUnavailable("%s%s" % (exc, hint))
    except AttributeError as exc:
        raise PluginUnavailable(str(exc))
    except Exception as exc:
        raise PluginUnavailable("importing %s failed: %s: %s" % (descriptor.target, type(exc).__name__, exc))
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginUnavailable("%s is not a Plugin class" % descriptor.target)
    return cls


def load_class(descriptor: PluginDescriptor) -> Optional[Type[Plugin]]:
    """``import_class``, or None with one log line."""
    try:
        return import_class(descriptor)
    except PluginUnavailable as exc:
        log.warning("plugin %s skipped: %s", descriptor.name, exc)
        return None


class Catalog:
    """The known plugins as one look-up sees them: each descriptor is read at most
    once, so a plugin that cannot be read costs one log line, not one per question."""

    def __init__(self, entries: Optional[Dict[str, Entry]] = None):
        self.entries = available() if entries is None else entries
        self._read: Dict[str, Optional[PluginDescriptor]] = {}

    def names(self) -> List[str]:
        return sorted(self.entries)

    def descriptor(self, name: str) -> Optional[PluginDescriptor]:
        if name not in self._read:
            self._read[name] = read(name, self.entries[name])
        return self._read[name]

    def resolve(self, spec: Optional[str], role: str) -> List[str]:
        """Turn ``-p`` tokens into plugin names, in order, without duplicates.

        Tokens: exact names, unique prefixes, globs, ``all`` and ``default`` (the
        plugins whose descriptors' ``default_roles`` include ``role``).
        """
        names = self.names()
        out: List[str] = []
        for token in (t.strip() for t in (spec or "default").split(",")):
            if not token:
                continue
            if token == "all":
                picked = names
            elif token == "default":
                picked = [n for n in names if role in getattr(self.descriptor(n), "default_roles", ())]
            elif any(c in token for c in "*?["):
                picked = fnmatch.filter(names, token)
                if not picked:
                    raise PluginSpecError("plugin pattern %r matches none of: %s" % (token, ", ".join(names)))
            elif token in self.entries:
                picked = [token]
            else:
                picked = [n for n in names if n.startswith(token)]
                if len(picked) != 1:
                    what = "ambiguous" if picked else "unknown"
                    raise PluginSpecError("%s plugin %r (known: %s)" % (what, token, ", ".join(names)))
            out.extend(p for p in picked if p not in out)
        return out

    def select(self, spec: Optional[str], role: str) -> List[PluginDescriptor]:
        """The descriptors of ``resolve(spec, role)`` that could be read."""
        found = (self.descriptor(name) for name in self.resolve(spec, role))
        return [d for d in found if d is not None]


def resolve(spec: Optional[str], role: str, entries: Optional[Dict[str, Entry]] = None) -> List[str]:
    """``Catalog(entries).resolve(spec, role)``."""
    return Catalog(entries).resolve(spec, role)


# -- Explorer modules shipped by plugin packages ---------------------------------
def package_file(package: str, file: str) -> Optional[str]:
    """The path of ``file`` directly inside ``package``'s directory, found without
    importing the package (a dotted one imports its parents); None if it is not there."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or []) if spec is not None else []:
        base = os.path.realpath(base)
        path = os.path.realpath(os.path.join(base, file))
        if os.path.dirname(path) == base and os.path.isfile(path):
            return path
    return None


def explorer_module(file: str, entries: Optional[Dict[str, Entry]] = None) -> Optional[str]:
    """The path of the Explorer module ``file`` that an installed plugin package ships
    (its descriptor's ``ui_package``), or None. Only the descriptor of the plugin the
    file is named after (``<name>.js``, ``<name>.<part>.js``) is read."""
    if not UI_MODULE_RE.match(file):
        return None
    catalog = Catalog(entries)
    for name in catalog.names():
        if owns_module(name, file):
            descriptor = catalog.descriptor(name)
            if descriptor is not None and descriptor.ui_package and descriptor.ui_module == file:
                path = package_file(descriptor.ui_package, file)
                if path is not None:
                    return path
    return None


def explorer_modules(entries: Optional[Dict[str, Entry]] = None) -> Dict[str, str]:
    """file name -> path of every Explorer module shipped by an installed plugin package
    (reads every plugin's descriptor: for loading them all once, at start)."""
    catalog = Catalog(entries)
    found: Dict[str, str] = {}
    for name in catalog.names():
        descriptor = catalog.descriptor(name)
        if descriptor is not None and descriptor.ui_package and descriptor.ui_module:
            path = package_file(descriptor.ui_package, descriptor.ui_module)
            if path is not None:
                found[descriptor.ui_module] = path
    return found
