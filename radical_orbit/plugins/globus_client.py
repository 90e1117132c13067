"""Client side of the globus plugin; needs neither globus-sdk nor the plugin.

Credentials come from the arguments, else from the environment
(``RADICAL_ORBIT_GLOBUS_ACCESS_TOKEN``; or ``..._REFRESH_TOKEN`` with ``..._CLIENT_ID``
and, for a confidential client, ``..._CLIENT_SECRET``; or ``..._CLIENT_ID`` with
``..._CLIENT_SECRET`` for client credentials). They travel once, to the endpoint, which
keeps them in memory for the session.
"""
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from ..client import EndpointClient, PluginClient, seconds
from ..errors import OrbitError, Timeout, Unauthorized, Unavailable

ENV_PREFIX = "RADICAL_ORBIT_GLOBUS_"
CREDENTIAL_FIELDS = ("access_token", "refresh_token", "client_id", "client_secret", "scopes")
#: what the plugin's consent error puts before the scopes it needs (see plugins/globus/errors.py)
CONSENT_MARK = "required scopes: "
#: the longest one ``wait`` call asks the endpoint to block (its setting max_wait caps it too)
WAIT_STEP = 60.0
#: times ``submit`` and ``delete`` resend the same submission after the connection failed
SUBMIT_RETRIES = 2

Item = Union[Dict[str, Any], Sequence[Any]]


class GlobusConsentRequired(Unauthorized):
    """Globus needs more consent (or a fresh login) first; ``required_scopes`` says which."""

    def __init__(self, detail: str, required_scopes: List[str]):
        super().__init__(detail, 401)
        self.required_scopes = required_scopes


