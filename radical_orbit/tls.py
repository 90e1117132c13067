"""Client-side TLS with pinning: trust only the configured cert, check the hostname."""
import ssl


def pinned_context(cert: str) -> ssl.SSLContext:
    """A context that trusts ``cert`` alone (never the system CA store)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cafile=cert)
    return ctx
