"""Which collection is ``"local"``: the one this endpoint's machine serves.

In order: the plugin setting ``local_collection``, the environment variable
``RADICAL_ORBIT_GLOBUS_COLLECTION``, then Globus Connect Personal's configuration
(``~/.globusonline/lta/client-id.txt``, or under the setting ``gcp_config_dir``).
"""
import os
from typing import Dict, Optional, Tuple

import globus_sdk

from ...errors import NotFound
from .settings import Settings

ENV = "RADICAL_ORBIT_GLOBUS_COLLECTION"
LOCAL = "local"


def find(settings: Settings) -> Tuple[Optional[str], str]:
    """(collection id or None, where it came from)."""
    if settings.local_collection:
        return settings.local_collection, "setting local_collection"
    if os.environ.get(ENV):
        return os.environ[ENV].strip(), "environment %s" % ENV
    gcp = globus_sdk.LocalGlobusConnectPersonal(config_dir=settings.gcp_config_dir)
    try:
        found = gcp.endpoint_id
    except OSError:
        found = None
    if found:
        return found, "Globus Connect Personal (%s)" % gcp.config_dir
    return None, "none"


def describe(settings: Settings) -> Dict[str, Optional[str]]:
    collection, source = find(settings)
    return {"collection": collection, "source": source}


def resolve(collection: str, settings: Settings) -> str:
    """``collection`` itself, or for ``"local"`` this machine's collection (404 with where
    it was looked for when there is none)."""
    if collection != LOCAL:
        return collection
    found, _source = find(settings)
    if not found:
        raise NotFound("no local Globus collection on this endpoint: set the globus plugin setting "
                       "local_collection, or %s, or run Globus Connect Personal here" % ENV)
    return found
