"""Simulated paired MSI / H&E demo with known truth, built from a real H&E slide.

Seed 003 translates mass-spectrometry images (MSI) into H&E. No public paired MSI/H&E data is small
enough to ship, so this module simulates the MSI side from a real histology image, where the truth
is known by construction:

1. The source is the real CC0 H&E slide shipped in the package
   (``mrihisto_kedro/demo/data/cmu_small_region/CMU-1-Small-Region.svs``, 0.499 µm/px), or, as a
   fallback, ``skimage.data.immunohistochemistry()`` (no calibration: an assumed
   :data:`SKIMAGE_ASSUMED_MPP` µm/px is recorded).
2. Colour deconvolution (``skimage.color.rgb2hed``, Ruifrok & Johnston) gives haematoxylin and eosin
   densities, each scaled by its 99th percentile over the tissue of the whole image (so ``1`` is a
   strongly stained pixel, ``0`` none).
3. Several non-overlapping square regions with the most tissue are cut: one region = one specimen.
4. For each region an MSI raster of ``msi_pixel_size_um`` pixels is laid over the crop through a
   known affine (a rotation of up to ``max_rotation_deg`` and an offset, scale = MSI pixel size /
   histology mpp). Each MSI pixel averages the densities over its footprint.
5. Each MSI pixel gets a profile spectrum (Gaussian peaks of resolving power ``m / FWHM``) whose
   peak counts depend on the local densities: haematoxylin-correlated peaks, eosin-correlated peaks,
   peaks following an unrelated smooth random field inside the tissue, background (matrix) peaks
   everywhere; plus an exponentially decaying chemical baseline, a per-pixel m/z calibration shift
   (``mz_jitter_da``), multiplicative Gaussian ion-yield noise and Poisson counting noise.
6. Each region is written as a real imzML/ibd pair with ``pyimzml``'s ``ImzMLWriter`` in
   ``continuous`` mode (every sample of a common m/z grid) or ``processed`` mode (per-pixel m/z
   grids, shifted by a random fraction of a step, with zero-count samples dropped, as
   zero-suppressed instrument data), with the pixel size in the metadata; its histology crop as an
   RGB PNG.

Geometry conventions (those of :mod:`mrihisto_kedro.demo.generate`): MSI pixel ``(col, row)``
(0-based array position; imzML ``position x = col + 1``, ``position y = row + 1``) lies at
``(col * s, row * s)`` mm with ``s = msi_pixel_size_um / 1000``; histology crop pixel ``(c, r)`` at
``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm (pixel centres). The ground truth affine maps MSI mm to
histology-crop mm: ``x_h = a11 x + a12 y + tx``, ``y_h = a21 x + a22 y + ty``. The crop lies at
``(crop_x, crop_y)`` level-0 pixels of the source slide.

Everything is a deterministic function of :class:`MsiDemoParams` (region ``k`` draws from
``numpy.random.default_rng([seed, k])``); files are byte-identical for identical parameters (the
imzML UUID is derived from them). The default demo (6 regions of 512 px = 255 µm, 21 x 21 MSI
pixels of 10 µm, 3601 m/z samples from 100 to 1000 Da, processed mode) is generated in about 2 s
and takes about 14 MB (about 5 MB .ibd, 6 MB imzML XML, 3.4 MB PNG). Continuous mode stores every
sample of every pixel: about 48 MB at the defaults, about 19 MB with ``mz_step=1.0``.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from skimage.color import rgb2hed

from mrihisto_kedro.msi.imzml import ImzMLMode
from mrihisto_kedro.params import Params, Range, fail

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "PEAK_COLUMNS",
    "SKIMAGE_ASSUMED_MPP",
    "DemoSource",
    "HistologySource",
    "MsiDemo",
    "MsiDemoParams",
    "MsiDemoRegion",
    "PeakKind",
    "SimulatedPeak",
    "generate_msi_demo",
    "load_histology_source",
    "simulate_peaks",
    "slide_path",
    "stain_densities",
]

SKIMAGE_ASSUMED_MPP = 1.0
"""µm per pixel assumed for ``skimage.data.immunohistochemistry()`` (it carries none)."""

_SLIDE_RESOURCE = "data/cmu_small_region/CMU-1-Small-Region.svs"
_DENSITY_PERCENTILE = 99.0
_TISSUE_OD = 0.3  # summed RGB optical density above which a pixel is tissue
_SELECT_DOWNSAMPLE = 8
_MIN_PEAK_GAP_DA = 3.0
_MAX_MZ = 1e5
_MAX_MZ_SAMPLES = 2_000_000
_MAX_PEAKS_PER_KIND = 50
_PEAK_WINDOW_SIGMAS = 5.0
_UUID_NAMESPACE = uuid.UUID("5b0f3c2e-8a57-4d0e-9a51-6d2f3b1c7e90")  # of this demo's file UUIDs

GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "specimen_id",
    "imzml",
    "histology",
    "source",
    "crop_x",
    "crop_y",
    "crop_width",
    "crop_height",
    "mpp_x",
    "mpp_y",
    "msi_pixel_size_um",
    "msi_width",
    "msi_height",
    "imzml_mode",
    "a11",
    "a12",
    "a21",
    "a22",
    "tx",
    "ty",
    "rotation_deg",
    "offset_x_px",
    "offset_y_px",
    "tissue_fraction",
)
"""Columns of ``ground_truth.csv`` (one row per region); see :class:`MsiDemoRegion`."""

PEAK_COLUMNS: tuple[str, ...] = ("peak_id", "mz", "kind", "amplitude", "sigma_da")
"""Columns of ``peaks.csv`` (one row per simulated peak); see :class:`SimulatedPeak`."""


class DemoSource(enum.StrEnum):
    """Histology source: ``slide`` (the packaged CC0 H&E slide), ``skimage``
    (``skimage.data.immunohistochemistry()``), ``auto`` (the slide if it opens, else skimage)."""

    AUTO = "auto"
    SLIDE = "slide"
    SKIMAGE = "skimage"


class PeakKind(enum.StrEnum):
    """What drives a simulated peak's counts in a pixel.

    ``haematoxylin`` / ``eosin``: the pixel's stain density; ``unrelated``: a smooth random field
    (per region and peak) inside the tissue, independent of the stains; ``background``: constant
    everywhere, tissue or glass (matrix/solvent ions).
    """

    HAEMATOXYLIN = "haematoxylin"
    EOSIN = "eosin"
    UNRELATED = "unrelated"
    BACKGROUND = "background"


@dataclass(frozen=True)
class SimulatedPeak:
    """One simulated ion.

    Attributes:
        mz: true m/z in Da.
        kind: :class:`PeakKind`.
        amplitude: relative ion yield (expected counts = ``peak_counts * amplitude * driver``).
        sigma_da: Gaussian peak standard deviation in Da (``mz / (resolving_power * 2.3548)``).
    """

    mz: float
    kind: PeakKind
    amplitude: float
    sigma_da: float


@dataclass(frozen=True)
class MsiDemoParams(Params):
    """Parameters of the simulated MSI/H&E demo (validated on construction).

    Attributes:
        seed: master seed (>= 0); region ``k`` uses ``default_rng([seed, k])``, the peak list
            ``default_rng([seed, 1_000_003])``.
        n_regions: number of regions (= specimens), 1..32.
        region_size_px: side of each square histology crop in source pixels (64..4096); reduced to
            ``min(H, W) // ceil(sqrt(n_regions))`` of the source if larger (so a grid of
            ``n_regions`` crops fits).
        min_tissue_fraction: every region must be at least this fraction tissue (0..1).
        msi_pixel_size_um: MSI pixel size in µm (1..500).
        mz_range: ``(min, max)`` m/z in Da of the simulated spectra (``0 < min < max <= 1e5``,
            at least ``3 * (n_peaks + 1) + 40`` Da wide, at most 2,000,000 ``mz_step`` samples).
        mz_step: spacing of the m/z sampling grid in Da (0.001..5).
        resolving_power: ``m / FWHM`` of the peaks (50..1e6).
        n_haematoxylin_peaks, n_eosin_peaks, n_unrelated_peaks, n_background_peaks: peaks of each
            :class:`PeakKind` (0..50 each, at least one in total).
        peak_counts: expected total counts of a peak of amplitude 1 at driver 1 (1e-6..1e9).
        baseline_counts: expected counts per m/z sample of the chemical baseline at ``mz_range[0]``
            on tissue (half of it on glass), decaying as ``exp(-(m - m_min) / 150 Da)`` (0..1e6).
        yield_noise: standard deviation of the multiplicative Gaussian ion-yield noise per pixel
            and peak (0..1; factors are clipped at 0).
        mz_jitter_da: standard deviation in Da of the per-pixel m/z calibration shift (0..1).
        max_rotation_deg: MSI raster rotation range ``+-`` in degrees (0..45).
        imzml_mode: :class:`~mrihisto_kedro.msi.imzml.ImzMLMode` of the written files.
        source: :class:`DemoSource`.
    """

    seed: Annotated[int, Range(ge=0)] = 2025
    n_regions: Annotated[int, Range(ge=1, le=32)] = 6
    region_size_px: Annotated[int, Range(ge=64, le=4096)] = 512
    min_tissue_fraction: Annotated[float, Range(ge=0.0, le=1.0)] = 0.3
    msi_pixel_size_um: Annotated[float, Range(ge=1.0, le=500.0)] = 10.0
    mz_range: tuple[float, float] = (100.0, 1000.0)
    mz_step: Annotated[float, Range(ge=0.001, le=5.0)] = 0.25
    resolving_power: Annotated[float, Range(ge=50.0, le=1e6)] = 1000.0
    n_haematoxylin_peaks: Annotated[int, Range(ge=0, le=_MAX_PEAKS_PER_KIND)] = 3
    n_eosin_peaks: Annotated[int, Range(ge=0, le=_MAX_PEAKS_PER_KIND)] = 3
    n_unrelated_peaks: Annotated[int, Range(ge=0, le=_MAX_PEAKS_PER_KIND)] = 3
    n_background_peaks: Annotated[int, Range(ge=0, le=_MAX_PEAKS_PER_KIND)] = 2
    peak_counts: Annotated[float, Range(ge=1e-6, le=1e9)] = 1000.0
    baseline_counts: Annotated[float, Range(ge=0.0, le=1e6)] = 0.3
    yield_noise: Annotated[float, Range(ge=0.0, le=1.0)] = 0.1
    mz_jitter_da: Annotated[float, Range(ge=0.0, le=1.0)] = 0.02
    max_rotation_deg: Annotated[float, Range(ge=0.0, le=45.0)] = 3.0
    imzml_mode: ImzMLMode = ImzMLMode.PROCESSED
    source: DemoSource = DemoSource.AUTO

    def validate(self) -> None:
        """At least one peak; an m/z range wide enough for the peaks; not too many samples."""
        if self.n_peaks == 0:
            fail(
                "n_haematoxylin_peaks",
                "and n_eosin_peaks, n_unrelated_peaks, n_background_peaks are all 0; "
                "simulate at least one peak",
            )
        lo_mz, hi_mz = self.mz_range
        if not 0.0 < lo_mz < hi_mz <= _MAX_MZ:
            fail("mz_range", f"must satisfy 0 < min < max <= {_MAX_MZ:g}, got {self.mz_range}")
        span_needed = (self.n_peaks + 1) * _MIN_PEAK_GAP_DA + 40.0  # 20 Da margins: simulate_peaks
        if hi_mz - lo_mz < span_needed:
            fail(
                "mz_range",
                f"= {self.mz_range} is too narrow for {self.n_peaks} peaks "
                f"(needs >= {span_needed:g} Da)",
            )
        if (hi_mz - lo_mz) / self.mz_step > _MAX_MZ_SAMPLES:
            fail(
                "mz_step",
                f"= {self.mz_step:g} gives too many m/z samples over {self.mz_range} "
                f"(more than {_MAX_MZ_SAMPLES:,})",
            )

    @property
    def n_peaks(self) -> int:
        """Total number of simulated peaks."""
        return (
            self.n_haematoxylin_peaks
            + self.n_eosin_peaks
            + self.n_unrelated_peaks
            + self.n_background_peaks
        )


@dataclass(frozen=True)
class HistologySource:
    """The H&E image the demo is cut from.

    Attributes:
        rgb: uint8 ``(H, W, 3)`` level-0 pixels.
        mpp: ``(x, y)`` µm per pixel.
        name: ``'CMU-1-Small-Region.svs'`` or ``'skimage.data.immunohistochemistry'``.
    """

    rgb: np.ndarray
    mpp: tuple[float, float]
    name: str


def slide_path() -> Path:
    """Path of the packaged CC0 H&E slide (it may be absent from a broken install)."""
    return Path(str(resources.files("mrihisto_kedro.demo").joinpath(_SLIDE_RESOURCE)))


def load_histology_source(source: DemoSource | str = DemoSource.AUTO) -> HistologySource:
    """Load the source H&E image (see :class:`DemoSource`).

    Raises:
        SlideReadError / FileNotFoundError: ``source='slide'`` and the packaged slide is missing or
            unreadable.
    """
    source = DemoSource(source)
    if source is not DemoSource.SKIMAGE:
        path = slide_path()
        try:
            from mrihisto_kedro.imaging.slides import open_slide

            if not path.is_file():
                raise FileNotFoundError(f"the packaged demo slide '{path}' is missing")
            with open_slide(path) as slide:
                rgb = slide.read_level(0)
                mpp = slide.mpp
            if mpp is None:
                raise ValueError(f"the packaged demo slide '{path}' has no mpp")
            return HistologySource(rgb=rgb, mpp=(float(mpp[0]), float(mpp[1])), name=path.name)
        except (OSError, ValueError):
            if source is DemoSource.SLIDE:
                raise
    from skimage import data

    rgb = np.ascontiguousarray(data.immunohistochemistry()[..., :3], dtype=np.uint8)
    return HistologySource(
        rgb=rgb,
        mpp=(SKIMAGE_ASSUMED_MPP, SKIMAGE_ASSUMED_MPP),
        name="skimage.data.immunohistochemistry",
    )


_OD_LUT = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)


def _optical_density(rgb: np.ndarray) -> np.ndarray:
    """Summed RGB optical density (natural log) of uint8 RGB, float32 ``(H, W)``; 0 on white."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    return _OD_LUT[rgb[..., 0]] + _OD_LUT[rgb[..., 1]] + _OD_LUT[rgb[..., 2]]


