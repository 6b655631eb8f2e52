"""Seam-free sliding-window inference stitched into an array or a pyramidal whole-slide TIFF.

A model that translates windows (e.g. a pix2pix generator, MRI -> histology) is run over a canvas
of any size in overlapping windows; the window outputs are blended with a weight map that falls
off towards the window edges, so tile-wise drift of the model does not show as seams.

The pieces (numpy and pyvips only; the model is any callable, see
:mod:`mrihisto_kedro.nn.inference` for a PyTorch generator):

- :func:`window_grid`: top-left positions of windows of ``window`` pixels overlapping by
  ``overlap`` pixels that cover an ``(H, W)`` canvas, the last window flush with the edge, plus an
  optional context ``margin`` (the model sees the window grown by ``margin`` pixels on each side,
  padded by reflection or a constant outside the canvas; only the central window is kept).
- :func:`weight_map`: separable blending weights (:class:`WeightKind`): ``hann`` (default),
  ``gaussian`` (sigma = ``sigma_scale`` x window, 1/8 as in MONAI) or ``constant`` (plain
  averaging; with ``overlap=0`` plain tiling without blending). Weights are strictly
  positive, so the normalisation never divides by zero.
- :func:`iter_stitched_rows`: the streaming core. Windows are predicted in batches, one row of
  windows (a strip) at a time; the weighted outputs are accumulated in a rolling band buffer of
  ``(out_channels, window, W)`` float32 and rows are normalised and released as soon as no later
  window touches them. Peak memory is that band plus one batch of windows, whatever the height.
- :func:`stitch_to_array`: the normalised float result ``(out_channels, H, W)`` in memory (small
  images, tests, metrics).
- :func:`stitch_to_tiff`: rows converted to uint8 ([-1, 1] -> [0, 255] by default) are written
  sequentially into an uncompressed strip TIFF on disk (next to the destination by default; plain
  file writes, so the pixels live in the page cache, not in the process), which libvips then
  streams into :func:`mrihisto_kedro.imaging.tiff.write_pyramidal_tiff` (atomic, bounded memory).
  The intermediate file is removed in every case; the destination appears only when complete.

``tile without blending`` (the baseline for seam comparisons) is ``overlap=0,
weights="constant"``: the same code, no special path.

Units: all positions and sizes are pixels of the canvas (the output grid); the physical pixel
size is only attached when writing the TIFF (``mpp``, microns per pixel).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeGuard

import numpy as np
import pyvips

from mrihisto_kedro.imaging.row_spool import (
    check_free_space,
    spool_rows_to_pyramidal_tiff,
    temp_file,
    writable_folder,
)
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.tiff import Compression, Flavour, write_pyramidal_tiff
from mrihisto_kedro.params import Params, Range, fail, parse_option

__all__ = [
    "BorderMode",
    "Predict",
    "ReadInput",
    "StitchOptions",
    "WeightKind",
    "WindowGrid",
    "array_reader",
    "iter_stitched_rows",
    "stitch_to_array",
    "stitch_to_tiff",
    "to_uint8",
    "vips_reader",
    "weight_map",
    "weight_profile",
    "window_grid",
    "window_starts",
]

ReadInput = Callable[[int, int, int, int], np.ndarray]
"""``read_input(y0, x0, h, w) -> (C, h, w)`` (or ``(h, w)`` for one channel): input pixels of the
canvas rows ``y0:y0+h`` and columns ``x0:x0+w``; always called with a region inside the canvas."""

Predict = Callable[[np.ndarray], np.ndarray]
"""``predict(batch (N, C, h, w) float32) -> (N, out_channels, h, w)`` (cast to float32)."""

_FINALISE_ROWS = 16  # rows normalised / converted / written at a time (bounds the temporaries)


class WeightKind(StrEnum):
    """Blending weight of a window's pixels (separable: outer product of two 1-D profiles).

    Measured with a model whose brightness drifts by up to +-15 % of the range per window (64 px
    windows, seam score 4.6 without blending): at 25 % overlap, ``hann`` leaves 1.17 at the
    overlap centres, ``gaussian`` (sigma 1/8) 1.39 there (its cross-fade is steep, concentrated
    mid-overlap), ``constant`` 2.9 at the window edges; at 50 % overlap ``hann`` is at 1.01
    everywhere. Hence the default ``hann``.
    """

    GAUSSIAN = "gaussian"  # exp(-d^2 / 2 sigma^2), sigma = sigma_scale * window (MONAI: 1/8)
    HANN = "hann"  # sin^2(pi (i + 0.5) / n): a Hann window sampled between its zeros
    CONSTANT = "constant"  # 1 everywhere: plain averaging (overlap 0: tiling without blending)


class BorderMode(StrEnum):
    """How the context margin is filled outside the canvas."""

    REFLECT = "reflect"  # mirror without repeating the edge pixel (numpy ``reflect``)
    CONSTANT = "constant"  # ``pad_value`` (e.g. -1, the background of inputs in [-1, 1])


def _is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``value`` as ``(rows, cols)``: an int is used for both axes."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, Sequence) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be an int or a pair of ints (rows, cols), got {value!r}")


# ------------------------------------------------------------------------------------------ grid
def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start positions of windows covering ``[0, length)``, the last one flush with the end.

    Windows start every ``window - overlap`` pixels from 0; if the last regular window does not
    reach ``length``, one more window starts at ``length - window`` (so it overlaps its neighbour
    by more than ``overlap``). A ``length`` not above ``window`` gives the single start 0 (the
    window is then clipped to ``length`` by :func:`window_grid`).

    Args:
        length: canvas size along the axis, pixels (>= 1).
        window: window size, pixels (>= 1).
        overlap: overlap between consecutive windows, pixels (0 <= overlap < window).

    Returns:
        Increasing start positions, first 0, last ``max(0, length - window)``.
    """
    if length < 1:
        raise ValueError(f"canvas length must be >= 1 pixel, got {length}")
    if window < 1:
        raise ValueError(f"window must be >= 1 pixel, got {window}")
    if not 0 <= overlap < window:
        raise ValueError(
            f"overlap ({overlap} px) must be >= 0 and smaller than the window ({window} px)"
        )
    if length <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


