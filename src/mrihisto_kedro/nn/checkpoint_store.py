"""Where an experiment's trainings keep their checkpoints, so a killed run resumes (no Kedro).

Layout under one experiment's folder (the catalog's ``<experiment>.checkpoints``, by default
``data/06_models/<experiment>/checkpoints``)::

    final-<key>/last.pt             rolling checkpoint of the final training (nn.training)
    final-<key>/training.json       what was trained (the fingerprinted parameters)
    final-<key>/mlflow_run.json     the MLflow run the training logs to (continued on resume)
    search-<key>/trials.jsonl       one line per completed search trial: number, values, metric
    search-<key>/trial-<n>/...      the running trial's checkpoint, as for the final training

``<key>`` is a fingerprint of everything that decides the training's numbers: model type and
values, data feeding, the tile set (manifest, shapes, dtypes) and, for a search, its space,
sampler and trial overrides. The same command after a crash finds the same key and resumes
from the last complete epoch (and skips completed trials); a changed parameter gives another
key, and the old folder is removed with a message that says so.

A final training that completes keeps its checkpoint (one ``last.pt``): running the same
command again, e.g. after a later node failed, reuses the trained model instead of training
it again, and says so (``training.resume: never`` trains again). A completed trial's
checkpoint is removed once its line is in ``trials.jsonl``.

Data-parallel training (:mod:`mrihisto_kedro.nn.distributed`): rank 0 alone opens, cleans and
writes these folders; the other ranks receive rank 0's answer (folder, resume, epoch, run id)
and read the same ``last.pt`` when they resume. Methods that write are no-ops on ranks > 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrihisto_kedro.durability.atomic import atomic_path
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.distributed import from_main, is_main
from mrihisto_kedro.nn.training import CHECKPOINT_NAME, load_checkpoint

__all__ = [
    "CheckpointStore",
    "ResumePolicy",
    "TrainingCheckpoint",
    "fingerprint",
    "tileset_fingerprint",
]

logger = logging.getLogger(__name__)

_RUN_FILE = "mlflow_run.json"
_PARAMS_FILE = "training.json"
_TRIALS_FILE = "trials.jsonl"


class ResumePolicy(StrEnum):
    """``training.resume``: what a training does with a checkpoint of the same key."""

    AUTO = "auto"
    """Resume from it (the default): the same command after a crash continues."""
    NEVER = "never"
    """Delete it and train from epoch 0 (checkpoints are still written)."""


def _write_json(path: Path, value: Any) -> None:
    """``value`` as sorted JSON at ``path``, atomically (a kill leaves the old file or none)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, sort_keys=True, default=str), encoding="utf-8")


