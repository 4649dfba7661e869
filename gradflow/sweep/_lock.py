"""One run per results directory: an exclusive ``fcntl`` lock on ``DIR/.lock``."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

#: The lock file inside a results directory (never deleted: deleting it while
#: another process waits on it would let two runs hold two different files).
LOCK = ".lock"


class DirectoryLocked(RuntimeError):
    """Another process holds the results directory's lock."""


@contextlib.contextmanager
def directory_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the block; refuse at once if another process has it.

    The lock is ``flock`` on ``out/.lock``: the kernel drops it when its holder
    exits however it exits (Ctrl-C, SIGKILL, a crash), so a stale lock cannot
    outlive its process. The file names the holder (pid, host, start time,
    command) for the refusal message. (``flock`` is local to a machine on some
    network file systems; runs across machines use one writer, process 0.)

    Raises:
        DirectoryLocked: another process holds the lock.
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryLocked(
                f"{out} is in use by another gradflow run ({_holder(fd)}); wait for "
                f"it to finish or stop it, or choose another --out directory"
            ) from None
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "its pid is not recorded yet"
    return (
        f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: "
        f"{info.get('command')}"
    )