@dataclass(frozen=True)
class WindowGrid:
    """Windows covering a canvas, in row-major order (see :func:`window_grid`).

    Attributes:
        shape: canvas ``(H, W)`` in pixels.
        window: kept (output) window ``(h, w)`` in pixels, clipped to the canvas.
        overlap: requested overlap ``(rows, cols)`` in pixels (the last window may overlap more).
        margin: context pixels added on every side of the window for the model's input.
        rows: top row of each row of windows.
        cols: left column of each column of windows.
    """

    shape: tuple[int, int]
    window: tuple[int, int]
    overlap: tuple[int, int]
    margin: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def input_window(self) -> tuple[int, int]:
        """Size ``(h + 2 margin, w + 2 margin)`` of the windows the model sees, pixels."""
        return self.window[0] + 2 * self.margin, self.window[1] + 2 * self.margin

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def positions(self) -> list[tuple[int, int]]:
        """Top-left ``(y, x)`` of every kept window, row-major."""
        return [(y, x) for y in self.rows for x in self.cols]

    def border_lines(self) -> tuple[list[int], list[int]]:
        """Where window edges fall inside the canvas: ``(row lines, column lines)``.

        A line ``b`` lies between pixel ``b - 1`` and pixel ``b`` (``0 < b < length``): every
        window start and every window end inside the canvas. This is where tiling without
        blending can show seams; pass it to :func:`mrihisto_kedro.metrics.seam.seam_score`.
        """

        def lines(starts: tuple[int, ...], size: int, length: int) -> list[int]:
            found = {s for s in starts if s > 0} | {s + size for s in starts if s + size < length}
            return sorted(found)

        return (
            lines(self.rows, self.window[0], self.shape[0]),
            lines(self.cols, self.window[1], self.shape[1]),
        )


