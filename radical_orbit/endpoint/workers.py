"""A fixed pool of named worker threads with a bounded queue: when every worker is
busy and the queue is full, ``submit`` says no and the caller answers 503."""
import logging
import queue
import threading
from typing import Callable, List

log = logging.getLogger("radical_orbit.endpoint.workers")


class WorkerPool:
    def __init__(self, workers: int, queue_size: int):
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._threads: List[threading.Thread] = []
        for i in range(workers):
            t = threading.Thread(target=self._run, name="worker-%d" % i, daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, job: Callable[[], None]) -> bool:
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            return False

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("worker job failed")

    def stop(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                break
        for t in self._threads:
            t.join(timeout / max(1, len(self._threads)))
