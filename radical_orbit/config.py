"""Where URL, cert, key and token come from: CLI flag > environment > file.

Files live in the config dir ``~/.radical/orbit/`` (``RADICAL_ORBIT_HOME``
overrides it). Secrets must not be readable by group or others.
"""
import os
import re
import secrets
import stat
import tempfile
from typing import Optional

ENV_HOME = "RADICAL_ORBIT_HOME"
ENV_URL = "RADICAL_ORBIT_BRIDGE_URL"
ENV_CERT = "RADICAL_ORBIT_BRIDGE_CERT"
ENV_KEY = "RADICAL_ORBIT_BRIDGE_KEY"
ENV_TOKEN = "RADICAL_ORBIT_BRIDGE_TOKEN"

URL_FILE = "bridge.url"
CERT_FILE = "bridge_cert.pem"
KEY_FILE = "bridge_key.pem"
TOKEN_FILE = "bridge.token"


#: Tokens travel in headers, cookies and URLs: keep them to characters all three carry.
TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
WEAK_TOKEN_LENGTH = 16


class ConfigError(ValueError):
    """A configuration problem the user must fix; its message says how."""


def check_token(token: str) -> str:
    if not TOKEN_RE.match(token):
        raise ConfigError("the token may only contain letters, digits and . _ ~ + / = - "
                          "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def home() -> str:
    return os.path.expanduser(os.environ.get(ENV_HOME) or os.path.join("~", ".radical", "orbit"))


def path_in_home(name: str) -> str:
    return os.path.join(home(), name)


def ensure_dir(path: str) -> str:
    """Create ``path`` and any missing parents readable by the owner alone (0700)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        ensure_dir(os.path.dirname(path))
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    return path


def _read_file(name: str) -> Optional[str]:
    try:
        with open(path_in_home(name)) as f:
            return f.read().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def resolve_url(cli: Optional[str] = None) -> str:
    url = cli or os.environ.get(ENV_URL) or _read_file(URL_FILE)
    if not url:
        raise ValueError("no bridge URL: pass --url/url=, set %s, or write it to %s"
                         % (ENV_URL, path_in_home(URL_FILE)))
    return url.rstrip("/")


def _resolve_path(cli: Optional[str], env: str, name: str) -> Optional[str]:
    """A file setting: the flag, else the environment, else the file in the config dir if it exists."""
    path = cli or os.environ.get(env)
    if not path and os.path.exists(path_in_home(name)):
        path = path_in_home(name)
    return path


def bridge_cert(cli: Optional[str] = None) -> Optional[str]:
    """The bridge's own certificate, when it has one (then it serves HTTPS and WSS)."""
    return _resolve_path(cli, ENV_CERT, CERT_FILE)


def resolve_cert(url: str, cli: Optional[str] = None) -> Optional[str]:
    """The pinned cert for https/wss URLs (None for plain http/ws)."""
    cert = bridge_cert(cli)
    if url.split(":", 1)[0].lower() in ("https", "wss"):
        if not cert:
            raise ValueError("%s needs the bridge certificate: pass --cert/cert=, set %s, or put it at %s"
                             % (url, ENV_CERT, path_in_home(CERT_FILE)))
        if not os.path.isfile(cert):
            raise ValueError("bridge certificate %s does not exist" % cert)
        return cert
    return None


def resolve_token(cli: Optional[str] = None) -> Optional[str]:
    return cli or os.environ.get(ENV_TOKEN) or _read_secret_file(TOKEN_FILE)


def resolve_key(cli: Optional[str] = None) -> Optional[str]:
    return _resolve_path(cli, ENV_KEY, KEY_FILE)


def check_private(path: str, what: str) -> None:
    """Refuse a secret file that group or others can read (it must be 0600 or stricter)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        raise ConfigError("%s %s does not exist" % (what, path))
    if mode & 0o077:
        raise ConfigError("%s %s has mode %04o; it must not be readable by group or others "
                          "(run: chmod 600 %s)" % (what, path, mode, path))


def _read_secret_file(name: str) -> Optional[str]:
    path = path_in_home(name)
    if not os.path.exists(path):
        return None
    check_private(path, "token file")
    return _read_file(name)


def write_private(path: str, text: str, overwrite: bool = False) -> bool:
    """Atomically create ``path`` with mode 0600; False if it exists and ``overwrite`` is off."""
    ensure_dir(os.path.dirname(path) or ".")
    if os.path.exists(path) and not overwrite:
        return False
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.chmod(tmp, 0o600)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def ensure_token(cli: Optional[str] = None) -> str:
    """The bridge's token; on first start a new random one is written to ``bridge.token``."""
    token = resolve_token(cli)
    if token:
        return token
    token = secrets.token_urlsafe(32)
    if not write_private(path_in_home(TOKEN_FILE), token):
        token = _read_secret_file(TOKEN_FILE) or token
    return token
