"""Where the bridge says it is: the URLs it prints and writes to ``bridge.url``, with
host names its certificate names (else a client's host-name check fails), and the
check of a ``bridge.url`` that another bridge left behind."""
import ipaddress
import socket
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from .. import config
from ..tls import cert_names, cert_names_host

WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def outbound_ipv4() -> str:
    """The address other hosts reach us on (no packet is sent by a UDP connect)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def host_name() -> str:
    """This host's name as other hosts know it: the FQDN, unless the resolver maps
    it to ``localhost`` (a common /etc/hosts layout), then the plain host name."""
    fqdn = socket.getfqdn()
    return socket.gethostname() if is_loopback(fqdn) else fqdn


def _url(scheme: str, host: str, port: int) -> str:
    return "%s://%s:%d" % (scheme, "[%s]" % host if ":" in host else host, port)


def advertised_urls(host: str, port: int, cert: Optional[str] = None) -> Tuple[Dict[str, str], List[str]]:
    """``{"url": ..., "fqdn"?: ..., "ip"?: ...}`` and warnings for the operator.

    ``url`` is the one clients are told to use. On a wildcard bind the FQDN form and
    the outbound-IPv4 form are offered; with TLS only the forms the certificate names,
    and when it names neither, a name it does hold (with a warning)."""
    scheme = "https" if cert else "http"
    warnings: List[str] = []
    names = None
    if cert:
        try:
            names = cert_names(cert)
        except ValueError as exc:
            warnings.append("%s: the URLs printed are not checked against it" % exc)
    if host not in WILDCARD_HOSTS:
        shown = host.strip("[]")
        if names is not None and not cert_names_host(names, shown):
            warnings.append("the certificate %s does not name %s (it names %s): clients dialling "
                            "%s will fail the host-name check; re-make it with "
                            "subjectAltName=%s (see README, TLS)"
                            % (cert, shown, _listed(names), _url(scheme, shown, port),
                               _san_for([shown])))
        return {"url": _url(scheme, shown, port)}, warnings
    forms = {"fqdn": host_name(), "ip": outbound_ipv4()}
    if names is None:
        urls = {key: _url(scheme, h, port) for key, h in forms.items()}
        urls["url"] = urls["fqdn"]
        return urls, warnings
    urls = {key: _url(scheme, h, port) for key, h in forms.items() if cert_names_host(names, h)}
    if urls:
        urls["url"] = urls.get("fqdn") or urls["ip"]
        return urls, []
    fallback = _preferred_name(names)
    warning = ("the certificate %s names %s but neither this host's name %s nor its address %s: "
               "endpoints on other hosts will fail the host-name check; re-make it with "
               "subjectAltName=%s (see README, TLS)"
               % (cert, _listed(names), forms["fqdn"], forms["ip"], _san_for(list(forms.values()))))
    return {"url": _url(scheme, fallback or forms["fqdn"], port)}, [warning]


def _listed(names: Dict[str, List[str]]) -> str:
    return ", ".join(names["dns"] + names["ip"]) or "nothing"


def _san_for(hosts: List[str]) -> str:
    entries = [("IP:%s" if _is_ip(h) else "DNS:%s") % h for h in hosts]
    for local in ("DNS:localhost", "IP:127.0.0.1"):
        if local not in entries:
            entries.append(local)
    return ",".join(entries)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _preferred_name(names: Dict[str, List[str]]) -> Optional[str]:
    """A name from the certificate a remote client can dial: a real DNS name first."""
    for name in names["dns"]:
        if not name.startswith("*") and not is_loopback(name):
            return name
    for ip in names["ip"]:
        if not is_loopback(ip):
            return ip
    return (names["dns"] + names["ip"] or [None])[0]


def write_url_file(url: str) -> bool:
    """Write ``bridge.url`` once; an existing file is never overwritten (an operator
    may have put a public name there)."""
    return config.write_private(config.path_in_home(config.URL_FILE), url)


def stale_url_file(url: str) -> Optional[str]:
    """A warning with the fix when ``bridge.url`` names another bridge than ``url``
    (another scheme or port): clients reading it would not find this one."""
    path = config.path_in_home(config.URL_FILE)
    try:
        with open(path) as f:
            found = f.read().strip()
    except OSError:
        return None
    if _scheme_port(found) == _scheme_port(url):
        return None
    return ("%s names %s, not this bridge (%s): endpoints and clients that read it will not find "
            "this bridge. Remove it (rm %s) and restart the bridge, or give them --url %s or %s=%s"
            % (path, found or "nothing", url, path, url, config.ENV_URL, url))


def _scheme_port(url: str) -> Tuple[str, Optional[int]]:
    try:
        parts = urlsplit(url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
        return scheme, parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return "", None
