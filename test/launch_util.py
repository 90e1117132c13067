"""Helpers for the launch tests: batch jobs on the test cluster, the wrapper's path,
a scan of every process's command line for a secret."""
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

from orbit_procs import INSTALLED, REPO, wait_for

WRAPPER = (os.path.join(os.path.dirname(sys.executable), "radical-orbit-endpoint-wrapper.sh")
           if INSTALLED else os.path.join(REPO, "scripts", "radical-orbit-endpoint-wrapper.sh"))


def batch_env(home: str, **extra: str) -> Dict[str, str]:
    """What a user's login shell would export to sbatch: no ORBIT variables, no
    PYTHONPATH, this test's python first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RADICAL_ORBIT") and k != "PYTHONPATH"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(RADICAL_ORBIT_HOME=home, PYTHONUNBUFFERED="1", RADICAL_ORBIT_LOG_LVL="DEBUG")
    env.update(extra)
    return env


def sbatch(args: List[str], env: Dict[str, str], cwd: str) -> str:
    out = subprocess.run(["sbatch", "--parsable"] + args, env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def job_state(job_id: str) -> str:
    """The job's state from squeue (``""`` once it left the queue)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 else ""


def scancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30)


def wait_job_done(job_id: str, timeout: float = 30.0) -> str:
    done = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "")
    return wait_for(lambda: (lambda s: (s or "gone") if s in done else None)(job_state(job_id)),
                    timeout, "job %s to end" % job_id, interval=0.2)


class CmdlineScan:
    """Reads every process's /proc/PID/cmdline (and environ of other users' processes is
    not ours to read) over and over in a thread, and remembers any that holds a secret."""

    def __init__(self, secrets: List[str], interval: float = 0.05):
        self.secrets = [s.encode() for s in secrets if s]
        self.interval = interval
        self.hits: List[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmdline-scan", daemon=True)

    def __enter__(self) -> "CmdlineScan":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        line = f.read()
                except OSError:
                    continue
                for secret in self.secrets:
                    if secret in line:
                        self.hits.append(line.replace(b"\0", b" ").decode("utf-8", "replace"))
            self.scans += 1
            self._stop.wait(self.interval)


def files_holding(root: str, secret: str) -> List[str]:
    """Files under ``root`` whose content holds ``secret`` (a left-behind handoff)."""
    found: List[str] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    if secret.encode() in f.read():
                        found.append(path)
            except OSError:
                continue
    return found


def endpoint_names(orbit) -> Optional[List[str]]:
    try:
        return sorted(orbit.get("endpoint/list", "POST").json()["data"]["endpoints"])
    except Exception:
        return None


def reap_children(roots: List[int], timeout: float = 15.0) -> List[int]:
    """Wait for the endpoint processes among the descendants of ``roots`` (a parent's or
    the bridge's local-executor children, which outlive a parent stopped right after its
    cancel) to exit; kill what is left. Returns the pids that had to be killed."""
    import psutil

    def left():
        found = []
        for root in roots:
            try:
                found += [p for p in psutil.Process(root).children(recursive=True)
                          if "radical_orbit.endpoint" in p.cmdline()]
            except psutil.Error:
                continue
        return found
    deadline = time.monotonic() + timeout
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = []
    for proc in left():
        try:
            proc.kill()
            killed.append(proc.pid)
        except psutil.Error:
            pass
    return killed
