"""What a node gets per partition of a folder dataset.

Kedro's ``PartitionedDataset`` (and this project's ``StagedPartitionedDataset``) load as
``{partition id: zero-argument callable}``: a node calls :data:`Loader` to read one partition
when it needs it, so a folder of slides is never held in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Loader"]

#: one partition of a folder dataset, read when called
Loader = Callable[[], Any]
