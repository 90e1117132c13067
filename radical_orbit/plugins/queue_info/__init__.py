"""queue_info: the batch queues, nodes, jobs and allocations of a machine (SLURM, PBS Pro)."""
from .plugin import QueueInfoPlugin

__all__ = ["QueueInfoPlugin"]
