"""One pyramid level of an open slide seen as a read-only ``(H, W, 3)`` uint8 array.

Tiling cuts a downsampled slide into windows. Reading the whole level first holds
``3 * H * W`` bytes per pair (36 MB for the 4000 x 3000 grid of a 60,000 px slide) and reads
pixels that no tile keeps; a :class:`LevelArray` reads only the windows that are indexed, by
region, so a pair's histology costs one window at a time (issue 14: memory bounded as slides
grow). Indexing returns exactly what ``slide.read_region`` of the same rectangle returns.

Tiling reads many windows of one size: :meth:`LevelArray.windows` reads them in one
:meth:`Slide.read_regions` call (threads decoding at once, libvips and OpenSlide release the
GIL), and :meth:`LevelArray.iter_windows` does so in batches of at most ``batch_pixels`` pixels,
so memory stays bounded by one batch however many windows a slide gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mrihisto_kedro.imaging.slides import Slide

__all__ = ["DEFAULT_BATCH_PIXELS", "LevelArray"]

#: pixels read per batch by :meth:`LevelArray.iter_windows` (4 Mpx = 12 MB of RGB: 64 windows of
#: 256 px, 1024 of 64 px)
DEFAULT_BATCH_PIXELS = 4 * 2**20


class LevelArray:
    """Array-like view of level ``level`` of ``slide``: ``shape`` ``(H, W, 3)``, dtype uint8.

    ``view[y0:y1, x0:x1]`` (steps of 1, optionally a third index on the channels) reads that
    rectangle of the level through :meth:`Slide.read_region`; ``np.asarray(view)`` reads the
    whole level. The slide stays open while the view is alive; :meth:`close` closes it.

    Args:
        slide: an open slide handle (the view takes it over).
        level: pyramid level; coordinates are pixels of that level.
    """

    def __init__(self, slide: Slide, level: int = 0) -> None:
        """Wrap ``slide``'s level ``level``."""
        if not 0 <= level < slide.level_count:
            raise ValueError(f"slide '{slide.path}' has no level {level}")
        width, height = slide.level_dimensions[level]
        self._slide = slide
        self._level = level
        self._downsample = slide.level_downsamples[level]
        self.shape: tuple[int, int, int] = (height, width, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    @property
    def slide(self) -> Slide:
        """The slide read from."""
        return self._slide

    def __len__(self) -> int:
        """Height in pixels."""
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        """Read ``[rows, cols(, channels)]``: rows and cols are slices with step 1."""
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) < 2 or not all(isinstance(k, slice) for k in key[:2]):
            raise TypeError(
                f"LevelArray of '{self._slide.path}' is indexed by [y0:y1, x0:x1(, c)], got {key!r}"
            )
        rows, cols = key[0], key[1]
        y0, y1, ys = rows.indices(self.shape[0])
        x0, x1, xs = cols.indices(self.shape[1])
        if ys != 1 or xs != 1:
            raise TypeError(f"LevelArray of '{self._slide.path}' takes slices of step 1 only")
        h, w = max(0, y1 - y0), max(0, x1 - x0)
        if h == 0 or w == 0:
            pixels = np.zeros((h, w, 3), np.uint8)
        else:
            origin = (round(x0 * self._downsample), round(y0 * self._downsample))
            pixels = self._slide.read_region(origin, self._level, (w, h))
        return pixels[(slice(None), slice(None), *key[2:])] if len(key) > 2 else pixels

    def windows(
        self,
        corners: Sequence[tuple[int, int]] | np.ndarray,
        size: tuple[int, int],
        *,
        workers: int = 1,
    ) -> np.ndarray:
        """Many windows of one size in one :meth:`Slide.read_regions` call.

        Args:
            corners: ``N`` top-left corners ``(y, x)`` in pixels of the level (row, column, as
                array indices), each window inside the level.
            size: ``(height, width)`` of every window, in pixels of the level (>= 1).
            workers: threads reading at once (see :meth:`Slide.read_regions`).

        Returns:
            ``(N, height, width, 3)`` uint8: window ``i`` is exactly
            ``self[y:y + height, x:x + width]`` for ``corners[i] = (y, x)``.

        Raises:
            ValueError: a window that does not lie inside the level (indexing would clip it).
        """
        yx = np.asarray(corners, dtype=np.int64).reshape(-1, 2)
        h, w = int(size[0]), int(size[1])
        if h < 1 or w < 1:
            raise ValueError(f"window size must be positive, got {size}")
        outside = (yx[:, 0] < 0) | (yx[:, 1] < 0)
        outside |= (yx[:, 0] + h > self.shape[0]) | (yx[:, 1] + w > self.shape[1])
        if outside.any():
            y, x = yx[int(np.argmax(outside))].tolist()
            raise ValueError(
                f"window {h}x{w} px at (y={y}, x={x}) is not inside level {self._level} "
                f"({self.shape[0]}x{self.shape[1]} px) of '{self._slide.path}'"
            )
        origins = [
            (round(x * self._downsample), round(y * self._downsample)) for y, x in yx.tolist()
        ]
        if not origins:
            return np.zeros((0, h, w, 3), np.uint8)
        return self._slide.read_regions(origins, self._level, (w, h), workers=workers)

    def iter_windows(
        self,
        corners: Sequence[tuple[int, int]] | np.ndarray,
        size: tuple[int, int],
        *,
        workers: int = 1,
        batch_pixels: int | None = None,
    ) -> Iterator[np.ndarray]:
        """The windows of :meth:`windows`, one ``(height, width, 3)`` array at a time, in order.

        They are read in batches of ``max(1, batch_pixels // (height * width))`` windows
        (``batch_pixels`` ``None``: :data:`DEFAULT_BATCH_PIXELS`), so at most one batch (about
        ``3 * batch_pixels`` bytes) is held however many windows are asked for.
        """
        budget = DEFAULT_BATCH_PIXELS if batch_pixels is None else batch_pixels
        yx = np.asarray(corners, dtype=np.int64).reshape(-1, 2)
        per_batch = max(1, budget // max(1, int(size[0]) * int(size[1])))
        for start in range(0, len(yx), per_batch):
            yield from self.windows(yx[start : start + per_batch], size, workers=workers)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The whole level in memory (``np.asarray(view)``)."""
        del copy  # always a new array
        pixels = self[:, :]
        return pixels if dtype is None else pixels.astype(dtype)

    def close(self) -> None:
        """Close the slide."""
        self._slide.close()

    def __repr__(self) -> str:
        """Slide path, level and shape."""
        return f"LevelArray('{self._slide.path}', level={self._level}, shape={self.shape})"
