"""An endpoint inside a batch job stops by itself before the job's time runs out, so it
leaves the tree with a clean goodbye instead of being killed mid-call (scancel's SIGTERM
is handled by the command's signal handler). The scheduler is asked with
``command.run_bounded``: a hung ``squeue`` is killed with its process group."""
import logging
import os
import subprocess
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional

from ..command import Result, run_bounded

log = logging.getLogger("radical_orbit.endpoint.jobend")

DEFAULT_MARGIN = 30.0       # s before the job's end time at which the endpoint stops
RECHECK_INTERVAL = 300.0    # s between asking the scheduler again (a time limit can change)
COMMAND_TIMEOUT = 10.0      # s for squeue / qstat
FAILURE_RETRY = 30.0        # s before asking again after a look at the end time failed

#: ``run(argv, timeout) -> Result`` (tests replay answers through it)
Runner = Callable[[List[str], float], Result]


def _run(argv: List[str], run: Runner) -> Optional[str]:
    try:
        out = run(argv, COMMAND_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return None
    return out.stdout if out.returncode == 0 else None


def _local_time(text: str, fmt: str) -> Optional[float]:
    try:
        return time.mktime(time.strptime(text.strip(), fmt))
    except ValueError:
        return None


def _slurm_end(job_id: str, env: Mapping[str, str], run: Runner) -> Optional[float]:
    raw = env.get("SLURM_JOB_END_TIME")        # SLURM 23.02+ sets it in the job
    if raw and raw.isdigit():
        return float(raw)
    out = _run(["squeue", "-h", "-j", job_id, "-o", "%e"], run)
    return _local_time(out, "%Y-%m-%dT%H:%M:%S") if out else None


def _pbs_end(job_id: str, run: Runner) -> Optional[float]:
    out = _run(["qstat", "-f", job_id], run)
    if not out:
        return None
    fields: Dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep:
            fields[key] = value
    start = _local_time(fields.get("stime", ""), "%a %b %d %H:%M:%S %Y")
    walltime = fields.get("Resource_List.walltime", "")
    try:
        h, m, s = (int(p) for p in walltime.split(":"))
    except ValueError:
        return None
    return start + h * 3600 + m * 60 + s if start is not None else None


def job_end_time(env: Optional[Mapping[str, str]] = None, run: Runner = run_bounded) -> Optional[float]:
    """When this process's batch job runs out of time (epoch s); None outside a job,
    for a job without a limit, or when the scheduler does not say."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        return _slurm_end(env["SLURM_JOB_ID"], env, run)
    if env.get("PBS_JOBID"):
        return _pbs_end(env["PBS_JOBID"], run)
    return None


class JobEndWatch:
    """Calls ``stop`` ``margin`` s before the job's end time; asks the scheduler again
    every few minutes. One daemon thread, stopped with ``close``."""

    def __init__(self, stop: Callable[[], None], margin: float = DEFAULT_MARGIN,
                 end_time: Callable[[], Optional[float]] = job_end_time,
                 clock: Callable[[], float] = time.time):
        self._stop, self.margin, self._end_time, self._clock = stop, margin, end_time, clock
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="job-end-watch", daemon=True)

    def start(self) -> "JobEndWatch":
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        said = None
        while not self._closed.is_set():
            try:
                end = self._end_time()
            except Exception:       # odd scheduler output must not end the watch
                log.exception("cannot tell when the batch job ends; asking again in %.0f s",
                              FAILURE_RETRY)
                self._closed.wait(FAILURE_RETRY)
                continue
            if end is None:
                if said is None:
                    log.info("in a batch job whose end time is unknown: the endpoint stops on "
                             "the scheduler's SIGTERM")
                    said = "unknown"
                self._closed.wait(RECHECK_INTERVAL)
                continue
            if end != said:
                log.info("the batch job ends at %s: the endpoint stops %.0f s before",
                         time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end)), self.margin)
                said = end
            left = end - self.margin - self._clock()
            if left <= 0:
                log.info("the batch job's time is running out: stopping")
                self._stop()
                return
            self._closed.wait(min(left, RECHECK_INTERVAL))