def window_grid(
    shape: Sequence[int],
    window: int | Sequence[int],
    overlap: int | Sequence[int] = 0,
    margin: int = 0,
) -> WindowGrid:
    """The windows that cover an ``(H, W)`` canvas.

    Args:
        shape: canvas ``(H, W)`` in pixels (a longer shape uses its last two entries).
        window: kept window size in pixels, an int or ``(h, w)``; clipped to the canvas.
        overlap: overlap of neighbouring windows in pixels, an int or ``(rows, cols)``;
            ``0 <= overlap < window``.
        margin: context in pixels added on each side of every window for the model (>= 0).

    Returns:
        The :class:`WindowGrid`.

    Raises:
        ValueError: a size is not positive, the overlap is negative or not smaller than the window,
            or the margin is negative; the message names the value.
    """
    if len(shape) < 2:
        raise ValueError(f"canvas shape must be (H, W), got {tuple(shape)}")
    height, width = int(shape[-2]), int(shape[-1])
    if height < 1 or width < 1:
        raise ValueError(f"canvas shape must be positive (H, W) pixels, got {(height, width)}")
    wh, ww = _pair(window, "window")
    oh, ow = _pair(overlap, "overlap")
    if wh < 1 or ww < 1:
        raise ValueError(f"window must be >= 1 pixel, got {window!r}")
    if not (0 <= oh < wh and 0 <= ow < ww):
        raise ValueError(
            f"overlap ({overlap!r} px) must be >= 0 and smaller than the window ({window!r} px)"
        )
    if not _is_int(margin) or margin < 0:
        raise ValueError(f"margin must be an int >= 0 pixels, got {margin!r}")
    return WindowGrid(
        shape=(height, width),
        window=(min(wh, height), min(ww, width)),
        overlap=(oh, ow),
        margin=int(margin),
        rows=tuple(window_starts(height, wh, oh)),
        cols=tuple(window_starts(width, ww, ow)),
    )


# --------------------------------------------------------------------------------------- weights
def weight_profile(
    length: int,
    kind: WeightKind | str = WeightKind.HANN,
    *,
    sigma_scale: float = 0.125,
    min_weight: float = 1e-3,
) -> np.ndarray:
    """1-D blending weights of a window, maximum 1, never below ``min_weight``.

    Args:
        length: window size in pixels.
        kind: ``gaussian`` (sigma = ``sigma_scale * length``, centred), ``hann``
            (``sin^2(pi (i + 0.5) / length)``) or ``constant`` (all 1).
        sigma_scale: Gaussian sigma as a fraction of the window (MONAI's default 0.125).
        min_weight: floor of the weights (> 0), so every pixel keeps a positive weight.

    Returns:
        ``(length,)`` float64, symmetric, in ``[min_weight, 1]``.
    """
    kind = parse_option(WeightKind, kind, name="weights")
    if length < 1:
        raise ValueError(f"window length must be >= 1 pixel, got {length}")
    if not (math.isfinite(sigma_scale) and sigma_scale > 0):
        raise ValueError(f"sigma_scale must be a positive number, got {sigma_scale!r}")
    if not (math.isfinite(min_weight) and 0 < min_weight <= 1):
        raise ValueError(f"min_weight must be in (0, 1], got {min_weight!r}")
    if kind is WeightKind.CONSTANT:
        return np.ones(length)
    index = np.arange(length, dtype=np.float64)
    if kind is WeightKind.GAUSSIAN:
        distance = index - (length - 1) / 2.0
        profile = np.exp(-0.5 * (distance / (sigma_scale * length)) ** 2)
    else:
        profile = np.sin(np.pi * (index + 0.5) / length) ** 2
    return np.maximum(profile / profile.max(), min_weight)


def weight_map(
    window: int | Sequence[int],
    kind: WeightKind | str = WeightKind.HANN,
    *,
    sigma_scale: float = 0.125,
    min_weight: float = 1e-3,
) -> np.ndarray:
    """2-D blending weights ``(h, w)`` float32: the outer product of two :func:`weight_profile`.

    Strictly positive (at least ``min_weight**2`` in the corners), maximum 1 at the centre.
    """
    wh, ww = _pair(window, "window")
    rows = weight_profile(wh, kind, sigma_scale=sigma_scale, min_weight=min_weight)
    cols = weight_profile(ww, kind, sigma_scale=sigma_scale, min_weight=min_weight)
    return np.outer(rows, cols).astype(np.float32)


# --------------------------------------------------------------------------------------- readers
def array_reader(array: np.ndarray) -> ReadInput:
    """A ``read_input`` over an array ``(C, H, W)`` or ``(H, W)`` (numpy, ``np.memmap``, ...).

    Only the requested window is copied (as float32), so a memory-mapped input stays on disk.
    Values are passed on unchanged: scale them to the model's range (e.g. [-1, 1]) beforehand.
    """
    if array.ndim not in (2, 3):
        raise ValueError(f"input array must have shape (C, H, W) or (H, W), got {array.shape}")

    def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        return np.asarray(array[..., y0 : y0 + h, x0 : x0 + w], dtype=np.float32)

    return read


