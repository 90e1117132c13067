"""The queue_info plugin: the batch queues, nodes, jobs and allocations of the machine an
endpoint runs on, from SLURM, PBS Pro or (without a scheduler) nothing.

Scheduler commands are slow and shared by everyone on a login node, so every answer is
cached for ``cache_ttl`` seconds (``?force=true`` refetches) and fetched in the background
when the plugin loads; every command has a timeout, and a failing one puts the scheduler's
own message in the error envelope.
"""
import re
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from ...errors import BadRequest, NotFound, OrbitError
from ...host import scheduler_present
from ...plugin import Plugin, PluginContext, PluginSession, Request, route
from . import views
from .backend import Backend, NoneBackend
from .cache import CACHE_TTL, Cache
from .commands import COMMAND_TIMEOUT, Commands, Runner
from .pbs import PbsBackend
from .slurm import SlurmBackend

BACKENDS = {"slurm": SlurmBackend, "pbs": PbsBackend, "none": NoneBackend}
#: ``?user=``: a user name, or ``*`` for every user.
USER_RE = re.compile(r"\A(\*|[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63})\Z")
#: Seconds ``stop`` waits for the prefetch thread (a command in flight may take its timeout).
STOP_JOIN_TIMEOUT = 2.0
#: The kinds of records the plugin caches, each fetched by one backend method.
KINDS = ("partitions", "nodes", "jobs", "associations")


def pick_backend(name: str, runner: Optional[Runner] = None,
                 timeout: float = COMMAND_TIMEOUT) -> Backend:
    """The backend called ``name``; ``auto``: the scheduler whose commands are on PATH."""
    if name == "auto":
        name = scheduler_present() or "none"
    if name not in BACKENDS:
        raise ValueError("queue_info backend must be auto, %s; not %r" % (", ".join(BACKENDS), name))
    return BACKENDS[name](Commands(runner, timeout))


