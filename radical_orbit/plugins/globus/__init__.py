"""globus: Globus Transfer through ``globus-sdk`` (an extra: ``radical.orbit[globus]``).

Sessions carry Globus credentials (in endpoint memory only); routes submit, watch and
cancel transfers and operate on collections; a poller publishes ``transfer_status``.
"""
from .plugin import GlobusPlugin

__all__ = ["GlobusPlugin"]
