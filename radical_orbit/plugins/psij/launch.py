"""Launching a child endpoint as a batch job (psij's ``submit_tunneled`` and
``tunnel_status`` routes).

The job runs ``radical-orbit-endpoint-wrapper.sh`` with the child's name, plugin set and
tunnel mode on its command line: nothing secret. URL, certificate and token go in a
private handoff file (``radical_orbit.endpoint.handoff``) whose path alone is in the job's
environment; the child deletes it once read, and this side removes its directory when the
job ends. The launch's state follows the job and the bridge's endpoint list:

    pending    the job is queued
    starting   the job runs; the child has not registered yet
    connected  the child is listed on the bridge (``child`` names it)
    failed     the job ended before the child registered, the child did not register
               within ``timeout`` s of the job starting (its job is then cancelled), the
               scheduler refused the job, or the reverse tunnel could not be opened
    ended      the job ended after the child had connected, or was cancelled

Each change is published as a ``tunnel_status`` notification. For ``tunnel: reverse``
this side owns the ``ssh -R`` to the job's first node (or ``tunnel_node``) once the job
runs, and stops it when the job ends.
"""
import atexit
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import weakref
from typing import Any, Dict, List, Optional

import requests

from ...command import run_bounded
from ...endpoint.handoff import ENV_HANDOFF, current_access, launch_root, remove_dir, write_handoff
from ...errors import BadRequest, Conflict, NotFound, OrbitError, Unavailable
from ...names import is_name, is_reserved
from ...tunnel import Tunnel, parse_via, reverse_argv
from ...tunnel.child import MODES, bridge_hostport

log = logging.getLogger("radical_orbit.plugins.psij.launch")

TOPIC = "tunnel_status"
WRAPPER = "radical-orbit-endpoint-wrapper.sh"
#: seconds a running job's child has to register before the launch fails and the job is cancelled
REGISTER_TIMEOUT = 300.0
MAX_REGISTER_TIMEOUT = 86400.0
#: launches not yet ended (pending, starting, connected) one instance holds at once
#: (``max_launches``); beyond, submit_tunneled is a 503 with Retry-After
MAX_LAUNCHES = 16
#: seconds a refused launch is told to wait
LAUNCH_RETRY_AFTER = 30.0
#: seconds between two looks at the bridge's endpoint list while launches are in flight
MONITOR_INTERVAL = 1.0
#: seconds for one request to the bridge
BRIDGE_TIMEOUT = 10.0
#: where a reverse tunnel's port on the compute node is picked from
REVERSE_PORTS = (20000, 60000)
ACTIVE = ("pending", "starting", "connected")
BODY_FIELDS = ("executor", "attributes", "name", "plugins", "tunnel", "tunnel_via", "tunnel_node",
               "tunnel_identity", "timeout", "setup", "environment", "log_level")
JOB_TERMINAL = ("COMPLETED", "FAILED", "CANCELED")
#: the launch fields kept in ``launches.json``, and how many ended launches it keeps
SAVED = ("name", "executor", "tunnel", "timeout", "directory", "job_id", "native_id", "job_state",
         "state", "reason", "created", "updated", "reverse_port", "tunnel_node", "identity")
KEEP_ENDED = 200
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LAUNCHES_FILE = "launches.json"
#: one comma-separated token of a child's plugin list: a name, a prefix or a glob
PLUGIN_TOKEN = re.compile(r"\A[A-Za-z0-9_*?\[][A-Za-z0-9_.*?\[\]!-]*\Z")

_all: "weakref.WeakSet[Launches]" = weakref.WeakSet()
_make_lock = threading.Lock()


