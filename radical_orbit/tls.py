"""TLS set-up: the client's pinned context (trust only the configured cert, check the
host name) and which host names a certificate is valid for."""
import ipaddress
import re
import ssl
import subprocess
from typing import Dict, List, Union


def pinned_context(cert: str) -> ssl.SSLContext:
    """A context that trusts ``cert`` alone (never the system CA store)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cafile=cert)
    return ctx


def cert_names(path: str) -> Dict[str, List[str]]:
    """The host names (``dns``) and addresses (``ip``) a PEM certificate is valid for:
    its subjectAltName, else its subject's commonName. Read with the standard library's
    decoder; ``openssl x509`` where that private helper is missing. ValueError when
    neither can read it."""
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except AttributeError:
        try:
            return _openssl_cert_names(path)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ValueError("cannot read the names in certificate %s: %s" % (path, exc))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError("cannot read the names in certificate %s: %s" % (path, exc))
    names: Dict[str, List[str]] = {"dns": [], "ip": []}
    for kind, value in decoded.get("subjectAltName", ()):
        if kind == "DNS":
            names["dns"].append(value)
        elif kind == "IP Address":
            names["ip"].append(value.strip())
    if not names["dns"] and not names["ip"]:
        for rdn in decoded.get("subject", ()):
            names["dns"].extend(value for key, value in rdn if key == "commonName")
    return names


def _openssl_cert_names(path: str) -> Dict[str, List[str]]:
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-text"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10, check=True).stdout
    names: Dict[str, List[str]] = {"dns": re.findall(r"DNS:([^,\s]+)", out),
                                   "ip": re.findall(r"IP Address:([^,\s]+)", out)}
    if not names["dns"] and not names["ip"]:
        names["dns"] = re.findall(r"Subject:.*?CN\s*=\s*([^,/\n]+)", out)
    return names


def cert_names_host(names: Dict[str, List[str]], host: str) -> bool:
    """Whether a client checking the host name accepts a certificate with ``names`` for ``host``
    (an IP must be listed as one; a ``*.`` name covers one leftmost label)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return any(_same_ip(address, ip) for ip in names["ip"])
    host = host.rstrip(".").lower()
    for name in names["dns"]:
        name = name.rstrip(".").lower()
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _same_ip(address: Union[ipaddress.IPv4Address, ipaddress.IPv6Address], text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False
