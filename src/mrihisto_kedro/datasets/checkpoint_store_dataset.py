"""``CheckpointStoreDataset``: an experiment's training checkpoints folder, as a node input."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from mrihisto_kedro.nn.checkpoint_store import CheckpointStore


class CheckpointStoreDataset(AbstractDataset[None, CheckpointStore]):
    """The folder where ``train_experiment`` keeps its resumable checkpoints.

    Loading gives a :class:`~mrihisto_kedro.nn.checkpoint_store.CheckpointStore` on ``path``
    (nothing is read or created until a training opens it), so the node never builds paths
    itself and the folder is visible in the catalog and in kedro-viz. The catalog's
    ``"{experiment}.checkpoints"`` entry puts it at ``data/06_models/<experiment>/checkpoints``.
    Read-only: the training writes into it, no node saves it.
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def _exists(self) -> bool:
        return True  # an empty store is a valid store: there is nothing to resume

    def load(self) -> CheckpointStore:
        path = Path(self._path)
        return CheckpointStore(path, path.parent.name)

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path}: the checkpoint store is written by training only")
