"""``PairsManifestDataset``: the pairs manifest CSV, ids read as strings, columns checked."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from mrihisto_kedro.datasets.atomic import write_csv_atomically
from mrihisto_kedro.manifest import REQUIRED_COLUMNS

_STRING_COLUMNS = ("pair_id", "specimen_id", "slide", "mri", "plane", "split")


class PairsManifestDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A pairs manifest (CSV, one row per histology section).

    Loading keeps ids as strings (``"001"`` stays ``"001"``), reads an empty ``split`` as ``""``,
    refuses a file that lacks a required column with an error naming the file, and records the
    path in ``DataFrame.attrs["source"]`` so later checks can name it too. Saving is atomic.

    Example (``catalog.yml``)::

        pairs:
          type: mrihisto_kedro.datasets.manifest_dataset.PairsManifestDataset
          filepath: data/01_raw/my_study/pairs.csv
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "required_columns": list(REQUIRED_COLUMNS)}

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def load(self) -> pd.DataFrame:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"pairs manifest {path} does not exist")
        try:
            table = pd.read_csv(
                path,
                dtype={c: str for c in _STRING_COLUMNS},
                keep_default_na=False,
                skipinitialspace=True,
            )
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise DatasetError(f"pairs manifest {path} is not a readable CSV: {exc}") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DatasetError(
                f"pairs manifest {path}: missing column(s) {', '.join(missing)}; required "
                f"columns are {', '.join(REQUIRED_COLUMNS)}; found {', '.join(table.columns)}"
            )
        table.attrs["source"] = str(path)
        return table

    def save(self, data: pd.DataFrame) -> None:
        write_csv_atomically(data, Path(self._filepath))
