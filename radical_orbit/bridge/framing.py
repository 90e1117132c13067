"""HTTP/1.1 request framing read strictly (RFC 9112): the request head within byte and
field-count limits, and the body by exactly one of Content-Length or chunked coding.

What does not parse is refused, never guessed at: lenient parsing is what request
smuggling feeds on (a signed chunk size, two lengths, ``Transfer-Encoding`` next to
``Content-Length``). Every refusal closes the connection, since after it nobody knows
where the next request would start.
"""
import re
from typing import Callable, List, NamedTuple, Optional, Tuple

from ..errors import BadRequest, OrbitError, PayloadTooLarge

#: default cap on a request head: request line plus header fields (431/414 beyond)
MAX_HEAD_BYTES = 64 * 1024
#: default cap on the number of header fields (431 beyond)
MAX_HEADERS = 100
#: a chunk-size line with its extensions (400 beyond)
MAX_CHUNK_LINE = 4096
#: hex digits of a chunk size: 16 is 2**64, far past any body limit
MAX_CHUNK_SIZE_DIGITS = 16
#: decimal digits of a Content-Length: 19 fit in 63 bits; longer is too large anyway
MAX_LENGTH_DIGITS = 19
#: the trailer section of a chunked body: bytes and fields (read, checked, dropped)
MAX_TRAILER_BYTES = 16 * 1024
MAX_TRAILERS = 32
#: how many empty lines before a request line are ignored (RFC 9112 2.2)
MAX_LEADING_EMPTY_LINES = 8
#: how much of a body one read takes from the socket
READ_CHUNK = 256 * 1024

SUPPORTED_VERSIONS = ("HTTP/1.0", "HTTP/1.1")

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([!-~]+) (HTTP/[0-9]\.[0-9])")
#: what a field value may not hold: control characters other than HTAB (so no NUL, CR, LF)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,%d})" % MAX_CHUNK_SIZE_DIGITS
    + rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
    + rb"\r\n")


class HeadError(OrbitError):
    """A request head that is refused; the connection is closed after the answer."""


class Framing(NamedTuple):
    """How the request body is delimited: ``chunked``, else ``length`` bytes (0: none)."""
    length: int
    chunked: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or self.length > 0


NO_BODY = Framing(0, False)


class Head(NamedTuple):
    method: str
    target: str
    version: str
    fields: List[Tuple[str, str]]
    framing: Framing


def read_head(rfile, max_bytes: int = MAX_HEAD_BYTES, max_fields: int = MAX_HEADERS) -> Optional[Head]:
    """The next request head from ``rfile``; None when the client closed the connection
    before a complete head. Raises HeadError for a head that breaks the grammar or the limits."""
    left = max_bytes
    line = rfile.readline(left + 1)
    for _ in range(MAX_LEADING_EMPTY_LINES):
        if line not in (b"\r\n", b"\n"):
            break
        left -= len(line)
        line = rfile.readline(left + 1)
    if not line.endswith(b"\n"):
        if len(line) > left:
            raise HeadError("request line longer than %d bytes" % max_bytes, 414)
        return None
    left -= len(line)
    match = _REQUEST_LINE.fullmatch(_strip_eol(line))
    if match is None:
        raise HeadError("malformed request line %r" % line[:200].decode("latin-1"), 400)
    method, target, version = (part.decode("latin-1") for part in match.groups())
    if version not in SUPPORTED_VERSIONS:
        raise HeadError("HTTP version %s not supported" % version, 505)
    fields = read_fields(rfile, left, max_fields, "request head")
    if fields is None:
        return None
    return Head(method, target, version, fields, request_framing(version, fields))


def read_fields(rfile, max_bytes: int, max_fields: int, what: str) -> Optional[List[Tuple[str, str]]]:
    """Field lines up to the empty line that ends them (a head's or a trailer section's);
    None if the connection ended first. A line may end in CRLF or a bare LF (RFC 9112 2.2);
    obsolete line folding, whitespace before the colon and control characters are refused."""
    fields: List[Tuple[str, str]] = []
    left = max_bytes
    while True:
        line = rfile.readline(left + 1)
        if not line.endswith(b"\n"):
            if len(line) > left:
                raise HeadError("%s larger than %d bytes" % (what, max_bytes), 431)
            return None
        left -= len(line)
        body = _strip_eol(line)
        if not body:
            return fields
        if len(fields) >= max_fields:
            raise HeadError("%s has more than %d fields" % (what, max_fields), 431)
        name, sep, value = body.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise HeadError("malformed field line in the %s" % what, 400)
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise HeadError("control character in the %s field %s" % (what, name.decode("latin-1")), 400)
        fields.append((name.decode("latin-1"), value.decode("latin-1")))


def _strip_eol(line: bytes) -> bytes:
    return line[:-2] if line.endswith(b"\r\n") else line[:-1]


