"""Where URL, cert, key and token come from: CLI flag > environment > file.

Files live in the config dir ``~/.radical/orbit/`` (``RADICAL_ORBIT_HOME``
overrides it). Secrets must not be readable by group or others.
"""
import ipaddress
import os
import re
import secrets
import ssl
import stat
import tempfile
from typing import NamedTuple, Optional
from urllib.parse import urlsplit

from . import tls

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
TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]+")
WEAK_TOKEN_LENGTH = 16
URL_SCHEMES = ("http", "https", "ws", "wss")
TLS_SCHEMES = ("https", "wss")
_HOST_NAME_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_PORT_RE = re.compile(r"[0-9]{1,5}")


class ConfigError(ValueError):
    """A configuration problem the user must fix; its message says how."""


class Setting(NamedTuple):
    """A resolved value and where it came from, so that an error can say which
    flag, variable or file to fix."""
    value: str
    source: str                 # "--url", "RADICAL_ORBIT_BRIDGE_URL", "the file /x/bridge.url", ...
    path: Optional[str] = None  # the file it was read from, if any


def check_token(token: str) -> str:
    if not token:
        raise ConfigError("the token is empty")
    if not TOKEN_RE.fullmatch(token):
        raise ConfigError("the token may only contain letters, digits and . _ ~ + / = - "
                          "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def check_url(url: str) -> str:
    """A bridge URL clients can dial: http, https, ws or wss, a host, an optional port
    1-65535; returned without a trailing slash. ConfigError says what is wrong."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise ConfigError("bad bridge URL %r: %s" % (url, exc))
    if parts.scheme.lower() not in URL_SCHEMES or not url.lower().startswith(parts.scheme.lower() + "://"):
        raise ConfigError("bad bridge URL %r: it must start with http://, https://, ws:// or wss://" % url)
    if not host:
        hint = " (an IPv6 address goes in brackets: http://[::1]:8000)" if parts.netloc.count(":") > 1 else ""
        raise ConfigError("bad bridge URL %r: it names no host%s" % (url, hint))
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    if bracketed or ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ConfigError("bad bridge URL %r: %r is not an IPv6 address" % (url, host))
    elif not _HOST_NAME_RE.fullmatch(host):
        raise ConfigError("bad bridge URL %r: %r is not a host name" % (url, host))
    port = parts.netloc.rpartition("]")[2].rpartition("@")[2]
    port = port.rpartition(":")[2] if ":" in port else None
    if port is not None and not (_PORT_RE.fullmatch(port) and 1 <= int(port) <= 65535):
        raise ConfigError("bad bridge URL %r: the port must be a number from 1 to 65535" % url)
    if parts.query or parts.fragment:
        raise ConfigError("bad bridge URL %r: a bridge URL has no query or fragment" % url)
    return url.rstrip("/")


def is_tls_url(url: str) -> bool:
    return url.split(":", 1)[0].lower() in TLS_SCHEMES


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


def _read_path(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def url_setting(cli: Optional[str] = None, flag: str = "--url/url=") -> Setting:
    """The bridge URL and its source; ConfigError when there is none or it is malformed."""
    if cli:
        found = Setting(cli, flag)
    elif os.environ.get(ENV_URL):
        found = Setting(os.environ[ENV_URL], ENV_URL)
    else:
        path = path_in_home(URL_FILE)
        text = _read_path(path)
        if not text:
            raise ConfigError("no bridge URL: pass --url/url=, set %s, or write it to %s"
                              % (ENV_URL, path))
        found = Setting(text, "the file %s" % path, path)
    try:
        return found._replace(value=check_url(found.value))
    except ConfigError as exc:
        raise ConfigError("%s (from %s)" % (exc, found.source))


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
    """The pinned cert for https/wss URLs (None for plain http/ws). A cert given
    explicitly with a plain URL is refused: the user meant TLS and would not get it."""
    if cli and not is_tls_url(url):
        raise ConfigError("--cert/cert= is for https:// and wss:// URLs, but %s is plain HTTP: "
                          "use the https:// URL or drop the certificate" % url)
    cert = bridge_cert(cli)
    if is_tls_url(url):
        if not cert:
            raise ValueError("%s needs the bridge certificate: pass --cert/cert=, set %s, or put it at %s"
                             % (url, ENV_CERT, path_in_home(CERT_FILE)))
        if not os.path.isfile(cert):
            raise ValueError("bridge certificate %s does not exist" % cert)
        try:
            tls.pinned_context(cert)
        except ssl.SSLError as exc:
            raise ValueError("bridge certificate %s is not a PEM certificate: %s" % (cert, exc))
        return cert
    return None


def token_setting(cli: Optional[str] = None, cli_file: Optional[str] = None) -> Optional[Setting]:
    """The token and its source: ``--token`` > ``--token-file`` > environment >
    ``bridge.token``; None when there is none. Token files must be private. An empty
    ``--token``/``token=`` is refused, not taken for "look elsewhere"."""
    if cli is not None and not cli.strip():
        raise ConfigError("the token is empty (from --token/token=)")
    if cli:
        found = Setting(cli, "--token")
    elif cli_file:
        found = Setting(read_token_file(cli_file), "the file %s" % cli_file, cli_file)
    elif os.environ.get(ENV_TOKEN):
        found = Setting(os.environ[ENV_TOKEN], ENV_TOKEN)
    else:
        path = path_in_home(TOKEN_FILE)
        if not os.path.exists(path):
            return None
        found = Setting(read_token_file(path), "the file %s" % path, path)
    try:
        check_token(found.value)
    except ConfigError as exc:
        raise ConfigError("%s (from %s)" % (exc, found.source))
    return found


def read_token_file(path: str) -> str:
    """A token file's content; ConfigError when it is missing, empty or not private."""
    check_private(path, "token file")
    token = _read_path(path)
    if not token:
        raise ConfigError("token file %s is empty" % path)
    return token


def resolve_token(cli: Optional[str] = None, cli_file: Optional[str] = None) -> Optional[str]:
    found = token_setting(cli, cli_file)
    return found.value if found else None


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


def ensure_token(cli: Optional[str] = None, cli_file: Optional[str] = None) -> Setting:
    """The bridge's token; on first start a new random one is written to ``bridge.token``."""
    found = token_setting(cli, cli_file)
    if found:
        return found
    path = path_in_home(TOKEN_FILE)
    write_private(path, secrets.token_urlsafe(32))
    return Setting(read_token_file(path), "the file %s" % path, path)
