"""The psij plugin: submit, watch and cancel jobs through psij-python executors.

Routes (relative to ``/<endpoint>/<instance>/``; the table is in docs/plugins.md):
``POST submit/{sid}``, ``GET status/{sid}/{job_id}``, ``GET list_jobs/{sid}``,
``POST cancel/{sid}/{job_id}``, ``GET executors``. The work is in ``jobs.JobManager``
(``self.jobs``); routes only read the request and shape the answer, so further routes
(the launch routes of ``launch*.py``) hook in by calling ``self.jobs`` and listening with
``self.jobs.watcher.add_listener``.

Settings (``--plugin-config psij='{...}'``): ``poll_interval`` (s between two queue polls
of a batch executor), ``command_timeout`` (s any scheduler command may take),
``executors`` (the executors allowed here; default: all psij has), ``default_executor``
(``local``), ``state_dir`` (job store, work and output files; default
``<config dir>/psij/<endpoint>/<instance>``), ``tail_bytes`` (output in a terminal
notification), ``keep_days`` (a job that ended longer ago is forgotten with its output
files, at load and periodically; 0 keeps every job), ``max_launches`` (launched child
endpoints not yet ended; a further ``submit_tunneled`` is a 503 with Retry-After),
``submit_lookup`` (s after a submit whose outcome is not known, e.g. sbatch timed out, that
the job is looked for by its name; then it is FAILED, not found).
"""
import os
import sys
import threading
from typing import Any, Dict

from ... import config
from ...errors import BadRequest
from ...plugin import Plugin, PluginContext, PluginSession, Request, route
from . import launch, output
from .executors import COMMAND_TIMEOUT, POLL_INTERVAL
from .jobs import KEEP_DAYS, MAX_LIST, JobManager
from .lookup import SUBMIT_LOOKUP

#: the largest output offset a status call accepts (beyond any file a job writes)
MAX_OFFSET = 2 ** 62


class PsijPlugin(Plugin):
    plugin_name = "psij"
    version = "1.0.0"
    session_ttl = 24 * 3600.0
    ui_config = {"title": "Jobs", "description": "Submit, watch and cancel jobs (psij)"}

    def __init__(self, name: str, context: PluginContext):
        super().__init__(name, context)
        settings = context.config
        _import_psij_on_main_thread(self.log)
        state_dir = settings.get("state_dir") or config.path_in_home(
            os.path.join("psij", context.endpoint, name))
        allowed = settings.get("executors")
        if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed)):
            raise ValueError("psij setting 'executors' must be a list of executor names")
        self.jobs = JobManager(
            state_dir, self.durable_notes,
            poll_interval=_positive(settings, "poll_interval", POLL_INTERVAL),
            command_timeout=_positive(settings, "command_timeout", COMMAND_TIMEOUT),
            allowed=allowed, default_executor=str(settings.get("default_executor", "local")),
            tail_bytes=int(_positive(settings, "tail_bytes", output.TAIL_BYTES)),
            keep_days=_not_negative(settings, "keep_days", KEEP_DAYS),
            submit_lookup=_positive(settings, "submit_lookup", SUBMIT_LOOKUP))
        self.jobs.executors.check_name(self.jobs.default_executor)
        self.max_launches = int(_positive(settings, "max_launches", launch.MAX_LAUNCHES))

    def start(self) -> None:
        """Jobs left running by an earlier run are watched again, off the loading thread
        (attaching a batch job may run the scheduler's commands)."""
        threading.Thread(target=self._resume, name="psij-resume-%s" % self.name, daemon=True).start()

    def _resume(self) -> None:
        launches = launch.launches(self)        # listens before psij re-attaches the jobs
        try:
            self.jobs.resume()
        except Exception:
            self.log.exception("resuming the recorded jobs failed")
        launches.resume()

    def stop(self) -> None:
        launch.close(self)
        self.jobs.close()
        super().stop()

    # -- routes ------------------------------------------------------------------------
    @route("GET", "executors")
    def list_executors(self, req: Request) -> Dict[str, Any]:
        return {"executors": self.jobs.executors.known(), "default": self.jobs.default_executor}

    @route("POST", "submit/{sid}")
    def submit(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        """``{job_spec, executor?, key?}`` -> the job; the same key again returns the same job."""
        body = req.json_object()
        unknown = sorted(set(body) - {"job_spec", "executor", "key"})
        if unknown:
            raise BadRequest("submit takes job_spec, executor and key, not %s" % ", ".join(unknown))
        if "job_spec" not in body:
            raise BadRequest("body needs 'job_spec'")
        return self.jobs.submit(body["job_spec"], body.get("executor"), body.get("key"), session.sid)

    @route("GET", "status/{sid}/{job_id}")
    def status(self, req: Request, session: PluginSession, job_id: str) -> Dict[str, Any]:
        """The job, and its stdout / stderr from the given byte offsets (the answer's
        ``stdout.offset`` is where the next call continues)."""
        return self.jobs.status(job_id, req.query_int("stdout_offset", 0, MAX_OFFSET, 0),
                                req.query_int("stderr_offset", 0, MAX_OFFSET, 0))

    @route("GET", "list_jobs/{sid}")
    def list_jobs(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        jobs = self.jobs.list(req.query_int("limit", 1, MAX_LIST, MAX_LIST))
        return {"jobs": jobs, "total": len(jobs)}

    @route("POST", "cancel/{sid}/{job_id}")
    def cancel(self, req: Request, session: PluginSession, job_id: str) -> Dict[str, Any]:
        return self.jobs.cancel(job_id)

    # the launch routes (radical_orbit/plugins/psij/launch.py)
    @route("POST", "submit_tunneled/{sid}")
    def submit_tunneled(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        """Start a child endpoint as a batch job; see launch.py for the body."""
        return launch.launches(self).submit(req.json_object(), session.sid)

    @route("GET", "tunnel_status/{name}")
    def tunnel_status(self, req: Request, name: str) -> Dict[str, Any]:
        """pending, starting, connected (with ``child``), failed (with ``reason``) or ended."""
        return launch.launches(self).status(name)


def _positive(settings: Dict[str, Any], name: str, default: float) -> float:
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("psij setting %r must be a positive number" % name)
    return float(value)


def _not_negative(settings: Dict[str, Any], name: str, default: float) -> float:
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e6:
        raise ValueError("psij setting %r must be a number of at least 0" % name)
    return float(value)


def _import_psij_on_main_thread(log: Any) -> None:
    """psij's local executor learns that a child ended from SIGCHLD, which it can only hook
    when first imported on the main thread; imported elsewhere, every local job's end is
    seen up to 0.1 s late."""
    first = "psij.executors.local" not in sys.modules
    import psij.executors.local  # noqa: F401
    if first and threading.current_thread() is not threading.main_thread():
        log.info("psij loaded off the main thread: local jobs' ends are seen by polling (0.1 s)")
