"""What ORBIT knows about a plugin before importing it: one descriptor per plugin.

A descriptor names the plugin, the dotted path of its class, the host roles whose
``default`` set includes it, its Explorer module, what it needs installed and its
client class. Reading one imports nothing of the plugin, so a plugin whose optional
dependency is missing costs nothing until it is selected (and then one log line).
Built-ins are listed in ``radical_orbit/plugins/__init__.py``; third-party packages
point an entry point of the group ``radical_orbit.plugins`` at theirs.
"""
import importlib.util
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .host import ROLES
from .names import NAME_RE

#: every host role: the default set of each includes a plugin with these roles
EVERY_ROLE = ROLES
DEFAULT_CLIENT = "radical_orbit.client.PluginClient"
#: names of Explorer modules (served at ``GET /plugins/<name>``)
UI_MODULE_RE = re.compile(r"^[a-z_][a-z0-9_.]*\.js$")
_DOTTED = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


@dataclass(frozen=True)
class PluginDescriptor:
    """One plugin, described without importing it.

    ``name``: the registry name (``-p`` token, default instance name, plugin type).
    ``target``: the plugin class, ``pkg.module:Class``; imported only to load it.
    ``default_roles``: host roles (``bridge``, ``login``, ``compute``, ``standalone``)
    whose ``default`` set includes the plugin; ``EVERY_ROLE`` for all.
    ``ui_module``: its Explorer module, e.g. ``hello.js``.
    ``ui_package``: the package that ships ``ui_module`` as a file, from which the bridge
    serves it (``None``: from the Explorer's own ``share/plugins/``).
    ``extra``: what to install for its dependencies, e.g. ``radical.orbit[psij]``.
    ``requires``: top-level modules it imports; looked for (not imported) before loading,
    so that a missing one is named in the log line.
    ``min_python``: the oldest Python its dependencies run on, e.g. ``(3, 9)``: on an older
    one the log line says so, instead of naming an ``extra`` that installs nothing there.
    ``client_class``: dotted path of its SDK class.
    """

    name: str
    target: str
    default_roles: Tuple[str, ...] = ()
    ui_module: Optional[str] = None
    ui_package: Optional[str] = None
    extra: Optional[str] = None
    requires: Tuple[str, ...] = ()
    client_class: str = DEFAULT_CLIENT
    min_python: Optional[Tuple[int, int]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_roles", tuple(self.default_roles))
        object.__setattr__(self, "requires", tuple(self.requires))
        name = self.name
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError("plugin name %r must match %s" % (name, NAME_RE.pattern))
        for what, path in (("target", self.target), ("client_class", self.client_class)):
            if not isinstance(path, str) or not _DOTTED.match(path):
                raise ValueError("plugin %s: %s %r is not a dotted path" % (name, what, path))
        unknown = [role for role in self.default_roles if role not in ROLES]
        if unknown:
            raise ValueError("plugin %s: unknown roles %s (known: %s)" % (name, unknown, ", ".join(ROLES)))
        if self.ui_module is not None and not UI_MODULE_RE.match(str(self.ui_module)):
            raise ValueError("plugin %s: ui_module %r must match %s"
                             % (name, self.ui_module, UI_MODULE_RE.pattern))
        if self.ui_package is not None and not (self.ui_module and owns_module(name, self.ui_module)):
            raise ValueError("plugin %s: the ui_module a package ships is named %s.js (or %s.<part>.js)"
                             % (name, name, name))

    def python_hint(self) -> str:
        """`` (Python 3.9 or newer)`` for a plugin with a ``min_python``, else nothing."""
        return " (Python %d.%d or newer)" % tuple(self.min_python) if self.min_python else ""

    def missing(self) -> List[str]:
        """The ``requires`` modules that cannot be found (found without importing them)."""
        return [module for module in self.requires if not _findable(module)]

    @classmethod
    def from_class(cls, name: str, plugin_class: type, target: str = "") -> "PluginDescriptor":
        """The descriptor of a plugin class named directly (an entry point to the class,
        as before descriptors): read from its ``default_roles``, ``ui_module`` and
        ``client_class`` attributes, when it has them."""
        return cls(name, target or "%s:%s" % (plugin_class.__module__, plugin_class.__name__),
                   default_roles=getattr(plugin_class, "default_roles", ()) or (),
                   ui_module=getattr(plugin_class, "ui_module", None),
                   client_class=getattr(plugin_class, "client_class", None) or DEFAULT_CLIENT)


def owns_module(name: str, ui_module: str) -> bool:
    """Whether the Explorer module ``ui_module`` may come from plugin ``name``'s package:
    ``<name>.js`` or ``<name>.<part>.js``, so that no package serves another's file."""
    stem = ui_module[:-len(".js")] if ui_module.endswith(".js") else ""
    return stem == name or stem.startswith(name + ".")


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
