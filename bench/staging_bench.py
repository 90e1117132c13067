"""Staging throughput: a file streamed up and down through the bridge with the SDK,
next to a plain local copy and a direct stdlib HTTP transfer on loopback, in one run.

    python bench/staging_bench.py                 # 512 MiB, 2 rounds
    python bench/staging_bench.py --size-mib 1024 --rounds 3

``bench/run_bench.py`` runs ``measure`` as one of its phases (with its reference server
and bridge); run alone, this starts its own (all stopped in a finally).

Every transfer reads the source file and writes a new file in the same temp dir,
fsynced at the end (the endpoint's upload fsyncs, so the references do too):
- local copy: read and write 1 MiB blocks in this process;
- direct HTTP: ``requests`` (1 MiB pieces, Content-Length) to and from
  bench/reference_server.py (a stdlib ThreadingHTTPServer in its own process: ``PUT``
  writes the body to a file, ``GET`` sends the file);
- ORBIT: ``StagingClient.put`` / ``get`` through the bridge (plain HTTP on loopback, token
  auth) to an endpoint ``-p staging``, sha256 computed on both sides and compared (the
  download is of the file just uploaded, whose digest the endpoint keeps: it is checked
  against that, not hashed again as it is sent).
Run alone, the bridge hosts staging (``-p staging``) and a second endpoint takes a copy
from the first through it (``StagingClient.copy``: download pumped into upload by the
bridge). Rounds alternate ORBIT and the reference; the best round of each is reported (the
machine is shared: the best is the least disturbed). Peak RSS of bridge and endpoint is
sampled during the ORBIT transfers.
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import REPO, CpuMeter, MiB, PeakRss, Procs  # noqa: E402

sys.path.insert(0, REPO)
from radical_orbit import protocol  # noqa: E402
from radical_orbit.client import BridgeClient  # noqa: E402
from radical_orbit.websocket import mask_in_place  # noqa: E402

ENDPOINT = "stage"
OTHER = "stage2"
BLOCK = MiB
#: targets of the issue: through the bridge against the direct transfer, and absolute
TARGET_RATIO = 0.5
TARGET_MB_S = 300.0
#: small proxied calls to the same endpoint during a transfer: p50 at most this (ms)
TARGET_PROBE_MS = 20.0
#: s between two small calls of the prober
PROBE_PAUSE = 0.02
SHM = "/dev/shm"


def log(msg: str = "") -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def make_file(path: str, size: int) -> None:
    """Incompressible bytes (one random MiB repeated with a counter, cheap to make)."""
    seed = os.urandom(BLOCK)
    with open(path, "wb") as f:
        for i in range(size // BLOCK):
            f.write(i.to_bytes(8, "little") + seed[8:])
        f.write(seed[:size % BLOCK])


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Body:
    """A file as a request body with a known length, read in 1 MiB pieces."""

    def __init__(self, path: str):
        self.path = path
        self.size = os.path.getsize(path)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        with open(self.path, "rb") as f:
            for piece in iter(lambda: f.read(BLOCK), b""):
                yield piece


def local_copy(src: str, dst: str) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for piece in iter(lambda: fin.read(BLOCK), b""):
            fout.write(piece)
        fout.flush()
        os.fsync(fout.fileno())


def http_put(session: requests.Session, ref_url: str, src: str, dst: str) -> None:
    r = session.put("%s/file" % ref_url, params={"path": dst}, data=_Body(src), timeout=(10, 120))
    if r.status_code != 200 or r.json()["size"] != os.path.getsize(src):
        raise RuntimeError("direct PUT answered %s: %s" % (r.status_code, r.text[:200]))


def http_get(session: requests.Session, ref_url: str, src: str, dst: str) -> None:
    with session.get("%s/file" % ref_url, params={"path": src}, stream=True, timeout=(10, 120)) as r:
        if r.status_code != 200:
            raise RuntimeError("direct GET answered %s" % r.status_code)
        with open(dst, "wb") as f:
            for piece in r.iter_content(BLOCK):
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())


def probed(st, func: Callable[[], object], seconds: float = 0.0) -> List[float]:
    """Seconds of each small call (``roots``, through the bridge to the same endpoint)
    made every PROBE_PAUSE s on another thread while ``func`` runs (or, without one, for
    ``seconds``): how long a user's small request waits behind a bulk transfer."""
    times: List[float] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            st.roots()
            times.append(time.perf_counter() - started)
            stop.wait(PROBE_PAUSE)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if func is not None:
            func()
        else:
            stop.wait(seconds)
    finally:
        stop.set()
        thread.join(60)
    return times


