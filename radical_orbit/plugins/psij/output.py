"""A job's stdout and stderr files, read from an offset (incremental status) or from the end
(the tail a terminal notification carries). Bytes are counted in the file, text is decoded
leniently: an offset the client sends back is always a byte position.

Only regular files are read: a spec may name any path as its output, and opening a FIFO
nobody writes blocks for ever (a status call's worker, or psij's thread that sends the
terminal notification with the tail); a device (``/dev/zero``) never ends. Such a path
reads as empty.
"""
import os
import stat
from typing import IO, Any, Dict, Optional

#: bytes one status call returns per stream at most (the client asks again from the new offset)
READ_CAP = 256 * 1024
#: bytes of each stream a terminal ``job_status`` notification carries
TAIL_BYTES = 2048


def read_from(path: str, offset: int, cap: int = READ_CAP) -> Dict[str, Any]:
    """``{"data", "offset" (where the next read starts), "size", "more"}``; a missing file
    (the job has not started writing) reads as empty."""
    try:
        f = _open_regular(path)
        if f is None:
            return {"data": "", "offset": offset, "size": 0, "more": False}
        with f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                offset = size
            f.seek(offset)
            raw = f.read(cap)
    except OSError:
        return {"data": "", "offset": offset, "size": 0, "more": False}
    # never end inside a UTF-8 sequence: hold back an incomplete tail for the next call
    end = _whole_utf8(raw) if len(raw) == cap else len(raw)
    raw = raw[:end]
    return {"data": raw.decode("utf-8", "replace"), "offset": offset + len(raw), "size": size,
            "more": offset + len(raw) < size}


def tail(path: str, size: int = TAIL_BYTES) -> str:
    try:
        f = _open_regular(path)
        if f is None:
            return ""
        with f:
            length = os.fstat(f.fileno()).st_size
            f.seek(max(0, length - size))
            raw = f.read(size)
    except OSError:
        return ""
    return raw.decode("utf-8", "replace")


def _open_regular(path: str) -> Optional[IO[bytes]]:
    """``path`` opened for reading if it is a regular file (without blocking on a FIFO);
    None for anything else. OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _whole_utf8(raw: bytes) -> int:
    """Length of ``raw`` without a trailing incomplete UTF-8 sequence."""
    for back in range(1, min(4, len(raw)) + 1):
        byte = raw[-back]
        if byte & 0xC0 != 0x80:         # a lead byte (or ASCII): is its sequence complete?
            need = 1 if byte < 0x80 else 2 if byte >= 0xC0 and byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(raw) if need <= back else len(raw) - back
    return len(raw)
