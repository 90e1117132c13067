"""ORBIT performance benchmark: every figure next to a reference measured in the same run.

    python bench/run_bench.py            # full run, about 30 s on 2 cores
    python bench/run_bench.py --quick    # smaller samples, under a minute

Processes (all started here, all stopped in a finally):
- the reference: bench/reference_server.py, a bare stdlib ThreadingHTTPServer
  (HTTP/1.1 keep-alive, Nagle off; ``--lean-reference``: head and body in one
  send), in its own process;
- the bridge: ``python -m radical_orbit.bridge --port 0 -p none`` (plain HTTP on
  loopback, token auth on, no bridge-hosted plugins);
- the measured endpoint: ``python -m radical_orbit.endpoint --name bench -p echo``;
- short-lived endpoints ``-p sysinfo`` for start-to-listed and idle RSS;
- an endpoint ``-p staging`` for the file transfers (bench/staging_bench.py);
- an endpoint ``-p psij`` for jobs, next to bare psij in this process (bench/psij_bench.py);
- an endpoint ``-p rhapsody`` for task throughput, next to a bare rhapsody session in a
  child process (bench/rhapsody_bench.py);
- client processes: bench/load_client.py (throughput), bench/many_endpoints.py
  (1000 registrations plus a latency probe).
The single-connection latency, echo and SSE clients run in this process.

The benchmark prints figures; it asserts nothing (see docs/performance.md).
"""
import argparse
import hashlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import (BENCH, REPO, CpuMeter, MiB, PeakRss, Procs, duplex_post, median,  # noqa: E402
                    percentile, rss_mib, thread_count)
import rhapsody_bench  # noqa: E402
import staging_bench  # noqa: E402

ENDPOINT = "bench"


