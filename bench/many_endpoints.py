"""N endpoints registering at once, without N Python processes.

Opens N WebSocket connections to ``<bridge>/register`` from one process with
``websocket-client`` (a thread pool), and on each performs the registration
handshake the way ``radical_orbit/endpoint/link.py`` does: a msgpack HELLO built
by ``radical_orbit.protocol.encode`` with a unique name, then the WELCOME. The
connections stay open and a selector thread answers the bridge's pings, so they
look like idle endpoints to the bridge.

Measured:
- time from the start until all N names appear in ``POST /endpoint/list``
  (polled every ``--poll`` s from another thread), and until the last WELCOME;
- meanwhile, with ``--probe ENDPOINT``, a real endpoint's proxied
  ``GET /<ENDPOINT>/echo/ping`` latency, from a separate (forked) process so that
  it does not share this process's GIL: p50/p99 before and during the storm.

Usage:
    python bench/many_endpoints.py --url http://127.0.0.1:PORT [--token T] [-n 1000]
        [--probe NAME] [--quick]
The token defaults to RADICAL_ORBIT_BRIDGE_TOKEN. The last line printed is
``RESULT {json}`` for bench/run_bench.py.
"""
import argparse
import json
import multiprocessing
import os
import queue
import resource
import selectors
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import websocket

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from radical_orbit import protocol  # noqa: E402
from common import percentile  # noqa: E402

#: what a fake endpoint announces: one plugin, shaped like a real plugin table
FAKE_PLUGINS = {"echo": {"type": "echo", "namespace": "echo", "version": "1.0.0", "enabled": True,
                         "ui_config": {"title": "Echo", "description": "Diagnostics: echo requests and bodies"}}}


def raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ws_register_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return "%s://%s/register" % ({"http": "ws", "https": "wss"}[scheme], rest.rstrip("/"))


# -- the probe: a separate process hitting a real endpoint ------------------------------
def probe(url: str, token: str, endpoint: str, stop, out) -> None:
    s = requests.Session()
    if token:
        s.headers["Authorization"] = "Bearer %s" % token
    target = "%s/%s/echo/ping" % (url, endpoint)
    samples, errors = [], 0
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            ok = s.get(target, timeout=60).status_code == 200
        except requests.RequestException:
            ok = False
        t1 = time.perf_counter()
        if ok:
            samples.append((t0, t1 - t0))
        else:
            errors += 1
            time.sleep(0.01)
    out.send((samples, errors))
    out.close()


# -- the fake endpoints ----------------------------------------------------------------------
class PingAnswerer(threading.Thread):
    """Reads every registered socket when it is readable: pings get their pong (by
    websocket-client's recv_data_frame), anything else is dropped."""

    def __init__(self):
        super().__init__(name="ping-answerer", daemon=True)
        self.sel = selectors.DefaultSelector()
        self.incoming: "queue.Queue" = queue.Queue()
        self.stopping = threading.Event()
        self.pings = 0
        self.closed = 0

    def add(self, ws) -> None:
        self.incoming.put(ws)

    def run(self) -> None:
        while not self.stopping.is_set():
            while True:
                try:
                    ws = self.incoming.get_nowait()
                except queue.Empty:
                    break
                self.sel.register(ws.sock, selectors.EVENT_READ, ws)
            for key, _ in self.sel.select(0.05):
                ws = key.data
                try:
                    opcode, _ = ws.recv_data_frame(True)
                    if opcode == websocket.ABNF.OPCODE_PING:
                        self.pings += 1
                    elif opcode == websocket.ABNF.OPCODE_CLOSE:
                        raise websocket.WebSocketConnectionClosedException()
                except (websocket.WebSocketException, OSError, AttributeError):
                    self.closed += 1
                    try:
                        self.sel.unregister(key.fileobj)
                    except (KeyError, ValueError, OSError):
                        pass


def register(url: str, token: str, name: str):
    """Connect, HELLO, WELCOME; returns (socket, perf_counter at WELCOME)."""
    ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
    headers = ["Authorization: Bearer %s" % token] if token else []
    ws.connect(url, header=headers, timeout=60, suppress_origin=True)
    try:
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    info = {"type": "compute", "role": "compute", "hostname": "fake-%s" % name,
            "python_version": "3", "version": "bench"}
    hello = {"name": name, "resume": None, "pid": os.getpid(), "endpoint": info,
             "plugins": FAKE_PLUGINS}
    ws.send(protocol.encode(protocol.HELLO, **hello), websocket.ABNF.OPCODE_BINARY)
    reply = protocol.decode(ws.recv())
    if reply["k"] != protocol.WELCOME:
        ws.abort()
        raise RuntimeError("%s: bridge answered %s: %s" % (name, reply["k"], reply.get("detail")))
    return ws, time.perf_counter()


def _close(ws) -> None:
    try:
        ws.close(timeout=0.5)
    except Exception:
        ws.abort()


