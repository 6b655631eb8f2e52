"""``ControlPointsDataset``: a CSV of landmark pairs for control-point registration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from mrihisto_kedro.datasets.atomic import write_csv_atomically
from mrihisto_kedro.imaging.registration import ControlPoints, read_control_points


@dataclass(frozen=True)
class ControlPointsFile:
    """A landmark file, read when the image geometry is known (pixel columns need spacing)."""

    path: str

    def read(
        self,
        *,
        fixed_spacing_mm: Sequence[float] | None = None,
        moving_spacing_mm: Sequence[float] | None = None,
        fixed_origin_mm: Sequence[float] = (0.0, 0.0),
        moving_origin_mm: Sequence[float] = (0.0, 0.0),
    ) -> ControlPoints:
        """Parse the file (see ``imaging.registration.read_control_points`` for its columns)."""
        return read_control_points(
            self.path,
            fixed_spacing_mm=fixed_spacing_mm,
            moving_spacing_mm=moving_spacing_mm,
            fixed_origin_mm=fixed_origin_mm,
            moving_origin_mm=moving_origin_mm,
        )


class ControlPointsDataset(AbstractDataset[pd.DataFrame, ControlPointsFile]):
    """Landmark pairs (``fixed_x_mm, fixed_y_mm, moving_x_mm, moving_y_mm``, or ``_um``/``_px``).

    ``load`` returns a :class:`ControlPointsFile`; its ``read`` validates the file and names the
    line and column of a bad value. ``save`` writes a table atomically.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def load(self) -> ControlPointsFile:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"control point file {path} does not exist")
        return ControlPointsFile(str(path))

    def save(self, data: pd.DataFrame) -> None:
        write_csv_atomically(data, Path(self._filepath))