def credentials_from_env(environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The ``RADICAL_ORBIT_GLOBUS_*`` credentials that are set."""
    environ = os.environ if environ is None else environ
    return {name: environ[ENV_PREFIX + name.upper()] for name in CREDENTIAL_FIELDS
            if environ.get(ENV_PREFIX + name.upper())}


class GlobusClient(PluginClient):
    """A globus session: transfers, tasks and collection operations on the endpoint."""

    def __init__(self, endpoint: EndpointClient, name: str, register: bool = True,
                 **credentials: Optional[str]):
        self._credentials = _credentials(credentials)
        self.auth: Optional[str] = None
        super().__init__(endpoint, name, register=False)
        if register:
            answer = self.post("register_session", json=self._credentials)
            self.sid = answer["sid"]
            self.auth = answer.get("auth")
        self._credentials = {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return super().request(method, path, **kwargs)
        except Unauthorized as exc:
            if CONSENT_MARK in exc.detail:
                scopes = exc.detail.rsplit(CONSENT_MARK, 1)[1].split()
                raise GlobusConsentRequired(exc.detail, [s for s in scopes if s != "(none)"]) from None
            raise

    def login(self, **credentials: Optional[str]) -> str:
        """Give (or replace) the session's Globus credentials; returns their kind."""
        self.auth = self.post("login/%s" % self._sid(), json=_credentials(credentials))["auth"]
        return self.auth

    def local_collection(self) -> Dict[str, Any]:
        """``{"collection", "source"}``: what ``"local"`` names on this endpoint."""
        return self.get("local_collection")

    # -- tasks ------------------------------------------------------------------------
    def submission_id(self) -> str:
        return self.get("submission_id/%s" % self._sid())["submission_id"]

    def submit(self, source: str, destination: str, items: Iterable[Item], label: Optional[str] = None,
               sync_level: Optional[Union[str, int]] = None, submission_id: Optional[str] = None,
               **options: Any) -> Dict[str, Any]:
        """Submit a transfer; ``items`` are ``(source_path, destination_path[, recursive])``
        or dicts. A submission id is fetched first (unless given), so the resends after a
        lost answer find the first task instead of starting a second (``code`` then says
        ``Duplicate``). ``options``: verify_checksum, preserve_timestamp, encrypt_data,
        deadline, skip_source_errors, fail_on_quota_errors, delete_destination_extra,
        notify_on_succeeded/failed/inactive."""
        body = dict(options, source=source, destination=destination,
                    items=[_item(i) for i in items], label=label, sync_level=sync_level)
        return self._submit("submit/%s" % self._sid(), body, submission_id)

    def delete(self, collection: str, paths: Iterable[str], recursive: bool = False,
               label: Optional[str] = None, submission_id: Optional[str] = None,
               **options: Any) -> Dict[str, Any]:
        """Submit a delete task of ``paths`` (watched like a transfer)."""
        body = dict(options, paths=list(paths), recursive=recursive, label=label)
        return self._submit("delete/%s/%s" % (self._sid(), collection), body, submission_id)

    def _submit(self, path: str, body: Dict[str, Any], submission_id: Optional[str]) -> Dict[str, Any]:
        body = {k: v for k, v in body.items() if v is not None}
        body["submission_id"] = submission_id or self.submission_id()
        for attempt in range(SUBMIT_RETRIES + 1):
            try:
                return self.post(path, json=body)
            except (Unavailable, Timeout):
                if attempt == SUBMIT_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def task(self, task_id: str) -> Dict[str, Any]:
        """Globus's task document."""
        return self.get("task/%s/%s" % (self._sid(), task_id))

    def wait(self, task_id: str, timeout: float = 600.0) -> Dict[str, Any]:
        """The task document once it SUCCEEDED or FAILED; Timeout after ``timeout`` s."""
        deadline = time.monotonic() + seconds("wait timeout", timeout)
        while True:
            left = deadline - time.monotonic()
            step = max(0.0, min(WAIT_STEP, left))
            answer = self.get("wait/%s/%s" % (self._sid(), task_id), params={"timeout": "%.3f" % step},
                              timeout=step + 60.0)
            if answer["done"]:
                return answer["task"]
            if deadline - time.monotonic() <= 0:
                raise Timeout("Globus task %s still %s after %.0f s"
                              % (task_id, answer["task"].get("status"), timeout))

    def cancel(self, task_id: str) -> Dict[str, Any]:
        """``{"task_id", "code", "message"}``: Canceled, or TaskComplete when it had ended."""
        return self.post("cancel/%s/%s" % (self._sid(), task_id))

    def tasks(self, limit: int = 100, offset: int = 0,
              status: Optional[Union[str, Iterable[str]]] = None) -> List[Dict[str, Any]]:
        """The user's tasks, newest first; ``status`` e.g. ``"ACTIVE"`` or a list."""
        params: Dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        return self.get("tasks/%s" % self._sid(), params=params)["tasks"]

    # -- collections --------------------------------------------------------------------
    def ls(self, collection: str, path: str = "/~/", show_hidden: bool = True) -> Dict[str, Any]:
        """``{"collection", "path", "entries", "total"}``; ``collection`` may be ``"local"``."""
        return self.get("ls/%s/%s" % (self._sid(), collection),
                        params={"path": path, "show_hidden": "true" if show_hidden else "false"})

    def mkdir(self, collection: str, path: str) -> Dict[str, Any]:
        return self.post("mkdir/%s/%s" % (self._sid(), collection), json={"path": path})

    def rename(self, collection: str, old_path: str, new_path: str) -> Dict[str, Any]:
        return self.post("rename/%s/%s" % (self._sid(), collection),
                         json={"old_path": old_path, "new_path": new_path})

    def endpoint_search(self, text: Optional[str] = None, scope: Optional[str] = None,
                        limit: int = 25) -> List[Dict[str, Any]]:
        params: Dict[str, Any] = {"limit": limit}
        if text:
            params["text"] = text
        if scope:
            params["scope"] = scope
        return self.get("endpoint_search/%s" % self._sid(), params=params)["collections"]

    def get_endpoint(self, collection: str) -> Dict[str, Any]:
        """Globus's document of a collection (or endpoint)."""
        return self.get("endpoint/%s/%s" % (self._sid(), collection))

    def _sid(self) -> str:
        if self.sid is None:
            raise OrbitError("this GlobusClient has no session (it was made with register=False)", 400)
        return self.sid


def _credentials(given: Dict[str, Optional[str]]) -> Dict[str, str]:
    unknown = sorted(set(given) - set(CREDENTIAL_FIELDS))
    if unknown:
        raise TypeError("unknown credential arguments %s (known: %s)" % (", ".join(unknown), ", ".join(CREDENTIAL_FIELDS)))
    chosen = {k: v for k, v in given.items() if v}
    return chosen or credentials_from_env()


def _item(item: Item) -> Dict[str, Any]:
    if isinstance(item, dict):
        return item
    if len(item) == 2:
        return {"source": item[0], "destination": item[1]}
    if len(item) == 3:
        return {"source": item[0], "destination": item[1], "recursive": bool(item[2])}
    raise ValueError("a transfer item is (source, destination[, recursive]) or a dict, not %r" % (item,))
