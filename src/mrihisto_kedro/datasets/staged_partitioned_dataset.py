"""``StagedPartitionedDataset``: a folder output replaced as a whole, only once complete.

kedro-datasets' ``PartitionedDataset(overwrite=True)`` empties its folder before writing the
first partition: a bad slide, a full disk or a kill half-way through ``downsample_slides``
leaves a partial folder and the previous results are gone, and a later
``--only-missing-outputs`` run takes the partial folder for a complete one (then dies with a
bare ``KeyError: 'pair_07'``). This dataset (issue 15):

* writes every partition into a hidden staging folder beside the destination
  (``.<name>.tmp-<12 hex>``: a killed run's leftovers are removed by the next run's
  ``hooks.RunSafetyHooks``), then a completion record ``_partitions.json`` (partition ids,
  files, sizes) last, then swaps the folder in (``durability.atomic.replace_folder``): a
  failed or killed save leaves the previous complete folder in place;
* loads only a folder with a completion record whose files are all present at their recorded
  sizes, else raises an error naming the folder and what is wrong; ``exists`` is false for an
  incomplete folder, so ``--only-missing-outputs`` reruns its node;
* returns the partitions as a mapping whose missing keys raise an error naming the folder,
  the missing partition and the partitions it does hold.

Local folders only (the project's ``data/``). Configured like ``PartitionedDataset``
(``path``, ``dataset``, ``filename_suffix``, ``save_lazily``); ``overwrite`` is implied.

``parallel_saves: N`` (default 1: one partition after another, as ``PartitionedDataset``)
writes up to N partitions at once on threads, in a bounded window: a lazy partition (a callable,
e.g. ``downsample_slides``' one per slide) is called by the thread that writes it, so at most N
are open or held at once whatever their number. The staging and completion rules are the same:
the first partition that fails stops the save (partitions not yet started are not started, the
running ones finish), its error is raised and the previous folder stays. Pays where writing
releases the GIL (libvips, OpenSlide, SimpleITK, tifffile's codecs).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from kedro.io import DatasetError
from kedro_datasets.partitions import PartitionedDataset

from mrihisto_kedro.durability.atomic import replace_folder, staging_path

__all__ = ["RECORD_NAME", "Partitions", "StagedPartitionedDataset"]

RECORD_NAME = "_partitions.json"
_FORMAT = "mrihisto-partitions"


class Partitions(dict[str, Callable[[], Any]]):
    """``{partition id: loader}``; a missing id names the folder and what it holds."""

    def __init__(self, loaders: dict[str, Callable[[], Any]], folder: Path) -> None:
        """Wrap ``loaders`` of ``folder``."""
        super().__init__(loaders)
        self.folder = folder

    def __missing__(self, key: str) -> Callable[[], Any]:
        """Raise a KeyError that says where the partition was looked for."""
        held = sorted(self)
        shown = ", ".join(held[:8]) + (" ..." if len(held) > 8 else "")
        raise KeyError(
            f"{self.folder} has no partition {key!r} (it holds {len(held)}: {shown}); the step "
            "that writes this folder did not produce it: rerun that step for this pair"
        )


class StagedPartitionedDataset(PartitionedDataset):
    """A ``PartitionedDataset`` whose saves are complete or not at all (module docstring)."""

    def __init__(self, *, path: str, parallel_saves: int = 1, **kwargs: Any) -> None:
        """Same arguments as ``PartitionedDataset`` (``overwrite`` is implied and ignored), and
        ``parallel_saves``: partitions written at once (>= 1; module docstring)."""
        kwargs.pop("overwrite", None)
        super().__init__(path=path, overwrite=False, **kwargs)
        if self._protocol not in ("file", None):
            raise DatasetError(f"{path}: StagedPartitionedDataset writes local folders only")
        if (
            isinstance(parallel_saves, bool)
            or not isinstance(parallel_saves, int)
            or parallel_saves < 1
        ):
            raise DatasetError(
                f"{path}: parallel_saves must be an integer >= 1, got {parallel_saves!r}"
            )
        self._folder = Path(path)
        self._kwargs = kwargs
        self._parallel_saves = parallel_saves

    def save(self, data: dict[str, Any]) -> None:
        """Write every partition into a staging folder, record them, then swap it in."""
        dest = self._folder
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_path(dest)
        staging.mkdir()
        try:
            try:
                self._write(staging, data)
            except DatasetError as exc:  # name the destination, not the staging folder
                raise (exc.__cause__ or exc) from None
            files = {
                str(partition_id): _partition_file(staging, str(partition_id), self._suffix)
                for partition_id in data
            }
            record = {
                "format": _FORMAT,
                "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "partitions": {
                    pid: {"file": name, "bytes": (staging / name).stat().st_size}
                    for pid, name in sorted(files.items())
                },
            }
            (staging / RECORD_NAME).write_text(json.dumps(record, indent=1))
            replace_folder(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._invalidate_caches()

    def _write(self, staging: Path, data: dict[str, Any]) -> None:
        """Write ``data``'s partitions into ``staging``: one after another, or on
        ``parallel_saves`` threads (each thread calls the lazy partitions it writes)."""
        workers = min(self._parallel_saves, len(data))
        if workers <= 1:
            self._writer(staging).save(data)
            return
        queue = iter(sorted(data))
        with ThreadPoolExecutor(workers, thread_name_prefix="partition-save") as pool:

            def start(n: int) -> set[Future[None]]:
                """Start the next ``n`` partitions (fewer at the end)."""
                pids = [pid for _, pid in zip(range(n), queue, strict=False)]
                return {pool.submit(self._writer(staging).save, {pid: data[pid]}) for pid in pids}

            running = start(workers)
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                errors = [error for future in done if (error := future.exception()) is not None]
                if errors:  # start nothing more; the running partitions finish on exit
                    raise errors[0]
                running |= start(len(done))

    def _writer(self, staging: Path) -> PartitionedDataset:
        return PartitionedDataset(path=str(staging), overwrite=False, **self._kwargs)

    @property
    def _suffix(self) -> str:
        return str(self._filename_suffix or "")

    def _record(self) -> dict[str, Any]:
        """The completion record, checked against the folder; raise naming what is wrong."""
        folder = self._folder
        if not folder.is_dir():
            raise DatasetError(f"{folder} does not exist: run the pipeline that writes it first")
        path = folder / RECORD_NAME
        if not path.is_file():
            raise DatasetError(
                f"{folder} is incomplete: it has no {RECORD_NAME}, the record written when "
                "every partition is saved (a run was interrupted while writing it, or it "
                "predates this check); rerun the pipeline that writes it"
            )
        try:
            record = json.loads(path.read_text())
            partitions = dict(record["partitions"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path} is not a valid completion record: {exc}") from None
        for pid, entry in partitions.items():
            file = folder / str(entry["file"])
            if not file.is_file():
                raise DatasetError(f"{folder}: partition {pid!r} ({file.name}) is missing")
            if file.stat().st_size != int(entry["bytes"]):
                raise DatasetError(
                    f"{folder}: partition {pid!r} ({file.name}) has {file.stat().st_size} "
                    f"bytes, the record says {entry['bytes']}: it changed after it was written"
                )
        return partitions

    def load(self) -> Partitions:
        """The recorded partitions' loaders (see :class:`Partitions`)."""
        recorded = self._record()
        self._invalidate_caches()
        loaders = (
            {pid: loader for pid, loader in super().load().items() if pid in recorded}
            if recorded
            else {}
        )
        return Partitions(loaders, self._folder)

    def _exists(self) -> bool:
        try:
            self._record()
        except DatasetError:
            return False
        return True


def _partition_file(folder: Path, partition_id: str, suffix: str) -> str:
    """The file a partition was saved to, relative to ``folder`` (its id plus the suffix)."""
    name = f"{partition_id}{suffix}"
    if not (folder / name).exists():
        raise DatasetError(f"{folder}: partition {partition_id!r} was not written as {name}")
    return name