def _positive(config: Dict[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError("queue_info %s must be a number of seconds above 0, not %r" % (key, value))
    return float(value)


class QueueInfoPlugin(Plugin):
    plugin_name = "queue_info"
    version = "1.0.0"
    ui_config = {"title": "Queues", "description": "Batch queues, nodes, jobs and allocations"}

    #: tests replace the command runner to replay captured scheduler output
    runner = None  # type: Optional[Runner]

    @classmethod
    def is_enabled(cls, host: Dict[str, Any]) -> bool:
        """Useful where a batch scheduler is installed; elsewhere it answers with nothing."""
        return bool(host.get("scheduler"))

    def __init__(self, name: str, context: PluginContext):
        super().__init__(name, context)
        config = context.config
        unknown = set(config) - {"backend", "cache_ttl", "command_timeout", "prefetch"}
        if unknown:
            raise ValueError("queue_info does not know the setting(s) %s" % ", ".join(sorted(unknown)))
        self.backend = pick_backend(str(config.get("backend", "auto")), self.runner,
                                    _positive(config, "command_timeout", COMMAND_TIMEOUT))
        self.cache = Cache(_positive(config, "cache_ttl", CACHE_TTL))
        self.prefetch = config.get("prefetch", True) is not False
        self.me = views.current_user()
        self._stopping = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Fetch everything once in the background, so the first page is served from memory."""
        if not self.prefetch or isinstance(self.backend, NoneBackend):
            return
        self._thread = threading.Thread(target=self._prefetch, daemon=True,
                                        name="queue_info-prefetch-%s" % self.name)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT)
        super().stop()

    def _prefetch(self) -> None:
        for kind in KINDS:
            if self._stopping.is_set():
                return
            try:
                self._get(kind)
            except OrbitError as exc:
                self.log.info("queue_info prefetch of %s: %s", kind, exc.detail)
            except Exception:
                self.log.exception("queue_info prefetch of %s failed", kind)

    # -- the cache ---------------------------------------------------------
    def _get(self, kind: str, force: bool = False) -> Tuple[Any, float]:
        """``(records, fetched_at)`` of ``kind``, from the cache or the scheduler."""
        fetch: Callable[[], Any] = getattr(self.backend, kind)
        return self.cache.get(kind, fetch, force)

    def _accounts(self, user: str, force: bool = False) -> Optional[set]:
        """The accounts ``user`` may charge; None when the scheduler keeps no accounts (or
        cannot say), in which case queues are not filtered by account."""
        def fetch() -> Any:
            # the associations' own cache entry when they can be had; a failure (no
            # accounting, slurmdbd down) is kept here for a TTL, so get_info does not wait on
            # a failing sacctmgr every time
            try:
                return self._get("associations", force)[0]
            except OrbitError as exc:
                self.log.debug("no associations for queue filtering: %s", exc.detail)
                return None
        assocs, _ = self.cache.get("accounts", fetch, force)
        return views.accounts_of(user, assocs) if assocs else None

    def _user(self, req: Request) -> str:
        user = req.query.get("user", "").strip() or self.me
        if not USER_RE.match(user):
            raise BadRequest("query parameter user must be a user name or *, not %r" % user[:40])
        return user

    def _answer(self, fetched_at: float, **data: Any) -> Dict[str, Any]:
        """An answer with the backend's name and when its data was fetched (epoch seconds)."""
        data["backend"] = self.backend.name
        data["fetched_at"] = round(fetched_at, 3)
        return data

    # -- routes --------------------------------------------------------------
    @route("GET", "backend", inline=True)
    def get_backend(self, req: Request) -> Dict[str, Any]:
        return {"backend": self.backend.name, "scheduler": scheduler_present(),
                "cache_ttl_s": self.cache.ttl, "command_timeout_s": self.backend.commands.timeout}

    @route("GET", "job_allocation")
    def job_allocation(self, req: Request) -> Dict[str, Any]:
        """The batch job this endpoint runs in (its nodes, CPUs, GPUs), or null outside one."""
        return {"backend": self.backend.name, "allocation": self.backend.job_allocation()}

    @route("GET", "nodelist")
    def nodelist(self, req: Request) -> Dict[str, Any]:
        nodes, fetched = self._get("nodes", req.query_bool("force"))
        return self._answer(fetched, nodes=nodes)

    @route("GET", "get_info/{sid}")
    def get_info(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        force, user = req.query_bool("force"), self._user(req)
        parts, fetched = self._get("partitions", force)
        nodes, nodes_fetched = self._get("nodes", force)
        everything = user == views.ALL_USERS
        who = self.me if everything else user
        queues = views.queues(parts, nodes, who, views.groups_of(who), self._accounts(who, force),
                              everything)
        return self._answer(min(fetched, nodes_fetched), user=user, queues=queues)

    @route("GET", "list_jobs/{sid}/{queue}")
    def list_jobs(self, req: Request, session: PluginSession, queue: str) -> Dict[str, Any]:
        force, user = req.query_bool("force"), self._user(req)
        names = [p["name"] for p in self._get("partitions")[0]]
        if queue not in names:
            raise NotFound("no queue %r here (queues: %s)" % (queue[:64], ", ".join(names) or "none"))
        jobs, fetched = self._get("jobs", force)
        return self._answer(fetched, queue=queue, user=user, jobs=views.jobs_of(jobs, user, queue))

    @route("GET", "list_all_jobs/{sid}")
    def list_all_jobs(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        force, user = req.query_bool("force"), self._user(req)
        jobs, fetched = self._get("jobs", force)
        return self._answer(fetched, user=user, jobs=views.jobs_of(jobs, user))

    @route("GET", "list_allocations/{sid}")
    def list_allocations(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        force, user = req.query_bool("force"), self._user(req)
        assocs, fetched = self._get("associations", force)
        return self._answer(fetched, user=user, allocations=views.allocations_of(assocs, user))

    @route("POST", "cancel/{sid}/{job_id}")
    def cancel(self, req: Request, session: PluginSession, job_id: str) -> Dict[str, Any]:
        result = self.backend.cancel(job_id)
        self.cache.invalidate("jobs")
        result["backend"] = self.backend.name
        return result