def timed(func: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def timed_cpu(func: Callable[[], object], pids: Dict[str, int]) -> Tuple[float, Dict[str, float]]:
    """Wall seconds of ``func`` and the CPU seconds each of ``pids`` used meanwhile."""
    meters = {name: CpuMeter(pid).start() for name, pid in pids.items()}
    seconds = timed(func)
    return seconds, {name: meter.stop() for name, meter in meters.items()}


def step_costs(reps: int = 64) -> Dict[str, float]:
    """ms per MiB of the steps a transfer through the bridge repeats for every byte,
    measured in this process on pieces of the protocol's chunk (best of 5): masking
    (RFC 6455: the endpoint masks what it sends, the bridge unmasks it), sha256
    (endpoint and client), one memory copy."""
    chunk = protocol.DEFAULT_SETTINGS["chunk"]
    buffer = bytearray(os.urandom(chunk))
    key = os.urandom(4)
    steps = {"mask": lambda: mask_in_place(buffer, key), "sha256": lambda: hashlib.sha256(buffer),
             "copy": lambda: bytes(buffer)}
    costs = {}
    for name, step in steps.items():
        best = min(timed(lambda: [step() for _ in range(reps)]) for _ in range(5))
        costs[name] = best / reps * 1e3 * MiB / chunk
    return costs


def default_dir() -> str:
    """tmpfs when there is one: the figures are then ORBIT's, not the disk's."""
    return SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK) else tempfile.gettempdir()


def measure(P: Procs, ref_url: str, bridge_pid: int, size_mib: int = 512, rounds: int = 2,
            directory: str = "", say: Callable[[str], None] = log,
            copies: bool = False, ref_pid: Optional[int] = None) -> Dict[str, object]:
    """Start an endpoint ``-p staging`` on P's bridge, rooted at a fresh work directory,
    move one file each way, return figures. ``copies`` (the bridge hosts staging): also a
    second endpoint, and a copy from the first to it through the bridge. ``ref_pid``: the
    reference server's, for its CPU per MiB."""
    work = tempfile.mkdtemp(prefix="orbit-staging-bench-", dir=directory or default_dir())
    size = size_mib * MiB
    fig: Dict[str, object] = {"staging_size_mib": size_mib, "staging_dir": work}
    rooted = ["--plugin-config", "staging=%s" % json.dumps({"roots": [work]})]
    endpoint = P.start_endpoint(ENDPOINT, "staging", extra=rooted)
    other = P.start_endpoint(OTHER, "staging", extra=rooted) if copies else None
    try:
        src = os.path.join(work, "source.bin")
        make_file(src, size)
        fsync_file(src)
        with BridgeClient(url=P.url, token=P.token) as bc:
            bc.wait_for_endpoint(ENDPOINT, timeout=30)
            st = bc.get_endpoint_client(ENDPOINT).get_plugin("staging")
            ref = requests.Session()
            best: Dict[str, float] = {}
            cpu: Dict[str, Dict[str, float]] = {}
            pids = {"bridge": bridge_pid, "endpoint": endpoint.pid}
            watch = PeakRss(pids)
            orbit_pids = dict(pids, client=os.getpid())
            ref_pids = dict({"server": ref_pid} if ref_pid else {}, client=os.getpid())

            def keep(name: str, seconds: float) -> None:
                best[name] = min(best.get(name, seconds), seconds)

            def keep_cpu(name: str, func: Callable[[], object], procs: Dict[str, int]) -> None:
                """Time ``func``; the CPU of ``procs`` is kept from the best round."""
                seconds, used = timed_cpu(func, procs)
                if seconds < best.get(name, float("inf")):
                    cpu[name] = used
                keep(name, seconds)

            def fresh(name: str) -> str:
                path = os.path.join(work, name)
                if os.path.exists(path):
                    os.unlink(path)
                return path
            with watch:
                for i in range(rounds):
                    order = ["orbit", "ref"] if i % 2 == 0 else ["ref", "orbit"]
                    keep("local", timed(lambda: local_copy(src, fresh("local.bin"))))
                    for which in order:
                        if which == "ref":
                            keep_cpu("ref_up", lambda: http_put(ref, ref_url, src, fresh("ref.bin")), ref_pids)
                            keep_cpu("ref_down", lambda: http_get(ref, ref_url, src, fresh("ref-down.bin")),
                                     ref_pids)
                        else:
                            up = fresh("orbit.bin")
                            keep_cpu("orbit_up", lambda: st.put(src, up, progress=lambda d, t: None), orbit_pids)
                            down = fresh("orbit-down.bin")
                            keep_cpu("orbit_down", lambda: st.get(up, down, progress=lambda d, t: None),
                                     orbit_pids)
                            if copies:
                                keep("orbit_copy", timed(lambda: st.copy(ENDPOINT, src, OTHER, fresh("copied.bin"))))
            # small calls on their own, then during one more transfer each way (apart from the
            # timed rounds, whose figures the probes would disturb)
            with bc.get_endpoint_client(ENDPOINT).get_plugin("staging") as small:
                probes = {"idle": probed(small, None, 2.0),
                          "up": probed(small, lambda: st.put(src, fresh("probed.bin"), progress=lambda d, t: None)),
                          "down": probed(small, lambda: st.get(src, fresh("probed-down.bin"),
                                                               progress=lambda d, t: None))}
            for name, times in probes.items():
                fig["staging_probe_%s_ms" % name] = statistics.median(times) * 1e3
                fig["staging_probe_%s_n" % name] = len(times)
            st.close()
        for name, seconds in best.items():
            fig["staging_%s_mb_s" % name] = size / seconds / 1e6
        for name, used in cpu.items():
            for proc, seconds in used.items():
                fig["staging_%s_cpu_%s_ms_mib" % (name, proc)] = seconds * 1e3 / size_mib
        for step, ms in step_costs().items():
            fig["staging_step_%s_ms_mib" % step] = ms
        fig["staging_peak_bridge"], fig["staging_peak_endpoint"] = watch.peak["bridge"], watch.peak["endpoint"]
        fig["staging_before_bridge"], fig["staging_before_endpoint"] = watch.before["bridge"], watch.before["endpoint"]
        f = fig
        say("staging, %d MiB file in %s, best of %d rounds (MB/s = 10^6 bytes/s):"
            % (size_mib, os.path.dirname(work), rounds))
        say("  local file copy          %7.0f MB/s" % f["staging_local_mb_s"])
        for way, label in (("up", "upload  "), ("down", "download")):
            o, r = f["staging_orbit_%s_mb_s" % way], f["staging_ref_%s_mb_s" % way]
            say("  %s: orbit %7.0f MB/s, direct HTTP %7.0f MB/s (%.2fx; local copy %.2fx)"
                % (label, o, r, o / r, o / f["staging_local_mb_s"]))
        if copies:
            say("  copy %s -> %s through the bridge: %7.0f MB/s" % (ENDPOINT, OTHER, f["staging_orbit_copy_mb_s"]))
        for way, label in (("up", "upload  "), ("down", "download")):
            say("  CPU ms per MiB, %s: orbit %s; direct HTTP %s" % (
                label, _cpu_line(f, "orbit_" + way, ("bridge", "endpoint", "client")),
                _cpu_line(f, "ref_" + way, ("server", "client"))))
        say("  per MiB here: RFC 6455 mask %.2f ms (endpoint masks, bridge unmasks), sha256 %.2f ms "
            "(endpoint unless kept, and client), memory copy %.2f ms" % (
                f["staging_step_mask_ms_mib"], f["staging_step_sha256_ms_mib"], f["staging_step_copy_ms_mib"]))
        say("  small calls to the same endpoint, p50: %.1f ms during the upload, %.1f ms during the "
            "download; idle %.1f ms (%.1fx, %.1fx)" % (
                f["staging_probe_up_ms"], f["staging_probe_down_ms"], f["staging_probe_idle_ms"],
                f["staging_probe_up_ms"] / f["staging_probe_idle_ms"],
                f["staging_probe_down_ms"] / f["staging_probe_idle_ms"]))
        say("  peak RSS: bridge %.1f MiB (%.1f before), endpoint %.1f MiB (%.1f before)" % (
            f["staging_peak_bridge"], f["staging_before_bridge"], f["staging_peak_endpoint"],
            f["staging_before_endpoint"]))
        return fig
    finally:
        shutil.rmtree(work, ignore_errors=True)
        P.stop(endpoint)
        if other is not None:
            P.stop(other)


