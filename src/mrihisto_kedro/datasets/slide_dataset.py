"""Kedro dataset for whole-slide images: lazy OpenSlide handles in, pyramidal TIFFs out.

``load()`` opens the file with OpenSlide and returns a
:class:`~mrihisto_kedro.imaging.slides.Slide` handle: only the header is read, pixels are decoded
on demand (``read_region``, ``downsample_slide``...). ``save()`` takes a
:class:`~mrihisto_kedro.imaging.slide_image.SlideImage` and writes a tiled pyramidal TIFF with
:func:`~mrihisto_kedro.imaging.tiff.write_pyramidal_tiff` (atomically, in bounded memory).

Catalog example, a folder of slides as a ``PartitionedDataset``::

    slides:
      type: partitions.PartitionedDataset
      path: data/01_raw/slides
      filename_suffix: .svs
      dataset:
        type: mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset

    slides_15x:
      type: partitions.PartitionedDataset
      path: data/02_intermediate/slides_15x
      filename_suffix: .svs
      dataset:
        type: mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset
        save_args: {flavour: aperio, compression: jpeg, quality: 90, tile_size: 256}

Loading such a partitioned dataset gives ``{partition_id: callable returning a Slide}``; saving
accepts ``{partition_id: SlideImage}`` or ``{partition_id: callable returning a SlideImage}`` (lazy
saving: one slide in memory at a time).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_protocol_and_path

from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import Slide, open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff

__all__ = ["OpenSlideDataset", "SlideWriter"]

_SAVE_ARGS = {"flavour", "compression", "quality", "tile_size", "bigtiff"}


@runtime_checkable
class SlideWriter(Protocol):
    """Anything that writes itself as a pyramidal TIFF (atomically, in bounded memory)."""

    def write_tiff(
        self,
        path: Path,
        *,
        flavour: str,
        compression: str,
        quality: int,
        tile_size: int,
        bigtiff: bool | None = None,
    ) -> Path:
        """Write the slide at ``path`` with the dataset's ``save_args``."""
        ...


class OpenSlideDataset(AbstractDataset[SlideImage, Slide]):
    """A whole-slide image file on the local filesystem.

    Loads as a lazy :class:`~mrihisto_kedro.imaging.slides.Slide` (any OpenSlide format); saves a
    :class:`~mrihisto_kedro.imaging.slide_image.SlideImage` as a tiled pyramidal TIFF that
    OpenSlide and QuPath open with the right microns per pixel.
    """

    DEFAULT_SAVE_ARGS: dict[str, Any] = {
        "flavour": "aperio",
        "compression": "jpeg",
        "quality": 90,
        "tile_size": 256,
    }

    def __init__(
        self,
        filepath: str,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            filepath: path of the slide file. OpenSlide reads local files only, so a protocol
                other than ``file://`` is refused.
            save_args: options of ``write_pyramidal_tiff``: ``flavour`` (``aperio``/``generic``),
                ``compression`` (``jpeg``/``lzw``/``deflate``/``none``), ``quality`` (1-100),
                ``tile_size`` (multiple of 16), ``bigtiff`` (bool).
            metadata: free-form metadata for users and plugins; not used by the dataset.
        """
        protocol, path = get_protocol_and_path(filepath)
        if protocol != "file":
            raise DatasetError(
                f"OpenSlideDataset reads local files only (OpenSlide needs a file path); "
                f"got protocol '{protocol}' in '{filepath}'"
            )
        self._filepath = PurePosixPath(path)
        unknown = set(save_args or {}) - _SAVE_ARGS
        if unknown:
            raise DatasetError(
                f"unknown save_args {sorted(unknown)} for OpenSlideDataset '{filepath}'; "
                f"allowed: {sorted(_SAVE_ARGS)}"
            )
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "save_args": self._save_args}

    def load(self) -> Slide:
        """Open the slide lazily (header only); the caller should close the returned handle."""
        return open_slide(Path(self._filepath))

    def save(self, data: SlideImage | SlideWriter) -> None:
        """Write ``data`` as a tiled pyramidal TIFF at ``filepath`` (atomic replace).

        ``data`` is a :class:`SlideImage`, or a :class:`SlideWriter` that produces its pixels
        while writing (e.g. a synthetic slide stitched strip by strip, never whole in memory).
        """
        if isinstance(data, SlideWriter):
            data.write_tiff(Path(self._filepath), **self._save_args)
            return
        if not isinstance(data, SlideImage):
            raise DatasetError(
                f"OpenSlideDataset '{self._filepath}' saves SlideImage or SlideWriter objects, "
                f"got {type(data).__name__}"
            )
        write_pyramidal_tiff(data, Path(self._filepath), **self._save_args)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()
