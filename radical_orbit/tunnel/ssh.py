"""The ssh command lines of ORBIT's tunnels. Host keys are checked strictly against a
known_hosts file ORBIT keeps (``known_hosts`` in the config dir), never accepted blindly;
ssh never asks for a password (BatchMode) and gives up on a dead peer."""
import os
import re
import shutil
from typing import List, NamedTuple, Optional

from .. import config

ENV_KNOWN_HOSTS = "RADICAL_ORBIT_KNOWN_HOSTS"
ENV_IDENTITY = "RADICAL_ORBIT_TUNNEL_IDENTITY"
KNOWN_HOSTS_FILE = "known_hosts"
SERVER_ALIVE_INTERVAL = 15      # s between ssh keepalives
SERVER_ALIVE_COUNT = 3          # missed keepalives before ssh gives up
CONNECT_TIMEOUT = 10            # s for ssh's TCP connect and handshake

#: ``[user@]host[:port]``; neither user nor host may start with ``-`` or ``.`` (an option to ssh
#: or to the endpoint's argv is not a host)
_VIA_RE = re.compile(r"\A(?:([A-Za-z0-9_][A-Za-z0-9_.-]*)@)?([A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?\Z")

#: what ssh prints when retrying cannot help: the user must fix keys or known_hosts
FATAL_MARKERS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
                 "Permission denied", "No such file or directory", "Bad configuration option",
                 "ssh not found")


class SSHTarget(NamedTuple):
    user: Optional[str]
    host: str
    port: Optional[int]

    def __str__(self) -> str:
        text = ("%s@" % self.user if self.user else "") + self.host
        return "%s:%d" % (text, self.port) if self.port else text


def parse_via(text: str) -> SSHTarget:
    """``[user@]host[:port]``; ValueError naming the form otherwise."""
    match = _VIA_RE.fullmatch(text.strip())
    port = int(match.group(3)) if match and match.group(3) else None
    if not match or (port is not None and not 1 <= port <= 65535):
        raise ValueError("bad ssh host %r: give [user@]host[:port]" % text)
    return SSHTarget(match.group(1), match.group(2).strip("[]"), port)


def known_hosts_path() -> str:
    """ORBIT's own known_hosts: ``$RADICAL_ORBIT_KNOWN_HOSTS``, else the config dir's."""
    return os.environ.get(ENV_KNOWN_HOSTS) or config.path_in_home(KNOWN_HOSTS_FILE)


def is_fatal(reason: str) -> bool:
    return any(marker in reason for marker in FATAL_MARKERS)


def _base(target: SSHTarget, known_hosts: str, identity: Optional[str]) -> List[str]:
    ssh = shutil.which("ssh") or "ssh"
    argv = [ssh, "-N", "-T",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=%s" % known_hosts,
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=%d" % SERVER_ALIVE_INTERVAL,
            "-o", "ServerAliveCountMax=%d" % SERVER_ALIVE_COUNT,
            "-o", "ConnectTimeout=%d" % CONNECT_TIMEOUT,
            "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    identity = identity or os.environ.get(ENV_IDENTITY)
    if identity:
        argv += ["-i", identity, "-o", "IdentitiesOnly=yes"]
    if target.port:
        argv += ["-p", str(target.port)]
    if target.user:
        argv += ["-l", target.user]
    return argv


def _hostport(host: str) -> str:
    return "[%s]" % host if ":" in host else host


def forward_argv(via: SSHTarget, local_port: int, bridge_host: str, bridge_port: int,
                 known_hosts: Optional[str] = None, identity: Optional[str] = None) -> List[str]:
    """On the compute node: 127.0.0.1:local_port -> (through ``via``) bridge_host:bridge_port."""
    return _base(via, known_hosts or known_hosts_path(), identity) + [
        "-L", "127.0.0.1:%d:%s:%d" % (local_port, _hostport(bridge_host), bridge_port), "--", via.host]


def reverse_argv(node: SSHTarget, remote_port: int, bridge_host: str, bridge_port: int,
                 known_hosts: Optional[str] = None, identity: Optional[str] = None) -> List[str]:
    """On the login node: the compute node's 127.0.0.1:remote_port -> bridge_host:bridge_port."""
    return _base(node, known_hosts or known_hosts_path(), identity) + [
        "-R", "127.0.0.1:%d:%s:%d" % (remote_port, _hostport(bridge_host), bridge_port), "--", node.host]
