"""Globus credentials -> an authorized ``TransferClient``.

Three forms, checked strictly (a stray or missing field is a 400 naming the forms):
an access token; a refresh token with the client id it was issued to (and that
client's secret for a confidential client); or a confidential client's id and secret
(client credentials). The renewing forms refresh the access token by themselves, also
after Globus answers 401. The secrets stay in this object, in endpoint memory: nothing
here logs them, and ``describe`` names only the form.
"""
from typing import Any, Dict, List, Optional

import globus_sdk
from globus_sdk.transport import RetryConfig

from ...errors import BadRequest
from .settings import Settings

APP_NAME = "radical.orbit"
FORMS = ("access_token", "refresh_token + client_id (+ client_secret)",
         "client_id + client_secret (client credentials; optional scopes)")
_FIELDS = {"access_token", "refresh_token", "client_id", "client_secret", "scopes"}


class Credentials:
    """One session's Globus credentials; ``kind`` is what may be shown."""

    def __init__(self, body: Dict[str, Any]):
        given = {k for k, v in body.items() if v not in (None, "")}
        stray = sorted(given - _FIELDS)
        if stray:
            raise BadRequest("unknown credential fields %s; give one of: %s" % (", ".join(stray), "; ".join(FORMS)))
        for name in given:
            if not isinstance(body[name], str):
                raise BadRequest("credential field %s must be a string" % name)
        self._values = {k: body[k] for k in given}
        self._clients: List[Any] = []
        if given == {"access_token"}:
            self.kind = "access_token"
        elif given in ({"refresh_token", "client_id"}, {"refresh_token", "client_id", "client_secret"}):
            self.kind = "refresh_token"
        elif given in ({"client_id", "client_secret"}, {"client_id", "client_secret", "scopes"}):
            self.kind = "client_credentials"
        else:
            raise BadRequest("Globus credentials must be one of: %s (got: %s)"
                             % ("; ".join(FORMS), ", ".join(sorted(given)) or "none"))

    def __repr__(self) -> str:
        return "<Credentials %s>" % self.kind

    def transfer_client(self, settings: Settings) -> globus_sdk.TransferClient:
        """A TransferClient that authorizes with these credentials; the renewing forms
        fetch their first access token here (a refused grant raises a GlobusAPIError)."""
        transfer = globus_sdk.TransferClient(authorizer=self._authorizer(settings), app_name=APP_NAME,
                                             environment=settings.environment,
                                             base_url=settings.transfer_url,
                                             retry_config=_retry(settings))
        self._clients.append(transfer)
        return _timed(transfer, settings)

    def close(self) -> None:
        """Close the clients made from these credentials and forget the secrets."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._values = {}

    def _authorizer(self, settings: Settings) -> globus_sdk.authorizers.GlobusAuthorizer:
        v = self._values
        if self.kind == "access_token":
            return globus_sdk.AccessTokenAuthorizer(v["access_token"])
        login = _login_client(v["client_id"], v.get("client_secret"), settings)
        self._clients.append(login)
        if self.kind == "refresh_token":
            return globus_sdk.RefreshTokenAuthorizer(v["refresh_token"], login)
        scopes = v.get("scopes") or str(globus_sdk.TransferClient.scopes.all)
        return globus_sdk.ClientCredentialsAuthorizer(login, scopes)


def _login_client(client_id: str, secret: Optional[str], settings: Settings) -> Any:
    common = dict(environment=settings.environment, base_url=settings.auth_url, app_name=APP_NAME,
                  retry_config=_retry(settings))
    if secret:
        return _timed(globus_sdk.ConfidentialAppAuthClient(client_id, secret, **common), settings)
    return _timed(globus_sdk.NativeAppAuthClient(client_id, **common), settings)


def _timed(client: Any, settings: Settings) -> Any:
    """The client's own transport (which it closes with itself) with our HTTP timeout."""
    client.transport.http_timeout = settings.http_timeout
    return client


def _retry(settings: Settings) -> RetryConfig:
    return RetryConfig(max_retries=settings.max_retries, max_sleep=settings.max_sleep)
