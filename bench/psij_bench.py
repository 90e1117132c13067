"""psij jobs: submit to COMPLETED notification through the bridge, next to a bare psij call
in this process, in one run.

    python bench/psij_bench.py              # local: 50 samples; SLURM: 8 (when a cluster answers)
    python bench/psij_bench.py --quick

``bench/run_bench.py`` runs ``measure`` as one of its phases (with its bridge); run alone,
this starts its own (all stopped in a finally).

- **ORBIT**: ``PSIJClient.submit_job`` through the bridge (plain HTTP on loopback, token
  auth) to an endpoint ``-p psij``; the clock runs from before the submit until the
  ``job_status`` COMPLETED notification is read from the bridge's SSE stream (the SDK's
  listener, in this process). Every submit carries a key and is recorded in the
  endpoint's sqlite store before it returns.
- **bare psij**: ``JobExecutor.submit`` of the same job spec (same executable, output to
  files) in this process; the clock stops in psij's own status callback for COMPLETED.
- **bare psij, quick launcher** (``local`` only): the same, with the launcher ORBIT's
  endpoint gives the local executor (``radical_orbit/plugins/psij/quicklaunch.py``: psij's
  single launcher without its log subshell), so that ORBIT's own share is visible too.
- A trivial job (``/bin/true``) with the ``local`` executor, samples alternating ORBIT
  and bare psij; then the same with ``slurm`` on the test cluster (both sides poll the
  queue every ``--poll`` s); then 100 ``local`` jobs submitted at once by 16 threads,
  until the last COMPLETED, for both.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import REPO, Procs, median, percentile  # noqa: E402

sys.path.insert(0, REPO)
from radical_orbit.client import BridgeClient  # noqa: E402
from radical_orbit.plugins.psij import quicklaunch  # noqa: E402

import psij  # noqa: E402  (on the main thread: psij's local executor hooks SIGCHLD then)
import psij.executors.local  # noqa: E402,F401

ENDPOINT = "jobs"
#: targets of the issue
TARGET_LOCAL_P50_MS = 10.0
TARGET_SLURM_S = 2.0
BURST = 100
BURST_THREADS = 16
#: queue poll interval (s) of the slurm executor on both sides
POLL = 0.25


def log(msg: str = "") -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def slurm_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(s.rstrip("*") in ("idle", "mix", "alloc") for s in out.stdout.split())


class Completions:
    """job id -> threading.Event set when its COMPLETED (or any terminal) notification is read."""

    def __init__(self) -> None:
        self._events: Dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, job_id: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(job_id, threading.Event())

    def on_note(self, endpoint: str, plugin: str, topic: str, data: Any) -> None:
        if isinstance(data, dict) and data.get("state") in ("COMPLETED", "FAILED", "CANCELED"):
            self.event(data["job_id"]).set()


class BarePsij:
    """The reference: psij in this process, the same job, its callback stops the clock."""

    def __init__(self, work: str):
        self.work = work
        self._done: Dict[str, threading.Event] = {}
        self._executors: Dict[str, Any] = {}

    def executor(self, name: str) -> Any:
        if name not in self._executors:
            if name == "slurm":
                from psij.executors.batch.slurm import SlurmExecutorConfig
                config = SlurmExecutorConfig(work_directory=Path(self.work), queue_polling_interval=POLL,
                                             initial_queue_polling_delay=POLL)
            else:
                config = psij.JobExecutorConfig(work_directory=Path(self.work, name))
            ex = psij.JobExecutor.get_instance(name.split("-")[0], config=config)
            if name == "local-quick":
                quicklaunch.install(ex)
            ex.set_job_status_callback(self._on_status)
            self._executors[name] = ex
        return self._executors[name]

    def _on_status(self, job: Any, status: Any) -> None:
        if status.state.final:
            self._done.setdefault(job.id, threading.Event()).set()

    def submit(self, name: str) -> threading.Event:
        n = len(self._done)
        job = psij.Job(psij.JobSpec(executable="/bin/true", stdout_path=os.path.join(self.work, "%d.out" % n),
                                    stderr_path=os.path.join(self.work, "%d.err" % n),
                                    attributes=psij.JobAttributes(duration=timedelta(minutes=10))))
        done = self._done.setdefault(job.id, threading.Event())
        self.executor(name).submit(job)
        return done


def one_job(submit: Callable[[], threading.Event], timeout: float) -> float:
    t0 = time.perf_counter()
    done = submit()
    if not done.wait(timeout):
        raise RuntimeError("no COMPLETED within %.0f s" % timeout)
    return time.perf_counter() - t0


def burst(submit: Callable[[], threading.Event], timeout: float) -> float:
    """Seconds from the first of BURST submits (by BURST_THREADS threads) to the last completion."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(BURST_THREADS) as pool:
        events = list(pool.map(lambda _: submit(), range(BURST)))
    for ev in events:
        if not ev.wait(max(0.1, timeout - (time.perf_counter() - t0))):
            raise RuntimeError("the burst did not complete within %.0f s" % timeout)
    return time.perf_counter() - t0


