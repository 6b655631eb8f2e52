"""``OptionalCSVDataset``: a CSV table that may legitimately be absent (e.g. a ground truth)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError


class OptionalCSVDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A CSV file that loads as an empty table with the given columns when the file is absent.

    Used for the registration ground truth: the built-in demo has one, real studies do not, and
    the registration report then leaves ``tre_*`` empty. Read-only.
    """

    def __init__(
        self,
        *,
        filepath: str,
        columns: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = PurePosixPath(filepath)
        self._columns = list(columns or [])
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "columns": self._columns}

    def _exists(self) -> bool:
        return True

    def load(self) -> pd.DataFrame:
        path = Path(self._filepath)
        if not path.exists():
            return pd.DataFrame(columns=self._columns)
        table = pd.read_csv(path, dtype={"pair_id": str})
        missing = [c for c in self._columns if c not in table.columns]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        return table

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError(f"{self._filepath}: OptionalCSVDataset is read-only")
