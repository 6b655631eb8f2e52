"""One kedro run per output root: the lock refuses a second holder and dies with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mrihisto_kedro.durability.lock import LOCK_NAME, OutputRootBusyError, OutputRootLock

HOLD = r"""
import sys, time
from mrihisto_kedro.durability.lock import OutputRootLock
lock = OutputRootLock(sys.argv[1], "kedro run --pipeline=modelling")
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_run_is_refused_naming_the_holder_until_it_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputRootBusyError) as refused:
            OutputRootLock(root, "kedro run").acquire()
        message = str(refused.value)
        assert f"another kedro run is writing into {root}" in message
        assert f"pid {holder.pid}" in message and "--pipeline=modelling" in message
        assert "--env" in message  # the way out
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    # the OS released the dead holder's lock: the next run takes it without any cleanup
    with OutputRootLock(root, "kedro run") as lock:
        assert lock.held and (root / LOCK_NAME).is_file()
        with pytest.raises(OutputRootBusyError):
            OutputRootLock(root).acquire()  # also within one process
    assert not lock.held
    OutputRootLock(root).acquire()  # released on exit