def wrapper_path() -> str:
    """The wrapper of the installation this code runs from: a checkout's scripts/, next
    to the interpreter (venv, system prefix), or on PATH (pip --user)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "..", "..", "..", "scripts", WRAPPER),
                      os.path.join(os.path.dirname(sys.executable), WRAPPER)):
        if os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    found = shutil.which(WRAPPER)
    if found:
        return found
    raise OrbitError("cannot find %s next to %s or on PATH: is ORBIT installed here?"
                     % (WRAPPER, sys.executable), 500)


class Launch:
    """One child endpoint launched as a batch job."""

    def __init__(self, name: str, executor: str, tunnel: str, timeout: float, directory: str):
        self.name = name
        self.executor = executor
        self.tunnel = tunnel
        self.timeout = timeout
        self.directory = directory
        self.job_id: Optional[str] = None
        self.native_id: Optional[str] = None
        self.job_state = "NEW"
        self.state = "pending"
        self.reason = ""
        self.created = self.updated = time.time()
        self.started: Optional[float] = None        # monotonic, when the job began to run
        self.connected_at: Optional[float] = None
        self.reverse: Optional[Tunnel] = None
        self.reverse_port: Optional[int] = None
        self.tunnel_node: Optional[str] = None
        self.identity: Optional[str] = None

    def record(self) -> Dict[str, Any]:
        """What is kept on disk (``launches.json``) so a restarted parent still knows it."""
        return {k: getattr(self, k) for k in SAVED}

    @classmethod
    def from_record(cls, rec: Dict[str, Any]) -> "Launch":
        launch = cls(rec["name"], rec["executor"], rec["tunnel"], rec["timeout"], rec["directory"])
        for key in SAVED:
            if key in rec:
                setattr(launch, key, rec[key])
        if launch.job_state == "ACTIVE":
            launch.started = time.monotonic()       # the registration timer starts again
        return launch

    def describe(self) -> Dict[str, Any]:
        out = {"name": self.name, "state": self.state, "reason": self.reason,
               "child": self.name if self.state == "connected" else None,
               "job_id": self.job_id, "native_id": self.native_id, "job_state": self.job_state,
               "executor": self.executor, "tunnel": self.tunnel, "created": self.created,
               "updated": self.updated}
        if self.reverse is not None:
            out["tunnel_status"] = self.reverse.status()
        return out


class Launches:
    """The launches of one psij plugin instance, watched by one monitor thread that runs
    while any of them is in flight."""

    def __init__(self, plugin: Any):
        self.plugin = plugin
        self.parent = plugin.context.endpoint
        self._launches: Dict[str, Launch] = {}
        self._by_job: Dict[str, Launch] = {}
        self._lock = threading.RLock()
        self._counter = 0
        self._closed = threading.Event()
        self._wake = threading.Event()          # a job changed state: look now, not at the next tick
        self._monitor: Optional[threading.Thread] = None
        self._path = os.path.join(plugin.jobs.state_dir, LAUNCHES_FILE)
        self._load()
        plugin.jobs.watcher.add_listener(self._on_job)
        _all.add(self)

    # -- kept on disk ----------------------------------------------------------------
    def _load(self) -> None:
        try:
            with open(self._path) as f:
                records = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s): earlier launches are forgotten", self._path, exc)
            return
        for rec in records if isinstance(records, list) else ():
            try:
                launch = Launch.from_record(rec)
            except (KeyError, TypeError):
                continue
            self._launches[launch.name.lower()] = launch
            if launch.job_id:
                self._by_job[launch.job_id] = launch

    def _save(self) -> None:
        """Atomically, under the lock; ended launches beyond KEEP_ENDED are dropped."""
        with self._lock:
            launches = sorted(self._launches.values(), key=lambda l: l.created)
            ended = [l for l in launches if l.state not in ACTIVE]
            for old in ended[:max(0, len(ended) - KEEP_ENDED)]:
                self._launches.pop(old.name.lower(), None)
                self._by_job.pop(old.job_id or "", None)
            records = [l.record() for l in launches if l.name.lower() in self._launches]
            tmp = self._path + ".tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(records, f)
                os.replace(tmp, self._path)
            except OSError as exc:
                log.error("cannot write %s: %s", self._path, exc)

    def resume(self) -> None:
        """After a restart (psij has re-attached its jobs): bring each launch in flight up to
        its job's state, and watch the rest again."""
        with self._lock:
            active = [l for l in self._launches.values() if l.state in ACTIVE and l.job_id]
        for launch in active:
            try:
                job = self.plugin.jobs.get(launch.job_id)
            except OrbitError:
                with self._lock:
                    self._set(launch, "failed", "its job is no longer recorded")
                remove_dir(launch.directory)
                continue
            self._job_state(launch, job["state"], job.get("message"))
        if active:
            log.info("watching %d launch(es) again after a restart", len(active))
            self._ensure_monitor()

    # -- routes ----------------------------------------------------------------------
    def submit(self, body: Dict[str, Any], sid: str) -> Dict[str, Any]:
        unknown = sorted(set(body) - set(BODY_FIELDS))
        if unknown:
            raise BadRequest("submit_tunneled takes %s, not %s" % (", ".join(BODY_FIELDS), ", ".join(unknown)))
        tunnel = body.get("tunnel") or "none"
        if tunnel not in MODES:
            raise BadRequest("tunnel must be one of %s, not %r" % (", ".join(MODES), str(tunnel)[:40]))
        timeout = _number(body.get("timeout", REGISTER_TIMEOUT), "timeout", MAX_REGISTER_TIMEOUT)
        plugins = _plugins(body.get("plugins", "default"))
        access = current_access()
        args = ["-p", plugins]
        extra: Dict[str, Any] = {}
        for field in ("tunnel_via", "tunnel_node", "tunnel_identity", "log_level"):
            if body.get(field) is not None:
                _text(body[field], field)
        if tunnel == "forward":
            args += ["--tunnel", "forward"]
            if body.get("tunnel_via"):
                _valid_via(body["tunnel_via"])
                args += ["--tunnel-via", body["tunnel_via"]]
            if body.get("tunnel_identity"):
                args += ["--tunnel-identity", _identity(body["tunnel_identity"])]
        elif tunnel == "reverse":
            if body.get("tunnel_node"):
                _valid_via(body["tunnel_node"])
            if body.get("tunnel_identity"):
                _identity(body["tunnel_identity"])
            extra = {"tunnel": "reverse", "tunnel_port": random.randint(*REVERSE_PORTS)}
        if body.get("log_level"):
            if body["log_level"].upper() not in LOG_LEVELS:
                raise BadRequest("log_level must be one of %s" % ", ".join(LOG_LEVELS))
            args += ["--log-level", body["log_level"].upper()]
        environment = body.get("environment") or {}
        if not isinstance(environment, dict):
            raise BadRequest("environment must be an object of names to strings")
        executor = body.get("executor")
        listed = self._listed()         # an HTTP call: not under the lock psij's watcher needs
        with self._lock:
            limit = getattr(self.plugin, "max_launches", MAX_LAUNCHES)
            if sum(1 for l in self._launches.values() if l.state in ACTIVE) >= limit:
                raise Unavailable("%d launched endpoints are not ended yet (max_launches): try again "
                                  "when one has ended" % limit, retry_after=LAUNCH_RETRY_AFTER)
            name = self._child_name(body.get("name"), listed)
            directory = os.path.join(launch_root(), "%s-%s" % (name, uuid.uuid4().hex[:8]))
            launch = Launch(name, executor or self.plugin.jobs.default_executor, tunnel, timeout, directory)
            launch.tunnel_node, launch.identity = body.get("tunnel_node"), body.get("tunnel_identity")
            launch.reverse_port = extra.get("tunnel_port")
            self._launches[name.lower()] = launch
        handoff = write_handoff(directory, access, **extra)
        wrapper = wrapper_path()
        env = dict(environment)
        env.update({ENV_HANDOFF: handoff, "RADICAL_ORBIT_PREFIX": os.path.dirname(wrapper),
                    # the parent's own token variable, if it had one, must not reach the job
                    "RADICAL_ORBIT_BRIDGE_TOKEN": ""})
        if body.get("setup"):
            env["RADICAL_ORBIT_SETUP"] = _text(body["setup"], "setup")
        spec = {"executable": wrapper, "arguments": ["--name", name] + args, "environment": env,
                "name": "orbit-%s" % name,
                "attributes": body.get("attributes") or {}}
        try:
            job = self.plugin.jobs.submit(spec, executor, None, sid)
        except BaseException:
            with self._lock:
                self._launches.pop(name.lower(), None)
            remove_dir(directory)
            raise
        with self._lock:
            launch.job_id, launch.native_id = job["job_id"], job.get("native_id")
            self._by_job[job["job_id"]] = launch
            current = self.plugin.jobs.get(job["job_id"])
        self._save()
        self._job_state(launch, current["state"], current.get("message"))
        self._ensure_monitor()
        log.info("launched child endpoint %s as %s job %s (tunnel %s)", name, launch.executor,
                 launch.native_id, tunnel)
        return launch.describe()

    def status(self, name: str) -> Dict[str, Any]:
        with self._lock:
            launch = self._launches.get(name.lower())
        if launch is None:
            raise NotFound("no launched endpoint %r here" % name)
        return launch.describe()

    def list(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [l.describe() for l in self._launches.values()]

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        with self._lock:
            launches = list(self._launches.values())
        for launch in launches:
            self._stop_tunnel(launch)

    # -- naming ----------------------------------------------------------------------
    def _child_name(self, wanted: Any, listed: Optional[set]) -> str:
        """``wanted`` checked, or the next free ``<parent>.<n>``; ``listed``: the bridge's
        endpoint names (lower case), None when it could not be asked."""
        listed = listed or set()
        if wanted is not None:
            if not is_name(wanted) or is_reserved(wanted):
                raise BadRequest("invalid child endpoint name %r: must match "
                                 "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}" % str(wanted)[:80])
            known = self._launches.get(wanted.lower())
            if known is not None and known.state in ACTIVE:
                raise Conflict("a launch named %r is already %s" % (wanted, known.state))
            if wanted.lower() in listed:
                raise Conflict("an endpoint named %r is already connected to the bridge" % wanted)
            return wanted
        while True:
            self._counter += 1
            name = "%s.%d" % (self.parent, self._counter)
            if len(name) > 64:
                raise BadRequest("the parent's name is too long for a child name: give 'name'")
            if name.lower() not in self._launches and name.lower() not in listed:
                return name

    # -- following the job -----------------------------------------------------------
    def _on_job(self, record: Dict[str, Any]) -> None:
        """The psij watcher's listener (on psij's thread): keep it short."""
        with self._lock:
            launch = self._by_job.get(record["job_id"])
        if launch is not None:
            if launch.native_id is None and record.get("native_id"):
                launch.native_id = record["native_id"]      # its submit's outcome was not known
            self._job_state(launch, record["state"], record.get("message"))

    def _job_state(self, launch: Launch, job_state: str, message: Optional[str]) -> None:
        with self._lock:
            launch.job_state = job_state
            if job_state == "ACTIVE" and launch.started is None:
                launch.started = time.monotonic()
                self._wake.set()
                if launch.state == "pending":
                    self._set(launch, "starting")
            elif job_state in JOB_TERMINAL and launch.state in ACTIVE:
                if launch.state == "connected" or job_state == "CANCELED":
                    self._set(launch, "ended", "the job ended (%s)" % job_state)
                else:
                    self._set(launch, "failed", self._job_reason(launch, job_state, message))
        if job_state in JOB_TERMINAL:
            self._stop_tunnel(launch)
            remove_dir(launch.directory)

    def _job_reason(self, launch: Launch, job_state: str, message: Optional[str]) -> str:
        """Why a job ended before its child registered: the child's last words if it said any."""
        last = ""
        try:
            status = self.plugin.jobs.status(launch.job_id)
            for stream in ("stderr", "stdout"):
                lines = [l for l in (status[stream].get("data") or "").splitlines() if l.strip()]
                if lines:
                    last = lines[-1].strip()
                    break
        except Exception:
            log.debug("no output for job %s", launch.job_id, exc_info=True)
        text = "the job ended (%s) before the child registered" % job_state
        return "%s: %s" % (text, last or message or "no output")

    def _set(self, launch: Launch, state: str, reason: str = "") -> None:
        if launch.state == state:
            return
        launch.state, launch.reason, launch.updated = state, reason, time.time()
        if state == "connected":
            launch.connected_at = time.monotonic()
        log.info("launch %s: %s%s", launch.name, state, " (%s)" % reason if reason else "")
        self._save()
        self.plugin.notify(TOPIC, launch.describe())

    # -- the monitor thread ----------------------------------------------------------
    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is None or not self._monitor.is_alive():
                self._monitor = threading.Thread(target=self._watch, daemon=True,
                                                 name="psij-launch-%s" % self.plugin.name)
                self._monitor.start()

    def _watch(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(MONITOR_INTERVAL)
            self._wake.clear()
            if self._closed.is_set():
                return
            with self._lock:
                active = [l for l in self._launches.values() if l.state in ACTIVE]
            if not active:
                with self._lock:
                    self._monitor = None
                return
            try:
                self._tick(active)
            except Exception:
                log.exception("watching the launches failed")

    def _tick(self, active: List[Launch]) -> None:
        listed = self._listed()
        for launch in active:
            if launch.started is not None and launch.tunnel == "reverse" and launch.reverse is None:
                self._start_reverse(launch)
            if listed is None:
                continue
            if launch.name.lower() in listed:
                with self._lock:
                    self._set(launch, "connected")
            elif launch.state == "connected":
                with self._lock:
                    self._set(launch, "starting", "the child left the bridge; waiting for it to return")
                    launch.started = time.monotonic()
            elif launch.started is not None and time.monotonic() - launch.started > launch.timeout:
                self._give_up(launch, "the child did not register within %.0f s of the job "
                                      "starting; its job was cancelled" % launch.timeout)

    def _give_up(self, launch: Launch, reason: str) -> None:
        with self._lock:
            self._set(launch, "failed", reason)
        try:
            self.plugin.jobs.cancel(launch.job_id)
        except OrbitError as exc:
            log.error("launch %s: cancelling job %s failed: %s", launch.name, launch.job_id, exc.detail)
        self._stop_tunnel(launch)
        remove_dir(launch.directory)

    def _listed(self) -> Optional[set]:
        """The bridge's endpoint names (lower case), None when it cannot be asked now."""
        try:
            access = current_access()
            headers = {"Authorization": "Bearer %s" % access.token} if access.token else {}
            answer = requests.get(access.url.rstrip("/") + "/endpoints", headers=headers,
                                  verify=access.cert or True, timeout=BRIDGE_TIMEOUT)
            answer.raise_for_status()
            return set(e["name"].lower() for e in answer.json()["endpoints"])
        except (requests.RequestException, ValueError, KeyError, TypeError, OrbitError) as exc:
            log.debug("cannot list the bridge's endpoints: %s", exc)
            return None

    # -- reverse tunnels -------------------------------------------------------------
    def _start_reverse(self, launch: Launch) -> None:
        node = launch.tunnel_node or self._first_node(launch)
        if node is None:
            return                  # asked again at the next tick
        access = current_access()
        host, port = bridge_hostport(access.url)
        argv = reverse_argv(parse_via(node), launch.reverse_port or 0, host, port,
                            identity=launch.identity)
        launch.reverse = Tunnel("reverse-%s" % launch.name, argv,
                                on_fatal=lambda reason: self._tunnel_failed(launch, reason)).start()
        log.info("launch %s: reverse tunnel to %s port %s", launch.name, node, launch.reverse_port)

    def _tunnel_failed(self, launch: Launch, reason: str) -> None:
        self._give_up(launch, reason)

    def _first_node(self, launch: Launch) -> Optional[str]:
        if launch.executor == "local":
            return "127.0.0.1"
        if launch.executor != "slurm" or not launch.native_id:
            return None
        try:
            nodes = run_bounded(["squeue", "-h", "-j", launch.native_id, "-o", "%N"], BRIDGE_TIMEOUT).stdout.strip()
            if not nodes:
                return None
            return run_bounded(["scontrol", "show", "hostnames", nodes], BRIDGE_TIMEOUT).stdout.split()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return None

    def _stop_tunnel(self, launch: Launch) -> None:
        tunnel = launch.reverse
        if tunnel is not None and tunnel.state not in ("stopped", "failed"):
            threading.Thread(target=tunnel.stop, name="stop-%s" % tunnel.name, daemon=True).start()


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 4096 or "\x00" in value:
        raise BadRequest("%s must be a non-empty string" % field)
    return value


def _plugins(value: Any) -> str:
    """A ``-p`` value for the child: names, prefixes or globs between commas; nothing that
    its argv would read as an option."""
    text = _text(value, "plugins")
    if not all(PLUGIN_TOKEN.match(t.strip()) for t in text.split(",") if t.strip()):
        raise BadRequest("plugins must be plugin names (or globs) between commas, not %r" % text[:80])
    return text


def _identity(value: Any) -> str:
    """An ssh key file for ``-i``: a path, not something ssh or argparse would read as an option."""
    text = _text(value, "tunnel_identity")
    if text.startswith("-") or any(c in text for c in "\r\n"):
        raise BadRequest("tunnel_identity must be the path of a key file, not %r" % text[:80])
    return text


def _number(value: Any, field: str, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= maximum:
        raise BadRequest("%s must be a number of seconds above 0 and at most %g" % (field, maximum))
    return float(value)


def _valid_via(text: str) -> bool:
    try:
        parse_via(text)
    except ValueError as exc:
        raise BadRequest(str(exc))
    return True


def launches(plugin: Any) -> Launches:
    """The plugin's launches, made on first use."""
    with _make_lock:
        found = getattr(plugin, "_orbit_launches", None)
        if found is None:
            found = plugin._orbit_launches = Launches(plugin)
        return found


def close(plugin: Any) -> None:
    found = getattr(plugin, "_orbit_launches", None)
    if found is not None:
        found.close()


@atexit.register
def _stop_all_tunnels() -> None:
    """ssh runs in its own session: stop every reverse tunnel when this process exits."""
    for group in list(_all):
        group.close()


__all__ = ["launches", "close", "Launches", "Launch", "wrapper_path"]