def stain_densities(
    rgb: np.ndarray, scales: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Haematoxylin and eosin densities of an RGB H&E image by colour deconvolution.

    Args:
        rgb: uint8 ``(H, W, 3)``.
        scales: ``(h, e)`` raw ``rgb2hed`` values that map to density 1; ``None`` computes them as
            the 99th percentiles over the image's tissue pixels.

    Returns:
        ``(haematoxylin, eosin, scales)``: float32 ``(H, W)`` densities ``>= 0`` (about ``[0, 1]``,
        clipped at 2) and the scales used.
    """
    hed = rgb2hed(rgb[..., :3]).astype(np.float32)
    h = np.clip(hed[..., 0], 0.0, None)
    e = np.clip(hed[..., 1], 0.0, None)
    if scales is None:
        tissue = _optical_density(rgb) > _TISSUE_OD
        if tissue.sum() < 16:
            tissue = np.ones_like(tissue)
        scales = (
            max(float(np.percentile(h[tissue], _DENSITY_PERCENTILE)), 1e-6),
            max(float(np.percentile(e[tissue], _DENSITY_PERCENTILE)), 1e-6),
        )
    h = np.clip(h / scales[0], 0.0, 2.0)
    e = np.clip(e / scales[1], 0.0, 2.0)
    return h, e, scales


def simulate_peaks(params: MsiDemoParams) -> list[SimulatedPeak]:
    """The simulated ions: m/z drawn uniformly (at least 3 Da apart, 20 Da inside the range).

    Returns:
        Peaks sorted by m/z.
    """
    rng = np.random.default_rng([params.seed, 1_000_003])
    kinds = (
        [PeakKind.HAEMATOXYLIN] * params.n_haematoxylin_peaks
        + [PeakKind.EOSIN] * params.n_eosin_peaks
        + [PeakKind.UNRELATED] * params.n_unrelated_peaks
        + [PeakKind.BACKGROUND] * params.n_background_peaks
    )
    lo, hi = params.mz_range[0] + 20.0, params.mz_range[1] - 20.0
    positions: list[float] = []
    while len(positions) < len(kinds):
        mz = float(rng.uniform(lo, hi))
        if all(abs(mz - p) >= _MIN_PEAK_GAP_DA for p in positions):
            positions.append(round(mz, 4))
    order = rng.permutation(len(kinds))
    peaks = [
        SimulatedPeak(
            mz=positions[i],
            kind=kinds[k],
            amplitude=round(float(rng.uniform(0.5, 1.5)), 4),
            sigma_da=positions[i] / (params.resolving_power * 2.0 * math.sqrt(2.0 * math.log(2))),
        )
        for k, i in enumerate(order)
    ]
    return sorted(peaks, key=lambda p: p.mz)


def _select_regions(
    tissue: np.ndarray, size: int, n_regions: int, min_fraction: float = 0.0
) -> list[tuple[int, int, float]]:
    """Greedy non-overlapping ``size`` squares with the most tissue: ``[(x, y, fraction)]``.

    Squares are taken from the most tissue down, skipping those overlapping one already taken,
    until ``n_regions`` (each at least ``min_fraction`` tissue) are found; sorted by ``(y, x)``.
    """
    f = _SELECT_DOWNSAMPLE if min(tissue.shape) >= 8 * _SELECT_DOWNSAMPLE else 1
    small = tissue[::f, ::f].astype(np.float64)
    s = max(1, size // f)
    integral = np.pad(small.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(0, small.shape[0] - s + 1)
    xs = np.arange(0, small.shape[1] - s + 1)
    if ys.size == 0 or xs.size == 0:
        raise ValueError(f"region size {size} px does not fit the source image {tissue.shape}")
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    sums = integral[yy + s, xx + s] - integral[yy, xx + s] - integral[yy + s, xx] + integral[yy, xx]
    fraction = (sums / (s * s)).ravel()
    cand_y, cand_x = yy.ravel() * f, xx.ravel() * f
    order = np.argsort(-fraction, kind="stable")
    chosen: list[tuple[int, int, float]] = []
    for i in order:
        if len(chosen) == n_regions or fraction[i] < min_fraction:
            break
        x, y = int(cand_x[i]), int(cand_y[i])
        if x + size > tissue.shape[1] or y + size > tissue.shape[0]:
            continue
        if any(abs(x - cx) < size and abs(y - cy) < size for cx, cy, _ in chosen):
            continue
        chosen.append((x, y, float(fraction[i])))
    if len(chosen) < n_regions:  # greedy packing failed: the cells of a regular grid instead
        chosen = _grid_regions(tissue, size, n_regions, min_fraction)
    return sorted(chosen, key=lambda c: (c[1], c[0]))


def _grid_regions(
    tissue: np.ndarray, size: int, n_regions: int, min_fraction: float
) -> list[tuple[int, int, float]]:
    height, width = tissue.shape
    nx, ny = width // size, height // size
    x_start, y_start = (width - nx * size) // 2, (height - ny * size) // 2
    cells = []
    for j in range(ny):
        for i in range(nx):
            x, y = x_start + i * size, y_start + j * size
            cells.append((x, y, float(tissue[y : y + size, x : x + size].mean())))
    cells.sort(key=lambda c: -c[2])
    chosen = [c for c in cells if c[2] >= min_fraction][:n_regions]
    if len(chosen) < n_regions:
        raise ValueError(
            f"only {len(chosen)} non-overlapping regions of {size} px with at least "
            f"{min_fraction:.0%} tissue fit the source image {width}x{height}; "
            "ask for fewer or smaller regions, or lower min_tissue_fraction"
        )
    return chosen


@dataclass(frozen=True)
class MsiDemoRegion:
    """One simulated specimen: a histology crop and its MSI.

    Attributes:
        region_id: ``'msi_region_XX'`` (also the pair and specimen id).
        imzml_path: the written ``.imzML`` (its ``.ibd`` beside it).
        histology_path: the written RGB PNG of the crop.
        histology: uint8 ``(S, S, 3)`` crop.
        haematoxylin: float32 ``(S, S)`` haematoxylin density of the crop (see
            :func:`stain_densities`).
        eosin: float32 ``(S, S)`` eosin density of the crop.
        crop_box: ``(x, y, width, height)`` of the crop in source level-0 pixels.
        mpp: ``(x, y)`` µm per histology pixel.
        msi_pixel_size_um: MSI pixel size in µm.
        msi_to_histology_px: float64 ``(2, 3)``: MSI ``(col, row)`` -> crop pixel ``(c, r)``
            (pixel centres), ``[c, r] = M[:, :2] @ [col, row] + M[:, 2]``.
        rotation_deg: rotation of the MSI raster on the histology.
        msi_haematoxylin: float32 ``(h, w)`` footprint-mean haematoxylin density per MSI pixel
            (the truth an H-correlated ion image should follow).
        msi_eosin: float32 ``(h, w)`` footprint-mean eosin density per MSI pixel.
        msi_tissue: float32 ``(h, w)`` tissue fraction of each MSI pixel's footprint.
        expected_counts: float32 ``(n_peaks, h, w)`` expected total counts of each simulated peak
            (before noise), in :func:`simulate_peaks` order.
        spectra: with ``keep_spectra``, the written ``(mz, intensity)`` of each pixel in file
            order (row-major: index ``row * w + col``); otherwise ``None``.
    """

    region_id: str
    imzml_path: Path
    histology_path: Path
    histology: np.ndarray
    haematoxylin: np.ndarray
    eosin: np.ndarray
    crop_box: tuple[int, int, int, int]
    mpp: tuple[float, float]
    msi_pixel_size_um: float
    msi_to_histology_px: np.ndarray
    rotation_deg: float
    msi_haematoxylin: np.ndarray
    msi_eosin: np.ndarray
    msi_tissue: np.ndarray
    expected_counts: np.ndarray
    spectra: list[tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def msi_shape(self) -> tuple[int, int]:
        """``(h, w)`` MSI raster size in pixels."""
        return (int(self.msi_haematoxylin.shape[0]), int(self.msi_haematoxylin.shape[1]))

    @property
    def affine_mm(self) -> np.ndarray:
        """float64 ``(2, 3)`` ``[[a11, a12, tx], [a21, a22, ty]]``: MSI mm -> histology-crop mm."""
        m = self.msi_to_histology_px
        s = self.msi_pixel_size_um
        linear = np.diag(self.mpp) @ m[:, :2] / s
        translation = np.asarray(self.mpp) * m[:, 2] / 1000.0
        return np.column_stack([linear, translation])


@dataclass(frozen=True)
class MsiDemo:
    """Everything :func:`generate_msi_demo` wrote.

    Attributes:
        params: the parameters.
        root: the output folder.
        regions: the regions, in ``ground_truth`` order.
        peaks: the simulated peaks (m/z ascending).
        ground_truth: one row per region, columns :data:`GROUND_TRUTH_COLUMNS`; also written to
            ``root / 'ground_truth.csv'`` (paths relative to ``root``).
        peak_table: one row per peak, columns :data:`PEAK_COLUMNS`; also ``root / 'peaks.csv'``.
        source: name of the histology source.
    """

    params: MsiDemoParams
    root: Path
    regions: list[MsiDemoRegion]
    peaks: list[SimulatedPeak]
    ground_truth: pd.DataFrame
    peak_table: pd.DataFrame
    source: str


def _footprint_sample(
    density: np.ndarray, matrix: np.ndarray, shape: tuple[int, int], footprint_px: float
) -> np.ndarray:
    """Mean of ``density`` over each MSI pixel's footprint (box of the pixel size, bilinear)."""
    size = max(1, round(footprint_px))
    smooth = ndimage.uniform_filter(density.astype(np.float32), size=size, mode="nearest")
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    c = matrix[0, 0] * cols + matrix[0, 1] * rows + matrix[0, 2]
    r = matrix[1, 0] * cols + matrix[1, 1] * rows + matrix[1, 2]
    return ndimage.map_coordinates(smooth, [r, c], order=1, mode="nearest").astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A smooth random field in ``[0.1, 1]`` (Gaussian-filtered noise, correlation ~ 1/5 side)."""
    sigma = max(1.0, min(shape) / 5.0)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    lo, hi = field.min(), field.max()
    field = (field - lo) / (hi - lo) if hi > lo else np.ones(shape)
    return (0.1 + 0.9 * field).astype(np.float32)


def _simulate_counts(
    params: MsiDemoParams,
    peaks: list[SimulatedPeak],
    expected: np.ndarray,
    tissue: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of every pixel (row-major) on its m/z grid.

    Returns:
        ``(grid, shift, counts)``: the common grid float64 ``(n_mz,)``; the per-pixel sampling
        shift in Da float64 ``(n_px,)`` (0 in continuous mode); counts float32 ``(n_px, n_mz)``.
    """
    lo, hi = params.mz_range
    step = params.mz_step
    grid = lo + step * np.arange(int(math.floor((hi - lo) / step + 1e-9)) + 1)
    n_px = expected.shape[1]
    shift: np.ndarray = (
        np.asarray(rng.uniform(0.0, step, size=n_px))
        if params.imzml_mode is ImzMLMode.PROCESSED
        else np.zeros(n_px)
    )
    jitter: np.ndarray = (
        np.asarray(rng.normal(0.0, params.mz_jitter_da, size=n_px))
        if params.mz_jitter_da
        else np.zeros(n_px)
    )
    # chemical baseline: expected counts per sample, higher on tissue
    decay = np.exp(-(grid - lo) / 150.0)
    level = params.baseline_counts * (0.5 + 0.5 * tissue)
    rate = level[:, None] * decay[None, :]
    for k, peak in enumerate(peaks):
        half = _PEAK_WINDOW_SIGMAS * peak.sigma_da + 3.0 * params.mz_jitter_da + step
        first = max(0, int(np.searchsorted(grid, peak.mz - half)))
        last = min(grid.size, int(np.searchsorted(grid, peak.mz + half)) + 1)
        if last <= first:
            continue
        sample_mz = grid[None, first:last] + shift[:, None]
        centre = (peak.mz + jitter)[:, None]
        profile = np.exp(-0.5 * ((sample_mz - centre) / peak.sigma_da) ** 2)
        # counts per sample: the Gaussian density times the sample spacing (sums to ~1)
        profile *= step / (peak.sigma_da * math.sqrt(2.0 * math.pi))
        rate[:, first:last] += expected[k][:, None] * profile
    counts = rng.poisson(rate).astype(np.float32)
    return grid, shift, counts


def _write_imzml(
    path: Path,
    grid: np.ndarray,
    shift: np.ndarray,
    counts: np.ndarray,
    shape: tuple[int, int],
    mode: ImzMLMode,
    pixel_size_um: float,
    file_uuid: uuid.UUID,
    written: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> None:
    """Write one region; ``written`` (if given) receives each pixel's ``(mz, intensity)``."""
    from pyimzml.ImzMLWriter import ImzMLWriter

    height, width = shape
    with ImzMLWriter(
        str(path),
        mz_dtype=np.float64 if mode is ImzMLMode.CONTINUOUS else np.float32,
        intensity_dtype=np.float32,
        mode=mode.value,
        spec_type="profile",
        polarity="positive",
    ) as writer:
        for i in range(height * width):
            row, col = divmod(i, width)
            if mode is ImzMLMode.CONTINUOUS:
                mz, intensity = grid, counts[i]
            else:
                keep = np.flatnonzero(counts[i] > 0)
                if keep.size == 0:  # an empty spectrum: keep one zero sample
                    keep = np.array([0])
                mz, intensity = grid[keep] + shift[i], counts[i, keep]
            writer.addSpectrum(mz, intensity, (col + 1, row + 1))
            if written is not None:
                written.append((np.asarray(mz, dtype=np.float64), np.asarray(intensity)))
    _finalise(path, width, height, pixel_size_um, file_uuid)


def _finalise(
    path: Path, width: int, height: int, pixel_size_um: float, file_uuid: uuid.UUID
) -> None:
    """Make the pair reproducible and complete the metadata.

    pyimzML stamps a random UUID into the ``.ibd`` and the XML and the output path into the run
    id: replace them by ``file_uuid`` (updating the ``.ibd`` SHA-1 in the XML) and the file stem,
    so that a seed gives byte-identical files wherever they are written. Insert the
    pixel size and image dimensions (µm) into the scan settings, which pyimzML does not write.
    """
    ibd_path = path.with_suffix(".ibd")
    data = bytearray(ibd_path.read_bytes())
    data[:16] = file_uuid.bytes
    ibd_path.write_bytes(bytes(data))
    sha1 = hashlib.sha1(bytes(data)).hexdigest().upper()
    text = path.read_text(encoding="ISO-8859-1")
    text, n_uuid = re.subn(
        r'(name="universally unique identifier" value=")[^"]*(")',
        lambda m: m.group(1) + "{" + str(file_uuid).upper() + "}" + m.group(2),
        text,
    )
    text, n_sha = re.subn(
        r'(name="ibd SHA-1" value=")[^"]*(")', lambda m: m.group(1) + sha1 + m.group(2), text
    )
    # pyimzML uses the output path (without suffix) as run id: keep only the file stem
    text, n_run = re.subn(
        r'(<run [^>]*\bid=")[^"]*(")', lambda m: m.group(1) + path.stem + m.group(2), text
    )
    if n_uuid != 1 or n_sha != 1 or n_run != 1:
        raise RuntimeError(f"unexpected pyimzML output '{path}': no UUID, SHA-1 or run id")
    anchor = 'name="max count of pixels y"'
    at = text.find(anchor)
    if at < 0:
        raise RuntimeError(f"unexpected pyimzML output '{path}': no 'max count of pixels y'")
    end = text.find("\n", at) + 1
    unit = 'unitCvRef="UO" unitAccession="UO:0000017" unitName="micrometer"'
    params = [
        ("IMS:1000044", "max dimension x", width * pixel_size_um),
        ("IMS:1000045", "max dimension y", height * pixel_size_um),
        ("IMS:1000046", "pixel size (x)", pixel_size_um),
        ("IMS:1000047", "pixel size y", pixel_size_um),
    ]
    lines = "".join(
        f'      <cvParam cvRef="IMS" accession="{acc}" name="{name}" value="{value:g}" {unit}/>\n'
        for acc, name, value in params
    )
    path.write_text(text[:end] + lines + text[end:], encoding="ISO-8859-1")


def generate_msi_demo(
    out_dir: str | Path, params: MsiDemoParams | None = None, *, keep_spectra: bool = False
) -> MsiDemo:
    """Generate the simulated paired MSI/H&E demo into ``out_dir``.

    Writes ``msi/<region_id>.imzML`` + ``.ibd``, ``histology/<region_id>.png``,
    ``ground_truth.csv`` and ``peaks.csv`` (existing files of the same names are overwritten).

    Args:
        out_dir: output folder (created).
        params: :class:`MsiDemoParams`; defaults if ``None``.
        keep_spectra: also return every written spectrum (:attr:`MsiDemoRegion.spectra`; memory
            grows with the pixel count times the spectrum length).

    Returns:
        :class:`MsiDemo` with the in-memory crops, densities and truth.
    """
    params = params or MsiDemoParams()
    root = Path(out_dir)
    (root / "msi").mkdir(parents=True, exist_ok=True)
    (root / "histology").mkdir(parents=True, exist_ok=True)

    source = load_histology_source(params.source)
    rgb = source.rgb
    size = min(params.region_size_px, min(rgb.shape[:2]) // math.ceil(math.sqrt(params.n_regions)))
    tissue_full = _optical_density(rgb) > _TISSUE_OD
    step = 4 if min(rgb.shape[:2]) >= 256 else 1
    _, _, scales = stain_densities(rgb[::step, ::step])
    boxes = _select_regions(tissue_full, size, params.n_regions, params.min_tissue_fraction)
    peaks = simulate_peaks(params)
    mpp = source.mpp
    footprint = params.msi_pixel_size_um / mpp[0]  # histology px per MSI px
    n_side = int(math.floor(0.85 * size / footprint))
    if n_side < 2:
        raise ValueError(
            f"an MSI pixel of {params.msi_pixel_size_um} µm is {footprint:.1f} histology px: a "
            f"region of {size} px holds fewer than 2x2 MSI pixels; use smaller MSI pixels or "
            "larger regions"
        )
    msi_shape = (n_side, n_side)

    regions: list[MsiDemoRegion] = []
    rows: list[dict[str, Any]] = []
    for k, (x0, y0, tissue_fraction) in enumerate(boxes):
        rng = np.random.default_rng([params.seed, k])
        region_id = f"msi_region_{k:02d}"
        crop = np.ascontiguousarray(rgb[y0 : y0 + size, x0 : x0 + size])
        h_density, e_density, _ = stain_densities(crop, scales)
        tissue = (_optical_density(crop) > _TISSUE_OD).astype(np.float32)

        theta = math.radians(float(rng.uniform(-1.0, 1.0)) * params.max_rotation_deg)
        extent = n_side * footprint * (abs(math.cos(theta)) + abs(math.sin(theta)))
        margin = max(0.0, (size - extent) / 2.0 - 1.0)
        offset = rng.uniform(-0.8 * margin, 0.8 * margin, size=2)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        linear = rot * footprint
        centre_msi = np.array([(n_side - 1) / 2.0, (n_side - 1) / 2.0])
        centre_hist = np.array([(size - 1) / 2.0, (size - 1) / 2.0]) + offset
        matrix = np.column_stack([linear, centre_hist - linear @ centre_msi])

        msi_h = _footprint_sample(h_density, matrix, msi_shape, footprint)
        msi_e = _footprint_sample(e_density, matrix, msi_shape, footprint)
        msi_t = np.clip(_footprint_sample(tissue, matrix, msi_shape, footprint), 0.0, 1.0)

        drivers = []
        for peak in peaks:
            if peak.kind is PeakKind.HAEMATOXYLIN:
                drivers.append(msi_h)
            elif peak.kind is PeakKind.EOSIN:
                drivers.append(msi_e)
            elif peak.kind is PeakKind.UNRELATED:
                drivers.append(msi_t * _smooth_field(rng, msi_shape))
            else:
                drivers.append(np.ones(msi_shape, dtype=np.float32))
        amplitude = np.array([p.amplitude for p in peaks], dtype=np.float64)
        expected = params.peak_counts * amplitude[:, None, None] * np.stack(drivers)
        expected = expected.astype(np.float32)
        noisy = expected.reshape(len(peaks), -1).astype(np.float64)
        if params.yield_noise > 0:
            noisy = noisy * np.clip(rng.normal(1.0, params.yield_noise, noisy.shape), 0.0, None)
        grid, shift, counts = _simulate_counts(params, peaks, noisy, msi_t.ravel(), rng)

        imzml_path = root / "msi" / f"{region_id}.imzML"
        written: list[tuple[np.ndarray, np.ndarray]] | None = [] if keep_spectra else None
        _write_imzml(
            imzml_path,
            grid,
            shift,
            counts,
            msi_shape,
            params.imzml_mode,
            params.msi_pixel_size_um,
            uuid.uuid5(_UUID_NAMESPACE, f"{params!r}/{region_id}"),
            written,
        )
        histology_path = root / "histology" / f"{region_id}.png"
        Image.fromarray(crop).save(histology_path, optimize=False, compress_level=6)

        region = MsiDemoRegion(
            region_id=region_id,
            imzml_path=imzml_path,
            histology_path=histology_path,
            histology=crop,
            haematoxylin=h_density,
            eosin=e_density,
            crop_box=(int(x0), int(y0), int(size), int(size)),
            mpp=(float(mpp[0]), float(mpp[1])),
            msi_pixel_size_um=float(params.msi_pixel_size_um),
            msi_to_histology_px=matrix,
            rotation_deg=math.degrees(theta),
            msi_haematoxylin=msi_h,
            msi_eosin=msi_e,
            msi_tissue=msi_t,
            expected_counts=expected,
            spectra=written,
        )
        regions.append(region)
        affine = region.affine_mm
        rows.append(
            {
                "pair_id": region_id,
                "specimen_id": region_id,
                "imzml": imzml_path.relative_to(root).as_posix(),
                "histology": histology_path.relative_to(root).as_posix(),
                "source": source.name,
                "crop_x": int(x0),
                "crop_y": int(y0),
                "crop_width": int(size),
                "crop_height": int(size),
                "mpp_x": float(mpp[0]),
                "mpp_y": float(mpp[1]),
                "msi_pixel_size_um": float(params.msi_pixel_size_um),
                "msi_width": n_side,
                "msi_height": n_side,
                "imzml_mode": params.imzml_mode.value,
                "a11": affine[0, 0],
                "a12": affine[0, 1],
                "a21": affine[1, 0],
                "a22": affine[1, 1],
                "tx": affine[0, 2],
                "ty": affine[1, 2],
                "rotation_deg": math.degrees(theta),
                "offset_x_px": float(matrix[0, 2]),
                "offset_y_px": float(matrix[1, 2]),
                "tissue_fraction": round(tissue_fraction, 4),
            }
        )

    ground_truth = pd.DataFrame(rows, columns=list(GROUND_TRUTH_COLUMNS))
    peak_table = pd.DataFrame(
        [
            {
                "peak_id": i,
                "mz": p.mz,
                "kind": p.kind.value,
                "amplitude": p.amplitude,
                "sigma_da": p.sigma_da,
            }
            for i, p in enumerate(peaks)
        ],
        columns=list(PEAK_COLUMNS),
    )
    ground_truth.to_csv(root / "ground_truth.csv", index=False)
    peak_table.to_csv(root / "peaks.csv", index=False)
    return MsiDemo(
        params=params,
        root=root,
        regions=regions,
        peaks=peaks,
        ground_truth=ground_truth,
        peak_table=peak_table,
        source=source.name,
    )
