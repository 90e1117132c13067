"""The globus plugin's settings: its ``--plugin-config`` JSON, with named defaults."""
from typing import Any, Dict, Optional

#: seconds between two polls of the watched tasks (one task_list call per session)
POLL_INTERVAL = 5.0
#: tasks watched for ``transfer_status`` at most; beyond, the oldest is no longer watched
MAX_WATCHED = 1000
#: the longest a single ``wait`` call blocks (s), holding one endpoint worker; the SDK's ``wait`` repeats it
MAX_WAIT = 60.0
#: seconds globus-sdk waits for one HTTP answer from Globus
HTTP_TIMEOUT = 30.0
#: how often globus-sdk retries a 429/5xx/network failure, and its longest pause (s)
MAX_RETRIES = 3
MAX_SLEEP = 10.0

_FLOATS = {"poll_interval": (POLL_INTERVAL, 0.05, 3600.0), "max_wait": (MAX_WAIT, 0.0, 3600.0),
           "http_timeout": (HTTP_TIMEOUT, 0.1, 600.0), "max_sleep": (MAX_SLEEP, 0.0, 600.0)}
_INTS = {"max_watched": (MAX_WATCHED, 0, 100000), "max_retries": (MAX_RETRIES, 0, 20)}
_STRINGS = ("environment", "transfer_url", "auth_url", "local_collection", "gcp_config_dir")


class Settings:
    """Checked once at load: a bad value stops the plugin with a clear ValueError."""

    poll_interval: float
    max_wait: float
    http_timeout: float
    max_sleep: float
    max_watched: int
    max_retries: int
    environment: Optional[str]
    transfer_url: Optional[str]
    auth_url: Optional[str]
    local_collection: Optional[str]
    gcp_config_dir: Optional[str]

    def __init__(self, config: Optional[Dict[str, Any]] = None):
        config = dict(config or {})
        unknown = sorted(set(config) - set(_FLOATS) - set(_INTS) - set(_STRINGS))
        if unknown:
            raise ValueError("unknown globus settings %s (known: %s)"
                             % (", ".join(unknown), ", ".join(sorted(list(_FLOATS) + list(_INTS) + list(_STRINGS)))))
        for name, (default, low, high) in _FLOATS.items():
            value = config.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError("globus setting %s must be a number from %g to %g" % (name, low, high))
            setattr(self, name, float(value))
        for name, (default, low, high) in _INTS.items():
            value = config.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError("globus setting %s must be an integer from %d to %d" % (name, low, high))
            setattr(self, name, value)
        for name in _STRINGS:
            value = config.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError("globus setting %s must be a non-empty string" % name)
            setattr(self, name, value)
