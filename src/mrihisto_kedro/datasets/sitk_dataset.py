"""``SimpleITKImageDataset``: one medical image (NIfTI, MHA/MHD, NRRD or a DICOM series folder)."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_protocol_and_path

from mrihisto_kedro.imaging.sitk_io import (
    ImageReadError,
    ImageWriteError,
    image_format,
    read_image,
    write_image,
)

_LOAD_ARGS = frozenset({"series_id", "allow_nonfinite", "check_truncation", "pixel_type"})
_SAVE_ARGS = frozenset({"compress", "dicom_modality", "dicom_series_description", "dicom_tags"})


class SimpleITKImageDataset(AbstractDataset[sitk.Image, sitk.Image]):
    """A ``SimpleITK.Image`` stored as NIfTI, MetaImage, NRRD or a DICOM series folder.

    The format follows the path: ``.nii``/``.nii.gz``, ``.mha``/``.mhd``, ``.nrrd``/``.nhdr``, or
    a folder path without suffix for a DICOM series. Geometry (origin, spacing in mm, direction)
    is kept. Loading validates the file (missing, corrupt, truncated NIfTI, NaN voxels) through
    :func:`mrihisto_kedro.imaging.sitk_io.read_image`; saving is atomic through
    :func:`~mrihisto_kedro.imaging.sitk_io.write_image`. Local files only (SimpleITK reads paths,
    not streams).

    It works as the ``dataset`` of ``kedro_datasets.partitions.PartitionedDataset``: a folder of
    volumes loads as ``{partition_id: load_callable}`` and a dict of images saves as one file each.
    Give the partitioned dataset a ``filename_suffix`` (``.nii.gz``, ``.mha``): without it every
    file is a partition, including ``.raw``/``.zraw`` data files of ``.mhd`` headers and sidecar
    files, whose loaders then fail. A DICOM series cannot be a partition (PartitionedDataset lists
    files, not folders): give each series its own dataset entry.

    Example (``catalog.yml``)::

        t1_volume:
          type: mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset
          filepath: data/01_raw/mri/specimen_01_t1.nii.gz
          load_args:
            pixel_type: sitkFloat32

        mri_slices:
          type: partitions.PartitionedDataset
          path: data/02_intermediate/mri_slices
          dataset:
            type: mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset
          filename_suffix: .mha

    Args:
        filepath: image file or DICOM folder (a plain path or ``file://`` URL).
        load_args: keyword arguments of ``read_image``: ``series_id``, ``allow_nonfinite``,
            ``check_truncation``, ``pixel_type``.
        save_args: keyword arguments of ``write_image``: ``compress``, ``dicom_modality``,
            ``dicom_series_description``, ``dicom_tags``.
        metadata: free-form metadata for plugins (not used by the dataset).

    Raises:
        DatasetError: a non-local protocol or an unknown load/save argument (at construction);
            an unsupported extension (at load/save).
    """

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(str(filepath))
        if protocol != "file":
            raise DatasetError(
                f"SimpleITKImageDataset reads local files only; got protocol {protocol!r} in "
                f"{filepath!r}"
            )
        self._filepath = Path(path)
        self._load_args = deepcopy(load_args or {})
        self._save_args = deepcopy(save_args or {})
        self.metadata = metadata
        for name, given, allowed in (
            ("load_args", self._load_args, _LOAD_ARGS),
            ("save_args", self._save_args, _SAVE_ARGS),
        ):
            unknown = sorted(set(given) - allowed)
            if unknown:
                raise DatasetError(
                    f"SimpleITKImageDataset({filepath}): unknown {name} {unknown}; "
                    f"allowed: {sorted(allowed)}"
                )
        # An unsupported extension is reported by load/save, not here: PartitionedDataset
        # builds one instance per file of its folder (and one with filepath "" for its repr),
        # so a stray README or BIDS .json sidecar must not break loading the other partitions.
        try:
            self._format = image_format(self._filepath) if path else ""
        except ValueError:
            self._format = "unsupported"

    @property
    def filepath(self) -> Path:
        """The image file this dataset reads and writes."""
        return self._filepath

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "format": self._format,
            "load_args": self._load_args,
            "save_args": self._save_args,
        }

    def _exists(self) -> bool:
        path = self._filepath
        if path.is_dir():
            return any(f.is_file() for f in path.iterdir())
        return path.is_file()

    def load(self) -> sitk.Image:
        """Read the image (see ``read_image``); errors become ``DatasetError`` naming the file."""
        try:
            return read_image(self._filepath, **self._load_args)
        except ImageReadError as exc:
            raise DatasetError(str(exc)) from exc

    def save(self, data: sitk.Image) -> None:
        """Write ``data`` atomically (see ``write_image``), creating parent folders."""
        if not isinstance(data, sitk.Image):
            raise DatasetError(
                f"SimpleITKImageDataset({self._filepath}) saves SimpleITK.Image objects, got "
                f"{type(data).__name__}"
            )
        try:
            write_image(data, self._filepath, **self._save_args)
        except ImageWriteError as exc:
            raise DatasetError(str(exc)) from exc
