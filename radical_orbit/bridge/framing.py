"""HTTP/1.1 request framing read strictly (RFC 9112): the request head within byte and
field-count limits, and the body by exactly one of Content-Length or chunked coding.

What does not parse is refused, never guessed at: lenient parsing is what request
smuggling feeds on (a signed chunk size, two lengths, ``Transfer-Encoding`` next to
``Content-Length``). Every refusal closes the connection, since after it nobody knows
where the next request would start.
"""
import re
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

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

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(r"(" + _TOKEN + r") ([!-~]+) (HTTP/[0-9]\.[0-9])\r?")
#: a field line (RFC 9112 5): no whitespace before the colon, no folding, and no control
#: characters but HTAB in the value (so no NUL, no bare CR); CRLF or a bare LF ends it
_VALUE = r"(?:[^\x00-\x08\x0a-\x1f\x7f]*[^\x00-\x20\x7f])?"
_FIELD_LINE = re.compile(r"(?m)^(%s):[ \t]*(%s)[ \t]*\r?\n" % (_TOKEN, _VALUE))
_TOKEN_RE = re.compile(_TOKEN)
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,%d})" % MAX_CHUNK_SIZE_DIGITS
    + rb"(?:[ \t]*;[ \t]*" + _TOKEN.encode() + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN.encode() + rb"|"
    + _QUOTED + rb"))?)*" + rb"\r\n")


class HeadError(OrbitError):
    """A request head that is refused; the connection is closed after the answer."""


class Framing(NamedTuple):
    """How the request body is delimited: ``chunked``, else ``length`` bytes. A request
    without a body always gets the one ``NO_BODY``, so ``is NO_BODY`` tells."""
    length: int
    chunked: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or self.length > 0


NO_BODY = Framing(0, False)


class Headers:
    """Request headers: what ``http.client.HTTPMessage`` offers the handlers, for a
    fraction of its cost. Names are case-insensitive; ``get`` returns the first value."""

    __slots__ = ("_pairs", "_first")

    def __init__(self, pairs: Iterable[Tuple[str, str]] = ()) -> None:
        self._pairs: List[Tuple[str, str]] = pairs if isinstance(pairs, list) else list(pairs)
        self._first: Dict[str, str] = {n.lower(): v for n, v in reversed(self._pairs)}

    def add(self, name: str, value: str) -> None:
        self._pairs.append((name, value))
        self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str, default: Optional[List[str]] = None) -> Optional[List[str]]:
        key = name.lower()
        values = [v for n, v in self._pairs if n.lower() == key]
        return values or default

    def __getitem__(self, name: str) -> Optional[str]:
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def items(self) -> List[Tuple[str, str]]:
        return list(self._pairs)

    def keys(self) -> List[str]:
        return [n for n, _v in self._pairs]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._pairs)

    def __str__(self) -> str:
        return "".join("%s: %s\n" % pair for pair in self._pairs)


class Head(NamedTuple):
    line: str           # the request line
    method: str
    target: str
    version: str
    headers: Headers
    framing: Framing


def read_head(rfile, max_bytes: int = MAX_HEAD_BYTES, max_fields: int = MAX_HEADERS) -> Optional[Head]:
    """The next request head from ``rfile`` (a BufferedReader); None when the client
    closed the connection before a complete head. Raises HeadError for a head that
    breaks the grammar or the limits."""
    buffered = rfile.peek(1)         # one read brings a whole head, most of the time
    end = buffered.find(b"\r\n\r\n", 0, max_bytes)
    if end > 0 and buffered[0] not in b"\r\n":
        block = rfile.read(end + 4)
    else:
        block = read_lines(rfile, max_bytes, max_fields + 1, "request head", skip_empty=MAX_LEADING_EMPTY_LINES)
        if block is None:
            return None
    text = block.decode("latin-1")
    line, _, fields = text.partition("\n")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise HeadError("malformed request line %r" % line[:200], 400)
    method, target, version = match.groups()
    if version not in SUPPORTED_VERSIONS:
        raise HeadError("HTTP version %s not supported" % version, 505)
    headers = Headers(parse_fields(fields, max_fields, "request head"))
    framing = NO_BODY
    if "content-length" in headers._first or "transfer-encoding" in headers._first:
        framing = request_framing(version, headers.items())
    return Head(line.rstrip("\r"), method, target, version, headers, framing)


def read_lines(rfile, max_bytes: int, max_lines: int, what: str, skip_empty: int = 0) -> Optional[bytes]:
    """Lines up to and with the empty line that ends a head or a trailer section, within
    the limits (431, or 414 for an over-long first line of a head); None if the
    connection ended first. Up to ``skip_empty`` empty lines before the first are dropped."""
    lines = []
    left = max_bytes
    while True:
        line = rfile.readline(left + 1)
        if not line.endswith(b"\n"):
            if len(line) <= left:
                return None
            if not lines and skip_empty:
                raise HeadError("request line longer than %d bytes" % max_bytes, 414)
            raise HeadError("%s larger than %d bytes" % (what, max_bytes), 431)
        left -= len(line)
        if line in (b"\r\n", b"\n"):
            if lines or not skip_empty:
                lines.append(line)
                return b"".join(lines)
            skip_empty -= 1
            continue
        if len(lines) >= max_lines:
            raise HeadError("%s has more than %d fields" % (what, max_lines - 1), 431)
        lines.append(line)


def parse_fields(text: str, max_fields: int, what: str) -> List[Tuple[str, str]]:
    """The (name, value) pairs of a field section that ends with its empty line; a
    malformed line is 400, more than ``max_fields`` fields 431."""
    pairs = _FIELD_LINE.findall(text)
    # each match is one whole line (anchored at its start, ending at its LF), so every
    # line but the closing empty one is a valid field line exactly when the counts agree
    if len(pairs) != text.count("\n") - 1:
        for line in text.splitlines(True)[:-1]:
            if not _FIELD_LINE.fullmatch(line):
                name = line.partition(":")[0]
                hint = " (field %s)" % name if _TOKEN_RE.fullmatch(name) else ""
                raise HeadError("malformed field line in the %s%s" % (what, hint), 400)
        raise HeadError("malformed %s" % what, 400)
    if len(pairs) > max_fields:
        raise HeadError("%s has more than %d fields" % (what, max_fields), 431)
    return pairs


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
                    trailers = read_lines(self._rfile, MAX_TRAILER_BYTES, MAX_TRAILERS, "trailer section")
                    if trailers is None:
                        raise BadRequest("client closed the connection before the body ended")
                    parse_fields(trailers.decode("latin-1"), MAX_TRAILERS, "trailer section")
                except HeadError as exc:
                    raise BadRequest(exc.detail)
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
