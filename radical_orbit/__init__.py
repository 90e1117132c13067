"""ORBIT: reach HPC machines through one bridge.

Public API only. Names are imported lazily so that the bridge and endpoint
processes do not pay for the client SDK (``requests``) they never use.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "OrbitError": "errors", "BadRequest": "errors", "Unauthorized": "errors",
    "Forbidden": "errors", "NotFound": "errors", "Conflict": "errors",
    "Gone": "errors", "PayloadTooLarge": "errors", "Unavailable": "errors",
    "Timeout": "errors", "RangeNotSatisfiable": "errors", "InsufficientStorage": "errors",
    "FileNotFound": "errors", "FileExists": "errors", "NotADirectory": "errors",
    "IsADirectory": "errors", "PermissionDenied": "errors",
    "Plugin": "plugin", "PluginSession": "plugin", "route": "plugin",
    "Request": "plugin", "Response": "plugin",
    "BridgeClient": "client", "EndpointClient": "client", "PluginClient": "client",
}

__all__ = ["__version__"] + sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError("module 'radical_orbit' has no attribute %r" % name)
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
