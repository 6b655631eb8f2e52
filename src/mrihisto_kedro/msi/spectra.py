"""Spectra processing for MSI: common m/z axis, rebinning, summed spectrum, peaks, ion images.

The steps of the MSI -> H&E paper (seed 003): every pixel's spectrum is rebinned onto one common
m/z axis (:func:`make_mz_axis`, :func:`rebin_spectrum`), all spectra are summed
(:func:`summed_spectrum`), the top-N peaks of the summed spectrum are picked (:func:`pick_peaks`)
and one ion image per peak is built (:func:`ion_images`), giving a ``(n_peaks, H, W)`` stack.

Every function that visits pixels streams them one at a time from an
:class:`~mrihisto_kedro.msi.imzml.ImzMLReader`: memory is bounded by the axis length and the
output image size, never by the number of spectra. :func:`peak_stack` chains the whole thing (two
passes over the file).

Units: m/z in Da; bin widths in Da or ppm (parts per million of the bin's lower edge); intensities
in the file's units (counts) unless normalised (:class:`Normalisation`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks

from mrihisto_kedro.msi.imzml import ImzMLReader, Spectrum

__all__ = [
    "BinUnit",
    "DistanceUnit",
    "MzAxis",
    "Normalisation",
    "PeakList",
    "PeakStack",
    "RebinMethod",
    "SummedSpectrum",
    "ion_images",
    "make_mz_axis",
    "normalise_spectrum",
    "peak_stack",
    "pick_peaks",
    "rebin_spectrum",
    "summed_spectrum",
]

_MAX_BINS = 20_000_000


class BinUnit(enum.StrEnum):
    """Unit of the bin width of a common m/z axis.

    ``da``: constant width in Da (uniform axis). ``ppm``: width proportional to m/z, in parts per
    million of each bin's lower edge (geometric axis, constant relative resolution).
    """

    DA = "da"
    PPM = "ppm"


class DistanceUnit(enum.StrEnum):
    """Unit of the minimum distance between picked peaks: axis ``bins`` or ``da``."""

    BINS = "bins"
    DA = "da"


class RebinMethod(enum.StrEnum):
    """How a spectrum's intensities are moved onto the axis; both conserve the total ion count.

    ``linear``: interpolation rebinning. Each sample at m/z ``m`` between the bin centres
    ``c_k <= m < c_k+1`` is split between bins ``k`` and ``k+1`` with the linear-interpolation
    weights ``(c_k+1 - m) / (c_k+1 - c_k)`` and ``(m - c_k) / (c_k+1 - c_k)`` (the transpose of
    linear interpolation, so a peak between two centres keeps its centroid). ``nearest``: each
    sample goes whole to the bin containing it (a histogram).
    """

    LINEAR = "linear"
    NEAREST = "nearest"


class Normalisation(enum.StrEnum):
    """Per-pixel intensity normalisation of a rebinned spectrum.

    ``none``: raw intensities. ``tic``: divided by the spectrum's total ion count (sum over the
    axis), so a pixel's values sum to 1. ``rms``: divided by the root mean square over the axis
    bins. All-zero spectra stay zero.
    """

    NONE = "none"
    TIC = "tic"
    RMS = "rms"


@dataclass(frozen=True)
class MzAxis:
    """A common m/z axis: contiguous bins.

    Attributes:
        edges: float64 ``(n_bins + 1,)`` ascending bin edges in Da; bin ``k`` is
            ``[edges[k], edges[k+1])`` (the last bin includes its upper edge).
        bin_width: the width parameter it was built with (in ``unit``).
        unit: :class:`BinUnit` of ``bin_width``.
    """

    edges: np.ndarray
    bin_width: float
    unit: BinUnit

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
            raise ValueError("MzAxis.edges must be a 1-D ascending array of at least 2 values")
        edges.setflags(write=False)
        object.__setattr__(self, "edges", edges)

    @property
    def n_bins(self) -> int:
        """Number of bins."""
        return int(self.edges.size - 1)

    @property
    def centres(self) -> np.ndarray:
        """float64 ``(n_bins,)``: bin centres in Da (arithmetic midpoints of the edges)."""
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def widths(self) -> np.ndarray:
        """float64 ``(n_bins,)``: bin widths in Da."""
        return np.diff(self.edges)

    @property
    def mz_range(self) -> tuple[float, float]:
        """``(first edge, last edge)`` in Da."""
        return float(self.edges[0]), float(self.edges[-1])

    def index_of(self, mz: float | np.ndarray) -> np.ndarray:
        """Bin index of each m/z (Da); -1 outside the axis. int64, shape of ``mz``."""
        mz = np.asarray(mz, dtype=np.float64)
        idx = np.searchsorted(self.edges, mz, side="right") - 1
        idx = np.where(mz == self.edges[-1], self.n_bins - 1, idx)
        return np.where((mz < self.edges[0]) | (mz > self.edges[-1]), -1, idx).astype(np.int64)


def make_mz_axis(
    mz_min: float, mz_max: float, bin_width: float, unit: BinUnit | str = BinUnit.DA
) -> MzAxis:
    """Build a common m/z axis covering ``[mz_min, mz_max]``.

    Args:
        mz_min: lower end in Da (> 0 for ``ppm``).
        mz_max: upper end in Da (> ``mz_min``); the last edge is at or just above it.
        bin_width: Da for ``unit="da"`` (edges ``mz_min + k * bin_width``); ppm for ``unit="ppm"``
            (edges ``mz_min * (1 + bin_width * 1e-6) ** k``, each bin ``bin_width`` ppm of its
            lower edge wide).
        unit: :class:`BinUnit`.

    Returns:
        The :class:`MzAxis` (``ceil`` of the span over the width bins).
    """
    unit = BinUnit(unit)
    mz_min, mz_max, bin_width = float(mz_min), float(mz_max), float(bin_width)
    if not (math.isfinite(mz_min) and math.isfinite(mz_max)) or mz_max <= mz_min:
        raise ValueError(f"m/z range must satisfy mz_min < mz_max, got ({mz_min}, {mz_max})")
    if not math.isfinite(bin_width) or bin_width <= 0:
        raise ValueError(f"bin_width must be > 0 ({unit.value}), got {bin_width}")
    if unit is BinUnit.DA:
        n = max(1, math.ceil((mz_max - mz_min) / bin_width - 1e-9))
        _check_bins(n, bin_width, unit)
        edges = mz_min + bin_width * np.arange(n + 1, dtype=np.float64)
    else:
        if mz_min <= 0:
            raise ValueError(f"a ppm axis needs mz_min > 0, got {mz_min}")
        ratio = math.log1p(bin_width * 1e-6)
        n = max(1, math.ceil(math.log(mz_max / mz_min) / ratio - 1e-9))
        _check_bins(n, bin_width, unit)
        edges = mz_min * np.exp(ratio * np.arange(n + 1, dtype=np.float64))
    return MzAxis(edges=edges, bin_width=bin_width, unit=unit)


def _check_bins(n: int, bin_width: float, unit: BinUnit) -> None:
    if n > _MAX_BINS:
        raise ValueError(
            f"bin width {bin_width} {unit.value} gives {n} bins (> {_MAX_BINS}); use wider bins"
        )


def rebin_spectrum(
    mz: np.ndarray,
    intensity: np.ndarray,
    axis: MzAxis,
    method: RebinMethod | str = RebinMethod.LINEAR,
) -> np.ndarray:
    """Move one spectrum onto a common axis, conserving its total ion count.

    Samples outside ``[edges[0], edges[-1]]`` are dropped (the only loss of counts); samples between
    the first edge and the first centre (or the last centre and the last edge) go whole to the end
    bin. Within the axis ``rebinned.sum() == intensity.sum()`` up to float rounding.

    Args:
        mz: ``(n,)`` m/z in Da (any order).
        intensity: ``(n,)`` intensities.
        axis: the target axis.
        method: :class:`RebinMethod`.

    Returns:
        float64 ``(axis.n_bins,)``.
    """
    method = RebinMethod(method)
    mz = np.asarray(mz, dtype=np.float64).ravel()
    intensity = np.asarray(intensity, dtype=np.float64).ravel()
    if mz.shape != intensity.shape:
        raise ValueError(f"mz and intensity differ in length: {mz.size} vs {intensity.size}")
    n_bins = axis.n_bins
    inside = (mz >= axis.edges[0]) & (mz <= axis.edges[-1]) & np.isfinite(intensity)
    mz, intensity = mz[inside], intensity[inside]
    if mz.size == 0:
        return np.zeros(n_bins, dtype=np.float64)
    if method is RebinMethod.NEAREST or n_bins == 1:
        idx = axis.index_of(mz)
        return np.bincount(idx, weights=intensity, minlength=n_bins).astype(np.float64)
    # fractional bin position of each sample (np.interp clamps to [0, n_bins - 1] at the ends)
    pos = np.interp(mz, axis.centres, np.arange(n_bins, dtype=np.float64))
    lower = np.minimum(np.floor(pos).astype(np.int64), n_bins - 2)
    frac = pos - lower
    out = np.bincount(lower, weights=intensity * (1.0 - frac), minlength=n_bins)
    out += np.bincount(lower + 1, weights=intensity * frac, minlength=n_bins)
    return out


def normalise_spectrum(
    values: np.ndarray, normalisation: Normalisation | str = Normalisation.NONE
) -> np.ndarray:
    """Normalise one rebinned spectrum (see :class:`Normalisation`); returns float64 ``(n,)``."""
    normalisation = Normalisation(normalisation)
    values = np.asarray(values, dtype=np.float64)
    if normalisation is Normalisation.NONE:
        return values
    if normalisation is Normalisation.TIC:
        scale = float(values.sum())
    else:
        scale = float(np.sqrt(np.mean(values * values)))
    if scale <= 0 or not math.isfinite(scale):
        return np.zeros_like(values)
    return values / scale


@dataclass(frozen=True)
class SummedSpectrum:
    """The sum of all (selected) pixels' rebinned spectra.

    Attributes:
        axis: the common axis.
        total: float64 ``(n_bins,)`` summed intensities.
        n_pixels: number of pixels summed.
    """

    axis: MzAxis
    total: np.ndarray
    n_pixels: int

    @property
    def mean(self) -> np.ndarray:
        """float64 ``(n_bins,)``: ``total / n_pixels`` (zeros if no pixel)."""
        return self.total / self.n_pixels if self.n_pixels else np.zeros_like(self.total)


def _selected(reader: ImzMLReader, mask: np.ndarray | None) -> Iterable[Spectrum]:
    if mask is None:
        yield from reader.iter_spectra()
        return
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != reader.shape:
        raise ValueError(
            f"mask shape {mask.shape} differs from the image shape {reader.shape} of "
            f"'{reader.path}'"
        )
    keep = mask[reader.rows, reader.cols]
    for i in np.flatnonzero(keep):
        mz, intensity = reader.spectrum(int(i))
        yield Spectrum(int(i), int(reader.rows[i]), int(reader.cols[i]), mz, intensity)


def summed_spectrum(
    reader: ImzMLReader,
    axis: MzAxis,
    *,
    method: RebinMethod | str = RebinMethod.LINEAR,
    normalisation: Normalisation | str = Normalisation.NONE,
    mask: np.ndarray | None = None,
) -> SummedSpectrum:
    """Sum every pixel's rebinned (and optionally normalised) spectrum, streaming the file.

    Args:
        reader: an open imzML reader.
        axis: the common axis.
        method: :class:`RebinMethod`.
        normalisation: per-pixel :class:`Normalisation` applied before summing.
        mask: optional bool ``(H, W)`` (``reader.shape``): only pixels where True are summed.

    Returns:
        :class:`SummedSpectrum` (``.mean`` for the mean spectrum).
    """
    total = np.zeros(axis.n_bins, dtype=np.float64)
    n = 0
    for spectrum in _selected(reader, mask):
        binned = rebin_spectrum(spectrum.mz, spectrum.intensity, axis, method)
        total += normalise_spectrum(binned, normalisation)
        n += 1
    return SummedSpectrum(axis=axis, total=total, n_pixels=n)


@dataclass(frozen=True)
class PeakList:
    """Picked peaks, in ascending m/z order.

    Attributes:
        indices: int64 ``(n_peaks,)`` axis bin of each peak.
        mz: float64 ``(n_peaks,)`` m/z of each peak (its bin centre) in Da.
        intensity: float64 ``(n_peaks,)`` value of the spectrum at each peak.
    """

    indices: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.size)


def pick_peaks(
    spectrum: np.ndarray,
    axis: MzAxis,
    n_peaks: int = 50,
    *,
    min_distance: float = 1.0,
    distance_unit: DistanceUnit | str = DistanceUnit.BINS,
    prominence: float | None = None,
) -> PeakList:
    """Pick the ``n_peaks`` highest local maxima of a (summed) spectrum.

    Candidates are the local maxima of ``scipy.signal.find_peaks`` (with ``prominence`` if given);
    they are accepted from the highest down, skipping any closer than ``min_distance`` to one
    already accepted, until ``n_peaks`` are found (fewer if the spectrum has fewer maxima).

    Args:
        spectrum: float ``(axis.n_bins,)``, e.g. :attr:`SummedSpectrum.total`.
        axis: its axis.
        n_peaks: how many peaks (>= 1); the paper uses 50.
        min_distance: minimum distance between two picked peaks, in ``distance_unit``
            (``bins`` >= 1, or ``da`` >= 0, measured between bin centres).
        distance_unit: :class:`DistanceUnit`.
        prominence: minimum prominence (spectrum units), ``None`` for none.

    Returns:
        :class:`PeakList` sorted by m/z.
    """
    distance_unit = DistanceUnit(distance_unit)
    spectrum = np.asarray(spectrum, dtype=np.float64)
    if spectrum.shape != (axis.n_bins,):
        raise ValueError(
            f"spectrum shape {spectrum.shape} does not match the axis ({axis.n_bins},)"
        )
    if n_peaks < 1:
        raise ValueError(f"n_peaks must be >= 1, got {n_peaks}")
    if distance_unit is DistanceUnit.BINS and min_distance < 1:
        raise ValueError(f"min_distance in bins must be >= 1, got {min_distance}")
    if min_distance < 0:
        raise ValueError(f"min_distance must be >= 0, got {min_distance}")
    candidates, _ = find_peaks(spectrum, prominence=prominence)
    candidates = candidates[spectrum[candidates] > 0]
    order = candidates[np.argsort(-spectrum[candidates], kind="stable")]
    position = (
        order.astype(np.float64) if distance_unit is DistanceUnit.BINS else axis.centres[order]
    )
    accepted: list[int] = []
    accepted_pos: list[float] = []
    for idx, pos in zip(order, position, strict=True):
        if accepted_pos and np.min(np.abs(np.asarray(accepted_pos) - pos)) < min_distance:
            continue
        accepted.append(int(idx))
        accepted_pos.append(float(pos))
        if len(accepted) == n_peaks:
            break
    indices = np.sort(np.asarray(accepted, dtype=np.int64))
    return PeakList(
        indices=indices, mz=axis.centres[indices].copy(), intensity=spectrum[indices].copy()
    )


def _window_bounds(
    peaks: PeakList, axis: MzAxis, half_window_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    if half_window_bins < 0:
        raise ValueError(f"half_window_bins must be >= 0, got {half_window_bins}")
    lo = np.clip(peaks.indices - half_window_bins, 0, axis.n_bins - 1)
    hi = np.clip(peaks.indices + half_window_bins, 0, axis.n_bins - 1)
    return lo, hi


def ion_images(
    reader: ImzMLReader,
    axis: MzAxis,
    peaks: PeakList,
    *,
    method: RebinMethod | str = RebinMethod.LINEAR,
    normalisation: Normalisation | str = Normalisation.NONE,
    half_window_bins: int = 1,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """The ion image of each peak, streaming the file one pixel at a time.

    A pixel's value for a peak is the sum of its rebinned (then normalised) spectrum over the bins
    ``[index - half_window_bins, index + half_window_bins]``. Memory: the output plus one spectrum.

    Args:
        reader: an open imzML reader.
        axis: the common axis the peaks were picked on.
        peaks: the peaks.
        method: :class:`RebinMethod`.
        normalisation: per-pixel :class:`Normalisation` (over the whole axis, before windowing).
        half_window_bins: half width of the summation window in bins (>= 0).
        mask: optional bool ``(H, W)``: pixels where False (and pixels never acquired) stay 0.

    Returns:
        float32 ``(n_peaks, H, W)`` with ``(H, W) = reader.shape``.
    """
    lo, hi = _window_bounds(peaks, axis, half_window_bins)
    height, width = reader.shape
    stack = np.zeros((len(peaks), height, width), dtype=np.float32)
    for spectrum in _selected(reader, mask):
        binned = rebin_spectrum(spectrum.mz, spectrum.intensity, axis, method)
        binned = normalise_spectrum(binned, normalisation)
        cumulative = np.concatenate([[0.0], np.cumsum(binned)])
        stack[:, spectrum.row, spectrum.col] = cumulative[hi + 1] - cumulative[lo]
    return stack


@dataclass(frozen=True)
class PeakStack:
    """Result of :func:`peak_stack`.

    Attributes:
        images: float32 ``(n_peaks, H, W)`` ion images.
        peaks: the picked peaks (m/z ascending; ``images[k]`` is ``peaks.mz[k]``).
        summed: the summed spectrum the peaks were picked on.
        acquired: bool ``(H, W)``, pixels that have a spectrum.
        pixel_size_um: ``(x, y)`` µm per pixel from the file, ``None`` if absent.
    """

    images: np.ndarray
    peaks: PeakList
    summed: SummedSpectrum
    acquired: np.ndarray
    pixel_size_um: tuple[float, float] | None


def peak_stack(
    reader: ImzMLReader,
    *,
    bin_width: float = 0.1,
    bin_unit: BinUnit | str = BinUnit.DA,
    mz_range: tuple[float, float] | None = None,
    n_peaks: int = 50,
    min_distance: float = 1.0,
    distance_unit: DistanceUnit | str = DistanceUnit.BINS,
    method: RebinMethod | str = RebinMethod.LINEAR,
    normalisation: Normalisation | str = Normalisation.TIC,
    half_window_bins: int = 1,
    mask: np.ndarray | None = None,
) -> PeakStack:
    """Rebin, sum, pick the top-N peaks and build their ion images (two streamed passes).

    The summed spectrum is computed with the same per-pixel ``normalisation`` as the images.

    Args:
        reader: an open imzML reader.
        bin_width: axis bin width, in Da or ppm (``bin_unit``).
        bin_unit: :class:`BinUnit`.
        mz_range: ``(min, max)`` m/z in Da; ``None`` for the file's :attr:`ImzMLReader.mz_range`.
        n_peaks, min_distance, distance_unit: see :func:`pick_peaks`.
        method: :class:`RebinMethod`.
        normalisation: :class:`Normalisation` per pixel.
        half_window_bins: see :func:`ion_images`.
        mask: optional bool ``(H, W)`` of the pixels to use (e.g. tissue).

    Returns:
        :class:`PeakStack`.
    """
    lo, hi = mz_range if mz_range is not None else reader.mz_range
    axis = make_mz_axis(lo, hi, bin_width, bin_unit)
    summed = summed_spectrum(reader, axis, method=method, normalisation=normalisation, mask=mask)
    peaks = pick_peaks(
        summed.total, axis, n_peaks, min_distance=min_distance, distance_unit=distance_unit
    )
    images = ion_images(
        reader,
        axis,
        peaks,
        method=method,
        normalisation=normalisation,
        half_window_bins=half_window_bins,
        mask=mask,
    )
    return PeakStack(
        images=images,
        peaks=peaks,
        summed=summed,
        acquired=reader.acquired_mask(),
        pixel_size_um=reader.pixel_size_um,
    )
