"""The bridge <-> endpoint envelope (see docs/protocol.md).

Every WebSocket message is one binary frame holding a msgpack map with the
protocol version ``v``, the kind ``k`` and the kind's fields. Bodies travel as
raw bytes, in chunks of at most ``chunk`` bytes with per-stream credit.
"""
from typing import Any, Dict

import msgpack

VERSION = 1

# endpoint -> bridge
HELLO = "hello"        # name, resume, pid, endpoint, plugins
RESPONSE = "res"       # id, status, headers, body, end, length
NOTE = "note"          # plugin, topic, data, ts
PLUGINS = "plugins"    # plugins: the endpoint's plugin table after a change
# bridge -> endpoint
WELCOME = "welcome"    # resume, settings
REFUSE = "refuse"      # status, detail, retry
REQUEST = "req"        # id, method, path, query, headers, body, end, length, deadline
SHUTDOWN = "shutdown"  # reason
# both ways
DATA = "data"          # id, body, end: the next chunk of a request or response body
CREDIT = "credit"      # id, n: the receiver consumed n bytes, the sender may send n more
CANCEL = "cancel"      # id, detail: the stream is abandoned (client gone, deadline, error)
ERROR = "error"        # detail: a fatal protocol error; the sender closes the socket next

KINDS = frozenset((HELLO, RESPONSE, NOTE, PLUGINS, WELCOME, REFUSE, REQUEST, SHUTDOWN,
                   DATA, CREDIT, CANCEL, ERROR))

#: Defaults the bridge announces in WELCOME; the endpoint follows them.
DEFAULT_SETTINGS = {
    "chunk": 256 * 1024,      # bytes of body per message
    "window": 2 * 2**20,      # bytes in flight per stream before credit is needed
    "ping_interval": 10.0,    # s between pings; a peer silent for 3 intervals is dead
}
#: A message can never be larger than a chunk plus its envelope.
MAX_MESSAGE = 4 * 2**20


class ProtocolError(ValueError):
    """A message that is not a valid envelope of a version we speak."""


def encode(kind: str, **fields: Any) -> bytes:
    """Pack one message; values msgpack does not know (dates, sets, ...) go as strings."""
    fields["v"] = VERSION
    fields["k"] = kind
    return msgpack.packb(fields, use_bin_type=True, default=_fallback)


def _fallback(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def decode(raw: bytes) -> Dict[str, Any]:
    if not isinstance(raw, (bytes, bytearray)):
        raise ProtocolError("expected a binary frame, got text")
    try:
        msg = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ProtocolError("undecodable message: %s" % exc)
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a map")
    version = msg.get("v")
    if version != VERSION:
        raise ProtocolError("unsupported protocol version %r; this peer speaks %d" % (version, VERSION))
    if msg.get("k") not in KINDS:
        raise ProtocolError("unknown message kind %r" % (msg.get("k"),))
    return msg
