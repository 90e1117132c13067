"""The client SDK: BridgeClient, EndpointClient, PluginClient and the SSE listener.

One pooled ``requests`` session per BridgeClient, a timeout on every call, and
typed errors (``radical_orbit.errors``) for every non-2xx answer.
"""
import json
import logging
import random
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import requests

from . import config
from .dotted import import_dotted
from .errors import NotFound, OrbitError, Timeout, Unavailable, error_for_status

log = logging.getLogger("radical_orbit.client")

DEFAULT_TIMEOUT = 30.0
#: The bridge sends a keepalive every 15 s (``--keepalive``, at most 30 s); silence for this long means it is gone.
SSE_READ_TIMEOUT = 45.0


class BridgeClient:
    """Talks to one bridge. ``url``, ``cert`` and ``token`` default to the
    environment, then the files in the config dir; ``token_file`` names a private
    file holding the token, as the commands' ``--token-file`` does."""

    def __init__(self, url: Optional[str] = None, cert: Optional[str] = None,
                 token: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 token_file: Optional[str] = None):
        found = config.url_setting(url)
        self.url = found.value
        #: where the URL came from, named in errors: a stale bridge.url is a common cause
        self.url_source = found.source
        self.cert = config.resolve_cert(self.url, cert)
        self.timeout = timeout
        self.session = requests.Session()
        # Passed on every call: requests lets REQUESTS_CA_BUNDLE override a session-level
        # verify, which would silently trade the pin for the system CA store.
        self.verify: Union[str, bool] = self.cert if self.cert else True
        token = config.resolve_token(token, token_file)
        if token:
            self.session.headers["Authorization"] = "Bearer %s" % token
        self._events: Optional[EventListener] = None
        self._events_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------
    def request(self, method: str, path: str, json: Any = None, data: Any = None,
                params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None,
                raw: bool = False, stream: bool = False,
                headers: Optional[Dict[str, str]] = None) -> Any:
        """One call; returns the decoded JSON (``raw``: the bytes; ``stream``: the response)."""
        url = "%s/%s" % (self.url, path.lstrip("/"))
        try:
            resp = self.session.request(method, url, json=json, data=data, params=_params(params),
                                        headers=headers, stream=stream, verify=self.verify,
                                        timeout=timeout or self.timeout)
        except requests.exceptions.SSLError as exc:
            raise OrbitError("TLS failure talking to %s (URL from %s): %s" % (self.url, self.url_source, exc), 495)
        except requests.exceptions.Timeout as exc:
            raise Timeout("no answer from %s within %.0f s: %s" % (url, timeout or self.timeout, exc))
        except requests.exceptions.ConnectionError as exc:
            raise Unavailable("cannot reach the bridge at %s (URL from %s): %s"
                              % (self.url, self.url_source, exc))
        if resp.status_code >= 400:
            raise _error(resp)
        if stream:
            return resp
        if raw:
            return resp.content
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.content

    def close(self) -> None:
        with self._events_lock:
            events, self._events = self._events, None
        if events is not None:
            events.stop()
        self.session.close()

    def __enter__(self) -> "BridgeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the bridge's routes ---------------------------------------------------------
    def health(self) -> Dict[str, Any]:
        return self.request("GET", "health")

    def topology(self) -> Dict[str, Any]:
        """The ``data`` of ``/endpoint/list``: bridge url and every endpoint with its plugins."""
        return self.request("POST", "endpoint/list")["data"]

    def list_endpoints(self) -> List[str]:
        return sorted(self.topology()["endpoints"])

    def endpoints(self) -> Dict[str, Any]:
        return self.request("GET", "endpoints")

    def disconnect_endpoint(self, name: str) -> Dict[str, Any]:
        return self.request("POST", "endpoint/disconnect/%s" % name)

    def terminate(self) -> Dict[str, Any]:
        return self.request("POST", "bridge/terminate")

    def get_endpoint_client(self, name: str) -> "EndpointClient":
        return EndpointClient(self, name)

    def wait_for_endpoint(self, names: Union[str, Iterable[str]], timeout: float = 60.0,
                          interval: float = 0.2) -> Dict[str, Any]:
        """Block until every named endpoint is connected; Timeout after ``timeout`` s."""
        wanted = {names} if isinstance(names, str) else set(names)
        deadline = time.monotonic() + seconds("timeout", timeout)
        while True:
            try:
                endpoints = self.topology()["endpoints"]
                if wanted <= set(endpoints):
                    return {n: endpoints[n] for n in wanted}
            except Unavailable:
                endpoints = {}
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("endpoints %s not connected after %.0f s"
                              % (", ".join(sorted(wanted - set(endpoints))), timeout))
            time.sleep(min(interval, left))

    # -- events ------------------------------------------------------------------------
    def register_callback(self, callback: Callable[[str, str, str, Any], None],
                          endpoint_id: Optional[str] = None, plugin_name: Optional[str] = None,
                          topic: Optional[str] = None) -> int:
        """Call ``callback(endpoint, plugin, topic, data)`` for matching notifications.
        Runs on the listener thread: keep it short. Returns a handle for unregistering."""
        return self._listener().add(("note", endpoint_id, plugin_name, topic, callback))

    def register_topology_callback(self, callback: Callable[[Dict[str, Any]], None]) -> int:
        """Call ``callback(topology_data)`` on every topology change (and on (re)connect).
        If the event stream has already delivered a topology, the callback gets that one at
        once, on the calling thread, so one registered late misses nothing."""
        return self._listener().add(("topology", None, None, None, callback))

    def unregister_callback(self, handle: int) -> None:
        if self._events is not None:
            self._events.remove(handle)

    def _listener(self) -> "EventListener":
        with self._events_lock:
            if self._events is None:
                self._events = EventListener(self)
                self._events.start()
            return self._events


