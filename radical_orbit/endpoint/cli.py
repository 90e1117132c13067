"""``radical-orbit-endpoint``: parse the command line, resolve the set-up, run."""
import argparse
import logging
import os
import socket
import sys
from typing import List, Optional

from .. import cli_common as cli
from .. import config, logs
from ..cli_common import fatal, on_stop_signals
from ..errors import OrbitError
from ..host import ROLES, detect_role
from ..names import check_endpoint_name
from ..registry import PluginSpecError
from ..tunnel.child import MODES, child_tunnel
from .handoff import ENV_HANDOFF, BridgeAccess, read_handoff, remove_dir, set_current_access
from .jobend import DEFAULT_MARGIN, JobEndWatch
from .service import DEFAULT_SETTINGS, EndpointService

log = logging.getLogger("radical_orbit.endpoint")


def endpoint_name(text: str) -> str:
    try:
        return check_endpoint_name(text)
    except OrbitError as exc:
        raise argparse.ArgumentTypeError(exc.detail)


def parser() -> argparse.ArgumentParser:
    p = cli.Parser(
        prog="radical-orbit-endpoint",
        description="Run an ORBIT endpoint: dial out to the bridge over one WebSocket and serve "
                    "the loaded plugins there. Reconnects by itself; exits 0 on SIGTERM or when "
                    "the bridge disconnects it, 1 on a bad option, a bad token or a TLS failure.",
        epilog="URL, cert and token: flag > RADICAL_ORBIT_BRIDGE_URL/_CERT/_TOKEN > files "
               "bridge.url, bridge_cert.pem, bridge.token in ~/.radical/orbit/.")
    p.add_argument("--name", type=endpoint_name, help="endpoint name (default: the short hostname)")
    p.add_argument("--url", type=cli.url,
                   help="bridge URL (http, https, ws or wss), e.g. https://hub.example.org:8000")
    p.add_argument("--cert", type=cli.existing_file,
                   help="the bridge's certificate (pinned: the only one trusted); "
                        "for https/wss URLs only, refused with a plain one")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token-file", metavar="PATH", type=cli.existing_file, help=cli.TOKEN_FILE_HELP)
    auth.add_argument("--token", type=cli.token, help=cli.TOKEN_HELP)
    p.add_argument("-p", "--plugins", type=cli.plugin_spec, default="default",
                   help="plugins: names, unique prefixes, globs, 'all' or 'default' (the role's set)")
    p.add_argument("--plugin-config", metavar="NAME=JSON", type=cli.plugin_config, action="append",
                   help=cli.PLUGIN_CONFIG_HELP)
    p.add_argument("--workers", type=cli.count, default=DEFAULT_SETTINGS["workers"],
                   help="worker threads for plugin requests (default %(default)s)")
    p.add_argument("--queue-size", type=cli.count, default=DEFAULT_SETTINGS["queue_size"],
                   help="requests waiting for a free worker before 503 + Retry-After (default %(default)s)")
    p.add_argument("--note-buffer", type=cli.count, default=DEFAULT_SETTINGS["note_buffer"],
                   help="notifications kept until the bridge acknowledges them; beyond, the oldest "
                        "are dropped and reported (default %(default)s)")
    p.add_argument("--durable-note-memory", type=cli.count, default=DEFAULT_SETTINGS["durable_note_memory"],
                   help="per durable stream of a plugin (psij's job_status): unacknowledged "
                        "notifications held in memory; the rest wait on the plugin's disk and are "
                        "read back when resent (default %(default)s)")
    p.add_argument("--role", choices=[r for r in ROLES if r != "bridge"],
                   help="override the detected host role (login, compute, standalone)")
    p.add_argument("--tunnel", choices=MODES, default=None,
                   help="reach the bridge through an ssh tunnel: 'forward' runs ssh -L through "
                        "--tunnel-via; 'reverse' dials the port a launcher forwards here with "
                        "ssh -R (default: none, or what a handoff file says)")
    p.add_argument("--tunnel-via", metavar="[USER@]HOST[:PORT]", type=cli.non_empty,
                   help="the ssh host for --tunnel forward (default: $SLURM_SUBMIT_HOST or "
                        "$PBS_O_HOST, the login host the job came from)")
    p.add_argument("--tunnel-port", type=cli.port,
                   help="this node's end of the tunnel on 127.0.0.1 (forward: a free port if "
                        "omitted; reverse: the port the launcher forwards)")
    p.add_argument("--tunnel-identity", metavar="PATH", type=cli.existing_file,
                   help="ssh private key for the tunnel (default: $RADICAL_ORBIT_TUNNEL_IDENTITY, "
                        "else ssh's own); host keys are checked against known_hosts in the config dir")
    p.add_argument("--handoff", metavar="PATH", type=cli.existing_file,
                   help="a launcher's private handoff file with URL, certificate and token, read "
                        "and deleted at start (default: $%s; set by psij's submit_tunneled)" % ENV_HANDOFF)
    p.add_argument("--job-end-margin", type=cli.seconds, default=DEFAULT_MARGIN,
                   help="inside a batch job, stop this many seconds before the job's time runs "
                        "out (default %(default)s)")
    p.add_argument("--log-level", type=cli.log_level,
                   help="DEBUG, INFO, WARNING or ERROR (default: env, else INFO)")
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
    try:
        name = args.name or check_endpoint_name(socket.gethostname().split(".")[0])
        backoff_max = reconnect_max()
        handoff_path = args.handoff or os.environ.pop(ENV_HANDOFF, None)
        extra = {}
        if handoff_path:
            handoff = read_handoff(handoff_path)
            extra = handoff.extra
            launch_dir = handoff.directory
            where = "the handoff file %s" % handoff_path
            url = config.Setting(handoff.access.url, where)
            cert = handoff.access.cert
            token = config.Setting(handoff.access.token, where) if handoff.access.token else None
        else:
            launch_dir = None
            url = config.url_setting(args.url, "--url")
            cert = config.resolve_cert(url.value, args.cert)
            token = config.token_setting(args.token, args.token_file)
        set_current_access(BridgeAccess(url.value, cert, token.value if token else None))
        # read once: no job, task or tunnel this endpoint starts inherits the token
        os.environ.pop(config.ENV_TOKEN, None)
        logs.setup("endpoint-%s" % name, args.log_level)
        sources = "URL from %s, token from %s" % (url.source, token.source if token else "nowhere")
        role = args.role or detect_role()
        service = EndpointService(name, url.value, cert, token.value if token else None, args.plugins,
                                  role, sources=sources, plugin_config=cli.plugin_configs(args.plugin_config),
                                  workers=args.workers,
                                  queue_size=args.queue_size, note_buffer=args.note_buffer,
                                  durable_note_memory=args.durable_note_memory,
                                  backoff_max=backoff_max)
        service.load_plugins()
        tunnel, service.address = child_tunnel(
            args.tunnel or extra.get("tunnel") or "none", url.value,
            args.tunnel_via or extra.get("tunnel_via"), args.tunnel_port or extra.get("tunnel_port"),
            args.tunnel_identity or extra.get("tunnel_identity"), service.fail)
    except (OrbitError, config.ConfigError, PluginSpecError, ValueError) as exc:
        fatal(getattr(exc, "detail", None) or str(exc))
    log.info("endpoint %s (%s) with plugins %s, %d workers", name, role,
             ", ".join(service.host.names()) or "none", args.workers)
    on_stop_signals(service.stop)
    watch = JobEndWatch(service.stop, args.job_end_margin).start() if role == "compute" else None
    if tunnel is not None:
        log.info("dialling the bridge through an ssh tunnel: %s", " ".join(tunnel.argv))
        tunnel.start()
    try:
        code = service.run()
    finally:
        if watch is not None:
            watch.close()
        if tunnel is not None:
            tunnel.stop()
        if launch_dir:
            remove_dir(launch_dir)
    if service.fatal_error:
        logs.to_file_only(service.fatal_error)
        fatal(service.fatal_error)
    return code


if __name__ == "__main__":
    sys.exit(main())
