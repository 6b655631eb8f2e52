"""Seam score: how visible tile borders are in a stitched image.

The score is the mean absolute intensity step across the tile border lines divided by the mean
absolute step across lines at random positions away from the borders:

    seam_score = mean |I[b] - I[b - 1]| over border lines b  /  the same over random lines

A step across a vertical line ``b`` is ``|I[:, b] - I[:, b - 1]|`` (columns either side of it),
across a horizontal line ``|I[b, :] - I[b - 1, :]|``, averaged over every pixel along the line and
every channel. ``1.0`` means the borders are indistinguishable from anywhere else (invisible
seams); values above 1 mean visible seams (e.g. 3 = steps three times the image's typical
pixel-to-pixel change). The ratio is scale-free: any float range or uint8 gives the same score.

Random lines are sampled on the axes that have border lines (vertical lines if there are column
borders, horizontal lines if there are row borders), ``n_random`` per axis, never on a border
line, from ``seed``.

No Kedro imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SeamStatistics", "grid_borders", "seam_score", "seam_statistics"]


@dataclass(frozen=True)
class SeamStatistics:
    """The seam score and its parts.

    Attributes:
        score: ``border_step / random_step`` (dimensionless; 1.0 = invisible seams).
        border_step: mean absolute step across the border lines, in the image's intensity units.
        random_step: mean absolute step across the random non-border lines, same units.
        n_border_lines: border lines used (row lines + column lines).
        n_random_lines: random lines used.
    """

    score: float
    border_step: float
    random_step: float
    n_border_lines: int
    n_random_lines: int


def grid_borders(length: int, tile_size: int, stride: int | None = None) -> list[int]:
    """Border lines of a regular tile grid along one axis of ``length`` pixels.

    Tiles start at ``0, stride, 2 stride, ...`` (``stride`` defaults to ``tile_size``: no
    overlap) and are ``tile_size`` pixels long; every start and every end inside
    ``(0, length)`` is a border line (the line ``b`` lies between pixels ``b - 1`` and ``b``).
    A grid whose last tile is flush with the edge is not regular: pass its borders explicitly,
    e.g. from :meth:`mrihisto_kedro.imaging.stitching.WindowGrid.border_lines`.
    """
    stride = tile_size if stride is None else stride
    if tile_size < 1 or stride < 1:
        raise ValueError(f"tile_size and stride must be >= 1 pixel, got {tile_size}, {stride}")
    starts = range(0, length, stride)
    lines = {s for s in starts if 0 < s < length} | {
        s + tile_size for s in starts if 0 < s + tile_size < length
    }
    return sorted(lines)


def _lines(values: Sequence[int] | np.ndarray, length: int, axis: str) -> np.ndarray:
    lines = np.unique(np.asarray(values, dtype=np.int64))
    if lines.size and (lines[0] < 1 or lines[-1] > length - 1):
        raise ValueError(
            f"{axis} border lines must lie in 1..{length - 1} (between two pixels) for an image "
            f"of {length} px along that axis, got {lines[0]}..{lines[-1]}"
        )
    return lines


def _steps(image: np.ndarray, lines: np.ndarray, axis: int) -> np.ndarray:
    """Absolute steps across ``lines`` along ``axis`` (0: rows, 1: columns), all pixels."""
    if lines.size == 0:
        return np.empty(0)
    after = np.take(image, lines, axis=axis)
    before = np.take(image, lines - 1, axis=axis)
    return np.abs(after - before).ravel()


def seam_statistics(
    image: np.ndarray,
    *,
    tile_size: int | None = None,
    stride: int | None = None,
    borders: tuple[Sequence[int], Sequence[int]] | None = None,
    n_random: int = 256,
    seed: int | np.random.Generator = 0,
) -> SeamStatistics:
    """Border steps, random steps and their ratio; see :func:`seam_score`."""
    array = np.asarray(image)
    if array.ndim not in (2, 3) or array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(
            f"image must have shape (H, W) or (H, W, C) with H, W >= 2, got {array.shape}"
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"image must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)  # no uint8 wrap-around in differences
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values")
    height, width = array.shape[:2]
    if borders is not None:
        if tile_size is not None or stride is not None:
            raise ValueError("give either borders or tile_size/stride, not both")
        row_lines = _lines(borders[0], height, "row")
        col_lines = _lines(borders[1], width, "column")
    elif tile_size is not None:
        row_lines = _lines(grid_borders(height, tile_size, stride), height, "row")
        col_lines = _lines(grid_borders(width, tile_size, stride), width, "column")
    else:
        raise ValueError("give the tile grid: tile_size (and stride) or explicit borders")
    if row_lines.size + col_lines.size == 0:
        raise ValueError(f"no border line lies inside the {width}x{height} image: nothing to score")
    if not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be a positive int, got {n_random!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    border = [_steps(array, row_lines, 0), _steps(array, col_lines, 1)]
    random: list[np.ndarray] = []
    n_random_lines = 0
    for axis, (lines, length) in enumerate(((row_lines, height), (col_lines, width))):
        if lines.size == 0:
            continue
        candidates = np.setdiff1d(np.arange(1, length), lines)
        if candidates.size == 0:
            raise ValueError(
                f"every {'row' if axis == 0 else 'column'} line is a border: no reference lines"
            )
        picked = rng.choice(candidates, size=min(n_random, candidates.size), replace=False)
        random.append(_steps(array, np.sort(picked), axis))
        n_random_lines += picked.size
    border_step = float(np.concatenate(border).mean())
    random_step = float(np.concatenate(random).mean())
    if random_step == 0.0:
        raise ValueError(
            "the image does not change between neighbouring pixels away from the borders: "
            "the seam score is undefined"
        )
    return SeamStatistics(
        score=border_step / random_step,
        border_step=border_step,
        random_step=random_step,
        n_border_lines=int(row_lines.size + col_lines.size),
        n_random_lines=n_random_lines,
    )


def seam_score(
    image: np.ndarray,
    *,
    tile_size: int | None = None,
    stride: int | None = None,
    borders: tuple[Sequence[int], Sequence[int]] | None = None,
    n_random: int = 256,
    seed: int | np.random.Generator = 0,
) -> float:
    """Mean step across tile borders over the mean step at random lines (1.0 = no seams).

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, any numeric dtype and range (uint8, [0, 1],
            [-1, 1], ...): the score is a ratio of steps in the same units, so scale-free.
        tile_size: tile size in pixels of a regular grid anchored at 0 (see
            :func:`grid_borders`), used on both axes.
        stride: distance between tile starts in pixels (default ``tile_size``).
        borders: explicit border lines ``(row lines, column lines)`` instead of a regular grid;
            line ``b`` lies between pixels ``b - 1`` and ``b``. Either sequence may be empty.
        n_random: random reference lines per axis that has borders (fewer if the axis has
            fewer non-border lines).
        seed: seed or ``numpy.random.Generator`` for the reference lines.

    Returns:
        The dimensionless seam score (about 1.0 when seams are invisible, > 1 when visible).

    Raises:
        ValueError: bad shape or values, no border inside the image, or a flat image (no
            reference step).
    """
    return seam_statistics(
        image, tile_size=tile_size, stride=stride, borders=borders, n_random=n_random, seed=seed
    ).score
