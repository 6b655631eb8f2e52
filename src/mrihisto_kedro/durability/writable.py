"""Refuse a run whose outputs cannot be written, before its first node (issue 15).

A read-only ``08_reporting`` was found only when evaluation saved its first table, after
every training had run. :func:`output_folders` lists, for the datasets a pipeline is about
to write, the local folders that their writers create files in; :func:`require_writable`
creates and removes one probe file in each, under this project's staging naming
(``.writable-probe.<random>.tmp``, which :mod:`mrihisto_kedro.durability.temporaries`
cleans if a kill leaves one), and raises one :class:`PermissionError` naming every folder
that refused, the datasets that write there and the operating system's reason.

A folder that does not exist yet is probed at its nearest existing parent: that is where
it will be created. An existing folder output (a ``PartitionedDataset``, a tile set, a
figure folder) is probed both inside (writers that add files) and beside (writers that
stage a sibling and swap it in).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "OutputFolderNotWritableError",
    "local_dataset_path",
    "output_folders",
    "require_writable",
]

_PATH_KEYS = ("filepath", "path")


class OutputFolderNotWritableError(PermissionError):
    """Some output folders of the pipeline refuse writes."""


def _local_path(value: Any) -> Path | None:
    text = str(value)
    if "://" in text and not text.startswith("file://"):
        return None  # object stores: their permissions are the store's to report
    return Path(text.removeprefix("file://"))


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def local_dataset_path(dataset: Any) -> Path | None:
    """The local file or folder a Kedro dataset reads and writes (``None``: memory, object
    store, or a dataset without a ``filepath``/``path``)."""
    describe = getattr(dataset, "_describe", None)
    if describe is None:
        return None
    try:
        described = describe()
    except Exception:  # noqa: BLE001 - a dataset that cannot describe itself has no path
        return None
    if not isinstance(described, Mapping):
        return None
    if described.get("protocol") not in (None, "file", "local"):
        return None  # object stores: their permissions are the store's to report
    for key in _PATH_KEYS:
        if described.get(key):
            return _local_path(described[key])
    return None


def output_folders(outputs: Iterable[str], catalog: Any) -> dict[Path, list[str]]:
    """Folders that the datasets ``outputs`` write into -> the dataset names writing there.

    ``catalog`` is a Kedro ``DataCatalog`` (``get(name)`` resolves dataset factories);
    memory datasets and datasets without a local ``filepath``/``path`` are left out.
    """
    get = getattr(catalog, "get", None)
    folders: dict[Path, list[str]] = {}
    if get is None:
        return folders
    for name in sorted(outputs):
        try:
            dataset = get(name)
        except Exception:  # noqa: BLE001 - unknown names are Kedro's to report
            continue
        target = local_dataset_path(dataset) if dataset is not None else None
        if target is None:
            continue
        target = target.absolute()
        probes = [_nearest_existing(target.parent)]
        if target.is_dir():
            probes.append(target)
        for folder in probes:
            folders.setdefault(folder, []).append(name)
    return folders


def _probe(folder: Path) -> OSError | None:
    try:
        fd, name = tempfile.mkstemp(prefix=".writable-probe.", suffix=".tmp", dir=folder)
    except OSError as exc:
        return exc
    os.close(fd)
    os.unlink(name)
    return None


def require_writable(folders: Mapping[Path, list[str]]) -> None:
    """Create and remove a probe file in each folder; raise naming every one that refuses.

    Raises:
        OutputFolderNotWritableError: ``errno.EACCES``, one line per refusing folder with
            the datasets that would write there and the OS error (e.g. "Read-only file
            system", "Operation not permitted" for an immutable folder).
    """
    refused = []
    for folder, names in sorted(folders.items()):
        error = _probe(folder)
        if error is not None:
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            refused.append(f"  {folder}: {error.strerror or error} (outputs: {shown})")
    if refused:
        raise OutputFolderNotWritableError(
            errno.EACCES,
            "these output folders refuse writes, so the run was stopped before its first "
            "node (make them writable, or point the outputs elsewhere, e.g. "
            "--env with another globals.data_root):\n" + "\n".join(refused),
        )
