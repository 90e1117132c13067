"""Finding a batch job whose submit outcome is not known, by the name ORBIT gave it.

``sbatch`` may time out, or answer "Socket timed out on send/recv operation", after the
controller took the job, and the endpoint may be killed between ``sbatch`` and recording
the native id: the job may be queued and spend allocation hours while ORBIT does not know
its id. Every job of an executor listed in ``FINDERS`` is therefore submitted under a name
unique to ORBIT's job id (``scheduler_name``), and such a job is looked up by that name in
the queue and in accounting (a bounded time window), through ``command.run_bounded``.
"""
import logging
import subprocess
import threading
import time
from typing import Any, Callable, Dict, Optional

from ...command import run_bounded

log = logging.getLogger("radical_orbit.plugins.psij")

#: seconds after its submit a job whose outcome is not known is looked for, by default
SUBMIT_LOOKUP = 900.0
#: seconds before the submit that accounting is searched from (clocks of hosts differ)
CLOCK_SLACK = 300.0
#: seconds between two look-ups of the jobs not found yet, at most
LOOKUP_INTERVAL = 10.0


class NotAnswered(Exception):
    """The scheduler could not be asked (its command failed or timed out)."""


def scheduler_name(job_id: str, name: Optional[str]) -> str:
    """The batch job's name: the spec's own, then ORBIT's job id, so that it is unique."""
    return "%s.orbit-%s" % (name, job_id) if name else "orbit-" + job_id


def _ask(argv: Any, timeout: float) -> str:
    try:
        res = run_bounded(list(argv), timeout)
    except subprocess.TimeoutExpired:
        raise NotAnswered("%s did not answer within %.0f s" % (argv[0], timeout)) from None
    except OSError as exc:
        raise NotAnswered("%s: %s" % (argv[0], exc)) from None
    if res.returncode != 0:
        raise NotAnswered("%s: %s" % (argv[0], (res.stderr or res.stdout).strip()[:300]
                                      or "exit code %d" % res.returncode))
    return res.stdout


def _first_id(text: str) -> Optional[str]:
    ids = [line.split("|")[0].strip() for line in text.splitlines() if line.strip()]
    if len(ids) > 1:
        log.warning("several scheduler jobs carry one ORBIT job's name: %s; following the first", ids)
    return ids[0] if ids else None


def find_slurm(name: str, since: float, timeout: float) -> Optional[str]:
    """The native id of the SLURM job named ``name`` submitted after ``since`` (epoch s), or
    None; NotAnswered when squeue cannot be asked. The queue first (every state it still
    holds), then accounting (skipped, with a log line, where it is not enabled)."""
    found = _first_id(_ask(["squeue", "--noheader", "--states=all", "--name=" + name, "--format=%i"], timeout))
    if found:
        return found
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - CLOCK_SLACK))
    try:
        out = _ask(["sacct", "--noheader", "--parsable2", "-X", "--name=" + name,
                    "--starttime=" + start, "--format=JobID"], timeout)
    except NotAnswered as exc:
        log.info("looking for job %s in SLURM's accounting failed (%s): the queue alone was asked", name, exc)
        return None
    return _first_id(out)


#: executor -> finder(name, since, timeout); their jobs are named by ``scheduler_name``
FINDERS: Dict[str, Callable[[str, float, float], Optional[str]]] = {"slurm": find_slurm}


class Pending:
    """The jobs whose submit outcome is not known yet, each looked up again every
    ``interval`` s on one thread by ``resolve(job_id)`` (True once it is settled: found,
    or given up) until it is settled or ``close``."""

    def __init__(self, resolve: Callable[[str], bool], interval: float):
        self._resolve = resolve
        self.interval = interval
        self._jobs: Dict[str, None] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="psij-lookup", daemon=True)
        self._thread.start()

    def add(self, job_id: str) -> None:
        with self._cond:
            self._jobs[job_id] = None
            self._cond.notify_all()

    def __contains__(self, job_id: str) -> bool:
        """Whether ``job_id`` is still looked up (its look-up attaches it once found)."""
        with self._cond:
            return job_id in self._jobs

    def discard(self, job_id: str) -> None:
        with self._cond:
            self._jobs.pop(job_id, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._closed:                # (close's notify may have come already)
                    self._cond.wait(self.interval)  # the first look-up was the submit's own
                if self._closed:
                    return
                jobs = list(self._jobs)
            for job_id in jobs:
                try:
                    settled = self._resolve(job_id)
                except Exception:
                    log.exception("looking up job %s failed", job_id)
                    settled = False
                if settled:
                    self.discard(job_id)
