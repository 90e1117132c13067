"""ssh tunnels for endpoints whose node cannot reach the bridge: ``forward`` (the child
runs ``ssh -L`` through the login host) and ``reverse`` (the parent runs ``ssh -R`` to the
compute node). ``ssh`` builds the command, ``owner`` keeps one alive."""
from .owner import Tunnel
from .ssh import SSHTarget, forward_argv, known_hosts_path, parse_via, reverse_argv

__all__ = ["Tunnel", "SSHTarget", "forward_argv", "reverse_argv", "parse_via", "known_hosts_path"]
