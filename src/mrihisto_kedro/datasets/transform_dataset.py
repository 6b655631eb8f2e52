"""``SimpleITKTransformDataset``: a SimpleITK transform file (``.tfm``, ``.txt``, ``.h5``)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import SimpleITK as sitk
from kedro.io import AbstractDataset, DatasetError

from mrihisto_kedro.durability.atomic import atomic_path


class SimpleITKTransformDataset(AbstractDataset[sitk.Transform, sitk.Transform]):
    """A spatial transform as ITK writes it, so a user can re-apply it in 3D Slicer or SimpleITK.

    The registration pipeline saves fixed (histology) mm -> moving (MRI) mm affine transforms:
    ``sitk.Resample(mri, histology_grid, sitk.ReadTransform(path))`` re-creates the aligned MRI.
    Saving is atomic (:func:`~mrihisto_kedro.durability.atomic.atomic_path`).
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def load(self) -> sitk.Transform:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"transform file {path} does not exist")
        try:
            return sitk.ReadTransform(str(path))
        except RuntimeError as exc:
            raise DatasetError(
                f"transform file {path} is not a readable ITK transform: {exc}"
            ) from exc

    def save(self, data: sitk.Transform) -> None:
        # the staging file keeps the extension: ITK picks the transform format from it
        with atomic_path(Path(self._filepath)) as tmp:
            sitk.WriteTransform(data, str(tmp))