def _cpu_line(f: Dict[str, object], name: str, procs: Tuple[str, ...]) -> str:
    parts = [(p, f.get("staging_%s_cpu_%s_ms_mib" % (name, p))) for p in procs]
    parts = [(p, v) for p, v in parts if v is not None]
    return " + ".join("%s %.2f" % (p, v) for p, v in parts) + " = %.2f" % sum(v for _, v in parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=512, help="file size (default 512 MiB)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of each transfer (default 2)")
    p.add_argument("--dir", default="", help="where the files go (default: /dev/shm if writable, "
                                             "else the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp RADICAL_ORBIT_HOME (logs)")
    args = p.parse_args()
    P = Procs(keep_home=args.keep)
    try:
        ref, ref_url = P.start_reference()
        bridge = P.start_bridge("-p", "staging")
        fig = measure(P, ref_url, bridge.pid, args.size_mib, args.rounds, args.dir, copies=True,
                      ref_pid=ref.pid)
    finally:
        P.stop_all()
    for way in ("up", "down"):
        o, r = fig["staging_orbit_%s_mb_s" % way], fig["staging_ref_%s_mb_s" % way]
        met = o / r >= TARGET_RATIO and o >= TARGET_MB_S
        log("target %s: >= %.1fx direct and >= %.0f MB/s: %s" % (way, TARGET_RATIO, TARGET_MB_S,
                                                                   "met" if met else "NOT met"))
        log("target small calls during the %s: p50 < %.0f ms: %s" % (
            way, TARGET_PROBE_MS, "met" if fig["staging_probe_%s_ms" % way] < TARGET_PROBE_MS else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