def measure(P: Procs, samples: int = 50, slurm_samples: int = 8,
            say: Callable[[str], None] = log) -> Dict[str, float]:
    """Start an endpoint ``-p psij`` on P's bridge and measure; returns the figures."""
    P.start_endpoint(ENDPOINT, "psij", extra=["--plugin-config", 'psij={"poll_interval": %s}' % POLL])
    work = tempfile.mkdtemp(prefix="psij-bench-")
    bare = BarePsij(work)
    f: Dict[str, float] = {}
    with BridgeClient(url=P.url, token=P.token) as bc:
        done = Completions()
        bc.register_callback(done.on_note, endpoint_id=ENDPOINT, plugin_name="psij", topic="job_status")
        bc._listener().connected.wait(10)
        pi = bc.get_endpoint_client(ENDPOINT).get_plugin("psij")

        def orbit(executor: str) -> Callable[[], threading.Event]:
            def submit() -> threading.Event:
                job = pi.submit_job({"executable": "/bin/true"}, executor=executor)
                return done.event(job["job_id"])
            return submit

        def series(executor: str, n: int, timeout: float) -> Dict[str, List[float]]:
            got: Dict[str, List[float]] = {"orbit": [], "bare": [], "quick": []}
            one_job(orbit(executor), timeout)                       # warm every path
            one_job(lambda: bare.submit(executor), timeout)
            if executor == "local":
                one_job(lambda: bare.submit("local-quick"), timeout)
            for _ in range(n):
                got["orbit"].append(one_job(orbit(executor), timeout))
                got["bare"].append(one_job(lambda: bare.submit(executor), timeout))
                if executor == "local":
                    got["quick"].append(one_job(lambda: bare.submit("local-quick"), timeout))
            return got

        local = series("local", samples, 30)
        f["psij_local_orbit_p50_ms"] = median(local["orbit"]) * 1e3
        f["psij_local_orbit_p90_ms"] = percentile(local["orbit"], 90) * 1e3
        f["psij_local_bare_p50_ms"] = median(local["bare"]) * 1e3
        f["psij_local_bare_p90_ms"] = percentile(local["bare"], 90) * 1e3
        say("psij local /bin/true, submit -> COMPLETED notification, %d samples: ORBIT p50 %.2f ms (p90 %.2f), "
            "bare psij p50 %.2f ms (p90 %.2f): %.2fx; target p50 < %.0f ms" % (
                samples, f["psij_local_orbit_p50_ms"], f["psij_local_orbit_p90_ms"], f["psij_local_bare_p50_ms"],
                f["psij_local_bare_p90_ms"], f["psij_local_orbit_p50_ms"] / f["psij_local_bare_p50_ms"],
                TARGET_LOCAL_P50_MS))
        f["psij_local_bare_quick_p50_ms"] = median(local["quick"]) * 1e3
        say("  the same bare psij with ORBIT's quick launcher: p50 %.2f ms; ORBIT / it: %.2fx" % (
            f["psij_local_bare_quick_p50_ms"], f["psij_local_orbit_p50_ms"] / f["psij_local_bare_quick_p50_ms"]))

        orbit_burst = burst(orbit("local"), 120)
        bare_burst = burst(lambda: bare.submit("local"), 120)
        f["psij_burst_orbit_jobs_s"] = BURST / orbit_burst
        f["psij_burst_bare_jobs_s"] = BURST / bare_burst
        say("psij local, %d jobs submitted at once (%d threads) until the last COMPLETED: ORBIT %.0f jobs/s "
            "(%.2f s), bare psij %.0f jobs/s (%.2f s): %.2fx" % (
                BURST, BURST_THREADS, f["psij_burst_orbit_jobs_s"], orbit_burst, f["psij_burst_bare_jobs_s"],
                bare_burst, f["psij_burst_orbit_jobs_s"] / f["psij_burst_bare_jobs_s"]))

        if slurm_samples and slurm_up():
            slurm = series("slurm", slurm_samples, 60)
            f["psij_slurm_orbit_p50_s"] = median(slurm["orbit"])
            f["psij_slurm_bare_p50_s"] = median(slurm["bare"])
            f["psij_slurm_orbit_max_s"] = max(slurm["orbit"])
            say("psij slurm /bin/true, submit -> COMPLETED notification, %d samples, queue polled every %.2f s: "
                "ORBIT p50 %.2f s (max %.2f), bare psij p50 %.2f s: %.2fx; target < %.0f s" % (
                    slurm_samples, POLL, f["psij_slurm_orbit_p50_s"], f["psij_slurm_orbit_max_s"],
                    f["psij_slurm_bare_p50_s"], f["psij_slurm_orbit_p50_s"] / f["psij_slurm_bare_p50_s"],
                    TARGET_SLURM_S))
        else:
            say("psij slurm: skipped (no SLURM cluster answers)")
        pi.close()
    shutil.rmtree(work, ignore_errors=True)
    return f


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20 local and 4 SLURM samples")
    p.add_argument("--samples", type=int, default=None, help="local samples (default 50)")
    p.add_argument("--slurm-samples", type=int, default=None, help="SLURM samples (default 8; 0 skips)")
    p.add_argument("--keep", action="store_true", help="keep the temp config dir (logs)")
    args = p.parse_args()
    P = Procs(keep_home=args.keep)
    try:
        P.start_bridge("-p", "none")
        measure(P, args.samples or (20 if args.quick else 50),
                args.slurm_samples if args.slurm_samples is not None else (4 if args.quick else 8))
    finally:
        P.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