def request_framing(version: str, fields: List[Tuple[str, str]]) -> Framing:
    """The body framing of a request (RFC 9112 6.3), or HeadError: Transfer-Encoding next
    to Content-Length is 400, a coding other than exactly ``chunked`` is 501, differing
    or malformed Content-Length values are 400."""
    lengths = []
    codings = []
    for name, value in fields:
        lower = name.lower()
        if lower == "content-length":
            lengths.extend(v.strip() for v in value.split(","))
        elif lower == "transfer-encoding":
            codings.extend(v.strip().lower() for v in value.split(","))
    if codings:
        if lengths:
            raise HeadError("Transfer-Encoding and Content-Length in one request", 400)
        if version != "HTTP/1.1":
            raise HeadError("Transfer-Encoding in an %s request" % version, 400)
        if codings != ["chunked"]:
            raise HeadError("Transfer-Encoding %r not implemented: only 'chunked' is"
                            % ", ".join(codings)[:100], 501)
        return Framing(0, True)
    if not lengths:
        return NO_BODY
    if len(set(lengths)) != 1:
        raise HeadError("differing Content-Length values", 400)
    text = lengths[0]
    if not (text.isascii() and text.isdigit()):
        raise HeadError("invalid Content-Length %r" % text[:40], 400)
    if len(text) > MAX_LENGTH_DIGITS:
        raise HeadError("Content-Length of %d digits is too large" % len(text), 413)
    return Framing(int(text), False) if text.strip("0") else NO_BODY


class BodyReader:
    """The request body as a stream, by its Framing, with a size cap (413): checked
    against Content-Length before anything is read, and against the bytes read so far
    for a chunked body. ``send_continue`` (for ``Expect: 100-continue``) is called once,
    right before the first byte is read: a request that is refused before its body is
    read never invites the body."""

    def __init__(self, rfile, framing: Framing, limit: int,
                 send_continue: Optional[Callable[[], None]] = None):
        self._rfile = rfile
        self.limit = limit
        self.chunked = framing.chunked
        self.length: Optional[int] = None if framing.chunked else framing.length
        self._left = 0 if framing.chunked else framing.length
        self._chunk_left = 0
        self._done = not framing.has_body
        self._broken = False
        self._continue = None if self._done else send_continue
        self.consumed = 0
        if self.length is not None and self.length > limit:
            raise PayloadTooLarge("request body of %d bytes exceeds the limit of %d bytes"
                                  % (self.length, limit))

    @property
    def done(self) -> bool:
        return self._done

    @property
    def invited(self) -> bool:
        """False while a ``100 Continue`` is still owed: the client holds its body back."""
        return self._continue is None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end of the body (across HTTP chunks)."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_CHUNK), b""))
        if self._broken:
            raise BadRequest("the request body was malformed")
        if self._continue is not None and not self._done:
            send, self._continue = self._continue, None
            send()
        pieces = []
        wanted = size
        try:
            while wanted > 0 and not self._done:
                data = self._read_chunked(wanted) if self.chunked else self._read_plain(wanted)
                if not data:
                    continue
                self.consumed += len(data)
                if self.consumed > self.limit:
                    raise PayloadTooLarge("request body exceeds the limit of %d bytes" % self.limit)
                pieces.append(data)
                wanted -= len(data)
        except (OrbitError, OSError):
            self._broken = True
            raise
        return b"".join(pieces)

    def _read_plain(self, size: int) -> bytes:
        data = self._rfile.read(min(size, self._left))
        if not data:
            raise BadRequest("client closed the connection before the body ended")
        self._left -= len(data)
        self._done = self._left == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(MAX_CHUNK_LINE + 1)
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                if len(line) > MAX_CHUNK_LINE:
                    raise BadRequest("chunk-size line longer than %d bytes" % MAX_CHUNK_LINE)
                if not line.endswith(b"\n"):
                    raise BadRequest("client closed the connection before the body ended")
                raise BadRequest("malformed chunk-size line %r" % line[:40].decode("latin-1"))
            self._chunk_left = int(match.group(1), 16)
            if self._chunk_left == 0:
                try:
                    trailers = read_fields(self._rfile, MAX_TRAILER_BYTES, MAX_TRAILERS, "trailer section")
                except HeadError as exc:
                    raise BadRequest(exc.detail)
                if trailers is None:
                    raise BadRequest("client closed the connection before the body ended")
                self._done = True
                return b""
        data = self._rfile.read(min(size, self._chunk_left))
        if not data:
            raise BadRequest("client closed the connection before the body ended")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._rfile.read(2) != b"\r\n":
            raise BadRequest("chunk data not followed by CRLF")
        return data

    def drain(self, max_bytes: int = 1 << 20, invite: bool = True) -> bool:
        """Read and drop what is left (up to ``max_bytes``, whatever the cap) so that
        keep-alive can go on; False when the connection must close instead: the body is
        longer, was malformed, or was never invited (``Expect: 100-continue``) and
        ``invite`` is False (an error answer does not ask for a body it will drop).
        A malformed body raises BadRequest, as for ``read``."""
        if self._done:
            return True
        if self._broken or not (invite or self.invited):
            return False
        if self.length is not None and self.length - self.consumed > max_bytes:
            return False
        self.limit = max(self.limit, self.consumed + max_bytes)
        dropped = 0
        while not self._done and dropped <= max_bytes:
            piece = self.read(READ_CHUNK)
            if not piece:
                break
            dropped += len(piece)
        return self._done
