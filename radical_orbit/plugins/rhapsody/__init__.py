"""rhapsody: task batches (executables and Python functions) on rhapsody-py sessions.

Needs Python 3.9+ and ``rhapsody-py`` (``pip install 'radical.orbit[rhapsody]'``); where
they are missing the registry skips the plugin with one log line. rhapsody itself is
imported when the first session starts, not when the plugin loads.
"""
from .plugin import RhapsodyPlugin

__all__ = ["RhapsodyPlugin"]
