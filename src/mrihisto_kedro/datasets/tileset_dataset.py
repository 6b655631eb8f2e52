"""``TileSetDataset``: a tile-set folder (manifest + memory-mapped arrays), saved atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_protocol_and_path

from mrihisto_kedro.imaging.tileset import (
    TileSet,
    TileSetError,
    load_tileset,
    save_tileset,
)


@runtime_checkable
class TileSetJob(Protocol):
    """Anything that writes a tile-set folder itself (atomically, in bounded memory)."""

    def write(self, folder: Path) -> Path:
        """Write the tile set at ``folder`` and return it."""
        ...


class TileSetDataset(AbstractDataset[TileSet, TileSet]):
    """A :class:`~mrihisto_kedro.imaging.tileset.TileSet` stored as a folder.

    Layout: ``manifest.parquet``, ``a.npy`` ``(N, H, W, Ca)``, ``b.npy`` ``(N, H, W, Cb)`` (paired
    sets only) and ``meta.json``. Loading memory-maps the arrays read-only, so training reads
    tiles without loading the whole set; saving writes a sibling temporary folder and renames it
    over the old one (kept until the new one is complete). Local folders only.

    Example (``catalog.yml``)::

        tiles_256.tiles:
          type: mrihisto_kedro.datasets.tileset_dataset.TileSetDataset
          filepath: data/05_model_input/tiles_256

    Args:
        filepath: the tile-set folder (a plain path or ``file://`` URL).
        metadata: free-form metadata for plugins (not used by the dataset).
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(str(filepath))
        if protocol != "file":
            raise DatasetError(
                f"TileSetDataset stores local folders only; got protocol {protocol!r} in "
                f"{filepath!r}"
            )
        self._filepath = Path(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return (self._filepath / "meta.json").is_file()

    def load(self) -> TileSet:
        """Open the tile set with memory-mapped arrays."""
        try:
            return load_tileset(self._filepath, mmap=True)
        except TileSetError as exc:
            raise DatasetError(str(exc)) from exc

    def save(self, data: TileSet | TileSetJob) -> None:
        """Write ``data`` atomically to the folder.

        ``data`` is a :class:`TileSet`, or a :class:`TileSetJob` that writes its tiles itself
        (e.g. :class:`~mrihisto_kedro.imaging.tiling.PairTilesJob`: one pair in memory at a
        time, never the whole set).
        """
        try:
            if isinstance(data, TileSet):
                save_tileset(data, self._filepath)
            elif isinstance(data, TileSetJob):
                data.write(self._filepath)
            else:
                raise DatasetError(
                    f"TileSetDataset({self._filepath}) saves TileSet objects or tile-set jobs, "
                    f"got {type(data).__name__}"
                )
        except TileSetError as exc:
            raise DatasetError(f"{self._filepath}: {exc}") from exc
