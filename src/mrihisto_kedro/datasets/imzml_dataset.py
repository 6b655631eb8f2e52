"""``ImzMLDataset``: one imzML/ibd pair, loaded lazily as an :class:`ImzMLReader`."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_protocol_and_path

from mrihisto_kedro.msi.imzml import ImzMLReader, open_imzml
from mrihisto_kedro.msi.imzml_files import ImzMLFiles


class ImzMLDataset(AbstractDataset[ImzMLFiles, ImzMLReader]):
    """A mass-spectrometry image stored as ``<name>.imzML`` + ``<name>.ibd``.

    ``load`` parses the XML only and returns an open
    :class:`~mrihisto_kedro.msi.imzml.ImzMLReader` (spectra are read on demand; close it, or use
    it as a context manager). ``save`` takes :class:`~mrihisto_kedro.msi.imzml_files.ImzMLFiles` and
    writes both files (the ``.ibd`` first, each through a temporary name).

    As the ``dataset`` of ``partitions.PartitionedDataset`` give ``filename_suffix: .imzML``, so
    the ``.ibd`` files are not listed as partitions; the partition ids are then the file stems
    (the manifest's ``pair_id``).

    Args:
        filepath: the ``.imzML`` file (local paths only: pyimzML reads paths).
        metadata: free-form metadata for plugins.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(str(filepath))
        if protocol != "file":
            raise DatasetError(f"ImzMLDataset reads local files only, got {filepath!r}")
        self._filepath = PurePosixPath(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        path = Path(self._filepath)
        return path.is_file() and path.with_suffix(".ibd").is_file()

    def load(self) -> ImzMLReader:
        return open_imzml(Path(self._filepath))

    def save(self, data: ImzMLFiles) -> None:
        if not isinstance(data, ImzMLFiles):
            raise DatasetError(
                f"ImzMLDataset saves ImzMLFiles (imzML and ibd bytes), got {type(data).__name__}"
            )
        data.write(Path(self._filepath))
