"""Mounted filesystems: which ones to show, what kind of storage they are, how full.

Users ask "where should my data go?", so each mount is classified as
``shared`` (network / parallel filesystems seen from every node), ``local ssd``
or ``local hdd`` (from the block layer's rotational flag) or ``unknown``.

Measuring a mount can block forever (a hung NFS server), so every measurement
runs in its own worker thread with a deadline; a mount whose previous
measurement is still stuck is skipped without starting another thread, so a
hung mount costs one thread in total, not one per request.
"""
import logging
import os
import re
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import psutil

from .commands import read_text

log = logging.getLogger("radical_orbit.plugins.sysinfo")

SHARED, LOCAL_SSD, LOCAL_HDD, UNKNOWN = "shared", "local ssd", "local hdd", "unknown"

#: Seconds all mounts of one request together may take to measure.
USAGE_TIMEOUT = 2.0
SYS_CLASS_BLOCK = "/sys/class/block"
#: Device-mapper / md / partition chains deeper than this are not followed.
MAX_STACK_DEPTH = 8

#: Kernel filesystem types of network and parallel filesystems.
SHARED_FSTYPES = frozenset((
    "lustre", "gpfs", "nfs", "nfs3", "nfs4", "beegfs", "fhgfs", "dvs", "ceph", "cephfs",
    "panfs", "wekafs", "cifs", "smb3", "smbfs", "glusterfs", "afs", "ocfs2", "gfs2",
    "orangefs", "pvfs2", "cvfs", "quobyte", "lizardfs", "moosefs", "vastfs",
))
#: FUSE back ends of network filesystems: ``fuse.<name>``, or the device of a plain ``fuse`` mount.
SHARED_FUSE = frozenset((
    "sshfs", "s3fs", "rclone", "gcsfuse", "juicefs", "glusterfs", "ceph-fuse", "ceph",
    "cvmfs2", "beegfs", "lustre", "davfs", "goofys", "blobfuse", "blobfuse2", "mfs",
    "lizardfs", "moosefs", "weka", "xrootdfs", "irodsfs",
))
#: Kernel and memory filesystems that hold no user data worth showing.
PSEUDO_FSTYPES = frozenset((
    "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2",
    "securityfs", "pstore", "debugfs", "tracefs", "configfs", "fusectl", "mqueue",
    "hugetlbfs", "bpf", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs",
    "selinuxfs", "squashfs", "nfsd", "devfs", "usbfs", "sockfs", "pipefs",
    "fuse.gvfsd-fuse", "fuse.portal", "fuse.lxcfs", "fuse.snapfuse",
))
#: Memory-backed mounts shown anyway: node-local scratch users write to.
MEMORY_MOUNTS_SHOWN = ("/tmp",)
#: Union filesystems are a container's root; elsewhere they are image layers (noise).
ROOT_ONLY_FSTYPES = frozenset(("overlay", "aufs", "fuse.fuse-overlayfs"))
#: Block devices whose rotational flag says nothing about the storage behind them.
VIRTUAL_BLOCK_PREFIXES = ("loop", "zram", "ram", "nbd", "rbd")
#: ``server:/export`` (NFS, Lustre ``nid@net:/fs``) or ``//server/share`` (SMB).
NETWORK_DEVICE = re.compile(r"^(//|[^/\s]+:/)")


# -- classification ----------------------------------------------------------
def is_shared(fstype: str, device: str = "") -> bool:
    """Whether a mount is a network or parallel filesystem (by type, FUSE back end or device)."""
    fstype = fstype.lower()
    if fstype in SHARED_FSTYPES:
        return True
    if fstype.startswith("fuse.") and fstype[len("fuse."):] in SHARED_FUSE:
        return True
    if fstype == "fuse" and os.path.basename(device) in SHARED_FUSE:
        return True
    return bool(NETWORK_DEVICE.match(device))



