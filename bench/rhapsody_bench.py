"""Task throughput: no-op Python function tasks through the bridge with the SDK, next to
the same tasks on a bare rhapsody session in one process, in one run.

    python bench/rhapsody_bench.py                 # 10,000 tasks, 3 rounds
    python bench/rhapsody_bench.py --tasks 20000 --rounds 5

``bench/run_bench.py`` runs ``measure`` as one of its phases (on its bridge); run alone,
this starts its own bridge (all stopped in a finally).

- ORBIT: an endpoint ``-p rhapsody`` (the ``concurrent`` backend, its default thread
  pool) and, in this process, ``RhapsodyClient.map(noop, range(N))``: the function
  pickled once, the arguments in one pickle per batch of 5,000, msgpack bodies, waiting
  driven by the batched ``task_status`` notifications, every return value fetched back
  and unpickled. Timed from the first submit to the last result in hand.
- bare: a child process (``--bare``) that makes a rhapsody ``Session`` on a
  ``ConcurrentExecutionBackend`` with the same pool size, submits the same N tasks as
  dicts, waits for them and reads their return values. No pickling, no network.
Rounds alternate the two; the best round of each is reported (the machine is shared:
the best is the least disturbed). CPU seconds of bridge and endpoint per round are read
from /proc.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict

import cloudpickle

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import REPO, Procs, cpu_seconds  # noqa: E402

sys.path.insert(0, REPO)
from radical_orbit import BridgeClient  # noqa: E402

ENDPOINT = "rhapsody-bench"
TASKS = 10000
TARGET_TASKS_S = 2000.0
TARGET_RATIO = 0.5


if __name__ != "__main__":
    # imported by run_bench.py: the endpoint cannot import this module, so noop travels by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def log(msg: str = "") -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def noop(x: int) -> int:
    return x


def bare_round(n: int) -> float:
    """Seconds for n no-op tasks on a bare rhapsody session in this process."""
    import rhapsody
    from rhapsody.backends import ConcurrentExecutionBackend

    async def run() -> float:
        backend = await ConcurrentExecutionBackend()
        session = rhapsody.Session(backends=[backend], work_dir=os.environ.get("TMPDIR", "/tmp"))
        try:
            start = time.perf_counter()
            tasks = [{"uid": "bare.%d" % i, "function": noop, "args": (i,), "kwargs": {}} for i in range(n)]
            await session.submit_tasks(tasks)
            await session.wait_tasks(tasks)
            values = [t["return_value"] for t in tasks]
            elapsed = time.perf_counter() - start
            assert values == list(range(n)), "bare rhapsody returned wrong values"
            return elapsed
        finally:
            await session.close()
    return asyncio.run(run())


def bare_in_child(n: int) -> float:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--bare", str(n)],
                         capture_output=True, text=True, timeout=300)
    lines = [l for l in out.stdout.splitlines() if l.startswith("BARE ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError("bare rhapsody round failed:\n%s\n%s" % (out.stdout[-2000:], out.stderr[-4000:]))
    return float(lines[-1].split()[1])


def measure(P: Procs, bridge_pid: int, n: int = TASKS, rounds: int = 3,
            say: Callable[[str], None] = log) -> Dict[str, object]:
    """Start an endpoint ``-p rhapsody`` on P's bridge, run the rounds, return figures."""
    endpoint = P.start_endpoint(ENDPOINT, "rhapsody")
    fig: Dict[str, object] = {"rhapsody_tasks": n}
    try:
        with BridgeClient(url=P.url, token=P.token) as bc:
            bc.wait_for_endpoint(ENDPOINT, timeout=30)
            with bc.get_endpoint_client(ENDPOINT).get_plugin("rhapsody") as rc:
                rc.map(noop, range(100), timeout=60)          # warm: imports, pool threads, SSE
                best = {"orbit": float("inf"), "bare": float("inf")}
                cpu = {"bridge": float("inf"), "endpoint": float("inf")}
                for i in range(rounds):
                    for which in (["orbit", "bare"] if i % 2 == 0 else ["bare", "orbit"]):
                        if which == "bare":
                            seconds = bare_in_child(n)
                        else:
                            c0 = {"bridge": cpu_seconds(bridge_pid), "endpoint": cpu_seconds(endpoint.pid)}
                            start = time.perf_counter()
                            values = rc.map(noop, range(n), timeout=300)
                            seconds = time.perf_counter() - start
                            if values != list(range(n)):
                                raise RuntimeError("wrong return values through the bridge")
                            if seconds < best["orbit"]:
                                cpu = {"bridge": cpu_seconds(bridge_pid) - c0["bridge"],
                                       "endpoint": cpu_seconds(endpoint.pid) - c0["endpoint"]}
                        best[which] = min(best[which], seconds)
                        say("  round %d %-5s %6.3f s  %7.0f tasks/s" % (i + 1, which, seconds, n / seconds))
    finally:
        P.stop(endpoint)
    fig["rhapsody_orbit_tasks_s"] = n / best["orbit"]
    fig["rhapsody_bare_tasks_s"] = n / best["bare"]
    fig["rhapsody_cpu_bridge_us"] = cpu["bridge"] / n * 1e6
    fig["rhapsody_cpu_endpoint_us"] = cpu["endpoint"] / n * 1e6
    say("rhapsody: %d no-op function tasks, best of %d: through the bridge %.0f tasks/s, bare session "
        "%.0f tasks/s (%.2fx); CPU per task in that round: bridge %.0f us, endpoint %.0f us"
        % (n, rounds, fig["rhapsody_orbit_tasks_s"], fig["rhapsody_bare_tasks_s"],
           fig["rhapsody_orbit_tasks_s"] / fig["rhapsody_bare_tasks_s"],
           fig["rhapsody_cpu_bridge_us"], fig["rhapsody_cpu_endpoint_us"]))
    return fig


def met(fig: Dict[str, object]) -> bool:
    orbit, bare = float(fig["rhapsody_orbit_tasks_s"]), float(fig["rhapsody_bare_tasks_s"])  # type: ignore[arg-type]
    return orbit >= TARGET_TASKS_S and orbit / bare >= TARGET_RATIO


def main() -> int:
    p = argparse.ArgumentParser(description="rhapsody tasks/s through the bridge vs a bare rhapsody session")
    p.add_argument("--tasks", type=int, default=TASKS, help="tasks per round (default %d)" % TASKS)
    p.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    p.add_argument("--bare", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args()
    if args.bare is not None:
        print("BARE %.6f" % bare_round(args.bare))
        return 0
    P = Procs(keep_home=args.keep)
    try:
        bridge = P.start_bridge("-p", "none")
        fig = measure(P, bridge.pid, args.tasks, args.rounds)
    finally:
        P.stop_all()
    log(json.dumps(fig))
    log("target: >= %.0f tasks/s and >= %.1fx the bare session: %s"
        % (TARGET_TASKS_S, TARGET_RATIO, "met" if met(fig) else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
