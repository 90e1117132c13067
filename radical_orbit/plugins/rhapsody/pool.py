"""A thread pool whose threads never keep the endpoint alive.

``ThreadPoolExecutor`` joins its threads when the interpreter exits, so one Python task
that runs for an hour would hold a stopping endpoint for that hour. Here the threads are
daemons: a stopping endpoint cancels what waits and leaves what runs behind (Python cannot
stop a running thread; the process ending does).
"""
import concurrent.futures
import queue
import threading
from typing import Any, Callable, List, Optional


class DaemonThreadPool(concurrent.futures.Executor):
    def __init__(self, workers: int, name: str):
        self.workers = workers
        self.name = name
        self._queue: "queue.SimpleQueue[Optional[tuple]]" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
            self._queue.put((future, fn, args, kwargs))
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name="%s-%d" % (self.name, len(self._threads)))
                self._threads.append(thread)
                thread.start()
            return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
