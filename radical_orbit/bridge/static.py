"""The Explorer's files, read once when the bridge starts: a reinstall under a running
bridge (``pip install`` replaces ``share/``) must not take its pages away."""
import logging
import os
from typing import Dict, Optional

from .. import registry
from ..share import share_dir

log = logging.getLogger("radical_orbit.bridge.static")

INDEX = "index.html"
PLUGIN_DIR = "plugins"
MAX_FILE = 4 * 2**20    # bytes: far above any Explorer file; guards against a stray large file


class ExplorerFiles:
    """``index.html`` and ``plugins/*.js`` in memory (tens of KiB), keyed by the
    path relative to ``share/``; plus the Explorer modules that plugin packages
    installed on the bridge ship, each read the first time it is asked for."""

    def __init__(self, root: Optional[str] = None):
        self.root = root if root is not None else share_dir()
        self.files: Dict[str, bytes] = {}
        #: the installed plugins, listed at the first module not in share/ (not per request:
        #: listing them scans every installed distribution, and the route is open)
        self._entries: Optional[Dict[str, registry.Entry]] = None
        if self.root is None:
            log.warning("the Explorer files (share/) are not installed: GET / will answer 404")
            return
        self._read(INDEX)
        plugins = os.path.join(self.root, PLUGIN_DIR)
        for name in sorted(os.listdir(plugins)) if os.path.isdir(plugins) else ():
            if name.endswith(".js"):
                self._read("%s/%s" % (PLUGIN_DIR, name))

    def _read(self, rel: str, path: Optional[str] = None) -> None:
        path = path or os.path.join(self.root, *rel.split("/"))
        try:
            if os.path.getsize(path) > MAX_FILE:
                log.warning("skipping Explorer file %s: larger than %d bytes", path, MAX_FILE)
                return
            with open(path, "rb") as f:
                self.files[rel] = f.read()
        except OSError as exc:
            log.warning("cannot read Explorer file %s: %s", path, exc)

    def get(self, rel: str) -> Optional[bytes]:
        """The file's bytes, or None; ``rel`` uses ``/`` (``plugins/sysinfo.js``)."""
        return self.files.get(rel)

    def plugin_module(self, name: str) -> Optional[bytes]:
        """Explorer module ``name`` (already checked against the module-name rule): from
        ``share/plugins/``, else from the plugin package whose descriptor names it (looked
        up once, then kept like the rest). Endpoints never supply JavaScript."""
        rel = "%s/%s" % (PLUGIN_DIR, name)
        data = self.files.get(rel)
        if data is None:
            if self._entries is None:
                self._entries = registry.available()
            path = registry.explorer_module(name, self._entries)
            if path is not None:
                self._read(rel, path)
                data = self.files.get(rel)
        return data