def source_state() -> str:
    """Which code is measured: the commit, and whether radical_orbit/ has local changes."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "radical_orbit"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
        return "%s%s" % (head or "?", " + %d changed files under radical_orbit/" % len(dirty) if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"


def log(msg: str = "") -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def ms(seconds: float) -> float:
    return seconds * 1e3


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.P = Procs(keep_home=args.keep)
        self.fig: Dict[str, object] = {}

    # ------------------------------------------------------------------------------------
    def run(self) -> Dict[str, object]:
        P = self.P
        log("ORBIT benchmark %s, %s, Python %s, %d cores, %s" % (
            "--quick" if self.quick else "(full)", platform.node(), platform.python_version(),
            os.cpu_count() or 0, time.strftime("%Y-%m-%d %H:%M:%S")))
        log("load average at start: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
        log("source: %s" % source_state())
        log("reference: stdlib ThreadingHTTPServer, %s" % (
            "lean (head and body in one hand-built send)" if self.args.lean_reference
            else "plain (send_response/send_header/end_headers, then the body), Nagle off"))
        self.ref, self.ref_url = P.start_reference(self.args.lean_reference)
        self.bridge = P.start_bridge("-p", "none")
        self.url = P.url
        time.sleep(1.0)
        self.fig["idle_rss_bridge"] = rss_mib(self.bridge.pid)
        self.fig["idle_rss_ref"] = rss_mib(self.ref.pid)
        log("idle RSS: bridge -p none %.1f MiB (reference server %.1f MiB)"
            % (self.fig["idle_rss_bridge"], self.fig["idle_rss_ref"]))

        self.phase(self.start_to_listed)
        self.endpoint = P.start_endpoint(ENDPOINT, "echo")
        self.s = P.session()
        self.ref_s = requests.Session()
        self.phase(self.latency_and_cpu)
        self.phase(self.throughput)
        self.phase(self.echo_1mib)
        self.phase(self.echo_64mib)
        self.phase(self.sse)
        if not self.args.skip_staging:
            self.phase(self.staging)
        if not self.args.skip_psij:
            self.phase(self.psij)
        if not self.args.skip_rhapsody:
            self.phase(self.rhapsody)
        if not self.args.skip_many:
            self.phase(self.many_endpoints)
        return self.fig

    def phase(self, func) -> None:
        """One figure failing (an error, a hang cut by a timeout) must not hide the others."""
        try:
            func()
        except Exception as exc:
            self.fig.setdefault("failed", []).append("%s: %s" % (func.__name__, exc))
            log("!! %s FAILED: %s: %s" % (func.__name__, exc.__class__.__name__, exc))

    # -- start to listed, idle RSS of an endpoint with sysinfo --------------------------------
    def start_to_listed(self) -> None:
        times = []
        s = self.P.session()
        for i in range(5):
            name = "start%d" % i
            t0 = time.perf_counter()
            proc = self.P.start_endpoint(name, "sysinfo", wait=False)
            t1 = self.P.wait_listed(name, proc, interval=0.002)
            times.append(t1 - t0)
            if i < 4:
                self.P.stop(proc)
                # wait until the bridge dropped it, so the next start sees a quiet bridge
                deadline = time.monotonic() + 10
                while name in self.P.listed(s) and time.monotonic() < deadline:
                    time.sleep(0.01)
        time.sleep(1.5)
        self.fig["idle_rss_endpoint"] = rss_mib(proc.pid)
        self.fig["idle_threads_endpoint"] = thread_count(proc.pid)
        self.P.stop(proc)
        self.fig["start_to_listed"] = median(times)
        log("start to listed (-p sysinfo): median %.3f s of %s" % (
            self.fig["start_to_listed"], ", ".join("%.3f" % t for t in times)))
        log("idle RSS: endpoint -p sysinfo %.1f MiB (%d threads)" % (
            self.fig["idle_rss_endpoint"], self.fig["idle_threads_endpoint"]))

    # -- single-client latency and server CPU per request ---------------------------------------
    def latency_and_cpu(self) -> None:
        total = 500 if self.quick else 2000
        block = 100
        orbit = "%s/%s/echo/ping" % (self.url, ENDPOINT)
        ref = "%s/echo/ping" % self.ref_url

        def get(session, url):
            t0 = time.perf_counter()
            r = session.get(url, timeout=30)
            t1 = time.perf_counter()
            if r.status_code != 200 or not r.json().get("pong"):
                raise RuntimeError("%s answered %s: %s" % (url, r.status_code, r.text[:200]))
            return t1 - t0

        for _ in range(200 if self.quick else 500):     # warm up both
            get(self.s, orbit)
            get(self.ref_s, ref)
        lat_o, lat_r = [], []
        meters = self._meters()
        done = 0
        while done < total:
            n = min(block, total - done)
            # alternate which goes first in each pair of blocks, to cancel drift
            order = ((self.s, orbit, lat_o), (self.ref_s, ref, lat_r))
            if (done // block) % 2:
                order = order[::-1]
            for session, url, out in order:
                for _ in range(n):
                    out.append(get(session, url))
            done += n
        d = {k: m.stop() for k, m in meters.items()}
        exact = all(m.exact for m in meters.values())
        f = self.fig
        f["p50_orbit"], f["p99_orbit"] = ms(percentile(lat_o, 50)), ms(percentile(lat_o, 99))
        f["p50_ref"], f["p99_ref"] = ms(percentile(lat_r, 50)), ms(percentile(lat_r, 99))
        f["cpu_bridge"] = ms(d["bridge"] / total)
        f["cpu_endpoint"] = ms(d["endpoint"] / total)
        f["cpu_orbit"] = f["cpu_bridge"] + f["cpu_endpoint"]
        f["cpu_ref"] = ms(d["ref"] / total)
        log("small GET, one client, %d requests each, interleaved in blocks of %d:" % (total, block))
        log("  orbit     p50 %.3f ms  p99 %.3f ms" % (f["p50_orbit"], f["p99_orbit"]))
        log("  reference p50 %.3f ms  p99 %.3f ms   ratio p50 %.2fx" % (
            f["p50_ref"], f["p99_ref"], f["p50_orbit"] / f["p50_ref"]))
        log("  server CPU per request: bridge %.3f + endpoint %.3f = %.3f ms; reference %.3f ms (%.2fx)%s"
            % (f["cpu_bridge"], f["cpu_endpoint"], f["cpu_orbit"], f["cpu_ref"],
               f["cpu_orbit"] / f["cpu_ref"], "" if exact else " [clock ticks: 10 ms steps]"))

    def _meters(self) -> Dict[str, CpuMeter]:
        return {"bridge": CpuMeter(self.bridge.pid).start(), "endpoint": CpuMeter(self.endpoint.pid).start(),
                "ref": CpuMeter(self.ref.pid).start()}

    # -- throughput: 4 client threads in a separate process -------------------------------------
    def throughput(self) -> None:
        duration = 2.0 if self.quick else 5.0
        order = ["ref", "orbit"] if self.quick else ["ref", "orbit", "orbit", "ref"]
        urls = {"orbit": "%s/%s/echo/ping" % (self.url, ENDPOINT), "ref": "%s/echo/ping" % self.ref_url}
        got = {"orbit": [], "ref": []}
        cpu = {"orbit": 0.0, "ref": 0.0}
        for which in order:
            meters = self._meters()
            out = subprocess.run([sys.executable, os.path.join(BENCH, "load_client.py"), urls[which],
                                  "--threads", "4", "--duration", str(duration), "--token", self.P.token],
                                 capture_output=True, text=True, timeout=duration + 120)
            c = {k: m.stop() for k, m in meters.items()}
            if out.returncode != 0:
                raise RuntimeError("load client failed:\n" + out.stderr)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            got[which].append(res)
            if which == "orbit":
                cpu["orbit"] += c["bridge"] + c["endpoint"]
            else:
                cpu["ref"] += c["ref"]
            log("  4 threads, %.0f s, %-5s: %7.0f req/s  p50 %.2f ms  errors %d" % (
                duration, which, res["rps"], res["p50_ms"], res["errors"]))
        f = self.fig
        for which in ("orbit", "ref"):
            n = sum(r["requests"] for r in got[which])
            f["rps_" + which] = n / sum(r["seconds"] for r in got[which])
            f["cpu_load_" + which] = ms(cpu[which] / max(n, 1))
            f["errors_" + which] = sum(r["errors"] for r in got[which])
        log("throughput, 4 client threads: orbit %.0f req/s, reference %.0f req/s (%.2fx); "
            "server CPU per request under load: orbit %.3f ms, reference %.3f ms" % (
                f["rps_orbit"], f["rps_ref"], f["rps_orbit"] / f["rps_ref"],
                f["cpu_load_orbit"], f["cpu_load_ref"]))

    # -- 1 MiB echo --------------------------------------------------------------------------------
    def echo_1mib(self) -> None:
        runs = 10 if self.quick else 30
        data = os.urandom(MiB)
        orbit = "%s/%s/echo/echo" % (self.url, ENDPOINT)
        ref = "%s/echo/echo" % self.ref_url
        headers = {"Content-Type": "application/octet-stream"}

        def echo(session, url):
            t0 = time.perf_counter()
            r = session.post(url, data=data, headers=headers, timeout=60)
            body = r.content
            t1 = time.perf_counter()
            if r.status_code != 200 or body != data:
                raise RuntimeError("1 MiB echo through %s: status %s, %d bytes back, equal %s"
                                   % (url, r.status_code, len(body), body == data))
            return t1 - t0

        echo(self.s, orbit), echo(self.ref_s, ref)   # warm up
        lat_o, lat_r = [], []
        for i in range(runs):
            pair = ((self.s, orbit, lat_o), (self.ref_s, ref, lat_r))
            for session, url, out in (pair if i % 2 == 0 else pair[::-1]):
                out.append(echo(session, url))
        f = self.fig
        f["echo1_orbit"], f["echo1_ref"] = ms(median(lat_o)), ms(median(lat_r))
        log("1 MiB POST echo, %d runs: orbit p50 %.1f ms, reference p50 %.1f ms (%.1fx)" % (
            runs, f["echo1_orbit"], f["echo1_ref"], f["echo1_orbit"] / f["echo1_ref"]))

    # -- 64 MiB echo with bounded memory ---------------------------------------------------------
    def echo_64mib(self) -> None:
        """64 MiB through the streaming echo, sent and read at the same time (see
        common.duplex_post: a send-then-read client such as requests stalls any
        streaming echo, the reference's included, once the socket buffers are full)."""
        size = 64 * MiB
        data = os.urandom(size)
        sent_hash = hashlib.sha256(data).hexdigest()
        ctype = {"Content-Type": "application/octet-stream"}
        ref = duplex_post(self.ref_url + "/echo/echo", data, ctype, timeout=120)
        watch = PeakRss({"bridge": self.bridge.pid, "endpoint": self.endpoint.pid}, interval=0.005)
        headers = dict(ctype, Authorization="Bearer %s" % self.P.token)
        with watch:
            # a stall of 15 s (no byte read) counts as a failure
            res = duplex_post("%s/%s/echo/echo" % (self.url, ENDPOINT), data, headers, timeout=15)
        peak, before = watch.peak, watch.before
        del data
        ok = res["status"] == 200 and res["bytes"] == size and res["sha256"] == sent_hash
        ref_ok = ref["status"] == 200 and ref["bytes"] == size and ref["sha256"] == sent_hash
        f = self.fig
        f["echo64_ok"], f["echo64_s"], f["echo64_ref_s"] = ok, res["seconds"], ref["seconds"]
        f["echo64_ref_ok"] = ref_ok
        f["echo64_peak_bridge"], f["echo64_peak_endpoint"] = peak["bridge"], peak["endpoint"]
        f["echo64_before_bridge"], f["echo64_before_endpoint"] = before["bridge"], before["endpoint"]
        log("64 MiB POST echo (sent and read at once): %s in %.2f s (%.0f MiB/s each way): status %s, "
            "%d bytes back, sha256 %s%s" % (
                "OK" if ok else "FAILED", res["seconds"], 64 / res["seconds"], res["status"], res["bytes"],
                "equal" if res["sha256"] == sent_hash else "DIFFERENT",
                ", error: " + res["error"] if res["error"] else ""))
        log("  reference: %s in %.2f s" % ("OK" if ref_ok else "FAILED " + ref["error"], ref["seconds"]))
        log("  peak RSS during it: bridge %.1f MiB (%.1f before), endpoint %.1f MiB (%.1f before)" % (
            peak["bridge"], before["bridge"], peak["endpoint"], before["endpoint"]))

    # -- SSE notification latency -----------------------------------------------------------------
    def sse(self) -> None:
        samples = 50 if self.quick else 200
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(("GET /events?topic=bench HTTP/1.1\r\nHost: %s:%s\r\nAccept: text/event-stream\r\n"
                      "Authorization: Bearer %s\r\n\r\n" % (host, port, self.P.token)).encode())
        arrivals: Dict[int, float] = {}
        cond = threading.Condition()
        state = {"topology": False, "stop": False}

        def reader():
            buf = b""
            while not state["stop"]:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                t = time.perf_counter()
                if not chunk:
                    return
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if not line.startswith(b"data: "):
                        continue
                    event = json.loads(line[6:])
                    with cond:
                        if event["topic"] == "topology":
                            state["topology"] = True
                        elif event["topic"] == "notification":
                            arrivals[event["data"]["data"]["i"]] = t
                        cond.notify_all()
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            with cond:
                if not cond.wait_for(lambda: state["topology"], 10):
                    raise RuntimeError("no topology snapshot on /events")
            url = "%s/%s/echo/notify/bench" % (self.url, ENDPOINT)
            lat, rtt = [], []
            for i in range(-20, samples):        # the first 20 are a warm-up
                t0 = time.perf_counter()
                r = self.s.post(url, json={"i": i}, timeout=30)
                t1 = time.perf_counter()
                if r.status_code != 200:
                    raise RuntimeError("notify answered %s: %s" % (r.status_code, r.text[:200]))
                with cond:
                    if not cond.wait_for(lambda: i in arrivals, 10):
                        raise RuntimeError("notification %d never arrived on /events" % i)
                if i >= 0:
                    lat.append(arrivals[i] - t0)
                    rtt.append(t1 - t0)
        finally:
            state["stop"] = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            thread.join(5)
        f = self.fig
        f["sse_p50"], f["sse_p99"] = ms(percentile(lat, 50)), ms(percentile(lat, 99))
        f["notify_rtt_p50"] = ms(percentile(rtt, 50))
        log("SSE: POST notify sent -> event read, %d samples: p50 %.3f ms, p99 %.3f ms "
            "(the POST's own round trip p50 %.3f ms)" % (samples, f["sse_p50"], f["sse_p99"],
                                                         f["notify_rtt_p50"]))

    # -- staging: a file up and down through the bridge (bench/staging_bench.py) ------------------
    def staging(self) -> None:
        size = self.args.staging_mib or (256 if self.quick else 512)
        self.fig.update(staging_bench.measure(self.P, self.ref_url, self.bridge.pid, size,
                                              1 if self.quick else 2, say=log, ref_pid=self.ref.pid))

    # -- psij: job submit to COMPLETED notification, next to bare psij (bench/psij_bench.py) --------
    def psij(self) -> None:
        import psij_bench    # here, on the main thread: psij's local executor hooks SIGCHLD then
        self.fig.update(psij_bench.measure(self.P, 20 if self.quick else 50, 4 if self.quick else 8, say=log))
    # -- rhapsody: no-op function tasks through the bridge and on a bare session -----------------
    def rhapsody(self) -> None:
        self.fig.update(rhapsody_bench.measure(self.P, self.bridge.pid, rhapsody_bench.TASKS,
                                               2 if self.quick else 3, say=log))

    # -- many endpoints registering at once -------------------------------------------------------
    def many_endpoints(self) -> None:
        n = self.args.n or (200 if self.quick else 1000)
        cmd = [sys.executable, os.path.join(BENCH, "many_endpoints.py"), "--url", self.url,
               "--token", self.P.token, "-n", str(n), "--probe", ENDPOINT,
               "--baseline", "0.5" if self.quick else "1.0"]
        threads0 = thread_count(self.bridge.pid)
        rss0 = rss_mib(self.bridge.pid)
        peak = {"rss": rss0, "threads": threads0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak["rss"] = max(peak["rss"], rss_mib(self.bridge.pid))
                    peak["threads"] = max(peak["threads"], thread_count(self.bridge.pid))
                except OSError:
                    pass
                stop.wait(0.02)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        finally:
            stop.set()
            sampler.join()
        lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            raise RuntimeError("many_endpoints.py failed:\n%s\n%s" % (out.stdout[-2000:], out.stderr[-4000:]))
        res = json.loads(lines[-1][7:])
        self.fig["many"] = res
        self.fig["many_rss_bridge_before"] = rss0
        self.fig["many_rss_bridge_peak"] = peak["rss"]
        self.fig["many_threads_bridge_peak"] = peak["threads"]
        log("%d endpoints registering at once (%d threads, one process): %d registered, %d failed; "
            "all welcomed after %.2f s, all listed after %s s" % (
                n, res["threads"], res["registered"], res["failures"], res["all_welcomed_s"],
                "%.2f" % res["all_listed_s"] if res["all_listed_s"] is not None else "NEVER"))
        log("  proxied GET meanwhile: p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d samples); before the "
            "storm p50 %.2f ms" % (res["probe_during_p50_ms"], res["probe_during_p99_ms"],
                                   res["probe_during_max_ms"], res["probe_during_n"],
                                   res["probe_before_p50_ms"]))
        log("  bridge: RSS %.1f MiB before, peak %.1f MiB with them connected (%.0f KiB per "
            "endpoint); threads %d before, peak %d" % (
                rss0, peak["rss"], (peak["rss"] - rss0) * 1024 / max(n, 1), threads0, peak["threads"]))


# -- the final table ----------------------------------------------------------------------------------
def _x(a: float, b: float) -> str:
    return "%.2fx" % (a / b) if b else "-"


def _staging(f, way):
    """orbit and direct HTTP MB/s of one direction; met: >= 0.5x the direct transfer and >= 300 MB/s."""
    o, r = f["staging_orbit_%s_mb_s" % way], f["staging_ref_%s_mb_s" % way]
    return ("%.0f MB/s" % o, "%.0f MB/s" % r, _x(o, r),
            o / r >= staging_bench.TARGET_RATIO and o >= staging_bench.TARGET_MB_S)


def _probe(f, way):
    """p50 of small calls to the endpoint during a transfer, against the same calls idle."""
    o, r = f["staging_probe_%s_ms" % way], f["staging_probe_idle_ms"]
    return ("%.1f ms" % o, "%.1f ms idle" % r, _x(o, r), o < staging_bench.TARGET_PROBE_MS)


def _psij_slurm(f):
    if "psij_slurm_orbit_p50_s" not in f:
        return ("skipped (no SLURM)", "", "", None)
    o, r = f["psij_slurm_orbit_p50_s"], f["psij_slurm_bare_p50_s"]
    return ("%.2f s" % o, "%.2f s" % r, _x(o, r), o < 2.0)


def _many_listed(m, f):
    listed = m["all_listed_s"]
    return ("%.2f s" % listed if listed is not None else "NEVER (%d)" % m["max_listed"], "", "",
            listed is not None and listed <= 3.0 and m["failures"] == 0)


#: figure, target, and how to get (orbit, reference, ratio, met) from the figures
ROWS = [
    ("proxied small GET p50", "<= 2.0x", lambda f: (
        "%.3f ms" % f["p50_orbit"], "%.3f ms" % f["p50_ref"], _x(f["p50_orbit"], f["p50_ref"]),
        f["p50_orbit"] / f["p50_ref"] <= 2.0)),
    ("proxied small GET p99", "", lambda f: (
        "%.3f ms" % f["p99_orbit"], "%.3f ms" % f["p99_ref"], _x(f["p99_orbit"], f["p99_ref"]), None)),
    ("server CPU / request, 1 client", "<= 3x", lambda f: (
        "%.3f ms" % f["cpu_orbit"], "%.3f ms" % f["cpu_ref"], _x(f["cpu_orbit"], f["cpu_ref"]),
        f["cpu_orbit"] / f["cpu_ref"] <= 3.0)),
    ("  of which bridge / endpoint", "", lambda f: (
        "%.3f / %.3f ms" % (f["cpu_bridge"], f["cpu_endpoint"]), "", "", None)),
    ("server CPU / request, 4-thread load", "<= 3x", lambda f: (
        "%.3f ms" % f["cpu_load_orbit"], "%.3f ms" % f["cpu_load_ref"],
        _x(f["cpu_load_orbit"], f["cpu_load_ref"]), f["cpu_load_orbit"] / f["cpu_load_ref"] <= 3.0)),
    ("throughput, 4 client threads", ">= 0.9x", lambda f: (
        "%.0f req/s" % f["rps_orbit"], "%.0f req/s" % f["rps_ref"], _x(f["rps_orbit"], f["rps_ref"]),
        f["rps_orbit"] / f["rps_ref"] >= 0.9)),
    ("1 MiB POST echo p50", "<= 15 ms", lambda f: (
        "%.1f ms" % f["echo1_orbit"], "%.1f ms" % f["echo1_ref"], _x(f["echo1_orbit"], f["echo1_ref"]),
        f["echo1_orbit"] <= 15.0)),
    ("64 MiB POST echo (sha256 checked)", "works", lambda f: (
        ("ok, %.2f s" % f["echo64_s"]) if f["echo64_ok"] else "FAILED (%.0f s)" % f["echo64_s"],
        ("ok, %.2f s" % f["echo64_ref_s"]) if f["echo64_ref_ok"] else "FAILED",
        _x(f["echo64_s"], f["echo64_ref_s"]) if f["echo64_ok"] else "", bool(f["echo64_ok"]))),
    ("  peak RSS during 64 MiB: bridge", "bounded", lambda f: (
        "%.1f MiB" % f["echo64_peak_bridge"], "(%.1f before)" % f["echo64_before_bridge"], "", None)),
    ("  peak RSS during 64 MiB: endpoint", "bounded", lambda f: (
        "%.1f MiB" % f["echo64_peak_endpoint"], "(%.1f before)" % f["echo64_before_endpoint"], "", None)),
    ("SSE notify sent -> event arrived p50", "<= 1 ms", lambda f: (
        "%.3f ms" % f["sse_p50"], "", "", f["sse_p50"] <= 1.0)),
    ("staging upload through the bridge", ">= 0.5x, 300 MB/s", lambda f: _staging(f, "up")),
    ("staging download through the bridge", ">= 0.5x, 300 MB/s", lambda f: _staging(f, "down")),
    ("small calls during a staging upload, p50", "< 20 ms", lambda f: _probe(f, "up")),
    ("small calls during a staging download, p50", "< 20 ms", lambda f: _probe(f, "down")),
    ("  local file copy (same file)", "", lambda f: (
        "%.0f MB/s" % f["staging_local_mb_s"], "", "", None)),
    ("  peak RSS during staging: bridge", "bounded", lambda f: (
        "%.1f MiB" % f["staging_peak_bridge"], "(%.1f before)" % f["staging_before_bridge"], "", None)),
    ("  peak RSS during staging: endpoint", "bounded", lambda f: (
        "%.1f MiB" % f["staging_peak_endpoint"], "(%.1f before)" % f["staging_before_endpoint"], "", None)),
    ("psij local job: submit -> COMPLETED note p50", "< 10 ms", lambda f: (
        "%.2f ms" % f["psij_local_orbit_p50_ms"], "%.2f ms" % f["psij_local_bare_p50_ms"],
        _x(f["psij_local_orbit_p50_ms"], f["psij_local_bare_p50_ms"]), f["psij_local_orbit_p50_ms"] < 10.0)),
    ("psij 100 local jobs at once", "", lambda f: (
        "%.0f jobs/s" % f["psij_burst_orbit_jobs_s"], "%.0f jobs/s" % f["psij_burst_bare_jobs_s"],
        _x(f["psij_burst_orbit_jobs_s"], f["psij_burst_bare_jobs_s"]), None)),
    ("psij SLURM job: submit -> COMPLETED note p50", "< 2 s", _psij_slurm),
    ("rhapsody: 10,000 no-op tasks through the bridge", ">= 0.5x, 2000/s", lambda f: (
        "%.0f tasks/s" % f["rhapsody_orbit_tasks_s"], "%.0f tasks/s" % f["rhapsody_bare_tasks_s"],
        _x(f["rhapsody_orbit_tasks_s"], f["rhapsody_bare_tasks_s"]), rhapsody_bench.met(f))),
    ("  CPU per task: bridge / endpoint", "", lambda f: (
        "%.0f / %.0f us" % (f["rhapsody_cpu_bridge_us"], f["rhapsody_cpu_endpoint_us"]), "", "", None)),
    ("idle RSS bridge (-p none)", "<= 30 MiB", lambda f: (
        "%.1f MiB" % f["idle_rss_bridge"], "%.1f MiB" % f["idle_rss_ref"],
        _x(f["idle_rss_bridge"], f["idle_rss_ref"]), f["idle_rss_bridge"] <= 30)),
    ("idle RSS endpoint (-p sysinfo)", "<= 35 MiB", lambda f: (
        "%.1f MiB" % f["idle_rss_endpoint"], "", "", f["idle_rss_endpoint"] <= 35)),
    ("endpoint start to listed (median of 5)", "<= 0.25 s", lambda f: (
        "%.3f s" % f["start_to_listed"], "", "", f["start_to_listed"] <= 0.25)),
    ("{n} endpoints registering: all listed", "<= 3 s", lambda f: _many_listed(f["many"], f)),
    ("  bridge RSS with them connected (peak)", "", lambda f: (
        "%.1f MiB" % f["many_rss_bridge_peak"], "(%.1f before)" % f["many_rss_bridge_before"], "", None)),
    ("  proxied GET p50 / p99 during it", "p50 < 50 ms", lambda f: (
        "%.2f / %.2f ms" % (f["many"]["probe_during_p50_ms"], f["many"]["probe_during_p99_ms"]),
        "(before: %.2f ms)" % f["many"]["probe_before_p50_ms"], "",
        f["many"]["probe_during_p50_ms"] < 50)),
]


def table(f: Dict[str, object], n_many: int, skip_many: bool, skip_staging: bool = False,
          skip_psij: bool = False, skip_rhapsody: bool = False) -> List[List[str]]:
    rows = []
    for name, target, get in ROWS:
        if skip_many and name.startswith(("{n}", "  proxied GET p50 / p99 during", "  bridge RSS with")):
            continue
        if skip_staging and ("staging" in name or name.startswith("  local file copy")):
            continue
        if skip_psij and name.startswith("psij"):
            continue
        if skip_rhapsody and ("rhapsody" in name or name.startswith("  CPU per task")):
            continue
        try:
            orbit, ref, ratio, met = get(f)
        except (KeyError, TypeError, ZeroDivisionError):
            orbit, ref, ratio, met = "n/a (failed)", "", "", False
        rows.append([name.format(n=n_many), orbit, ref, ratio, target,
                     {True: "yes", False: "NO", None: ""}[met]])
    return rows


def print_table(rows: List[List[str]]) -> None:
    head = ["figure", "orbit", "reference", "ratio", "target", "met"]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths))
    log("")
    log(line)
    log("-+-".join("-" * w for w in widths))
    for r in rows:
        log(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


def main() -> int:
    p = argparse.ArgumentParser(description="ORBIT benchmark: figures and ratios to a stdlib reference")
    p.add_argument("--quick", action="store_true", help="smaller samples (< 60 s)")
    p.add_argument("-n", type=int, default=None, help="endpoints for the registration storm "
                                                      "(default 1000; 200 with --quick)")
    p.add_argument("--skip-many", action="store_true", help="skip the many-endpoints storm")
    p.add_argument("--skip-staging", action="store_true", help="skip the staging transfers")
    p.add_argument("--skip-psij", action="store_true", help="skip the psij jobs (needs psij-python)")
    p.add_argument("--skip-rhapsody", action="store_true", help="skip the rhapsody task throughput")
    p.add_argument("--staging-mib", type=int, default=None,
                   help="size of the staging file (default 512 MiB; 256 with --quick)")
    p.add_argument("--lean-reference", action="store_true",
                   help="a reference that writes head and body in one hand-built send (stricter)")
    p.add_argument("--keep", action="store_true", help="keep the temp RADICAL_ORBIT_HOME (logs)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    t0 = time.perf_counter()
    # the bridge inherits this limit: it holds one socket per registered endpoint
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = (args.n or 1000) + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
    bench = Bench(args)
    try:
        fig = bench.run()
    except Exception as exc:   # a process that did not start: print what we have
        log("!! benchmark stopped: %s: %s" % (exc.__class__.__name__, exc))
        fig = bench.fig
        fig.setdefault("failed", []).append(str(exc))
    finally:
        bench.P.stop_all()
        if args.keep:
            log("logs kept in %s" % bench.P.home)
    print_table(table(fig, args.n or (200 if args.quick else 1000), args.skip_many, args.skip_staging,
                      args.skip_psij, args.skip_rhapsody))
    for failure in fig.get("failed", []):
        log("FAILED: %s" % failure)
    log("\nload average at end: %s; total %.0f s" % (
        " ".join(open("/proc/loadavg").read().split()[:3]), time.perf_counter() - t0))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(fig, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
