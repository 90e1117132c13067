"""The child endpoint's side of a tunnel: where it dials the bridge, and for ``forward``
the ``ssh -L`` it keeps alive through the login host."""
import os
import socket
from typing import Callable, Optional, Tuple
from urllib.parse import urlsplit

from .owner import Tunnel, port_answers
from .ssh import forward_argv, parse_via

MODES = ("none", "forward", "reverse")
VIA_ENV = ("SLURM_SUBMIT_HOST", "PBS_O_HOST")


def bridge_hostport(url: str) -> Tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme.lower() in ("https", "wss") else 80
    return parts.hostname or "localhost", parts.port or default


def default_via() -> Optional[str]:
    """The login host a job was submitted from."""
    for name in VIA_ENV:
        if os.environ.get(name):
            return os.environ[name]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_tunnel(mode: str, url: str, via: Optional[str], port: Optional[int],
                 identity: Optional[str], on_fatal: Callable[[str], None]
                 ) -> Tuple[Optional[Tunnel], Optional[Tuple[str, int]]]:
    """The tunnel to start (None for ``reverse``: the parent owns that one) and the
    address to dial instead of the URL's; ValueError for a mode that lacks what it needs."""
    if mode == "none":
        return None, None
    if mode == "reverse":
        if not port:
            raise ValueError("--tunnel reverse needs --tunnel-port (the port the parent forwards "
                             "on this node; a launcher's handoff file gives it)")
        return None, ("127.0.0.1", port)
    if mode != "forward":
        raise ValueError("--tunnel must be one of %s" % ", ".join(MODES))
    via = via or default_via()
    if not via:
        raise ValueError("--tunnel forward needs --tunnel-via [user@]host[:port] (neither "
                         "$SLURM_SUBMIT_HOST nor $PBS_O_HOST is set)")
    local = port or free_port()
    host, bridge_port = bridge_hostport(url)
    argv = forward_argv(parse_via(via), local, host, bridge_port, identity=identity)
    tunnel = Tunnel("forward-%s" % via, argv, ready=lambda: port_answers(local), on_fatal=on_fatal)
    return tunnel, ("127.0.0.1", local)