def vips_reader(image: pyvips.Image) -> ReadInput:
    """A ``read_input`` over a (lazy) ``pyvips.Image``; its bands become the channels.

    Only the requested region is computed. Values are passed on unchanged (as float32): scale
    lazily first, e.g. ``image.linear(2 / 255, -1)`` maps uint8 [0, 255] to [-1, 1].
    """

    def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        pixels = image.crop(x0, y0, w, h).numpy()
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        return np.ascontiguousarray(np.moveaxis(pixels, -1, 0), dtype=np.float32)

    return read


# --------------------------------------------------------------------------------------- options
#: a window side in pixels, >= 1
_Side = Annotated[int, Range(ge=1)]
#: an overlap in pixels, >= 0
_Overlap = Annotated[int, Range(ge=0)]


@dataclass(frozen=True)
class StitchOptions(Params):
    """How the canvas is cut into windows and blended; validated on construction.

    Attributes:
        window: kept window size in pixels, an int or ``(h, w)`` (clipped to the canvas);
            stored as ``(h, w)``.
        overlap: overlap of neighbouring windows in pixels, an int or ``(rows, cols)``,
            ``0 <= overlap < window``; stored as ``(rows, cols)``.
        margin: context pixels on every side of the window fed to the model and cropped away.
        weights: ``gaussian``, ``hann`` or ``constant`` (see :class:`WeightKind`).
        sigma_scale: Gaussian sigma as a fraction of the window (0.125 as in MONAI), > 0.
        min_weight: floor of the 1-D weight profiles, in (0, 1].
        batch_size: windows per ``predict`` call (the last call of a row may be smaller).
        border: how the margin is filled outside the canvas (``reflect`` or ``constant``).
        pad_value: the constant for ``border="constant"`` (-1: background of inputs in [-1, 1]).

    Tiling without blending (the seam baseline): ``StitchOptions(overlap=0,
    weights="constant")``.
    """

    window: tuple[_Side, _Side] | int = (256, 256)
    overlap: tuple[_Overlap, _Overlap] | int = (64, 64)
    margin: Annotated[int, Range(ge=0)] = 0
    weights: WeightKind = WeightKind.HANN
    sigma_scale: Annotated[float, Range(gt=0.0)] = 0.125
    min_weight: Annotated[float, Range(gt=0.0, le=1.0)] = 1e-3
    batch_size: Annotated[int, Range(ge=1)] = 8
    border: BorderMode = BorderMode.REFLECT
    pad_value: Annotated[float, Range()] = -1.0

    def __post_init__(self) -> None:
        """An int ``window`` or ``overlap`` is that size on both axes; then the declared types,
        ranges and :meth:`validate` (:class:`~mrihisto_kedro.params.Params`)."""
        for name in ("window", "overlap"):
            value = getattr(self, name)
            if _is_int(value):
                object.__setattr__(self, name, (value, value))
        super().__post_init__()

    def validate(self) -> None:
        """The overlap is smaller than the window along both axes."""
        window, overlap = _pair(self.window, "window"), _pair(self.overlap, "overlap")
        if not all(o < w for o, w in zip(overlap, window, strict=True)):
            fail("overlap", f"must be smaller than the window {window} px, got {overlap} px")

    def grid(self, shape: Sequence[int]) -> WindowGrid:
        """The :class:`WindowGrid` of these options over a canvas ``(H, W)``."""
        return window_grid(shape, self.window, self.overlap, self.margin)


# ------------------------------------------------------------------------------------------ core
def _read_window(
    read_input: ReadInput,
    grid: WindowGrid,
    y: int,
    x: int,
    border: BorderMode,
    pad_value: float,
) -> np.ndarray:
    """The model input ``(C, h + 2m, w + 2m)`` float32 for the kept window at ``(y, x)``."""
    height, width = grid.shape
    m = grid.margin
    top, left = y - m, x - m
    bottom, right = y + grid.window[0] + m, x + grid.window[1] + m
    cy0, cx0 = max(top, 0), max(left, 0)
    cy1, cx1 = min(bottom, height), min(right, width)
    tile = read_input(cy0, cx0, cy1 - cy0, cx1 - cx0)
    tile = np.asarray(tile, dtype=np.float32)
    if tile.ndim == 2:
        tile = tile[None]
    if tile.ndim != 3 or tile.shape[1:] != (cy1 - cy0, cx1 - cx0):
        raise ValueError(
            f"read_input({cy0}, {cx0}, {cy1 - cy0}, {cx1 - cx0}) returned shape {tile.shape}; "
            f"expected (C, {cy1 - cy0}, {cx1 - cx0})"
        )
    pads = ((0, 0), (cy0 - top, bottom - cy1), (cx0 - left, right - cx1))
    if any(p for pair in pads for p in pair):
        if border is BorderMode.REFLECT:
            tile = np.pad(tile, pads, mode="reflect")
        else:
            tile = np.pad(tile, pads, mode="constant", constant_values=pad_value)
    return tile


