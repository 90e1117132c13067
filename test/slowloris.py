"""A bounded slowloris attacker for tests, loopback only: keeps up to N connections open
from source addresses 127.0.0.2-127.0.0.254, each sending a partial request head and then
one byte every few seconds; a connection the server answers or closes is opened again
after a pause. Stops by itself after --duration seconds and prints a JSON summary.

    python test/slowloris.py --port P [--connections 2000] [--duration 20] [--interval 3]
"""
import argparse
import errno
import heapq
import json
import resource
import selectors
import socket
import sys
import time

HEAD = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: "
SOURCES = ["127.0.0.%d" % i for i in range(2, 255)]


class Slot:
    __slots__ = ("sock", "source", "connected", "answer", "generation")

    def __init__(self, source: str):
        self.source = source
        self.sock = None
        self.connected = False
        self.answer = b""
        self.generation = 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--interval", type=float, default=3.0, help="seconds between bytes")
    p.add_argument("--reopen-after", type=float, default=1.0)
    p.add_argument("--ready-file", help="touched once all connections were first opened")
    args = p.parse_args()
    if not args.host.startswith("127."):
        sys.exit("loopback only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < args.connections + 64:
        wanted = args.connections + 64
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
    stats = {"opened": 0, "connect_failed": 0, "answered": {}, "closed_unanswered": 0, "bytes_sent": 0}
    sel = selectors.DefaultSelector()
    slots = [Slot(SOURCES[i % len(SOURCES)]) for i in range(args.connections)]
    started = time.monotonic()
    end = started + args.duration
    reopen = [(started, i, slot) for i, slot in enumerate(slots)]      # (when, tie, slot)
    sends = []                                                          # (when, tie, generation, slot)
    tie = len(slots)
    ready_written = False

    def close(slot: Slot, now: float) -> None:
        if slot.answer:
            status = slot.answer.split(b" ", 2)[1].decode("latin-1", "replace") if b" " in slot.answer else "?"
            stats["answered"][status] = stats["answered"].get(status, 0) + 1
        else:
            stats["closed_unanswered"] += 1
        try:
            sel.unregister(slot.sock)
        except (KeyError, ValueError):
            pass
        slot.sock.close()
        slot.sock, slot.connected, slot.answer = None, False, b""
        slot.generation += 1
        heapq.heappush(reopen, (now + args.reopen_after, id(slot), slot))

    while True:
        now = time.monotonic()
        if now >= end:
            break
        opened_now = 0
        while reopen and reopen[0][0] <= now and opened_now < 500:
            slot = heapq.heappop(reopen)[2]
            opened_now += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.bind((slot.source, 0))
                code = sock.connect_ex((args.host, args.port))
            except OSError:
                code = -1
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                stats["connect_failed"] += 1
                heapq.heappush(reopen, (now + args.reopen_after, id(slot), slot))
                continue
            slot.sock = sock
            tie += 1
            heapq.heappush(sends, (now, tie, slot.generation, slot))
            stats["opened"] += 1
            sel.register(sock, selectors.EVENT_READ, slot)
        if not ready_written and args.ready_file and stats["opened"] >= args.connections:
            open(args.ready_file, "w").close()
            ready_written = True
        while sends and sends[0][0] <= now:
            _when, _tie, generation, slot = heapq.heappop(sends)
            if slot.sock is None or generation != slot.generation:
                continue
            try:
                data = HEAD if not slot.connected else b"x"
                slot.sock.send(data)
                slot.connected = True
                stats["bytes_sent"] += len(data)
                delay = args.interval
            except BlockingIOError:
                delay = 0.1                       # still connecting
            except OSError:
                close(slot, now)
                continue
            tie += 1
            heapq.heappush(sends, (now + delay, tie, generation, slot))
        for key, _ in sel.select(timeout=0.05):
            slot = key.data
            try:
                data = slot.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data and not slot.answer:
                slot.answer = data
            close(slot, time.monotonic())
    for slot in slots:
        if slot.sock is not None:
            slot.sock.close()
    stats["seconds"] = round(time.monotonic() - started, 1)
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
