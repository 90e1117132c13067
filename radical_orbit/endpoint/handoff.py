"""Handing the bridge's URL, certificate and token to an endpoint started as a batch job,
without putting any of them on a command line or in a file others can read.

The launcher (the parent endpoint) makes a private directory (0700) under the config
dir, ``launch/<id>/``, and writes ``handoff.json`` (0600) into it, plus the bridge's
certificate when there is one. The job gets only the *path* of that file, in the
environment variable ``RADICAL_ORBIT_HANDOFF``. The child endpoint reads the file and
deletes it at once; the directory (with the certificate, which is not secret) goes when
the child exits, and the launcher removes it too when the job ends (a job cancelled
before it ran never read it).
"""
import json
import os
import shutil
import threading
from typing import Any, Dict, NamedTuple, Optional

from .. import config

ENV_HANDOFF = "RADICAL_ORBIT_HANDOFF"
HANDOFF_FILE = "handoff.json"
CERT_FILE = "bridge_cert.pem"
LAUNCH_DIR = "launch"
MAX_HANDOFF_BYTES = 256 * 1024


class BridgeAccess(NamedTuple):
    """What an endpoint uses to reach the bridge."""
    url: str
    cert: Optional[str]       # a path to the pinned certificate, None for plain http
    token: Optional[str]


class Handoff(NamedTuple):
    """What a launched child reads from its handoff file."""
    access: BridgeAccess
    directory: str
    extra: Dict[str, Any]     # e.g. the tunnel's port for --tunnel reverse


_current: Dict[str, BridgeAccess] = {}
_current_lock = threading.Lock()


def set_current_access(access: BridgeAccess) -> None:
    """The endpoint process records how it reaches the bridge, so that a launcher in it
    (psij's submit_tunneled) can hand the same to a child."""
    with _current_lock:
        _current["access"] = access


def current_access() -> BridgeAccess:
    """This process's bridge access: what the endpoint recorded, else (on the bridge, or
    in a script) the usual settings: environment, then the config dir's files."""
    with _current_lock:
        found = _current.get("access")
    if found is not None:
        return found
    url = config.url_setting(None).value
    token = config.resolve_token()
    return BridgeAccess(url, config.resolve_cert(url), token)


def launch_root() -> str:
    return config.ensure_dir(config.path_in_home(LAUNCH_DIR))


def write_handoff(directory: str, access: BridgeAccess, **extra: Any) -> str:
    """Create ``directory`` (0700) with the handoff file (0600) and the certificate;
    returns the file's path, which is all the job is told."""
    os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    os.mkdir(directory, 0o700)
    cert_path = None
    if access.cert:
        cert_path = os.path.join(directory, CERT_FILE)
        shutil.copyfile(access.cert, cert_path)
        os.chmod(cert_path, 0o600)
    body = {"url": access.url, "token": access.token, "cert": cert_path, "extra": extra}
    path = os.path.join(directory, HANDOFF_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f)
    return path


def read_handoff(path: str) -> Handoff:
    """Read and delete the handoff file; ConfigError when it is missing, not private, or
    not what a launcher writes."""
    config.check_private(path, "handoff file")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        with open(path) as f:
            raw = f.read(MAX_HANDOFF_BYTES + 1)
    finally:
        remove_quietly(path)
    try:
        body = json.loads(raw) if len(raw) <= MAX_HANDOFF_BYTES else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise config.ConfigError("handoff file %s is not one a launcher wrote" % path)
    token, cert = body.get("token"), body.get("cert")
    if token is not None:
        config.check_token(token)
    extra = body.get("extra") if isinstance(body.get("extra"), dict) else {}
    return Handoff(BridgeAccess(config.check_url(body["url"]), cert, token), directory, extra)


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_dir(directory: str) -> None:
    """Remove a launch directory (the child at exit, the launcher at the job's end)."""
    shutil.rmtree(directory, ignore_errors=True)
