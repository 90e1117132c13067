"""Hosts plugin instances and dispatches requests to them; shared by the endpoint
and the bridge (for its own ``bridge`` plugins).

Paths arrive as ``<instance>/<rest>``. The reserved namespace ``_orbit`` (which
no instance name can take) lists, loads and unloads plugins at run time.
"""
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, Type
from urllib.parse import unquote

from . import registry
from .descriptor import PluginDescriptor
from .errors import BadRequest, Conflict, NotFound, OrbitError, from_exception
from .names import check_name, fold
from .plugin import Plugin, PluginContext, Request, Response
from .router import Router, class_router

log = logging.getLogger("radical_orbit.plugin_host")

CONTROL = "_orbit"


class PluginHost:
    """The plugin instances of one endpoint (or of the bridge)."""

    def __init__(self, endpoint: str, role: str, facts: Dict[str, Any],
                 notify: Callable[[str, str, Any], None],
                 on_change: Optional[Callable[[], None]] = None,
                 check_table: Optional[Callable[[Dict[str, Dict[str, Any]]], None]] = None,
                 bridge: Any = None, open_durable: Optional[Callable[..., Any]] = None):
        """``check_table`` raises ValueError for a plugin table the host cannot announce
        (the endpoint: one the bridge would refuse); a plugin that would make one is
        not loaded. ``bridge`` (on the bridge only) is handed to every plugin as
        ``context.bridge``: how a bridge-hosted plugin calls endpoints. ``open_durable`` is
        handed on as ``context.open_durable`` (radical_orbit.plugin.DurableNotes)."""
        self.endpoint = endpoint
        self.role = role
        self.facts = facts
        self._notify = notify
        self._on_change = on_change
        self._check_table = check_table
        self._bridge = bridge
        self._open_durable = open_durable
        self._plugins: Dict[str, Plugin] = {}
        self._starting: set = set()
        self._lock = threading.Lock()
        self._control = Router()
        self._control.add("GET", "plugins", self._ctl_list)
        self._control.add("POST", "plugins/load", self._ctl_load)
        self._control.add("POST", "plugins/unload", self._ctl_unload)

    # -- loading -----------------------------------------------------------
    def load_spec(self, spec: str, configs: Optional[Dict[str, Dict[str, Any]]] = None) -> List[str]:
        """Load the plugins named by a ``-p`` spec, each with its entry of ``configs``
        (``--plugin-config``); unknown names, a config for a plugin not in the set, and a
        configured plugin that does not start with its config raise PluginSpecError (the
        operator asked for it). Any other plugin that cannot be imported or started here
        is skipped with one log line."""
        configs = configs or {}
        selected = registry.Catalog().select(spec, self.role)
        stray = sorted(set(configs) - {d.name for d in selected})
        if stray:
            raise registry.PluginSpecError(
                "--plugin-config for %s, which %s not among the plugins loaded here (%s)"
                % (", ".join(stray), "is" if len(stray) == 1 else "are",
                   ", ".join(d.name for d in selected) or "none"))
        loaded = []
        for descriptor in selected:
            cls = registry.load_class(descriptor)
            if cls is None:
                continue
            try:
                self.add(descriptor.name, cls, configs.get(descriptor.name), announce=False,
                         descriptor=descriptor)
            except Exception as exc:
                if descriptor.name in configs:
                    raise registry.PluginSpecError("plugin %s did not start with its --plugin-config: %s"
                                                   % (descriptor.name, exc))
                log.error("plugin %s skipped: it failed to start: %s: %s",
                          descriptor.name, type(exc).__name__, exc)
                continue
            loaded.append(descriptor.name)
        return loaded

    def add(self, name: str, cls: Type[Plugin], config: Optional[Dict[str, Any]] = None,
            announce: bool = True, descriptor: Optional[PluginDescriptor] = None) -> Plugin:
        """Construct and start the plugin outside the lock every request's routing takes
        (a slow constructor must not stall the endpoint); it is routable once started.
        ``descriptor`` is the registry's; without one it is read from the class."""
        check_name(name, "plugin instance")
        context = PluginContext(self.endpoint, self.role, self._notify, config, self.facts, descriptor,
                                self._bridge, self._open_durable)
        with self._lock:
            taken = [n for n in list(self._plugins) + list(self._starting) if fold(n) == fold(name)]
            if taken:
                raise Conflict("plugin instance %r is already loaded%s" % (
                    name, "" if taken[0] == name else " as %r (names are compared case-insensitively)"
                    % taken[0]))
            self._starting.add(name)
        try:
            plugin = cls(name, context)
            try:
                plugin.start()
                self._check_fits(name, plugin)
            except Exception:
                plugin.stop()           # release what a half-done start took
                raise
            with self._lock:
                self._plugins[name] = plugin
        finally:
            with self._lock:
                self._starting.discard(name)
        log.info("plugin %s loaded (%s %s)", name, cls.plugin_name, cls.version)
        if announce and self._on_change:
            self._on_change()
        return plugin

    def _check_fits(self, name: str, plugin: Plugin) -> None:
        if self._check_table is None:
            return
        try:
            self._check_table(dict(self.describe(), **{name: plugin.describe(self.facts)}))
        except ValueError as exc:
            raise BadRequest("plugin %s cannot be loaded here: %s" % (name, exc))

    def remove(self, name: str, announce: bool = True) -> None:
        with self._lock:
            plugin = self._plugins.pop(name, None)
        if plugin is None:
            raise NotFound("no plugin instance %r on %s" % (name, self.endpoint))
        plugin.stop()
        log.info("plugin %s unloaded", name)
        if announce and self._on_change:
            self._on_change()

    def names(self) -> List[str]:
        with self._lock:
            return sorted(self._plugins)

    def describe(self) -> Dict[str, Dict[str, Any]]:
        with self._lock:
            plugins = list(self._plugins.items())
        return {name: p.describe(self.facts) for name, p in sorted(plugins)}

    def expire_sessions(self) -> None:
        with self._lock:
            plugins = list(self._plugins.values())
        for plugin in plugins:
            plugin.expire_sessions()

    def stop(self) -> None:
        with self._lock:
            plugins, self._plugins = list(self._plugins.values()), {}
        for plugin in plugins:
            try:
                plugin.stop()
            except Exception:
                log.exception("stopping plugin %s failed", plugin.name)

    # -- dispatch ----------------------------------------------------------
    def dispatch(self, req: Request) -> Response:
        """Run one request; every failure becomes the error envelope."""
        call, _inline = self.prepare(req)
        return call()

    def prepare(self, req: Request) -> Tuple[Callable[[], Response], bool]:
        """Route ``req``; returns the call that answers it, and whether that call may run
        inline on the caller's thread (routes declared ``inline``, and errors found while
        routing) instead of being handed to a worker."""
        try:
            target, params, inline = self._resolve(req)
        except Exception as exc:
            resp = self._failure(req, exc)
            return (lambda: resp), True
        return (lambda: self._run(req, target, params)), inline

    def _resolve(self, req: Request) -> Tuple[Callable, Dict[str, Any], bool]:
        instance, _, rest = unquote(req.path.strip("/")).partition("/")
        if instance == CONTROL:
            target, params = self._control.match(req.method, rest)
            return target, params, False
        with self._lock:
            plugin = self._plugins.get(instance)
        if plugin is None:
            check_name(instance, "plugin name")
            raise NotFound("no plugin %r on endpoint %s" % (instance, self.endpoint))
        attr, params = class_router(type(plugin)).match(req.method, rest)
        target = getattr(plugin, attr)
        return target, params, getattr(target, "_orbit_inline", False)

    def _run(self, req: Request, target: Callable, params: Dict[str, Any]) -> Response:
        try:
            if "sid" in params:
                params["session"] = target.__self__.get_session(params.pop("sid"))
            return as_response(target(req, **params))
        except Exception as exc:
            return self._failure(req, exc)

    @staticmethod
    def _failure(req: Request, exc: Exception) -> Response:
        err = from_exception(exc)
        if err.status_code >= 500:
            log.error("[%s] %s /%s failed", req.request_id, req.method, req.path, exc_info=exc)
        return error_response(err)

    # -- the _orbit control namespace ---------------------------------------
    def _ctl_list(self, req: Request) -> Dict[str, Any]:
        return {"loaded": self.describe(), "available": sorted(registry.available())}

    def _ctl_load(self, req: Request) -> Dict[str, Any]:
        body = req.json_object()
        kind = body.get("plugin")
        if not isinstance(kind, str) or not kind:
            raise BadRequest("body needs 'plugin': a plugin name")
        catalog = registry.Catalog()
        try:
            resolved = catalog.resolve(kind, self.role)
        except registry.PluginSpecError as exc:
            raise NotFound(str(exc))
        if len(resolved) != 1:
            raise BadRequest("%r names %d plugins; load one at a time" % (kind, len(resolved)))
        resolved = resolved[0]
        descriptor = catalog.descriptor(resolved)
        if descriptor is None:
            raise OrbitError("plugin %s cannot be loaded here: its entry point cannot be read "
                             "(see the endpoint's log)" % resolved, 501)
        try:
            cls = registry.import_class(descriptor)
        except registry.PluginUnavailable as exc:
            log.warning("plugin %s not loaded: %s", resolved, exc)
            raise OrbitError("plugin %s cannot be loaded here: %s" % (resolved, exc), 501)
        name = body.get("name") or resolved
        config = body.get("config")
        if config is not None and not isinstance(config, dict):
            raise BadRequest("'config' must be a JSON object")
        self.add(name, cls, config, descriptor=descriptor)
        return {"loaded": name, "plugins": self.names()}

    def _ctl_unload(self, req: Request) -> Dict[str, Any]:
        name = req.json_object().get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("body needs 'name': a plugin instance name")
        self.remove(name)
        return {"unloaded": name, "plugins": self.names()}


def as_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    return Response.json(result)


def error_response(err: OrbitError) -> Response:
    return Response.json(err.envelope(), err.status_code, err.headers)