def _axis_sums(starts: tuple[int, ...], profile: np.ndarray, length: int) -> np.ndarray:
    """Sum over windows of the 1-D weight profile at every canvas position ``(length,)``."""
    total = np.zeros(length, dtype=np.float64)
    for start in starts:
        total[start : start + profile.size] += profile
    return total


def iter_stitched_rows(
    read_input: ReadInput,
    predict: Predict,
    shape: Sequence[int],
    out_channels: int,
    options: StitchOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Run ``predict`` over overlapping windows and yield the blended output rows, top to bottom.

    Windows of one row of the grid are predicted in batches of ``options.batch_size``; their
    outputs, multiplied by the :func:`weight_map`, are added into a band buffer
    ``(out_channels, window_h, W)`` float32. When a row of windows is done, the canvas rows above
    the next row of windows are final: they are divided by the summed weights and yielded, and
    the band rolls down. Memory: the band plus one batch of inputs and outputs, independent of H.

    Args:
        read_input: ``(y0, x0, h, w) -> (C, h, w)`` input pixels inside the canvas.
        predict: ``(N, C, h_in, w_in) float32 -> (N, out_channels, h_in, w_in)``, where ``h_in,
            w_in`` is the window plus ``2 * margin``; values in the model's output range.
        shape: canvas (= output) size ``(H, W)`` in pixels.
        out_channels: channels ``predict`` returns.
        options: window, overlap, margin, weights, batch size, border (default
            ``StitchOptions()``: 256 px windows, 64 px overlap, Hann weights).
        progress: optional ``progress(windows_done, windows_total)`` after every batch.

    Yields:
        ``(y0, rows)``: ``rows`` is ``(out_channels, k, W)`` float32, canvas rows ``y0:y0+k``
        (``k <= 16``), in order and covering the canvas exactly once.

    Raises:
        ValueError: invalid options, or ``read_input``/``predict`` returned an array of the wrong
            shape or non-finite values; the message names the call and the shapes.
    """
    options = StitchOptions() if options is None else options
    if not isinstance(options, StitchOptions):
        raise TypeError(f"options must be a StitchOptions, got {type(options).__name__}")
    grid = options.grid(shape)
    if not _is_int(out_channels) or out_channels < 1:
        raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
    border, pad_value, batch_size = options.border, options.pad_value, options.batch_size
    height, width = grid.shape
    wh, ww = grid.window
    m = grid.margin
    hin, win = grid.input_window
    profile_args = {"sigma_scale": options.sigma_scale, "min_weight": options.min_weight}
    row_profile = weight_profile(wh, options.weights, **profile_args)
    col_profile = weight_profile(ww, options.weights, **profile_args)
    weight2d = np.outer(row_profile, col_profile).astype(np.float32)
    inverse_rows = (1.0 / _axis_sums(grid.rows, row_profile, height)).astype(np.float32)
    inverse_cols = (1.0 / _axis_sums(grid.cols, col_profile, width)).astype(np.float32)

    band = np.zeros((out_channels, wh, width), dtype=np.float32)
    scratch = np.empty((out_channels, wh, ww), dtype=np.float32)
    total, done = len(grid), 0
    in_channels: int | None = None
    for r, y in enumerate(grid.rows):
        for b0 in range(0, len(grid.cols), batch_size):
            xs = grid.cols[b0 : b0 + batch_size]
            tiles = [_read_window(read_input, grid, y, x, border, pad_value) for x in xs]
            channels = {t.shape[0] for t in tiles}
            if in_channels is None:
                in_channels = tiles[0].shape[0]
            if channels != {in_channels}:
                raise ValueError(
                    f"read_input returned {sorted(channels)} channels; the first window had "
                    f"{in_channels}"
                )
            batch = np.stack(tiles)
            expected = (len(xs), out_channels, hin, win)
            out = predict(batch)
            if not isinstance(out, np.ndarray):
                raise TypeError(
                    f"predict must return a numpy array, got {type(out).__name__} (convert "
                    "tensors with .cpu().numpy(), or use mrihisto_kedro.nn.inference)"
                )
            if out.shape != expected:
                raise ValueError(
                    f"predict returned shape {out.shape} for an input batch of shape "
                    f"{batch.shape}; expected (N, out_channels, h, w) = {expected}"
                )
            out = out.astype(np.float32, copy=False)
            if not np.isfinite(out).all():
                raise ValueError(
                    f"predict returned non-finite values (NaN or inf) for the windows at "
                    f"y={y}, x={list(xs)}"
                )
            for i, x in enumerate(xs):
                np.multiply(out[i, :, m : m + wh, m : m + ww], weight2d, out=scratch)
                band[:, :, x : x + ww] += scratch
            done += len(xs)
            if progress is not None:
                progress(done, total)
        final_end = grid.rows[r + 1] if r + 1 < len(grid.rows) else height
        ready = final_end - y
        for k0 in range(0, ready, _FINALISE_ROWS):
            k1 = min(k0 + _FINALISE_ROWS, ready)
            rows = band[:, k0:k1] * inverse_cols  # a new array: the caller may keep or modify it
            rows *= inverse_rows[y + k0 : y + k1, None]
            yield y + k0, rows
        keep = wh - ready
        # roll the band up by `ready` rows, in chunks whose source and target do not overlap
        for k0 in range(0, max(keep, 0), ready):
            k1 = min(k0 + ready, keep)
            band[:, k0:k1] = band[:, ready + k0 : ready + k1]
        band[:, max(keep, 0) :] = 0.0


def stitch_to_array(
    read_input: ReadInput,
    predict: Predict,
    shape: Sequence[int],
    out_channels: int,
    options: StitchOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The blended output ``(out_channels, H, W)`` float32 in memory (small canvases).

    Arguments as in :func:`iter_stitched_rows`. Values are in ``predict``'s output range
    (``[-1, 1]`` for tanh generators).
    """
    rows = iter_stitched_rows(read_input, predict, shape, out_channels, options, progress=progress)
    height, width = int(shape[-2]), int(shape[-1])
    result = np.empty((out_channels, height, width), dtype=np.float32)
    for y0, block in rows:
        result[:, y0 : y0 + block.shape[1]] = block
    return result


def _check_range(value_range: Sequence[float]) -> tuple[float, float]:
    lo, hi = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be (lo, hi) with lo < hi, got {tuple(value_range)}")
    return lo, hi


def _to_uint8_inplace(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """:func:`to_uint8` that overwrites the float32 ``values`` (saves three temporaries)."""
    values -= np.float32(lo)
    values *= np.float32(255.0 / (hi - lo))
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    out = np.empty(values.shape[1:] + values.shape[:1], dtype=np.uint8)
    np.copyto(out, np.moveaxis(values, 0, -1), casting="unsafe")
    return out


def to_uint8(values: np.ndarray, value_range: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    """Channels-first floats ``(C, h, w)`` to C-contiguous channels-last ``(h, w, C)`` uint8.

    ``value_range`` ``(lo, hi)`` maps linearly to ``[0, 255]`` (rounded, clipped): ``(-1, 1)`` for
    tanh generators, ``(0, 1)`` for sigmoid ones. ``values`` is not modified.
    """
    lo, hi = _check_range(value_range)
    return _to_uint8_inplace(np.array(values, dtype=np.float32), lo, hi)


# ------------------------------------------------------------------------------------------ TIFF
def _mpp_pair(mpp: float | Sequence[float] | None) -> tuple[float, float] | None:
    if mpp is None:
        return None
    if isinstance(mpp, (int, float, np.floating, np.integer)):
        values = (float(mpp), float(mpp))
    elif isinstance(mpp, Sequence) and len(mpp) == 2:
        values = (float(mpp[0]), float(mpp[1]))
    else:
        raise ValueError(f"mpp must be microns per pixel (a number or (x, y)), got {mpp!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"mpp must be positive microns per pixel, got {mpp!r}")
    return values


def stitch_to_tiff(
    read_input: ReadInput,
    predict: Predict,
    shape: Sequence[int],
    out_channels: int,
    out_path: str | os.PathLike[str],
    options: StitchOptions | None = None,
    *,
    mpp: float | Sequence[float] | None,
    value_range: Sequence[float] = (-1.0, 1.0),
    flavour: Flavour = "aperio",
    compression: Compression = "jpeg",
    quality: int = 90,
    tile_size: int = 256,
    app_mag: float | None = None,
    description: dict[str, str] | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Stitch the sliding-window prediction into a pyramidal whole-slide TIFF, in bounded memory.

    Rows from :func:`iter_stitched_rows` are converted to uint8 with :func:`to_uint8` and written
    in order into a temporary uncompressed strip TIFF (``H * W * out_channels`` bytes on disk,
    in ``tmp_dir``, by default the destination folder); libvips streams that file into
    :func:`mrihisto_kedro.imaging.tiff.write_pyramidal_tiff`. The temporary file is always
    removed; the destination is replaced atomically and only once complete, so a failure (bad
    ``predict`` output, full disk, ...) leaves no partial TIFF and keeps an existing file intact.

    Args:
        read_input, predict, shape, out_channels: as in :func:`iter_stitched_rows`;
            ``out_channels`` must be 1 (grey, stored as RGB) or 3 (RGB).
        out_path: destination (``.svs``/``.tif``); missing parent folders are created.
        options: windows and blending (see :class:`StitchOptions`).
        mpp: microns per pixel of the canvas, a number or ``(x, y)``; ``None`` records no
            physical size (required argument: the pixel size is never assumed).
        value_range: ``(lo, hi)`` of the model output mapped to ``[0, 255]``.
        flavour, compression, quality, tile_size: passed to ``write_pyramidal_tiff``.
        app_mag: objective magnification to record (Aperio ``AppMag``), or ``None``.
        description: extra ``key = value`` metadata for the ImageDescription.
        tmp_dir: folder for the temporary strip TIFF (default: the destination folder).
        progress: optional ``progress(windows_done, windows_total)`` after every batch.

    Returns:
        The destination path.

    Raises:
        ValueError: invalid options (stitching or TIFF writer: raised before any prediction) or a
            wrong ``predict``/``read_input`` result.
        OSError: the destination or temporary folder cannot be created, or lacks the space for
            the temporary file; raised before any prediction.
    """
    if out_channels not in (1, 3):
        raise ValueError(
            f"out_channels must be 1 (grey) or 3 (RGB) to write a slide, got {out_channels!r}"
        )
    mpp_pair = _mpp_pair(mpp)
    options = StitchOptions() if options is None else options
    grid = options.grid(shape)
    height, width = grid.shape
    lo, hi = _check_range(value_range)
    out_path = Path(out_path)
    writable_folder(out_path.parent, "destination folder", out_path)
    scratch = Path(tmp_dir) if tmp_dir is not None else out_path.parent
    writable_folder(scratch, "temporary folder", out_path)
    check_free_space(
        scratch,
        height * width * out_channels,
        out_path,
        f"the temporary {width}x{height}x{out_channels} image",
    )

    def write_tiff(pixels: np.ndarray | pyvips.Image, path: Path) -> None:
        image = SlideImage(pixels, mpp=mpp_pair, app_mag=app_mag, description=description or {})
        write_pyramidal_tiff(
            image,
            path,
            tile_size=tile_size,
            compression=compression,
            quality=quality,
            flavour=flavour,
        )

    # the writer's own checks (flavour, compression, tile size, quality, description keys, mpp)
    # on a 16 x 16 image in the destination folder first: a bad option or a folder where no file
    # can be created fails before hours of inference
    probe = temp_file(out_path.parent, out_path, "check.tif")
    try:
        write_tiff(np.zeros((16, 16, 3), np.uint8), probe)
    finally:
        probe.unlink(missing_ok=True)
    rows = iter_stitched_rows(read_input, predict, shape, out_channels, options, progress=progress)
    return spool_rows_to_pyramidal_tiff(
        (_to_uint8_inplace(block, lo, hi) for _, block in rows),
        (height, width, out_channels),
        out_path,
        write_tiff,
        tmp_dir=scratch,
    )
