"""``radical-orbit-endpoint``: parse the command line, resolve the set-up, run."""
import argparse
import logging
import os
import socket
import sys
from typing import List, Optional

from .. import config, logs
from ..cli_common import fatal, on_stop_signals
from ..errors import OrbitError
from ..host import ROLES, detect_role
from ..names import check_endpoint_name
from ..registry import PluginSpecError
from .service import DEFAULT_SETTINGS, EndpointService

log = logging.getLogger("radical_orbit.endpoint")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="radical-orbit-endpoint",
        description="Run an ORBIT endpoint: dial out to the bridge over one WebSocket and serve "
                    "the loaded plugins there. Reconnects by itself; exits 0 on SIGTERM or when "
                    "the bridge disconnects it, 1 on a bad token or a TLS failure.",
        epilog="URL, cert and token: flag > RADICAL_ORBIT_BRIDGE_URL/_CERT/_TOKEN > files "
               "bridge.url, bridge_cert.pem, bridge.token in ~/.radical/orbit/.")
    p.add_argument("--name", help="endpoint name (default: the short hostname)")
    p.add_argument("--url", help="bridge URL, e.g. https://hub.example.org:8000")
    p.add_argument("--cert", help="the bridge's certificate (pinned: the only one trusted)")
    p.add_argument("--token", help="the bridge's access token")
    p.add_argument("-p", "--plugins", default="default",
                   help="plugins: names, unique prefixes, globs, 'all' or 'default' (the role's set)")
    p.add_argument("--workers", type=int, default=DEFAULT_SETTINGS["workers"],
                   help="worker threads for plugin requests (default %(default)s)")
    p.add_argument("--queue-size", type=int, default=DEFAULT_SETTINGS["queue_size"],
                   help="requests waiting for a free worker before 503 + Retry-After (default %(default)s)")
    p.add_argument("--role", choices=[r for r in ROLES if r != "bridge"],
                   help="override the detected host role (login, compute, standalone)")
    p.add_argument("--tunnel", choices=("none", "forward", "reverse"), default="none",
                   help="reach the bridge through an ssh tunnel (not available yet: 'none' only)")
    p.add_argument("--tunnel-via", help="ssh host for --tunnel")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: env, else INFO)")
    return p


def reconnect_max() -> Optional[float]:
    raw = os.environ.get("RADICAL_ORBIT_RECONNECT_MAX")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError("RADICAL_ORBIT_RECONNECT_MAX must be a positive number of seconds, not %r" % raw)
    return value


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    name = args.name or socket.gethostname().split(".")[0]
    try:
        check_endpoint_name(name)
        if args.workers < 1 or args.queue_size < 1:
            fatal("--workers and --queue-size must be at least 1")
        if args.tunnel != "none":
            fatal("--tunnel %s is not supported by this version; reach the bridge directly" % args.tunnel)
        logs.setup("endpoint-%s" % name, args.log_level)
        url = config.resolve_url(args.url)
        cert = config.resolve_cert(url, args.cert)
        token = config.resolve_token(args.token)
        role = args.role or detect_role()
        service = EndpointService(name, url, cert, token, args.plugins, role, workers=args.workers,
                                  queue_size=args.queue_size, backoff_max=reconnect_max())
        service.load_plugins()
    except (OrbitError, config.ConfigError, PluginSpecError, ValueError) as exc:
        fatal(getattr(exc, "detail", None) or str(exc))
    log.info("endpoint %s (%s) with plugins %s, %d workers", name, role,
             ", ".join(service.host.names()) or "none", args.workers)
    on_stop_signals(service.stop)
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
