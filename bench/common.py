"""Shared helpers for the benchmarks: start and stop processes, read /proc, percentiles.

Nothing here imports radical_orbit: the bridge, the endpoints and the reference
server are always separate processes started with their own command lines.
"""
import os
import re
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
sys.path.insert(0, os.path.join(REPO, "test"))
from orbit_procs import Proc, wait_for  # noqa: E402  (one process helper for tests and benchmarks)
URL_LINE = re.compile(r"ORBIT bridge: (\S+)")
PORT_LINE = re.compile(r"REFERENCE PORT (\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 2 ** 20


# -- /proc ------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads, live and exited)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the ")" the fields start at field 3 (state); utime is field 14, stime 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str = "VmRSS") -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    return status_kib(pid, "VmRSS") / 1024.0


class PeakRss:
    """The peak RSS (MiB) of some processes, sampled every ``interval`` seconds while
    the ``with`` block runs; ``before`` holds their RSS at the start."""

    def __init__(self, pids: Dict[str, int], interval: float = 0.01):
        self.pids = pids
        self.interval = interval
        self.peak = {k: rss_mib(p) for k, p in pids.items()}
        self.before = dict(self.peak)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for k, p in self.pids.items():
                try:
                    self.peak[k] = max(self.peak[k], rss_mib(p))
                except OSError:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def thread_count(pid: int) -> int:
    return status_kib(pid, "Threads")


# -- statistics ---------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# -- processes ------------------------------------------------------------------------------
class Procs:
    """Every process a benchmark starts, stopped in reverse order by ``stop_all``."""

    def __init__(self, keep_home: bool = False):
        self.home = tempfile.mkdtemp(prefix="orbit-bench-")
        self.keep_home = keep_home
        self.token = "bench-token-%d" % os.getpid()
        self.procs: List[Proc] = []
        self.url: Optional[str] = None

    def env(self, **extra: str) -> Dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("RADICAL_ORBIT_"):
                del env[key]
        env.update({"RADICAL_ORBIT_HOME": self.home, "PYTHONUNBUFFERED": "1",
                    "RADICAL_ORBIT_BRIDGE_TOKEN": self.token})
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        if self.url:
            env["RADICAL_ORBIT_BRIDGE_URL"] = self.url
        env.update(extra)
        return env

    def spawn(self, argv: List[str], tag: str, **env: str) -> Proc:
        log = os.path.join(self.home, "%s-%d.out" % (tag, time.monotonic_ns()))
        proc = Proc(argv, self.env(**env), log)
        self.procs.append(proc)
        return proc

    def start_reference(self, lean: bool = False) -> "tuple":
        proc = self.spawn([os.path.join(BENCH, "reference_server.py"), "--port", "0"]
                          + (["--lean"] if lean else []), "reference")
        match = wait_for(lambda: PORT_LINE.search(proc.output()) or (not proc.alive() and "exit"),
                         20, "the reference server")
        if match == "exit":
            raise RuntimeError("reference server exited:\n" + proc.output())
        return proc, "http://127.0.0.1:%s" % match.group(1)

    def start_bridge(self, *args: str) -> Proc:
        proc = self.spawn(["-m", "radical_orbit.bridge", "--port", "0"] + list(args), "bridge")
        match = wait_for(lambda: URL_LINE.search(proc.output()) or (not proc.alive() and "exit"),
                         30, "the bridge to print its URL")
        if match == "exit":
            raise RuntimeError("bridge exited:\n" + proc.output())
        self.url = match.group(1)
        wait_for(self._healthy, 30, "the bridge's /health")
        return proc

    def _healthy(self) -> bool:
        try:
            return self.session().get(self.url + "/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def start_endpoint(self, name: str, plugins: str = "sysinfo,echo", wait: bool = True,
                       extra: Sequence[str] = ()) -> Proc:
        proc = self.spawn(["-m", "radical_orbit.endpoint", "--name", name, "-p", plugins] + list(extra),
                          "endpoint-" + name)
        if wait:
            self.wait_listed(name, proc)
        return proc

    def listed(self, session: requests.Session) -> Dict:
        return session.post(self.url + "/endpoint/list", timeout=10).json()["data"]["endpoints"]

    def wait_listed(self, name: str, proc: Optional[Proc] = None, timeout: float = 30.0,
                    interval: float = 0.002) -> float:
        """Poll ``/endpoint/list`` until ``name`` shows up; returns perf_counter() then."""
        s = self.session()

        def check():
            if proc is not None and not proc.alive():
                raise RuntimeError("endpoint %s exited:\n%s" % (name, proc.output()))
            try:
                return name in self.listed(s)
            except (requests.RequestException, ValueError, KeyError):
                return False
        wait_for(check, timeout, "endpoint %s to be listed" % name, interval)
        return time.perf_counter()

    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = "Bearer %s" % self.token
        return s

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                sys.stderr.write("could not stop pid %d: %s\n" % (proc.pid, exc))
        self.procs = []
        if not self.keep_home:
            import shutil
            shutil.rmtree(self.home, ignore_errors=True)


def cpu_ns_threads(pid: int) -> Dict[int, int]:
    """ns on CPU of each live thread (/proc/<pid>/task/<tid>/schedstat, first field)."""
    out = {}
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/schedstat" % (base, tid)) as f:
                out[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


class CpuMeter:
    """CPU used by a process between ``start`` and ``stop``.

    Precise (ns, per-thread schedstat) when no thread exited in between; otherwise
    the clock-tick figure of /proc/<pid>/stat, which counts exited threads too but
    only in 10 ms steps. ``exact`` tells which one ``seconds`` is.
    """

    def __init__(self, pid: int):
        self.pid = pid

    def start(self) -> "CpuMeter":
        self.ticks0 = cpu_seconds(self.pid)
        self.ns0 = cpu_ns_threads(self.pid)
        return self

    def stop(self) -> float:
        ns1 = cpu_ns_threads(self.pid)
        ticks = cpu_seconds(self.pid) - self.ticks0
        lost = set(self.ns0) - set(ns1)
        precise = sum(ns1.values()) - sum(v for k, v in self.ns0.items() if k in ns1)
        precise /= 1e9
        # threads that started and ended in between are invisible to schedstat: trust the
        # ticks if they say clearly more (beyond their 10 ms granularity)
        self.exact = not lost and ticks <= precise + 2.0 / CLK_TCK + 0.02 * precise
        self.seconds = precise if self.exact else ticks
        self.ticks = ticks
        return self.seconds


def duplex_post(url: str, data: bytes, headers: Optional[Dict[str, str]] = None,
                piece: int = 2 ** 20, timeout: float = 120.0) -> Dict[str, object]:
    """POST ``data`` and read the response at the same time (a thread sends, this one
    reads), as a streaming echo needs: a client like ``requests`` sends everything
    before it reads, so beyond the socket buffers (a few MiB) an echo stalls both ways.
    Returns status, bytes received, sha256 of the body, seconds."""
    import hashlib
    import socket
    import threading
    from urllib.parse import urlsplit
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = ["POST %s HTTP/1.1" % (u.path + ("?" + u.query if u.query else "")),
            "Host: %s" % u.netloc, "Content-Length: %d" % len(data), "Connection: close"]
    head += ["%s: %s" % kv for kv in (headers or {}).items()]
    sent_error = []

    def sender():
        try:
            view = memoryview(data)
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            for pos in range(0, len(view), piece):
                sock.sendall(view[pos:pos + piece])
        except OSError as exc:
            sent_error.append(exc)
    t0 = time.perf_counter()
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    f = sock.makefile("rb", buffering=2 ** 16)
    h = hashlib.sha256()
    got, status, error = 0, None, ""
    try:
        status = int(f.readline().split()[1])
        fields = {}
        while True:
            line = f.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            fields[k.strip().lower()] = v.strip()
        if "chunked" in fields.get("transfer-encoding", "").lower():
            while True:
                size = int(f.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    break
                while size:
                    block = f.read(min(size, piece))
                    if not block:
                        raise OSError("connection closed inside a chunk")
                    h.update(block)
                    got += len(block)
                    size -= len(block)
                f.readline()
        else:
            left = int(fields.get("content-length", "0"))
            while left:
                block = f.read(min(left, piece))
                if not block:
                    raise OSError("connection closed with %d bytes missing" % left)
                h.update(block)
                got += len(block)
                left -= len(block)
    except (OSError, ValueError, IndexError) as exc:
        error = str(exc) or exc.__class__.__name__
    elapsed = time.perf_counter() - t0
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
    f.close()
    thread.join(5)
    if sent_error and not error:
        error = "send failed: %s" % sent_error[0]
    return {"status": status, "bytes": got, "sha256": h.hexdigest(), "seconds": elapsed,
            "error": error}
