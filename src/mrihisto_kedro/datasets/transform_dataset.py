"""``SimpleITKTransformDataset``: a SimpleITK transform file (``.tfm``, ``.txt``, ``.h5``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import SimpleITK as sitk
from kedro.io import AbstractDataset, DatasetError


class SimpleITKTransformDataset(AbstractDataset[sitk.Transform, sitk.Transform]):
    """A spatial transform as ITK writes it, so a user can re-apply it in 3D Slicer or SimpleITK.

    The registration pipeline saves fixed (histology) mm -> moving (MRI) mm affine transforms:
    ``sitk.Resample(mri, histology_grid, sitk.ReadTransform(path))`` re-creates the aligned MRI.
    Saving is atomic (temporary file in the same folder, then rename).
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
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        # ".<stem>.<random>.tmp<ext>": ITK picks the format from the extension, and the
        # ".tmp" marks it as a staging file for durability.temporaries
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
        os.close(fd)
        try:
            sitk.WriteTransform(data, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
