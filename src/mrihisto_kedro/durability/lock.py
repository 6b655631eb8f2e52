"""One ``kedro run`` at a time per output root: an advisory ``flock`` on a lock file.

Two runs writing into the same ``data/`` would interleave their outputs (last writer wins,
silently). The lock is taken before the pipeline runs and released when it ends; the
operating system releases it if the process dies (``kill -9`` included), so a crashed run
never blocks the next one. The lock file records who holds it, for the refusal message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["LOCK_NAME", "OutputRootBusyError", "OutputRootLock"]

LOCK_NAME = ".kedro-run.lock"


class OutputRootBusyError(RuntimeError):
    """Another run holds the lock of this output root."""


class OutputRootLock:
    """Exclusive lock of one output root (e.g. ``data/`` or ``data/full_scale``).

    Args:
        root: the folder the run writes into (created if absent).
        description: what the holder is doing (e.g. the pipeline names), shown to a refused run.
    """

    def __init__(self, root: str | os.PathLike[str], description: str = "") -> None:
        """Prepare the lock; nothing is taken until :meth:`acquire`."""
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.description = description
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputRootBusyError` naming the holder."""
        self.root.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            raise OutputRootBusyError(
                f"another kedro run is writing into {self.root} ({_describe(holder)}); two runs "
                "in one output root would overwrite each other's outputs. Wait for it to end, "
                "or run this one in another environment (--env, whose globals.yml sets another "
                "data_root)"
            ) from None
        fh.seek(0)
        fh.truncate()
        holder_info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "what": self.description,
        }
        fh.write(json.dumps(holder_info))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Release the lock (no-op if not held)."""
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fh is not None

    def __enter__(self) -> Self:
        """Acquire."""
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release."""
        self.release()


def _describe(holder: str) -> str:
    try:
        info = json.loads(holder)
    except json.JSONDecodeError:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}" + (
        f", {info['what']}" if info.get("what") else ""
    )