class EndpointClient:
    """One endpoint behind the bridge: its plugins and raw requests to it."""

    def __init__(self, bridge: BridgeClient, name: str):
        self.bridge = bridge
        self.name = name

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.bridge.request(method, "%s/%s" % (self.name, path.lstrip("/")), **kwargs)

    def describe(self) -> Dict[str, Any]:
        endpoints = self.bridge.topology()["endpoints"]
        if self.name not in endpoints:
            raise NotFound("no endpoint %r (connected: %s)" % (self.name, ", ".join(sorted(endpoints))), 404)
        return endpoints[self.name]

    def list_plugins(self) -> List[str]:
        return sorted(self.describe()["plugins"])

    def get_plugin(self, name: str, register: bool = True) -> "PluginClient":
        """The plugin's client (its ``client_class``), with a registered session."""
        plugins = self.describe()["plugins"]
        info = plugins.get(name)
        if info is None:
            raise _missing_plugin(self.name, name, plugins)
        cls = _client_class(info.get("client_class"))
        return cls(self, name, register=register)

    def load_plugin(self, plugin: str, name: Optional[str] = None,
                    config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Load a plugin on the endpoint at run time (announced to every listener)."""
        body = {"plugin": plugin, "name": name, "config": config}
        return self.request("POST", "_orbit/plugins/load", json=body)

    def unload_plugin(self, name: str) -> Dict[str, Any]:
        return self.request("POST", "_orbit/plugins/unload", json={"name": name})


def seconds(name: str, value: Any, optional: bool = False) -> Optional[float]:
    """``value`` as a timeout in seconds, checked before anything waits on it: a number
    >= 0 (None too when ``optional``: no limit); anything else, NaN included (which
    compares false with every deadline, so a wait on it never ends), is a ValueError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError("%s must be a number of seconds >= 0, not %r" % (name, value))
    return float(value)


def _missing_plugin(endpoint: str, name: str, loaded: Iterable[str]) -> NotFound:
    """The error for a plugin an endpoint lacks: what it has, and for a built-in that needs
    an extra (the usual cause on a fresh install), what to install."""
    from .plugins import BUILTIN
    detail = "endpoint %s has no plugin %r (loaded: %s)" % (endpoint, name, ", ".join(sorted(loaded)) or "none")
    builtin = next((d for d in BUILTIN if d.name == name and d.extra), None)
    if builtin:
        detail += ("; to add it, pip install '%s' where %s runs%s, then restart it or load the plugin "
                   "(EndpointClient.load_plugin)" % (builtin.extra, endpoint, builtin.python_hint()))
    return NotFound(detail, 404)


class PluginClient:
    """A session with one plugin; subclasses turn its routes into methods."""

    def __init__(self, endpoint: EndpointClient, name: str, register: bool = True):
        self.endpoint = endpoint
        self.name = name
        self.sid: Optional[str] = None
        if register:
            self.sid = self.post("register_session")["sid"]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.endpoint.request(method, "%s/%s" % (self.name, path.lstrip("/")), **kwargs)

    def get(self, path: str, params: Optional[Dict[str, Any]] = None, **kwargs: Any) -> Any:
        return self.request("GET", path, params=params, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)

    # the base routes call ``request``, not ``get``: a subclass may give ``get`` its own
    # meaning (staging's ``get(src, tgt)`` downloads a file)
    def version(self) -> Dict[str, Any]:
        return self.request("GET", "version")

    def health(self) -> Dict[str, Any]:
        return self.request("GET", "health")

    def list_sessions(self) -> List[Dict[str, Any]]:
        return self.request("GET", "list_sessions")["sessions"]

    def close(self) -> None:
        """Unregister the session (an already gone session is fine)."""
        if self.sid is None:
            return
        sid, self.sid = self.sid, None
        try:
            self.post("unregister_session/%s" % sid)
        except (NotFound, Unavailable):
            pass

    def __enter__(self) -> "PluginClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _client_class(path: Optional[str]) -> type:
    """The plugin's client class, by dotted path: the plugin itself is never imported.
    The path comes from the endpoint: only a PluginClient subclass is used, never any
    other callable it may name (``subprocess.Popen``)."""
    if not path:
        return PluginClient
    try:
        cls = import_dotted(path)
    except (ImportError, AttributeError, ValueError) as exc:
        log.warning("client class %s unavailable (%s): using the generic PluginClient", path, exc)
        return PluginClient
    if not (isinstance(cls, type) and issubclass(cls, PluginClient)):
        log.warning("client class %s is not a PluginClient: using the generic PluginClient", path)
        return PluginClient
    return cls


def _socket_of(resp: "requests.Response") -> Optional[socket.socket]:
    """The socket under a streamed response (urllib3 2.x, then 1.x layouts)."""
    raw = getattr(resp, "raw", None)
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock


def _params(params: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Query values with each str as its UTF-8 bytes, surrogates as the bytes they stand
    for (``surrogateescape``, as os.fsencode): requests refuses a str holding a file name
    that is not valid UTF-8, and the plugin side decodes it back to the same str."""
    if not params:
        return params
    return {k: v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for k, v in params.items()}


def _error(resp: "requests.Response") -> OrbitError:
    detail = kind = None
    try:
        body = resp.json()
        if isinstance(body, dict):
            detail, kind = body.get("detail"), body.get("kind")
    except ValueError:
        pass
    if detail is None:
        detail = resp.text[:500] or resp.reason
    return error_for_status(resp.status_code, detail, resp.headers, kind)


class EventListener:
    """Follows ``GET /events`` on a thread; reconnects with ``Last-Event-ID`` by itself."""

    def __init__(self, bridge: BridgeClient):
        self.bridge = bridge
        self.last_id: Optional[str] = None
        self._callbacks: Dict[int, tuple] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._deliver = threading.RLock()     # one delivery at a time: none overtakes another
        self._topology: Optional[Dict[str, Any]] = None
        self._stopping = threading.Event()
        self._response: Optional[requests.Response] = None
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orbit-sse", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop at once: shutting the socket down wakes the blocked reader (closing the
        response from this thread would wait for the next keepalive)."""
        self._stopping.set()
        resp = self._response
        sock = _socket_of(resp) if resp is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5.0)

    def add(self, entry: tuple) -> int:
        """Register ``entry``; a topology callback also gets the latest topology seen, so
        one added after the stream's first snapshot does not wait for the next change."""
        with self._deliver:
            with self._lock:
                self._next += 1
                self._callbacks[self._next] = entry
                handle = self._next
            if entry[0] == "topology" and self._topology is not None:
                self._call(entry[4], self._topology)
            return handle

    def remove(self, handle: int) -> None:
        with self._lock:
            self._callbacks.pop(handle, None)

    def _run(self) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                self._follow()
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.debug("event stream interrupted: %s: %s", type(exc).__name__, exc)
            if self.connected.is_set():
                delay = 0.2         # it was connected: this is a new outage, not a longer one
            self.connected.clear()
            self._stopping.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)

    def _follow(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        resp = self.bridge.request("GET", "events", stream=True, headers=headers,
                                   timeout=(10.0, SSE_READ_TIMEOUT))
        self._response = resp
        self.connected.set()
        buffer = b""
        try:
            for piece in resp.iter_content(chunk_size=None):
                buffer += piece
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self._on_block(block.decode("utf-8", "replace"))
                if self._stopping.is_set():
                    return
        finally:
            resp.close()

    def _on_block(self, block: str) -> None:
        event_id, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "data":
                data.append(value)
        if event_id is not None:
            self.last_id = event_id
        if not data:
            return
        message = json.loads("\n".join(data))
        self._dispatch(message.get("topic"), message.get("data"))

    def _dispatch(self, topic: str, data: Any) -> None:
        with self._deliver:
            if topic == "topology":
                self._topology = data
            with self._lock:
                callbacks = list(self._callbacks.values())
            for kind, endpoint, plugin, ntopic, callback in callbacks:
                if kind == "topology" and topic == "topology":
                    self._call(callback, data)
                elif kind == "note" and topic == "notification" and \
                        endpoint in (None, data.get("endpoint")) and \
                        plugin in (None, data.get("plugin")) and \
                        ntopic in (None, data.get("topic")):
                    self._call(callback, data.get("endpoint"), data.get("plugin"), data.get("topic"),
                               data.get("data"))

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("event callback %r failed", callback)
