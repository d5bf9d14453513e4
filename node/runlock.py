"""``run.lock``: one running node per data directory, and a way for the CLI to know.

``examnode run`` holds an exclusive ``flock`` on ``DIR/run.lock`` while it
serves. Commands that change the store (import, restore) use the running
node's API when the lock is held, because the node's writer keeps live
documents in memory that another process must not change behind its back.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from node.errors import ConfigError

LOCK_FILE = "run.lock"


class RunLock:
    """The exclusive lock of a serving node."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or fail when another process serves this directory."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise ConfigError(f"{self.path.parent}: a node is already running on this "
                              "data directory") from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_running(data_dir: Path) -> bool:
    """Return True when a node process currently serves ``data_dir``."""
    path = data_dir / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