def run(url: str, token: str, n: int, threads: int, probe_endpoint: str, poll: float,
        timeout: float, baseline: float, prefix: str) -> dict:
    raise_nofile(n + 256)
    result = {"n": n, "threads": threads}
    stop_probe, probe_proc, probe_pipe = None, None, None
    if probe_endpoint:
        ctx = multiprocessing.get_context("fork")   # fork now, before any thread exists
        stop_probe = ctx.Event()
        probe_pipe, child_end = ctx.Pipe(duplex=False)
        probe_proc = ctx.Process(target=probe, args=(url, token, probe_endpoint, stop_probe, child_end),
                                 daemon=True)
        probe_proc.start()
        child_end.close()
        time.sleep(baseline)           # a baseline of the probe before the storm

    names = ["%s%04d" % (prefix, i) for i in range(n)]
    wanted = set(names)
    session = requests.Session()
    if token:
        session.headers["Authorization"] = "Bearer %s" % token
    answerer = PingAnswerer()
    answerer.start()
    socks, welcomes, failures = [], [], []
    lock = threading.Lock()
    ws_url = ws_register_url(url)
    listed_at = {}

    def one(name):
        try:
            ws, t = register(ws_url, token, name)
        except Exception as exc:
            with lock:
                failures.append("%s: %s" % (name, exc))
            return
        answerer.add(ws)
        with lock:
            socks.append(ws)
            welcomes.append(t)

    def lister():
        while time.perf_counter() - t_start < timeout:
            try:
                eps = session.post(url + "/endpoint/list", timeout=30).json()["data"]["endpoints"]
                seen = len(wanted.intersection(eps))
                listed_at["max_seen"] = max(listed_at.get("max_seen", 0), seen)
                if seen == n:
                    listed_at["t"] = time.perf_counter()
                    return
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(poll)

    t_start = time.perf_counter()
    watcher = threading.Thread(target=lister, name="lister", daemon=True)
    watcher.start()
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        list(pool.map(one, names))
        t_welcomed = time.perf_counter()
        watcher.join(max(0.0, timeout - (time.perf_counter() - t_start)) + 1)
        t_end = time.perf_counter()
        result["registered"] = len(socks)
        result["failures"] = len(failures)
        if failures:
            result["first_failures"] = failures[:3]
        result["all_welcomed_s"] = t_welcomed - t_start
        result["all_listed_s"] = (listed_at["t"] - t_start) if "t" in listed_at else None
        result["max_listed"] = listed_at.get("max_seen", 0)
        storm_end = listed_at.get("t", t_end)
        if probe_proc is not None:
            stop_probe.set()
            samples, errors = probe_pipe.recv() if probe_pipe.poll(30) else ([], -1)
            probe_proc.join(10)
            before = [lat for t0, lat in samples if t0 < t_start]
            during = [lat for t0, lat in samples if t_start <= t0 <= storm_end]
            result.update({
                "probe_before_n": len(before), "probe_before_p50_ms": percentile(before, 50) * 1e3,
                "probe_before_p99_ms": percentile(before, 99) * 1e3,
                "probe_during_n": len(during), "probe_during_p50_ms": percentile(during, 50) * 1e3,
                "probe_during_p99_ms": percentile(during, 99) * 1e3,
                "probe_during_max_ms": max(during) * 1e3 if during else float("nan"),
                "probe_errors": errors})
    finally:
        pool.shutdown(wait=True)
        if probe_proc is not None and probe_proc.is_alive():
            stop_probe.set()
            probe_proc.join(5)
            if probe_proc.is_alive():
                probe_proc.terminate()
        answerer.stopping.set()
        answerer.join(2)
        result["pings_answered"] = answerer.pings
        t_close = time.perf_counter()
        closer = ThreadPoolExecutor(max_workers=min(threads, 32))
        list(closer.map(_close, socks))
        closer.shutdown(wait=True)
        result["close_s"] = time.perf_counter() - t_close
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the bridge URL, http://host:port")
    p.add_argument("--token", default=os.environ.get("RADICAL_ORBIT_BRIDGE_TOKEN", ""))
    p.add_argument("-n", type=int, default=None, help="endpoints (default 1000; 200 with --quick)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=64, help="registration threads (default 64)")
    p.add_argument("--probe", default="", help="a real endpoint with the echo plugin to probe")
    p.add_argument("--poll", type=float, default=0.05, help="s between /endpoint/list polls")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--baseline", type=float, default=1.0, help="s of probe before the storm")
    p.add_argument("--prefix", default="fake%d-" % os.getpid())
    args = p.parse_args()
    n = args.n if args.n is not None else (200 if args.quick else 1000)
    result = run(args.url.rstrip("/"), args.token, n, args.threads, args.probe, args.poll,
                 args.timeout, args.baseline if args.probe else 0.0, args.prefix)
    for key, value in result.items():
        print("%-22s %s" % (key, round(value, 4) if isinstance(value, float) else value))
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
