"""The sha256 of files the staging plugin has just written or sent whole, so that the
``checksum`` a client asks for right after a transfer (to verify it) does not read the
file a second time: for a 100 GB download that halves the disk reads.

An entry is keyed by what changes when the file does (device, inode, size, mtime and
ctime in ns), taken by ``fstat`` of the descriptor that was hashed; ``checksum`` looks
its file up by the same key, so a file changed since is hashed again.
"""
import collections
import os
import threading
from typing import Optional, Tuple

#: how many digests are remembered (the most recent ones)
MAX_DIGESTS = 1024


def file_key(st: os.stat_result) -> Tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    def __init__(self, size: int = MAX_DIGESTS):
        self._size = size
        self._items: "collections.OrderedDict[tuple, str]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, st: os.stat_result, digest: str) -> None:
        key = file_key(st)
        with self._lock:
            self._items[key] = digest
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, st: os.stat_result) -> Optional[str]:
        with self._lock:
            return self._items.get(file_key(st))
