"""``MriFolderDataset``: a folder of MRI volumes as files *and* DICOM series folders (read only).

Kedro's ``PartitionedDataset`` lists files, so a DICOM series (a folder of slice files) cannot be
one of its partitions, and every ``.raw`` beside an ``.mhd`` or BIDS ``.json`` sidecar becomes a
partition whose loader fails. This dataset lists what a user means by "an MRI":

* every file with an image extension (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``,
  ``.nhdr``, ``.dcm``), named by its path relative to the folder, extension included (as
  ``PartitionedDataset`` names them without a ``filename_suffix``);
* every sub-folder that directly holds DICOM files (a ``.dcm`` suffix, or ``DICM`` at byte 128),
  named by its relative path: loading it reads the series with GDCM's sorting.

Loading returns ``{name: callable}``; each callable reads one volume through
:func:`mrihisto_kedro.imaging.sitk_io.read_image` (spacing, origin and direction kept; errors
name the file). Hidden files and folders are skipped.

Example (``conf/local/catalog.yml``)::

    mri_volumes:
      type: mrihisto_kedro.datasets.mri_folder_dataset.MriFolderDataset
      path: /data/study/mri      # cc01_t1.nii.gz, cc02_t1/ (a DICOM series), cc03.dcm
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_protocol_and_path

from mrihisto_kedro.imaging.sitk_io import ImageReadError, read_image

__all__ = ["MriFolderDataset"]

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm")
_LOAD_ARGS = frozenset({"allow_nonfinite", "check_truncation", "pixel_type"})


def _is_dicom(path: Path) -> bool:
    """A ``.dcm`` name, or the ``DICM`` preamble marker at byte 128 (DICOM part 10)."""
    if path.name.lower().endswith(".dcm"):
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _load(path: Path, load_args: dict[str, Any]) -> sitk.Image:
    try:
        return read_image(path, **load_args)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from exc


class MriFolderDataset(AbstractDataset[None, dict[str, Callable[[], sitk.Image]]]):
    """MRI volumes in one folder: image files and DICOM series folders, loaded lazily."""

    def __init__(
        self,
        *,
        path: str,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            path: the folder (local; a plain path or ``file://`` URL).
            load_args: keyword arguments of ``read_image`` for every volume:
                ``allow_nonfinite``, ``check_truncation``, ``pixel_type``.
            metadata: free-form metadata for plugins (not used by the dataset).
        """
        protocol, local = get_protocol_and_path(str(path))
        if protocol != "file":
            raise DatasetError(f"MriFolderDataset reads local folders only; got {path!r}")
        self._path = Path(local)
        self._load_args = dict(load_args or {})
        unknown = sorted(set(self._load_args) - _LOAD_ARGS)
        if unknown:
            raise DatasetError(
                f"MriFolderDataset({path}): unknown load_args {unknown}; allowed: "
                f"{sorted(_LOAD_ARGS)}"
            )
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "load_args": self._load_args}

    def _exists(self) -> bool:
        return self._path.is_dir()

    def volumes(self) -> dict[str, Path]:
        """``{name: path}`` of every volume in the folder, sorted by name."""
        if not self._path.is_dir():
            raise DatasetError(f"MRI folder {self._path} does not exist")
        found: dict[str, Path] = {}
        for root, dirs, files in os.walk(self._path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            here = Path(root)
            visible = [f for f in sorted(files) if not f.startswith(".")]
            if here != self._path and any(_is_dicom(here / f) for f in visible):
                found[here.relative_to(self._path).as_posix()] = here
            for name in visible:
                if name.lower().endswith(_IMAGE_SUFFIXES):
                    found[(here / name).relative_to(self._path).as_posix()] = here / name
        return dict(sorted(found.items()))

    def load(self) -> dict[str, Callable[[], sitk.Image]]:
        """``{name: callable}``; calling one reads that volume (see the module docstring)."""
        return {
            name: partial(_load, path, self._load_args) for name, path in self.volumes().items()
        }

    def save(self, data: None) -> None:
        """Not supported: the folder holds a user's raw MRI."""
        raise DatasetError(f"MriFolderDataset({self._path}) is read only")