def fingerprint(value: Any) -> str:
    """16 hex digits of SHA-256 over ``value`` as canonical JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tileset_fingerprint(tileset: TileSet) -> str:
    """Fingerprint of a tile set's identity: its manifest, array shapes and dtypes."""
    digest = hashlib.sha256(tileset.manifest.to_csv(index=False).encode())
    for name, array in (("a", tileset.a), ("b", tileset.b)):
        if array is None:  # an unpaired set has no b
            digest.update(f"{name}None".encode())
            continue
        digest.update(f"{name}{tuple(array.shape)}{np.dtype(array.dtype).str}".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TrainingCheckpoint:
    """One training's checkpoint folder, as :meth:`CheckpointStore.training` opened it.

    Attributes:
        folder: the ``checkpoint_dir`` to give :func:`mrihisto_kedro.nn.training.train`.
        resume: pass ``resume=True`` (a checkpoint exists and the policy allows it).
        epoch: epochs the checkpoint holds (0 when there is none).
        run_id: the MLflow run of the interrupted training, to continue (``None``: new run).
    """

    folder: Path
    resume: bool
    epoch: int
    run_id: str | None

    def record_run(self, run_id: str | None) -> None:
        """Remember the MLflow run this training logs to (read back on resume; rank 0 only)."""
        if run_id is not None and is_main():
            _write_json(self.folder / _RUN_FILE, {"run_id": run_id})


class CheckpointStore:
    """The checkpoint folders of one experiment (see the module docstring).

    Args:
        root: the experiment's checkpoint folder (created when first needed).
        experiment: its name, for messages.
    """

    def __init__(self, root: str | Path, experiment: str = "") -> None:
        """Point at ``root``; nothing is created or read yet."""
        self.root = Path(root)
        self.experiment = experiment or self.root.parent.name

    # ------------------------------------------------------------------------------- trainings
    def training(
        self,
        key: str,
        described: Mapping[str, Any],
        policy: ResumePolicy | str = ResumePolicy.AUTO,
        *,
        kind: str = "final",
        parent: Path | None = None,
    ) -> TrainingCheckpoint:
        """Open the folder of the training ``key``; remove others of the same ``kind``.

        Args:
            key: :func:`fingerprint` of what is trained.
            described: the fingerprinted parameters (written beside the checkpoint, and used
                to say what changed).
            policy: resume or start fresh.
            kind: ``final`` or ``trial-<n>`` (trial folders live under ``parent``).
            parent: the search folder of a trial (:meth:`search`).

        In a process group rank 0 opens the folder and every rank gets its answer.
        """
        return from_main(lambda: self._open_training(key, described, policy, kind, parent))

    def _open_training(
        self,
        key: str,
        described: Mapping[str, Any],
        policy: ResumePolicy | str,
        kind: str,
        parent: Path | None,
    ) -> TrainingCheckpoint:
        policy = ResumePolicy(policy)
        base = parent if parent is not None else self.root
        folder = base / (kind if parent is not None else f"{kind}-{key}")
        if parent is None:
            self._remove_stale(kind, folder, described)
        if policy is ResumePolicy.NEVER and folder.exists():
            logger.info("%s: training.resume is 'never': removing %s", self.experiment, folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / _PARAMS_FILE, described)
        epoch = _checkpoint_epoch(folder / CHECKPOINT_NAME)
        run_file = folder / _RUN_FILE
        run_id = json.loads(run_file.read_text())["run_id"] if run_file.is_file() else None
        if epoch:
            logger.info(
                "resuming %s (%s) from epoch %d (training.resume: never starts again)",
                self.experiment,
                kind,
                epoch,
            )
        return TrainingCheckpoint(folder, resume=epoch > 0, epoch=epoch, run_id=run_id)

    def search(
        self, key: str, described: Mapping[str, Any], policy: ResumePolicy | str
    ) -> SearchCheckpoint:
        """Open the folder of the search ``key`` (removing searches of other parameters).

        In a process group rank 0 opens the folder and every rank gets it.
        """
        return from_main(lambda: self._open_search(key, described, policy))

    def _open_search(
        self, key: str, described: Mapping[str, Any], policy: ResumePolicy | str
    ) -> SearchCheckpoint:
        folder = self.root / f"search-{key}"
        self._remove_stale("search", folder, described)
        if ResumePolicy(policy) is ResumePolicy.NEVER and folder.exists():
            logger.info("%s: training.resume is 'never': removing %s", self.experiment, folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / _PARAMS_FILE, described)
        return SearchCheckpoint(folder, self)

    def _remove_stale(self, kind: str, keep: Path, described: Mapping[str, Any]) -> None:
        if not self.root.is_dir():
            return
        for stale in sorted(self.root.glob(f"{kind}-*")):
            if stale == keep or not stale.is_dir():
                continue
            changed = _changed_keys(stale / _PARAMS_FILE, described)
            logger.warning(
                "%s: parameters changed since checkpoint %s (%s): starting fresh",
                self.experiment,
                stale.name,
                ", ".join(changed) or "unknown",
            )
            shutil.rmtree(stale)


class SearchCheckpoint:
    """A search's folder: completed trials (skipped on resume) and the running trial's folder."""

    def __init__(self, folder: Path, store: CheckpointStore) -> None:
        """Wrap ``folder`` (made by :meth:`CheckpointStore.search`)."""
        self.folder = folder
        self.store = store

    @property
    def run_id(self) -> str | None:
        """The MLflow run of the interrupted search (its parent run), or ``None``."""
        path = self.folder / _RUN_FILE
        return json.loads(path.read_text())["run_id"] if path.is_file() else None

    def record_run(self, run_id: str | None) -> None:
        """Remember the search's MLflow run (rank 0 only)."""
        if run_id is not None and is_main():
            _write_json(self.folder / _RUN_FILE, {"run_id": run_id})

    def completed(self) -> dict[int, dict[str, Any]]:
        """``{trial number: {"values": ..., "value": metric}}`` of trials that finished."""
        path = self.folder / _TRIALS_FILE
        if not path.is_file():
            return {}
        out = {}
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that trial reruns
                continue
            out[int(record["number"])] = record
        return out

    def record(self, number: int, values: Mapping[str, Any], value: float) -> None:
        """Append a completed trial (one JSON line, flushed) and drop its checkpoint (rank 0
        only)."""
        if not is_main():
            return
        line = json.dumps({"number": number, "values": dict(values), "value": float(value)})
        with (self.folder / _TRIALS_FILE).open("a") as fh:
            fh.write(line + "\n")
        shutil.rmtree(self.folder / f"trial-{number}", ignore_errors=True)

    def trial(
        self, number: int, described: Mapping[str, Any], policy: ResumePolicy | str
    ) -> TrainingCheckpoint:
        """Open trial ``number``'s checkpoint folder (resumable like a final training)."""
        return self.store.training(
            "", described, policy, kind=f"trial-{number}", parent=self.folder
        )


def _checkpoint_epoch(path: Path) -> int:
    """Epochs held by a complete checkpoint at ``path`` (0 if absent or unreadable)."""
    if not path.is_file():
        return 0
    try:
        return int(load_checkpoint(path)["epoch"])
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is retrained, and said so
        logger.warning("checkpoint %s cannot be read (%s): training from epoch 0", path, exc)
        path.unlink()
        return 0


def _changed_keys(path: Path, described: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between the parameters at ``path`` and ``described``."""
    try:
        before = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    flat_before = pd.json_normalize(before, sep=".").to_dict("records")[0]
    flat_now = pd.json_normalize(json.loads(json.dumps(described, default=str)), sep=".")
    now = flat_now.to_dict("records")[0]
    keys = sorted({str(k) for k in flat_before} | {str(k) for k in now})  # JSON keys: str
    return [k for k in keys if flat_before.get(k) != now.get(k)]
