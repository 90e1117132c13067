"""JSON bodies -> Globus task documents (``TransferData``, ``DeleteData``; in globus-sdk 4
these take no client). Every field is checked here, and a field nobody reads is a 400:
a transfer never runs with an option silently dropped."""
from typing import Any, Callable, Dict, List, Optional

import globus_sdk

from ...errors import BadRequest

#: items (transfer) or paths (delete) in one task at most
MAX_ITEMS = 10000
#: Globus's own limit on a task label
MAX_LABEL = 128
SYNC_LEVELS = ("exists", "size", "mtime", "checksum")
_TRANSFER_FLAGS = ("verify_checksum", "preserve_timestamp", "encrypt_data", "skip_source_errors",
                   "fail_on_quota_errors", "delete_destination_extra", "notify_on_succeeded",
                   "notify_on_failed", "notify_on_inactive")
_DELETE_FLAGS = ("recursive", "ignore_missing", "notify_on_succeeded", "notify_on_failed",
                 "notify_on_inactive")
_COMMON = ("label", "submission_id", "deadline")
TRANSFER_FIELDS = ("source", "destination", "items", "sync_level") + _COMMON + _TRANSFER_FLAGS
DELETE_FIELDS = ("paths",) + _COMMON + _DELETE_FLAGS
ITEM_FIELDS = ("source", "destination", "recursive")


def transfer_data(body: Dict[str, Any], resolve: Callable[[str], str]) -> globus_sdk.TransferData:
    """``{"source", "destination", "items": [{"source", "destination", "recursive"}], ...}``;
    ``resolve`` turns ``"local"`` into this machine's collection."""
    _only(body, TRANSFER_FIELDS, "a transfer")
    options = _common(body)
    options.update(_flags(body, _TRANSFER_FLAGS))
    level = body.get("sync_level")
    if level is not None:
        if isinstance(level, bool) or (level not in SYNC_LEVELS and level not in (0, 1, 2, 3)):
            raise BadRequest("sync_level must be one of %s (or 0-3)" % ", ".join(SYNC_LEVELS))
        options["sync_level"] = level
    data = globus_sdk.TransferData(resolve(_text(body, "source", "a collection id or \"local\"")),
                                   resolve(_text(body, "destination", "a collection id or \"local\"")),
                                   **options)
    for i, item in enumerate(_list(body, "items")):
        if not isinstance(item, dict):
            raise BadRequest("items[%d] must be an object {source, destination, recursive}" % i)
        _only(item, ITEM_FIELDS, "items[%d]" % i)
        recursive = item.get("recursive", False)
        if not isinstance(recursive, bool):
            raise BadRequest("items[%d].recursive must be true or false" % i)
        data.add_item(_text(item, "source", "a path", "items[%d]." % i),
                      _text(item, "destination", "a path", "items[%d]." % i), recursive=recursive)
    return data


def delete_data(collection: str, body: Dict[str, Any]) -> globus_sdk.DeleteData:
    """``{"paths": [...], "recursive", ...}`` on ``collection``: a delete task."""
    _only(body, DELETE_FIELDS, "a delete")
    options = _common(body)
    options.update(_flags(body, _DELETE_FLAGS))
    data = globus_sdk.DeleteData(collection, **options)
    for i, path in enumerate(_list(body, "paths")):
        if not isinstance(path, str) or not path:
            raise BadRequest("paths[%d] must be a non-empty string" % i)
        data.add_item(path)
    return data


def _only(body: Dict[str, Any], known: tuple, what: str) -> None:
    stray = sorted(set(body) - set(known))
    if stray:
        raise BadRequest("%s does not take %s (it takes: %s)" % (what, ", ".join(stray), ", ".join(known)))


def _text(body: Dict[str, Any], name: str, what: str, prefix: str = "") -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest("%s%s must be %s" % (prefix, name, what))
    return value


def _list(body: Dict[str, Any], name: str) -> List[Any]:
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise BadRequest("%s must be a non-empty list" % name)
    if len(value) > MAX_ITEMS:
        raise BadRequest("%s holds %d entries; at most %d per task" % (name, len(value), MAX_ITEMS))
    return value


def _common(body: Dict[str, Any]) -> Dict[str, Any]:
    options: Dict[str, Any] = {}
    label: Optional[Any] = body.get("label")
    if label is not None:
        if not isinstance(label, str) or len(label) > MAX_LABEL:
            raise BadRequest("label must be a string of at most %d characters" % MAX_LABEL)
        options["label"] = label
    for name in ("submission_id", "deadline"):
        if body.get(name) is not None:
            options[name] = _text(body, name, "a non-empty string")
    return options


def _flags(body: Dict[str, Any], names: tuple) -> Dict[str, bool]:
    out = {}
    for name in names:
        if body.get(name) is not None:
            if not isinstance(body[name], bool):
                raise BadRequest("%s must be true or false" % name)
            out[name] = body[name]
    return out
