"""Throughput client, run as its own process: T threads, each with its own
``requests.Session`` (keep-alive), GET one URL in a loop for a fixed time.

Prints one JSON line: {"requests", "errors", "seconds", "rps", "p50_ms", "p99_ms"}.
Each thread first makes a few warm-up requests (connection set up) and then all
start together; only requests completed inside the window count.
"""
import argparse
import json
import sys
import threading
import time

import requests

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from common import percentile  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--token")
    args = p.parse_args()

    barrier = threading.Barrier(args.threads + 1)
    window = {}
    results = []
    lock = threading.Lock()

    def worker():
        s = requests.Session()
        if args.token:
            s.headers["Authorization"] = "Bearer %s" % args.token
        for _ in range(5):
            s.get(args.url, timeout=30)
        barrier.wait()
        end = window["end"]
        lat, errors = [], 0
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            try:
                r = s.get(args.url, timeout=30)
                ok = r.status_code == 200
                r.content
            except requests.RequestException:
                ok = False
            t1 = time.perf_counter()
            if t1 > end:
                break
            if ok:
                lat.append(t1 - t0)
            else:
                errors += 1
        with lock:
            results.append((lat, errors))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    window["start"] = time.perf_counter()
    window["end"] = window["start"] + args.duration
    barrier.wait()
    for t in threads:
        t.join(args.duration + 60)
    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    print(json.dumps({"requests": len(lat), "errors": errors, "seconds": args.duration,
                      "rps": len(lat) / args.duration, "p50_ms": percentile(lat, 50) * 1e3,
                      "p99_ms": percentile(lat, 99) * 1e3}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