def _listdir(path: str) -> List[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _dm_by_name(name: str, sys_block: str) -> Optional[str]:
    """``dm-N`` for a ``/dev/mapper/<name>`` whose device node is not visible (containers)."""
    for entry in _listdir(sys_block):
        if entry.startswith("dm-") and read_text(os.path.join(sys_block, entry, "dm", "name")) == name:
            return entry
    return None


def block_name(device: str, sys_block: str = SYS_CLASS_BLOCK) -> Optional[str]:
    """The kernel name (``sda1``, ``dm-0``, ``nvme0n1p2``) of a ``/dev/...`` device, if any."""
    if not device.startswith("/dev/"):
        return None
    name = os.path.basename(os.path.realpath(device))
    if os.path.exists(os.path.join(sys_block, name)):
        return name
    if device.startswith("/dev/mapper/"):
        return _dm_by_name(os.path.basename(device), sys_block)
    return None


def is_rotational(name: str, sys_block: str = SYS_CLASS_BLOCK, depth: int = 0) -> Optional[bool]:
    """The rotational flag of the disk(s) behind block device ``name``.

    Partitions are resolved to their disk and device-mapper / md devices (LVM,
    LUKS, RAID) to the devices they stack on, because the flag of the upper layer
    is not reliable. Any spinning disk underneath makes the whole stack ``True``.
    None means unknown.
    """
    entry = os.path.join(sys_block, name)
    if depth > MAX_STACK_DEPTH or name.startswith(VIRTUAL_BLOCK_PREFIXES) or not os.path.exists(entry):
        return None
    if os.path.exists(os.path.join(entry, "partition")):
        parent = os.path.basename(os.path.dirname(os.path.realpath(entry)))
        return is_rotational(parent, sys_block, depth + 1)
    lower = _listdir(os.path.join(entry, "slaves"))
    if lower:
        flags = [is_rotational(dev, sys_block, depth + 1) for dev in lower]
        if True in flags:
            return True
        return False if all(flag is False for flag in flags) else None
    return {"0": False, "1": True}.get(read_text(os.path.join(entry, "queue", "rotational")))


def classify_mount(fstype: str, device: str, sys_block: str = SYS_CLASS_BLOCK) -> str:
    """``shared``, ``local ssd``, ``local hdd`` or ``unknown`` for one mount."""
    if is_shared(fstype, device):
        return SHARED
    name = block_name(device, sys_block)
    rotational = is_rotational(name, sys_block) if name else None
    if rotational is None:
        return UNKNOWN
    return LOCAL_HDD if rotational else LOCAL_SSD


# -- which mounts ------------------------------------------------------------
def is_shown(fstype: str, mountpoint: str) -> bool:
    """Whether a mount holds user data worth listing."""
    fstype = fstype.lower()
    if fstype in ROOT_ONLY_FSTYPES:
        return mountpoint == "/"
    if fstype in ("tmpfs", "ramfs"):
        return mountpoint in MEMORY_MOUNTS_SHOWN
    return fstype not in PSEUDO_FSTYPES


def list_mounts() -> List[Any]:
    """The shown mounts, one per mount point: a later mount hides an earlier one there."""
    try:
        partitions = psutil.disk_partitions(all=True)
    except OSError as exc:
        log.warning("cannot list mounts: %s", exc)
        return []
    by_mount: Dict[str, Any] = {}
    for part in partitions:
        by_mount.pop(part.mountpoint, None)
        by_mount[part.mountpoint] = part
    return [part for part in by_mount.values() if is_shown(part.fstype, part.mountpoint)]


# -- measuring ---------------------------------------------------------------
def disk_record(part: Any, usage: Any, kind: str) -> Dict[str, Any]:
    return {"mount": part.mountpoint, "device": part.device, "fstype": part.fstype,
            "type": kind, "total": usage.total, "used": usage.used, "free": usage.free,
            "percent": usage.percent}


class DiskProbe:
    """Measures the shown mounts; a hung or vanished mount is left out, never an error."""

    def __init__(self, timeout: float = USAGE_TIMEOUT, sys_block: str = SYS_CLASS_BLOCK):
        self.timeout = timeout
        self.sys_block = sys_block
        self._pending: Dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def pending(self) -> List[str]:
        """Mount points whose measurement is still blocked (hung mounts)."""
        with self._lock:
            return sorted(self._pending)

    def snapshot(self) -> List[Dict[str, Any]]:
        """All shown mounts measured within ``timeout`` seconds in total."""
        jobs = [job for job in (self._start(part) for part in list_mounts()) if job]
        deadline = time.monotonic() + self.timeout
        disks = []
        for part, thread, result in jobs:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("mount %s did not answer within %.1f s; skipped", part.mountpoint,
                            self.timeout)
            elif result:
                disks.append(result[0])
        return disks

    def _start(self, part: Any) -> Optional[Tuple[Any, threading.Thread, List[Dict[str, Any]]]]:
        result: List[Dict[str, Any]] = []
        with self._lock:
            if part.mountpoint in self._pending:
                return None
            thread = threading.Thread(target=self._measure, args=(part, result),
                                      name="sysinfo-statvfs", daemon=True)
            self._pending[part.mountpoint] = thread
        thread.start()
        return part, thread, result

    def _measure(self, part: Any, result: List[Dict[str, Any]]) -> None:
        """Runs in a worker thread: may block for ever on a dead network mount."""
        try:
            if os.path.isdir(part.mountpoint):
                usage = psutil.disk_usage(part.mountpoint)
                kind = classify_mount(part.fstype, part.device, self.sys_block)
                result.append(disk_record(part, usage, kind))
        except OSError as exc:
            log.debug("mount %s skipped: %s", part.mountpoint, exc)
        except Exception:
            log.exception("measuring mount %s failed", part.mountpoint)
        finally:
            with self._lock:
                self._pending.pop(part.mountpoint, None)
