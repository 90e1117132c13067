"""staging: files to and from an endpoint's machine, small ones as JSON and any size
streamed; atomic, resumable, confined to the allowed roots."""
from .plugin import StagingPlugin

__all__ = ["StagingPlugin"]
