"""The sha256 of whole files for ``checksum``, hashed by a background thread per file, so
that asking for the digest of a file of any size answers within a bounded wait instead of
running into the bridge's request timeout (300 s by default; reading 300 GB takes longer
than that on most disks).

The answer is the digest, or "pending" with the bytes hashed so far while the thread goes
on; asking again (the SDK does) waits again, and several callers asking for one file share
its thread. A digest of a file that did not change while it was read goes into the
``DigestCache`` (``digests.py``), where the next ``checksum`` finds it at once.
"""
import hashlib
import os
import threading
from typing import Dict, Optional, Tuple

from ...errors import Conflict, Unavailable
from .digests import DigestCache, file_key
from .paths import fs_error

#: s a ``checksum`` call waits for the digest before it answers "pending" (well under the
#: bridge's request timeout)
CHECKSUM_WAIT = 20.0
#: files hashed at once (a thread each, reading a whole file); beyond, 503
MAX_JOBS = 4
#: bytes per read
READ_SIZE = 1 << 20


class _Job:
    def __init__(self, fd: int, st: os.stat_result, shown: str):
        self.fd = fd
        self.st = st
        self.shown = shown
        self.hashed = 0
        self.digest: Optional[str] = None
        self.error: Optional[Exception] = None
        self.done = threading.Event()


class HashJobs:
    """The files being hashed, by identity (``digests.file_key``)."""

    def __init__(self, digests: DigestCache, wait: float = CHECKSUM_WAIT, max_jobs: int = MAX_JOBS):
        self.digests = digests
        self.wait = wait
        self.max_jobs = max_jobs
        self._jobs: Dict[Tuple[int, int, int, int, int], _Job] = {}
        self._lock = threading.Lock()

    def digest(self, fd: int, st: os.stat_result, shown: str) -> Tuple[Optional[str], int]:
        """``(sha256, size)`` of the file open as ``fd`` (``st`` its fstat), or ``(None,
        bytes hashed so far)`` when it is still being hashed after ``wait`` seconds."""
        kept = self.digests.get(st)
        if kept is not None:
            return kept, st.st_size
        key = file_key(st)
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                if len(self._jobs) >= self.max_jobs:
                    raise Unavailable("%s: %d files are being hashed on this endpoint; try again shortly"
                                      % (shown, self.max_jobs), retry_after=5)
                job = self._jobs[key] = _Job(os.dup(fd), st, shown)
                threading.Thread(target=self._run, args=(key, job), name="staging-checksum",
                                 daemon=True).start()
        if not job.done.wait(self.wait):
            return None, job.hashed
        if job.error is not None:
            raise job.error
        return job.digest, job.hashed

    def _run(self, key: Tuple[int, int, int, int, int], job: _Job) -> None:
        try:
            sha = hashlib.sha256()
            while True:
                piece = os.pread(job.fd, READ_SIZE, job.hashed)
                if not piece:
                    break
                sha.update(piece)
                job.hashed += len(piece)
            if file_key(os.fstat(job.fd)) != key:
                job.error = Conflict("%s changed while it was hashed; ask again" % job.shown)
            else:
                job.digest = sha.hexdigest()
                self.digests.put(job.st, job.digest)
        except OSError as exc:
            job.error = fs_error(exc, job.shown)
        except Exception as exc:     # never a silent, endless "pending"
            job.error = exc
        finally:
            os.close(job.fd)
            with self._lock:
                self._jobs.pop(key, None)
            job.done.set()
