"""``radical-orbit-bridge``: parse the command line, check the set-up, serve."""
import argparse
import errno
import logging
import sys
from typing import List, Optional

from .. import cli_common as cli
from .. import config, logs
from ..cli_common import fatal, on_stop_signals
from ..registry import PluginSpecError
from .app import DEFAULT_SETTINGS, MAX_SSE_KEEPALIVE, Bridge
from .urls import is_loopback, stale_url_file, write_url_file

log = logging.getLogger("radical_orbit.bridge")


def bind_host(text: str) -> str:
    """An address to bind; ``[::1]`` is taken as ``::1``."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() for c in host):
        raise argparse.ArgumentTypeError("%r is not an address to bind" % text)
    return host


def parser() -> argparse.ArgumentParser:
    p = cli.Parser(
        prog="radical-orbit-bridge",
        description="Run the ORBIT bridge: the REST API, the event stream and the Explorer, "
                    "and the hub endpoints dial out to. With no arguments: 127.0.0.1:8000 over "
                    "plain HTTP, the default bridge plugins, a token created if none exists, and "
                    "a login URL printed.",
        epilog="Precedence: flag > environment (RADICAL_ORBIT_BRIDGE_CERT/_KEY/_TOKEN) > files "
               "in ~/.radical/orbit/ (RADICAL_ORBIT_HOME overrides). A bad option exits 1.")
    p.add_argument("--host", type=bind_host, default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=cli.port, default=8000,
                   help="port to bind, 0 to 65535 (default 8000; 0 picks a free one)")
    p.add_argument("--cert", type=cli.existing_file, help="TLS certificate (PEM): serve HTTPS and WSS")
    p.add_argument("--key", type=cli.existing_file, help="TLS private key (PEM, mode 0600)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token-file", metavar="PATH", type=cli.existing_file,
                      help=cli.TOKEN_FILE_HELP + " (default: env, else bridge.token, else a new one)")
    auth.add_argument("--token", type=cli.token, help=cli.TOKEN_HELP)
    auth.add_argument("--no-auth", action="store_true", help="turn token auth off (dangerous)")
    p.add_argument("-p", "--plugins", type=cli.plugin_spec, default="default",
                   help="bridge-hosted plugins: names, unique prefixes, globs, 'all', 'default' or 'none'")
    p.add_argument("--plugin-config", metavar="NAME=JSON", type=cli.plugin_config, action="append",
                   help=cli.PLUGIN_CONFIG_HELP)
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP on a non-loopback address")
    p.add_argument("--request-timeout", type=cli.seconds, default=DEFAULT_SETTINGS["request_timeout"],
                   help="seconds a proxied request may take before 504 (default %(default)s)")
    p.add_argument("--ping-interval", type=cli.seconds, default=DEFAULT_SETTINGS["ping_interval"],
                   help="seconds between pings; an endpoint silent for 3 intervals is dropped (default %(default)s)")
    p.add_argument("--keepalive", type=cli.seconds_up_to(MAX_SSE_KEEPALIVE),
                   default=DEFAULT_SETTINGS["sse_keepalive"],
                   help="seconds between keepalive comments on an idle event stream, at most %g "
                        "(default %%(default)s)" % MAX_SSE_KEEPALIVE)
    p.add_argument("--max-pending", type=cli.count, default=DEFAULT_SETTINGS["max_pending"],
                   help="requests in flight per endpoint before 503 (default %(default)s)")
    p.add_argument("--max-connections", type=cli.count, default=DEFAULT_SETTINGS["max_connections"],
                   help="open connections (endpoints, clients, event streams) before new ones are "
                        "answered 503 (default %(default)s)")
    p.add_argument("--max-unauthenticated", type=cli.count, default=DEFAULT_SETTINGS["max_unauthenticated"],
                   help="connections that have not sent the token yet (default %(default)s)")
    p.add_argument("--max-unauthenticated-per-source", type=cli.count,
                   default=DEFAULT_SETTINGS["max_unauthenticated_per_source"],
                   help="the same, from one source address (default %(default)s)")
    p.add_argument("--shed-after", type=cli.seconds, default=DEFAULT_SETTINGS["shed_min_age"],
                   help="at the unauthenticated caps, a connection still waiting this many seconds for "
                        "its request head gives way to a newcomer (default %(default)s)")
    p.add_argument("--head-timeout", type=cli.seconds, default=DEFAULT_SETTINGS["head_timeout"],
                   help="seconds to receive a whole request head (default %(default)s)")
    p.add_argument("--max-head-bytes", type=cli.count, default=DEFAULT_SETTINGS["max_head_bytes"],
                   help="bytes of a request line and its header fields, at least 1024 (default %(default)s)")
    p.add_argument("--hello-timeout", type=cli.seconds, default=DEFAULT_SETTINGS["hello_timeout"],
                   help="seconds a WebSocket at /register has to send its hello before it is "
                        "closed (default %(default)s)")
    p.add_argument("--event-log-dir",
                   help="where the event log lives (default: events/ in the config dir); one bridge per directory")
    p.add_argument("--event-log-events", type=cli.count, default=DEFAULT_SETTINGS["event_log_events"],
                   help="events kept for replay by Last-Event-ID, across restarts (default %(default)s)")
    p.add_argument("--event-log-mib", type=cli.count, default=DEFAULT_SETTINGS["event_log_bytes"] // 2**20,
                   help="MiB those events may take (default %(default)s)")
    p.add_argument("--log-level", type=cli.log_level,
                   help="DEBUG, INFO, WARNING or ERROR (default: env, else INFO)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        logs.setup("bridge", args.log_level)
        cert = config.bridge_cert(args.cert)
        key = config.resolve_key(args.key) if cert or args.key else None
        if cert and not key:
            fatal("--cert needs --key (or %s, or %s)" % (config.ENV_KEY, config.path_in_home(config.KEY_FILE)))
        if key and not cert:
            fatal("--key needs --cert")
        if key:
            config.check_private(key, "key file")
        if not cert and not is_loopback(args.host) and not args.insecure:
            fatal("refusing plain HTTP on %s: give --cert and --key, or --insecure" % args.host)
        token = None if args.no_auth else config.ensure_token(args.token, args.token_file)
        bridge = Bridge(args.host, args.port, cert, key, token.value if token else None, args.plugins,
                        plugin_config=cli.plugin_configs(args.plugin_config),
                        request_timeout=args.request_timeout, ping_interval=args.ping_interval,
                        max_pending=args.max_pending, max_connections=args.max_connections,
                        sse_keepalive=args.keepalive,
                        max_unauthenticated=args.max_unauthenticated,
                        max_unauthenticated_per_source=args.max_unauthenticated_per_source,
                        shed_min_age=args.shed_after,
                        head_timeout=args.head_timeout, max_head_bytes=args.max_head_bytes,
                        hello_timeout=args.hello_timeout,
                        event_log_dir=args.event_log_dir, event_log_events=args.event_log_events,
                        event_log_bytes=args.event_log_mib * 2**20)
        bridge.bind()
        bridge.load_plugins()
        notices = publish(bridge)
        bridge.listen()
    except (config.ConfigError, PluginSpecError, ValueError) as exc:
        fatal(str(exc))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fatal("port %d on %s is already in use: stop what listens there, or give --port "
                  "(0 picks a free one)" % (args.port, args.host))
        fatal("cannot start the bridge: %s" % exc)
    if token and len(token.value) < config.WEAK_TOKEN_LENGTH:
        log.warning("the token has only %d characters: anyone who guesses it controls every "
                    "endpoint; use 32 random characters", len(token.value))
    if args.no_auth:
        log.warning("AUTH IS OFF (--no-auth): anyone who reaches %s controls every endpoint",
                    bridge.urls["url"])
    announce(bridge, token, notices)
    on_stop_signals(bridge.stop)
    bridge.serve_forever()
    return 0


def publish(bridge: Bridge) -> List[str]:
    """Write ``bridge.url`` (before the port accepts connections, so that a client that
    sees the port open finds it); returns what the operator must be told."""
    notices = list(bridge.url_warnings)
    path = config.path_in_home(config.URL_FILE)
    try:
        if write_url_file(bridge.urls["url"]):
            log.info("wrote %s", path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)
    stale = stale_url_file(bridge.urls["url"])
    if stale:
        notices.append(stale)
    for notice in notices:
        log.warning("%s", notice)
    return notices


def announce(bridge: Bridge, token: Optional[config.Setting], notices: List[str]) -> None:
    """Where to find the bridge. The login URL carries the token, so it is printed
    only to a terminal (never to nohup.out or a batch job's output, nor the log)."""
    urls = bridge.urls
    log.info("bridge serving at %s", urls["url"])
    if "ip" in urls and urls["ip"] != urls["url"]:
        log.info("also reachable at %s", urls["ip"])
    login = urls.get("ip", urls["url"])
    out = ["", "  ORBIT bridge: %s" % urls["url"]]
    if token is None:
        out.append("  Explorer: %s/" % login)
    elif sys.stdout.isatty():
        out.append("  Explorer login: %s/?token=%s" % (login, token.value))
        if token.path:
            out.append("  Token file: %s" % token.path)
    else:
        out.append("  Explorer: %s/ (log in with the token from %s)" % (login, token.source))
    out.append("  Connect an endpoint: radical-orbit-endpoint --name NAME --url %s%s"
               % (urls["url"], token_hint(token)))
    out.extend("  WARNING: %s" % notice for notice in notices)
    sys.stdout.write("\n".join(out) + "\n\n")
    sys.stdout.flush()


def token_hint(token: Optional[config.Setting]) -> str:
    """What the connect line must add for an endpoint on this host to hold this bridge's
    token: nothing when it is in the config dir's ``bridge.token``, where endpoints look."""
    if token is None or token.path == config.path_in_home(config.TOKEN_FILE):
        return ""
    if token.path:
        return " --token-file %s" % token.path
    return "   (with this bridge's token from %s: --token-file F or %s)" % (token.source, config.ENV_TOKEN)


if __name__ == "__main__":
    sys.exit(main())
