"""psij executors, one instance per name, made on first use with ORBIT's settings.

Things psij leaves to its caller are fixed here: its batch executors poll the queue
every 30 s by default (a job looks stuck for half a minute), and they run ``sbatch``,
``squeue`` and ``scancel`` without a timeout (a hung controller would hold an endpoint
worker, or psij's poll thread, for ever). Each batch executor gets ``poll_interval`` and
a ``_run_command`` with ``command_timeout``. The local executor's reaper stalled once a
cancelled re-attached job was gone (``_fix_attached_kill``).
"""
import logging
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ...command import run_bounded
from ...dotted import import_dotted
from ...errors import BadRequest
from . import quicklaunch

log = logging.getLogger("radical_orbit.plugins.psij")

#: seconds between two queue polls of a batch executor (psij's own default is 30)
POLL_INTERVAL = 2.0
#: seconds any scheduler command (sbatch, squeue, scancel, ...) may take
COMMAND_TIMEOUT = 60.0
#: seconds a batch executor tolerates its status command failing before psij marks every
#: job it watches FAILED (psij's default, 2 polls, turns a controller restart into lost jobs)
POLL_ERROR_GRACE = 600.0
#: the executor configuration class of each batch executor psij ships
BATCH_CONFIG = {
    "slurm": "psij.executors.batch.slurm:SlurmExecutorConfig",
    "pbs": "psij.executors.batch.pbs_base:PBSExecutorConfig",
    "pbs_classic": "psij.executors.batch.pbs_base:PBSExecutorConfig",
    "lsf": "psij.executors.batch.lsf:LsfExecutorConfig",
    "cobalt": "psij.executors.batch.cobalt:CobaltExecutorConfig",
}


def executor_names() -> List[str]:
    """The executors psij knows here (its registry; nothing is imported)."""
    import psij
    return sorted(psij.JobExecutor.get_executor_names())


class CommandTimedOut(subprocess.CalledProcessError):
    """A scheduler command did not answer in time (a CalledProcessError, so psij's poll
    thread counts it as a failed poll, not as an internal error)."""


def timed_run_command(timeout: float) -> Callable[[List[str]], str]:
    """psij's ``BatchSchedulerExecutor._run_command`` with a timeout: the same contract
    (stdout, or CalledProcessError with the command's own message as ``output``). It runs
    through ``command.run_bounded``, so a timed-out command's whole process group is killed
    (a wrapper's child holding the pipe cannot hang psij's poll thread)."""

    def run(cmd: List[str]) -> str:
        try:
            # the caller's locale: a batch job inherits the environment sbatch / qsub ran in
            res = run_bounded(list(cmd), timeout, c_locale=False)
        except subprocess.TimeoutExpired:
            raise CommandTimedOut(124, cmd, output="%s did not answer within %.0f s" % (cmd[0], timeout)) from None
        except OSError as exc:
            raise subprocess.CalledProcessError(127, cmd, output="%s: %s" % (cmd[0], exc)) from None
        if res.returncode != 0:
            msg = "\n".join(part.strip() for part in (res.stdout, res.stderr) if part and part.strip())
            raise subprocess.CalledProcessError(res.returncode, cmd, output=msg or "exit code %d" % res.returncode)
        return res.stdout
    return run


def _fix_attached_kill(executor: Any) -> None:
    """psij's reaper kills a cancelled job at every pass until it sees it end, and for a job
    attached by pid (one an earlier run of the endpoint started) its kill raises once the
    process is gone (``psutil.Process(pid)``): the pass stops there, before any job is
    seen ending, so the cancelled job and every local job after it were never reported
    ended, and the reaper thread itself could die. A process already gone is killed.
    (psij loads its executors' modules apart from ``import psij.executors.local``: the
    class is looked up in the module the executor's own class comes from.)"""
    import psutil
    entry_class = getattr(type(executor).attach, "__globals__", {}).get("_AttachedProcessEntry")
    if entry_class is None or not callable(getattr(entry_class, "kill", None)):
        log.info("psij has no _AttachedProcessEntry.kill here: its reaper is left as it is")
        return
    _AttachedProcessEntry = entry_class
    if getattr(_AttachedProcessEntry.kill, "_orbit_fixed", False):
        return
    original = _AttachedProcessEntry.kill

    def kill(self: Any) -> None:
        try:
            original(self)
        except psutil.NoSuchProcess:
            pass
    kill._orbit_fixed = True  # type: ignore[attr-defined]
    _AttachedProcessEntry.kill = kill


class Executors:
    """The psij executors of one plugin instance; all share one status callback."""

    def __init__(self, work_dir: str, on_status: Callable[[Any, Any], None],
                 poll_interval: float = POLL_INTERVAL, command_timeout: float = COMMAND_TIMEOUT,
                 allowed: Optional[List[str]] = None):
        self.work_dir = work_dir
        self.on_status = on_status
        self.poll_interval = float(poll_interval)
        self.command_timeout = float(command_timeout)
        self.allowed = list(allowed) if allowed else None
        self._instances: Dict[str, Any] = {}
        self._lock = threading.Lock()

    def known(self) -> List[str]:
        names = executor_names()
        return [n for n in names if self.allowed is None or n in self.allowed]

    def check_name(self, name: Any) -> str:
        """400 for an executor psij does not have here (or that this instance does not allow)."""
        known = self.known()
        if not isinstance(name, str) or name not in known:
            raise BadRequest("unknown executor %r (known here: %s)" % (str(name)[:40], ", ".join(known)))
        return name

    def get(self, name: str) -> Any:
        """The executor ``name``, made once; 400 when psij cannot make it here (e.g. flux
        without its Python bindings)."""
        self.check_name(name)
        with self._lock:
            executor = self._instances.get(name)
            if executor is None:
                executor = self._instances[name] = self._make(name)
        return executor

    def _make(self, name: str) -> Any:
        import psij
        work = Path(self.work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        try:
            if name in BATCH_CONFIG:
                config_class = import_dotted(BATCH_CONFIG[name])
                config = config_class(work_directory=work, queue_polling_interval=self.poll_interval,
                                      initial_queue_polling_delay=min(self.poll_interval, 0.5),
                                      queue_polling_error_threshold=max(2, int(POLL_ERROR_GRACE / self.poll_interval)))
            else:
                config = psij.JobExecutorConfig(work_directory=work)
            executor = psij.JobExecutor.get_instance(name, config=config)
        except BadRequest:
            raise
        except Exception as exc:
            raise BadRequest("executor %s cannot run here: %s: %s" % (name, type(exc).__name__, exc))
        if name == "local":
            quicklaunch.install(executor)
            _fix_attached_kill(executor)
        if hasattr(executor, "_run_command"):
            executor._run_command = timed_run_command(self.command_timeout)
        executor.set_job_status_callback(self.on_status)
        log.info("psij executor %s ready (work dir %s, poll %.1f s)", name, work, self.poll_interval)
        return executor

    def started(self) -> List[str]:
        with self._lock:
            return sorted(self._instances)

    def stop(self) -> None:
        """Stop the batch executors' poll threads (psij has no call for it; they exit at
        their next wake-up) and drop the status callback."""
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for executor in instances:
            executor.set_job_status_callback(None)
            poller = getattr(executor, "_queue_poll_thread", None)
            if poller is not None:
                poller.done = True
