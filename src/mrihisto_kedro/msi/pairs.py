"""Paired MSI / histology images and tiles for the MSI -> H&E experiments (seed 003; no Kedro).

The steps of the paper, for a study of several specimens (one MSI acquisition and one H&E image
each), as library functions the ``msi_data_engineering`` pipeline's nodes call:

1. :func:`common_peak_stacks`: every spectrum of every specimen rebinned onto ONE common m/z
   axis, all spectra summed, the top-N peaks of the study's summed spectrum picked, and one ion
   image stack per specimen for those peaks (so channel ``k`` is the same ion in every specimen).
2. :func:`reduce_jointly`: the peak vectors of all specimens' pixels embedded together in 3
   dimensions (PCA, t-SNE, UMAP) and scaled together, so a colour means the same chemistry in
   every specimen (a per-specimen PCA would give each specimen its own colour code and a model
   could not generalise between them). The embedding is unsupervised: it sees MSI only, never
   the histology, so no test-specimen H&E leaks into training.
3. :func:`histology_on_grid`: the H&E image block-averaged to the working grid of the tiles.
4. :func:`pad_to_histology`: the reduced MSI placed on a black or white canvas covering the
   histology's physical extent (the paper compared both paddings).
5. :func:`register_msi`: affine registration MSI -> histology, from control points
   (least squares, :func:`~mrihisto_kedro.imaging.registration.affine_from_control_points`) or by
   Mattes mutual information on one channel of the reduced image
   (:func:`~mrihisto_kedro.imaging.registration.register_affine`).
6. :func:`resample_msi` / :func:`msi_coverage`: the padded MSI and its footprint on the working
   grid; :func:`registration_tre_um` compares a registration with a known affine.
7. :func:`msi_pair_tiles`: paired tiles (A = 3-channel MSI float32 in [0, 1], B = uint8 RGB).

Geometry: physical ``(x, y)`` millimetres throughout. MSI pixel ``(col, row)`` (0-based) lies at
``(col * sx, row * sy)`` mm with ``(sx, sy)`` the MSI pixel size; histology level-0 pixel
``(c, r)`` at ``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm (the conventions of
:mod:`mrihisto_kedro.demo.msi`, whose ground-truth affine maps MSI mm to histology mm).
Registration transforms map histology (fixed) mm to MSI (moving) mm, as in ITK and
:mod:`mrihisto_kedro.imaging.registration`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.imaging.downsample import downsampled_origin_mm
from mrihisto_kedro.imaging.registration import (
    ControlPoints,
    Initialization,
    Interpolator,
    RegistrationParams,
    SamplingStrategy,
    TissueChannel,
    TransformStage,
    affine_from_control_points,
    fixed_image_from_rgb,
    grid_points_in_mask,
    matrix_to_affine,
    register_affine,
    resample_moving,
    target_registration_error,
    tissue_channel,
    transform_from_moving_to_fixed_affine,
)
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.imaging.tiling import tile_origins
from mrihisto_kedro.manifest import SplitFractions, assign_splits
from mrihisto_kedro.metrics.mutual_information import mutual_information
from mrihisto_kedro.msi.imzml import ImzMLReader
from mrihisto_kedro.msi.reduction import PadColour, ReductionMethod, pad_to_shape, reduce_to_rgb
from mrihisto_kedro.msi.spectra import (
    BinUnit,
    DistanceUnit,
    MzAxis,
    Normalisation,
    PeakList,
    RebinMethod,
    ion_images,
    make_mz_axis,
    pick_peaks,
    summed_spectrum,
)
from mrihisto_kedro.nn.input_spec import InputKind, InputSpec

__all__ = [
    "CONTROL_POINT_COLUMNS",
    "MSI_OPTIMISER",
    "MSI_PAIRS_COLUMNS",
    "ControlPointSimulation",
    "ImzMLFiles",
    "MsiAlignedPair",
    "MsiPeakStacks",
    "MsiRegistration",
    "MsiRegistrationParams",
    "MsiTilingParams",
    "ReductionParams",
    "RegistrationMode",
    "SpectraParams",
    "assign_specimen_splits",
    "common_peak_stacks",
    "histology_on_grid",
    "image_to_array",
    "msi_coverage",
    "msi_image",
    "msi_pair_tiles",
    "msi_tiles_input_spec",
    "pad_to_histology",
    "pad_value",
    "reduce_jointly",
    "register_msi",
    "registration_figure",
    "registered_mutual_information",
    "registration_tre_um",
    "resample_msi",
    "simulate_control_points",
    "validate_msi_pairs",
    "write_imzml_pair",
]

MSI_PAIRS_COLUMNS: tuple[str, ...] = ("pair_id", "specimen_id", "mpp_x", "mpp_y")
"""Required columns of an MSI pairs manifest (one row per specimen's MSI/H&E pair).

``pair_id`` names the files (``<pair_id>.imzML`` + ``.ibd`` in the MSI folder, the histology image
``<pair_id>.png``/``.tif``... in the histology folder); ``mpp_x``/``mpp_y`` are the histology's µm
per pixel. Optional: ``split`` (empty = assigned by specimen), ``msi_pixel_size_um`` (used when the
imzML file does not state its pixel size). The demo's ``ground_truth.csv`` is such a manifest.
"""

CONTROL_POINT_COLUMNS: tuple[str, ...] = (
    "label",
    "fixed_x_mm",
    "fixed_y_mm",
    "moving_x_mm",
    "moving_y_mm",
)
"""Columns of a landmark file (``fixed`` = histology mm, ``moving`` = MSI mm)."""


class RegistrationMode(StrEnum):
    """How the MSI is registered to the histology.

    ``control_points``: least-squares affine from landmark pairs (the paper's method);
    ``intensity``: Mattes mutual information on one channel of the reduced MSI against a tissue
    channel of the H&E (no landmarks needed).
    """

    CONTROL_POINTS = "control_points"
    INTENSITY = "intensity"


# ----------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class SpectraParams:
    """``msi_data_engineering.spectra``: common axis, peak picking, ion images.

    Attributes:
        bin_width: width of the common m/z axis' bins, in ``bin_unit``.
        bin_unit: :class:`~mrihisto_kedro.msi.spectra.BinUnit` (``da`` or ``ppm``).
        mz_range: ``(min, max)`` m/z in Da of the axis; ``None``: the union of the files' ranges.
        n_peaks: peaks picked from the study's summed spectrum (the paper: 50).
        min_distance: minimum distance between two picked peaks, in ``distance_unit``.
        distance_unit: :class:`~mrihisto_kedro.msi.spectra.DistanceUnit` (``bins`` or ``da``).
        prominence: minimum peak prominence (summed-spectrum units); ``None``: none.
        method: :class:`~mrihisto_kedro.msi.spectra.RebinMethod` (``linear`` = interpolation
            rebinning, the paper's).
        normalisation: per-pixel :class:`~mrihisto_kedro.msi.spectra.Normalisation`
            (``tic``, ``rms`` or ``none``), applied before summing and imaging.
        half_window_bins: an ion image sums ``2 * half_window_bins + 1`` bins around its peak.
    """

    bin_width: float = 0.1
    bin_unit: BinUnit = BinUnit.DA
    mz_range: tuple[float, float] | None = None
    n_peaks: int = 50
    min_distance: float = 1.0
    distance_unit: DistanceUnit = DistanceUnit.DA
    prominence: float | None = None
    method: RebinMethod = RebinMethod.LINEAR
    normalisation: Normalisation = Normalisation.TIC
    half_window_bins: int = 2

    def __post_init__(self) -> None:
        if not self.bin_width > 0:
            raise ValueError(f"bin_width must be > 0, got {self.bin_width}")
        if self.n_peaks < 1:
            raise ValueError(f"n_peaks must be >= 1, got {self.n_peaks}")
        if self.half_window_bins < 0:
            raise ValueError(f"half_window_bins must be >= 0, got {self.half_window_bins}")
        if self.mz_range is not None and not 0 <= self.mz_range[0] < self.mz_range[1]:
            raise ValueError(f"mz_range must satisfy 0 <= min < max, got {self.mz_range}")


@dataclass(frozen=True)
class ReductionParams:
    """``msi_data_engineering.reduction``: peak stack -> 3 channels in [0, 1].

    Attributes:
        method: :class:`~mrihisto_kedro.msi.reduction.ReductionMethod` (``pca``, ``tsne``,
            ``umap``).
        percentiles: per-channel robust scaling to [0, 1] (over all specimens' pixels).
        seed: random seed (t-SNE, UMAP).
        standardise: z-score every peak first (so the intense peaks do not dominate).
        log_transform: ``log1p`` of the intensities first.
        perplexity: t-SNE perplexity; n_neighbors: UMAP neighbourhood; tsne_max_iter: t-SNE
            iterations.
    """

    method: ReductionMethod = ReductionMethod.PCA
    percentiles: tuple[float, float] = (1.0, 99.0)
    seed: int = 0
    standardise: bool = True
    log_transform: bool = False
    perplexity: float = 30.0
    n_neighbors: int = 15
    tsne_max_iter: int = 1000


MSI_OPTIMISER = RegistrationParams(
    metric_bins=20,
    sampling_strategy=SamplingStrategy.NONE,
    shrink_factors=(1,),
    smoothing_sigmas=(0.0,),
    stages=(TransformStage.RIGID,),
    initialization=Initialization.GEOMETRY,
    initial_offsets_px=tuple((float(x), float(y)) for y in (-1, 0, 1) for x in (-1, 0, 1)),
    min_information_gain=0.02,
)
"""Intensity-mode defaults for MSI (tens of pixels a side) against a 2 µm H&E grid.

Measured on the demo's 6 specimens (OD vs PCA channel 0, 21 x 21 MSI pixels of 10 µm): a rigid
stage (the scale is known from the pixel sizes) on the full-resolution level, every pixel
sampled, 20 bins, gave TRE 0.2-1.8 µm (median 1.1); similarity + affine stages drifted (median
3-35 µm) because 441 noisy pixels do not pin six parameters, and 50 bins or a 2-level pyramid
were worse. ``min_information_gain`` is lowered from 0.1: MI between a 10 µm ion image and a
tissue channel is a few tenths of a nat at best.

From the centred start alone, Mattes MI of so few pixels has local optima an MSI pixel or two
away: on the conf/base demo's 10 specimens one pair ended at TRE 14.4 µm (the others 0.4-4.8),
on a 15-specimen demo (384 px crops, 16 x 16 MSI pixels) one at 16.2 µm; 32 bins or a 2-level
pyramid fixed one demo and broke another (up to 55 µm). Nine starts, the centred one shifted by
-1, 0, 1 MSI pixel in x and y (``initial_offsets_px``; the lowest metric is kept), brought every
pair of the 6-, 10- and 15-specimen demos under 3.1 µm (max 2.0 / 1.9 / 3.1 µm, medians
1.2 / 1.0 / 1.2 µm).
"""


@dataclass(frozen=True)
class MsiRegistrationParams:
    """``msi_data_engineering.registration``.

    Attributes:
        mode: :class:`RegistrationMode`.
        downsample: the working grid: histology level-0 pixels per grid pixel (integer block
            mean; 4 turns the demo's 0.499 µm H&E into a 2 µm grid, 5 grid pixels per 10 µm MSI
            pixel). Tiles are cut on this grid.
        canvas_margin_px: MSI pixels of padding beyond the histology's extent on every side.
        fixed_channel: tissue channel of the H&E for ``intensity`` mode.
        moving_channel: channel (0, 1, 2) of the reduced MSI for ``intensity`` mode; ``None``:
            the mean of the three.
        optimiser: :class:`~mrihisto_kedro.imaging.registration.RegistrationParams` for
            ``intensity`` mode (masks: the MSI footprint on its padded canvas).
        tre_grid_step_um: spacing of the grid of histology points (inside the registered MSI
            footprint) where the target registration error against a known affine is measured.
    """

    mode: RegistrationMode = RegistrationMode.CONTROL_POINTS
    downsample: int = 4
    canvas_margin_px: int = 2
    fixed_channel: TissueChannel = TissueChannel.OPTICAL_DENSITY
    moving_channel: int | None = 0
    optimiser: RegistrationParams = field(default_factory=lambda: MSI_OPTIMISER)
    tre_grid_step_um: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", RegistrationMode(self.mode))
        object.__setattr__(self, "fixed_channel", TissueChannel(self.fixed_channel))
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        if self.canvas_margin_px < 0:
            raise ValueError(f"canvas_margin_px must be >= 0, got {self.canvas_margin_px}")
        if self.moving_channel is not None and self.moving_channel not in (0, 1, 2):
            raise ValueError(f"moving_channel must be 0, 1, 2 or null, got {self.moving_channel}")
        if not self.tre_grid_step_um > 0:
            raise ValueError(f"tre_grid_step_um must be > 0, got {self.tre_grid_step_um}")


@dataclass(frozen=True)
class MsiTilingParams:
    """``msi_data_engineering.tiling``: tiles on the working grid.

    Attributes:
        tile_size: tile side in grid pixels.
        stride: step between tiles in grid pixels (``None``: ``tile_size``).
        min_msi_fraction: keep a tile when at least this fraction of it is covered by MSI pixels
            (the rest is padding).
    """

    tile_size: int = 32
    stride: int | None = None
    min_msi_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.tile_size < 8:
            raise ValueError(f"tile_size must be >= 8, got {self.tile_size}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if not 0.0 <= self.min_msi_fraction <= 1.0:
            raise ValueError(f"min_msi_fraction must be in [0, 1], got {self.min_msi_fraction}")


@dataclass(frozen=True)
class ControlPointSimulation:
    """Simulated landmark clicks of the demo (``msi_data_engineering.demo.control_points``).

    Attributes:
        n_points: landmark pairs per specimen (>= 3).
        click_noise_um: standard deviation of the click error on the MSI side, µm (clicking on a
            coarse MSI image is the imprecise part; the H&E side is exact).
        seed: seed of the clicks (specimen ``k`` uses ``default_rng([seed, k])``).
    """

    n_points: int = 8
    click_noise_um: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_points < 3:
            raise ValueError(f"n_points must be >= 3, got {self.n_points}")
        if not self.click_noise_um >= 0:
            raise ValueError(f"click_noise_um must be >= 0, got {self.click_noise_um}")


# ----------------------------------------------------------------------------------------------
# manifest and splits


def validate_msi_pairs(pairs: pd.DataFrame, source: str = "MSI pairs manifest") -> pd.DataFrame:
    """Check an MSI pairs manifest (:data:`MSI_PAIRS_COLUMNS`) and normalise its types.

    Returns:
        A copy with string ids, float mpp and a string ``split`` column ('' when empty).

    Raises:
        ValueError: a missing column, a duplicated ``pair_id``, a non-positive mpp, or a specimen
            in several splits; the message names ``source``.
    """
    source = str(pairs.attrs.get("source", source))
    missing = [c for c in MSI_PAIRS_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}")
    out = pairs.copy()
    out["pair_id"] = out["pair_id"].astype(str).str.strip()
    out["specimen_id"] = out["specimen_id"].astype(str).str.strip()
    if out["pair_id"].duplicated().any():
        dupes = sorted(set(out.loc[out["pair_id"].duplicated(), "pair_id"]))
        raise ValueError(f"{source}: duplicated pair_id {dupes}")
    for col in ("mpp_x", "mpp_y"):
        values = pd.to_numeric(out[col], errors="coerce")
        if values.isna().any() or (values <= 0).any():
            raise ValueError(f"{source}: column {col!r} must hold numbers > 0 (µm per pixel)")
        out[col] = values.astype(float)
    if "split" not in out.columns:
        out["split"] = ""
    out["split"] = out["split"].fillna("").astype(str).str.strip()
    given = out[out["split"] != ""]
    mixed = given.groupby("specimen_id")["split"].nunique()
    if (mixed > 1).any():
        raise ValueError(
            f"{source}: specimen(s) {', '.join(mixed[mixed > 1].index)} are in several splits"
        )
    return out


def assign_specimen_splits(pairs: pd.DataFrame, fractions: SplitFractions) -> pd.DataFrame:
    """Assign train/val/test to whole specimens (see :func:`mrihisto_kedro.manifest.assign_splits`).

    The counts are the largest-remainder rounding of ``fraction * n_specimens``: with 6
    specimens and 70/10/20, ``(4.2, 0.6, 1.2)`` floors to ``(4, 0, 1)`` and the sixth specimen
    goes to the largest remainder (val, 0.6): 4 train, 1 val, 1 test; the conf/base demo's 10
    give 7 train, 1 val, 2 test.
    """
    return assign_splits(validate_msi_pairs(pairs), fractions)


# ----------------------------------------------------------------------------------------------
# spectra -> peak stacks -> 3 channels


@dataclass(frozen=True)
class MsiPeakStacks:
    """Ion images of the same peaks in every specimen.

    Attributes:
        axis: the common m/z axis.
        peaks: the peaks picked on the study's summed spectrum (m/z ascending).
        summed: float64 ``(axis.n_bins,)`` the study's summed (normalised) spectrum.
        images: ``{pair_id: float32 (n_peaks, h, w)}``; ``images[p][k]`` is ``peaks.mz[k]``.
        acquired: ``{pair_id: bool (h, w)}`` pixels that have a spectrum.
        pixel_size_um: ``{pair_id: (x, y)}`` MSI pixel size in µm.
    """

    axis: MzAxis
    peaks: PeakList
    summed: np.ndarray
    images: dict[str, np.ndarray]
    acquired: dict[str, np.ndarray]
    pixel_size_um: dict[str, tuple[float, float]]

    def peak_table(self) -> pd.DataFrame:
        """One row per peak: ``peak, mz, summed_intensity`` (m/z in Da)."""
        return pd.DataFrame(
            {
                "peak": np.arange(len(self.peaks)),
                "mz": self.peaks.mz,
                "summed_intensity": self.peaks.intensity,
            }
        )


def common_peak_stacks(
    readers: Mapping[str, ImzMLReader],
    params: SpectraParams,
    pixel_size_um: Mapping[str, float] | None = None,
) -> MsiPeakStacks:
    """Rebin every specimen onto one axis, pick the study's top peaks, image them everywhere.

    Two streamed passes over each file (summing, then imaging); memory is the output stacks plus
    one spectrum.

    Args:
        readers: ``{pair_id: open reader}``.
        params: :class:`SpectraParams`.
        pixel_size_um: fallback MSI pixel size (µm, square) per pair for files that do not state
            one.

    Returns:
        :class:`MsiPeakStacks`.

    Raises:
        ValueError: no readers, or a file without a pixel size and no fallback.
    """
    if not readers:
        raise ValueError("no MSI files to process")
    sizes: dict[str, tuple[float, float]] = {}
    for pair_id, reader in readers.items():
        size = reader.pixel_size_um
        if size is None:
            fallback = (pixel_size_um or {}).get(pair_id)
            if fallback is None or not math.isfinite(float(fallback)) or float(fallback) <= 0:
                raise ValueError(
                    f"{reader.path}: the imzML file states no pixel size; give the pair's "
                    "msi_pixel_size_um in the manifest"
                )
            size = (float(fallback), float(fallback))
        sizes[pair_id] = size
    if params.mz_range is not None:
        lo, hi = params.mz_range
    else:
        ranges = [reader.mz_range for reader in readers.values()]
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    axis = make_mz_axis(lo, hi, params.bin_width, params.bin_unit)
    total = np.zeros(axis.n_bins, dtype=np.float64)
    for reader in readers.values():
        total += summed_spectrum(
            reader, axis, method=params.method, normalisation=params.normalisation
        ).total
    peaks = pick_peaks(
        total,
        axis,
        params.n_peaks,
        min_distance=params.min_distance,
        distance_unit=params.distance_unit,
        prominence=params.prominence,
    )
    images = {
        pair_id: ion_images(
            reader,
            axis,
            peaks,
            method=params.method,
            normalisation=params.normalisation,
            half_window_bins=params.half_window_bins,
        )
        for pair_id, reader in readers.items()
    }
    acquired = {pair_id: reader.acquired_mask() for pair_id, reader in readers.items()}
    return MsiPeakStacks(
        axis=axis,
        peaks=peaks,
        summed=total,
        images=images,
        acquired=acquired,
        pixel_size_um=sizes,
    )


def reduce_jointly(
    stacks: Mapping[str, np.ndarray],
    params: ReductionParams,
    acquired: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Embed the pixels of all specimens together in 3 channels, scaled to [0, 1] together.

    The stacks are laid side by side in one mosaic (never-acquired pixels and the mosaic's
    filler masked out) and reduced with
    :func:`~mrihisto_kedro.msi.reduction.reduce_to_rgb`: one PCA (or t-SNE / UMAP) and one
    scaling for the whole study, so that a colour means the same ions in every specimen.

    Args:
        stacks: ``{pair_id: float (n_peaks, h, w)}`` with the same peaks in each.
        params: :class:`ReductionParams`.
        acquired: ``{pair_id: bool (h, w)}``; ``None``: pixels with any non-zero ion count.

    Returns:
        ``{pair_id: float32 (h, w, 3)}`` in [0, 1]; never-acquired pixels are 0.
    """
    if not stacks:
        raise ValueError("no peak stacks to reduce")
    keys = list(stacks)
    arrays = [np.asarray(stacks[k], dtype=np.float32) for k in keys]
    n_peaks = {a.shape[0] for a in arrays}
    if len(n_peaks) != 1 or any(a.ndim != 3 for a in arrays):
        raise ValueError(f"stacks must be (n_peaks, h, w) with one n_peaks, got {n_peaks}")
    height = max(a.shape[1] for a in arrays)
    width = sum(a.shape[2] for a in arrays)
    mosaic = np.zeros((arrays[0].shape[0], height, width), dtype=np.float32)
    mask = np.zeros((height, width), dtype=bool)
    spans = []
    left = 0
    for key, array in zip(keys, arrays, strict=True):
        _, h, w = array.shape
        mosaic[:, :h, left : left + w] = array
        used = (
            np.asarray(acquired[key], dtype=bool)
            if acquired is not None
            else np.any(array != 0, axis=0)
        )
        if used.shape != (h, w):
            raise ValueError(f"{key}: acquired mask {used.shape} differs from its stack {(h, w)}")
        mask[:h, left : left + w] = used
        spans.append((h, left, w))
        left += w
    rgb = reduce_to_rgb(
        mosaic,
        params.method,
        mask=mask,
        percentiles=params.percentiles,
        seed=params.seed,
        standardise=params.standardise,
        log_transform=params.log_transform,
        background=0.0,
        perplexity=params.perplexity,
        n_neighbors=params.n_neighbors,
        tsne_max_iter=params.tsne_max_iter,
    )
    return {
        key: np.ascontiguousarray(rgb[:h, left : left + w])
        for key, (h, left, w) in zip(keys, spans, strict=True)
    }


# ----------------------------------------------------------------------------------------------
# images with physical geometry


def msi_image(array: np.ndarray, pixel_size_um: Sequence[float]) -> sitk.Image:
    """A channels-last MSI array as a 2-D vector ``SimpleITK`` image in MSI mm.

    Args:
        array: ``(h, w, C)`` (float32 for reduced images, any real dtype).
        pixel_size_um: ``(x, y)`` MSI pixel size in µm.

    Returns:
        Vector image (``C`` components), spacing ``pixel_size / 1000`` mm, origin ``(0, 0)``
        (pixel ``(0, 0)``'s centre), identity direction.
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ValueError(f"expected (h, w, C), got shape {arr.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=True)
    image.SetSpacing(tuple(float(s) / 1000.0 for s in pixel_size_um))
    image.SetOrigin((0.0, 0.0))
    return image


def image_to_array(image: sitk.Image) -> np.ndarray:
    """Pixels of a 2-D image, channels last: ``(H, W, C)`` for vector images, ``(H, W)`` else."""
    return sitk.GetArrayFromImage(image)


def histology_on_grid(rgb: np.ndarray, mpp: Sequence[float], downsample: int) -> sitk.Image:
    """The H&E block-averaged by ``downsample`` as a vector uint8 image in histology mm.

    Rows and columns beyond the last whole block are dropped. Pixel ``(0, 0)``'s centre lies at
    :func:`~mrihisto_kedro.imaging.downsample.downsampled_origin_mm` (the centre of its block).

    Args:
        rgb: uint8 ``(H, W, 3)`` level-0 pixels (an alpha channel is dropped).
        mpp: ``(x, y)`` level-0 µm per pixel.
        downsample: integer block size (>= 1).

    Returns:
        ``sitkVectorUInt8`` image of size ``(W // f, H // f)``, spacing ``mpp * f / 1000`` mm.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"expected RGB (H, W, 3), got shape {arr.shape}")
    arr = arr[..., :3].astype(np.float64)
    f = int(downsample)
    h, w = arr.shape[0] // f, arr.shape[1] // f
    if h < 1 or w < 1:
        raise ValueError(f"image {arr.shape[:2]} is smaller than one {f}x{f} block")
    blocks = arr[: h * f, : w * f].reshape(h, f, w, f, 3).mean(axis=(1, 3))
    grid = np.clip(np.rint(blocks), 0, 255).astype(np.uint8)
    image = sitk.GetImageFromArray(grid, isVector=True)
    image.SetSpacing((mpp[0] * f / 1000.0, mpp[1] * f / 1000.0))
    image.SetOrigin(downsampled_origin_mm(float(f), (float(mpp[0]), float(mpp[1]))))
    return image


def pad_value(colour: PadColour | str) -> float:
    """Value of a padding colour for float images in [0, 1]: black 0.0, white 1.0."""
    return 0.0 if PadColour(colour) is PadColour.BLACK else 1.0


def pad_to_histology(
    msi: sitk.Image, histology: sitk.Image, colour: PadColour | str, margin_px: int = 2
) -> tuple[sitk.Image, sitk.Image]:
    """Place the MSI on a black or white canvas covering the histology's physical extent.

    The canvas keeps the MSI pixel size; it is at least the histology's extent (in MSI pixels)
    plus ``margin_px`` on every side, with the MSI centred on it
    (:func:`~mrihisto_kedro.msi.reduction.pad_to_shape`). Its origin is shifted so that every MSI
    pixel keeps its physical position: the canvas is the same MSI, padded.

    Args:
        msi: vector image from :func:`msi_image` (float in [0, 1]).
        histology: the working-grid histology (only its physical extent is used).
        colour: :class:`~mrihisto_kedro.msi.reduction.PadColour`.
        margin_px: MSI pixels beyond the histology's extent on every side.

    Returns:
        ``(canvas, footprint)``: the padded vector image and a uint8 image (1 on MSI pixels,
        0 on padding) of the same geometry.
    """
    spacing = np.asarray(msi.GetSpacing(), dtype=np.float64)
    extent = np.asarray(histology.GetSize(), dtype=np.float64) * np.asarray(histology.GetSpacing())
    size = np.asarray(msi.GetSize())
    canvas_wh = np.maximum(np.ceil(extent / spacing).astype(int), size) + 2 * int(margin_px)
    array = image_to_array(msi)
    canvas, placement = pad_to_shape(
        array, (int(canvas_wh[1]), int(canvas_wh[0])), colour=PadColour(colour)
    )
    footprint, _ = pad_to_shape(
        np.ones(array.shape[:2], dtype=np.uint8),
        (int(canvas_wh[1]), int(canvas_wh[0])),
        colour=PadColour.BLACK,
    )
    origin = tuple(
        float(o - k * s)
        for o, k, s in zip(msi.GetOrigin(), (placement.left, placement.top), spacing, strict=True)
    )
    out = sitk.GetImageFromArray(canvas, isVector=True)
    mask = sitk.GetImageFromArray(footprint)
    for image in (out, mask):
        image.SetSpacing(tuple(float(s) for s in spacing))
        image.SetOrigin(origin)
    return out, mask


def _channel(image: sitk.Image, channel: int | None) -> sitk.Image:
    """One component of a vector image (or the mean of all), float32, same geometry."""
    arr = image_to_array(image).astype(np.float32)
    scalar = arr.mean(axis=-1) if channel is None else arr[..., channel]
    out = sitk.GetImageFromArray(np.ascontiguousarray(scalar))
    out.CopyInformation(image)
    return out


# ----------------------------------------------------------------------------------------------
# registration


@dataclass(frozen=True)
class MsiRegistration:
    """Result of :func:`register_msi`.

    Attributes:
        transform: histology (fixed) mm -> MSI (moving) mm.
        initial_transform: the centred start: the histology's centre onto the MSI's centre.
        mode: how it was found.
        seconds: wall time.
        converged: intensity mode: every stage stopped before its iteration limit; control
            points: ``True``.
        control_point_residuals_um: ``(N,)`` landmark residuals ``|T(fixed) - moving|`` in µm
            (control-point mode), else ``None``.
        notes: warnings of the optimiser, if any.
        start_offset_px: intensity mode: the entry of ``optimiser.initial_offsets_px`` (MSI
            pixels) whose start was kept; ``None`` for control points (on the demo's 10
            specimens 8 winners are off-centre, every TRE under 2 µm).
    """

    transform: sitk.AffineTransform
    initial_transform: sitk.AffineTransform
    mode: RegistrationMode
    seconds: float
    converged: bool
    control_point_residuals_um: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    start_offset_px: tuple[float, float] | None = None


def _centre_mm(image: sitk.Image) -> np.ndarray:
    size = np.asarray(image.GetSize(), dtype=np.float64)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2.0)))


def _centred(histology: sitk.Image, msi: sitk.Image) -> sitk.AffineTransform:
    """Translation taking the histology's centre to the (unpadded) MSI's centre."""
    matrix = np.eye(3)
    matrix[:2, 2] = _centre_mm(msi) - _centre_mm(histology)
    return matrix_to_affine(matrix, center=tuple(_centre_mm(histology)))


def register_msi(
    histology: sitk.Image,
    msi: sitk.Image,
    canvas: sitk.Image,
    footprint: sitk.Image,
    params: MsiRegistrationParams,
    control_points: ControlPoints | None = None,
) -> MsiRegistration:
    """Affine registration of the reduced MSI (moving) to the working-grid H&E (fixed).

    Args:
        histology: vector uint8 image from :func:`histology_on_grid`.
        msi: the unpadded reduced MSI (:func:`msi_image`), for the centred start.
        canvas: the padded MSI (:func:`pad_to_histology`); intensity mode registers
            ``params.moving_channel`` of it, with the footprint as the moving mask (padding is
            never sampled).
        footprint: the canvas' MSI footprint.
        params: :class:`MsiRegistrationParams`.
        control_points: landmark pairs (histology mm, MSI mm); required in control-point mode.

    Returns:
        :class:`MsiRegistration`.

    Raises:
        ValueError: control-point mode without control points.
        ~mrihisto_kedro.imaging.registration.RegistrationError: the intensity optimisation
            failed (see :func:`~mrihisto_kedro.imaging.registration.register_affine`).
        ~mrihisto_kedro.imaging.registration.ControlPointError: unusable landmarks.
    """
    start = time.perf_counter()
    initial = _centred(histology, msi)
    if params.mode is RegistrationMode.CONTROL_POINTS:
        if control_points is None:
            raise ValueError("control-point registration needs control points")
        transform, residuals = affine_from_control_points(
            control_points.moving_mm, control_points.fixed_mm
        )
        return MsiRegistration(
            transform=transform,
            initial_transform=initial,
            mode=params.mode,
            seconds=time.perf_counter() - start,
            converged=True,
            control_point_residuals_um=residuals * 1000.0,
        )
    rgb = image_to_array(histology)
    fixed = fixed_image_from_rgb(
        rgb, histology.GetSpacing(), params.fixed_channel, histology.GetOrigin()
    )
    result = register_affine(
        fixed, _channel(canvas, params.moving_channel), params.optimiser, moving_mask=footprint
    )
    return MsiRegistration(
        transform=result.transform,
        initial_transform=initial,
        mode=params.mode,
        seconds=time.perf_counter() - start,
        converged=result.converged,
        notes=result.warnings,
        start_offset_px=result.start_offset_px,
    )


def resample_msi(
    canvas: sitk.Image, grid: sitk.Image, transform: sitk.Transform, colour: PadColour | str
) -> np.ndarray:
    """The padded MSI on the working grid (linear interpolation), channels last.

    Grid pixels that map outside the canvas take the padding value too, so every pixel outside
    the MSI footprint is exactly 0 (black) or 1 (white); within half an MSI pixel of the
    footprint's edge the interpolation mixes MSI and padding.

    Returns:
        float32 ``(H, W, C)`` in [0, 1] on ``grid``.
    """
    value = pad_value(colour)
    channels = [
        sitk.GetArrayFromImage(
            resample_moving(
                sitk.VectorIndexSelectionCast(canvas, k, sitk.sitkFloat32),
                grid,
                transform,
                Interpolator.LINEAR,
                default=value,
            )
        )
        for k in range(canvas.GetNumberOfComponentsPerPixel())
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def msi_coverage(footprint: sitk.Image, grid: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """The MSI footprint on the working grid (nearest neighbour): uint8 0/1 image on ``grid``."""
    return sitk.Cast(
        resample_moving(footprint, grid, transform, Interpolator.NEAREST, default=0),
        sitk.sitkUInt8,
    )


def registration_tre_um(
    transform: sitk.Transform,
    truth_msi_to_histology: np.ndarray,
    coverage: sitk.Image,
    step_um: float,
) -> np.ndarray:
    """Target registration error against a known affine, in µm, over the registered footprint.

    Args:
        transform: histology mm -> MSI mm (a registration result).
        truth_msi_to_histology: ``(2, 3)`` known MSI mm -> histology mm affine (the demo's).
        coverage: :func:`msi_coverage` (points are taken where it is 1).
        step_um: grid step of the points, µm.

    Returns:
        float64 ``(N,)`` distances in MSI space, µm; empty if the coverage is empty.
    """
    true = transform_from_moving_to_fixed_affine(np.asarray(truth_msi_to_histology, dtype=float))
    points = grid_points_in_mask(coverage, step_um / 1000.0)
    if points.shape[0] == 0:
        return np.zeros(0)
    return target_registration_error(transform, true, points) * 1000.0


def registered_mutual_information(
    histology: sitk.Image,
    canvas: sitk.Image,
    footprint: sitk.Image,
    transform: sitk.Transform,
    channel: TissueChannel,
    moving_channel: int | None,
    bins: int = 20,
) -> float:
    """MI (nats) of a histology tissue channel and an MSI channel resampled by ``transform``.

    Measured on the grid pixels inside the resampled footprint: the registration report's
    before/after score.
    """
    fixed = tissue_channel(image_to_array(histology), channel)
    moving = sitk.GetArrayFromImage(
        resample_moving(_channel(canvas, moving_channel), histology, transform)
    )
    inside = sitk.GetArrayFromImage(msi_coverage(footprint, histology, transform)) > 0
    if inside.sum() < 2:
        return 0.0
    return mutual_information(fixed, moving, bins=bins, mask=inside)


# ----------------------------------------------------------------------------------------------
# demo helpers


def simulate_control_points(
    truth_msi_to_histology: np.ndarray,
    msi_shape: tuple[int, int],
    pixel_size_um: float,
    rng: np.random.Generator,
    params: ControlPointSimulation,
) -> pd.DataFrame:
    """Landmark pairs as a user would click them on the MSI and the H&E.

    Points are spread over the MSI (at least ``extent / (2 sqrt(n))`` apart), mapped to the
    histology by the true affine, and displaced on the MSI side by isotropic Gaussian click
    noise.

    Args:
        truth_msi_to_histology: ``(2, 3)`` MSI mm -> histology mm.
        msi_shape: ``(h, w)`` MSI pixels.
        pixel_size_um: MSI pixel size (square), µm.
        rng: random source.
        params: :class:`ControlPointSimulation`.

    Returns:
        Table with :data:`CONTROL_POINT_COLUMNS`, one row per landmark (mm).
    """
    h, w = msi_shape
    s = pixel_size_um / 1000.0
    extent = min(h, w) * s
    min_gap = extent / (2.0 * math.sqrt(params.n_points))
    chosen: list[np.ndarray] = []
    for _ in range(10_000):
        p = rng.uniform((0.0, 0.0), ((w - 1) * s, (h - 1) * s))
        if all(np.hypot(*(p - q)) >= min_gap for q in chosen):
            chosen.append(p)
            if len(chosen) == params.n_points:
                break
    if len(chosen) < params.n_points:
        raise ValueError(f"could not spread {params.n_points} landmarks over a {h}x{w} MSI")
    moving = np.asarray(chosen)
    affine = np.asarray(truth_msi_to_histology, dtype=np.float64)
    fixed = moving @ affine[:, :2].T + affine[:, 2]
    moving = moving + rng.normal(0.0, params.click_noise_um / 1000.0, size=moving.shape)
    return pd.DataFrame(
        {
            "label": [f"L{k + 1}" for k in range(len(moving))],
            "fixed_x_mm": fixed[:, 0],
            "fixed_y_mm": fixed[:, 1],
            "moving_x_mm": moving[:, 0],
            "moving_y_mm": moving[:, 1],
        }
    )


@dataclass(frozen=True)
class ImzMLFiles:
    """The bytes of an imzML/ibd pair, as written by a generator (e.g. the demo), to be stored.

    Attributes:
        imzml: the XML file's bytes.
        ibd: the binary file's bytes.
    """

    imzml: bytes
    ibd: bytes

    @classmethod
    def read(cls, path: str | Path) -> ImzMLFiles:
        """The files ``path`` (``.imzML``) and its ``.ibd``."""
        p = Path(path)
        return cls(imzml=p.read_bytes(), ibd=p.with_suffix(".ibd").read_bytes())

    def write(self, path: str | Path) -> Path:
        """Store them at ``path`` (see :func:`write_imzml_pair`)."""
        return write_imzml_pair(self.imzml, self.ibd, path)


def write_imzml_pair(imzml: bytes, ibd: bytes, path: str | Path) -> Path:
    """Write an imzML/ibd pair (``path`` and ``path`` with suffix ``.ibd``) so that readers never
    see one file of the pair updated without the other being complete (temporary names, then
    renames: the ``.ibd`` first, the ``.imzML`` last).

    Returns:
        The ``.imzML`` path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    targets = [(dest.with_suffix(".ibd"), ibd), (dest, imzml)]
    temps = []
    try:
        for target, data in targets:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            temps.append((tmp, target))
        for tmp, target in temps:
            tmp.replace(target)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return dest


# ----------------------------------------------------------------------------------------------
# tiles


@dataclass(frozen=True)
class MsiAlignedPair:
    """One registered specimen on the working grid.

    Attributes:
        pair_id, specimen_id, split: from the manifest.
        msi: float32 ``(H, W, 3)`` in [0, 1]: the padded, registered, reduced MSI.
        histology: uint8 ``(H, W, 3)``: the working-grid H&E.
        coverage: bool ``(H, W)``: grid pixels covered by MSI pixels (the rest is padding).
        downsample: histology level-0 pixels per grid pixel.
        mpp: µm per grid pixel (x).
    """

    pair_id: str
    specimen_id: str
    split: str
    msi: np.ndarray
    histology: np.ndarray
    coverage: np.ndarray
    downsample: int
    mpp: float

    def __post_init__(self) -> None:
        h, w = self.coverage.shape
        if self.msi.shape != (h, w, 3) or self.histology.shape != (h, w, 3):
            raise ValueError(
                f"pair {self.pair_id}: MSI {self.msi.shape}, histology {self.histology.shape} "
                f"and coverage {self.coverage.shape} must share one (H, W) grid"
            )


def msi_pair_tiles(
    pairs: Sequence[MsiAlignedPair], params: MsiTilingParams, padding: PadColour | str
) -> TileSet:
    """Cut every registered pair into tiles, keeping those with enough MSI coverage.

    Returns:
        A :class:`~mrihisto_kedro.imaging.tileset.TileSet`: ``a`` float32 ``(N, S, S, 3)`` MSI
        in [0, 1], ``b`` uint8 ``(N, S, S, 3)`` H&E; manifest ``tile_id, pair_id, specimen_id,
        split, x, y, size, scale, msi_fraction, padding, mpp`` (``x, y, size`` in histology
        level-0 pixels; ``scale`` = level-0 pixels per stored pixel, as
        :func:`mrihisto_kedro.imaging.tiling.paired_tiles`; ``mpp`` = µm per stored pixel).

    Raises:
        ValueError: no tile passes ``min_msi_fraction``.
    """
    padding = PadColour(padding)
    size = params.tile_size
    stride = params.stride or size
    rows, a_tiles, b_tiles = [], [], []
    for pair in pairs:
        h, w = pair.coverage.shape
        for y in tile_origins(h, size, stride):
            for x in tile_origins(w, size, stride):
                window = (slice(y, y + size), slice(x, x + size))
                fraction = float(pair.coverage[window].mean())
                if fraction < params.min_msi_fraction:
                    continue
                a_tiles.append(pair.msi[window])
                b_tiles.append(pair.histology[window])
                rows.append(
                    {
                        "tile_id": f"{pair.pair_id}_x{x:05d}_y{y:05d}",
                        "pair_id": pair.pair_id,
                        "specimen_id": pair.specimen_id,
                        "split": pair.split,
                        "x": int(x * pair.downsample),
                        "y": int(y * pair.downsample),
                        "size": int(size * pair.downsample),
                        "scale": float(pair.downsample),
                        "msi_fraction": fraction,
                        "padding": padding.value,
                        "mpp": pair.mpp,
                    }
                )
    if not rows:
        raise ValueError(
            f"no tile of {size} px has MSI coverage >= {params.min_msi_fraction} in "
            f"{len(pairs)} pair(s)"
        )
    return TileSet(
        manifest=pd.DataFrame(rows),
        a=np.stack(a_tiles).astype(np.float32),
        b=np.stack(b_tiles).astype(np.uint8),
    )


def msi_tiles_input_spec(manifest: pd.DataFrame, reduction: ReductionParams) -> InputSpec:
    """What a generator trained on an MSI tile set takes as input (stored in ``generator.pt``).

    Args:
        manifest: the tile manifest of :func:`msi_pair_tiles` (its ``mpp``: µm per stored
            pixel, the H&E grid's).
        reduction: how the peak stacks were reduced to the 3 input channels.
    """
    mpp = float(np.median(manifest["mpp"]))
    lower, upper = reduction.percentiles
    return InputSpec(
        kind=InputKind.MSI_TO_SLIDE,
        pixel_size_um=(mpp, mpp),
        channels=3,
        lower_percentile=float(lower),
        upper_percentile=float(upper),
        normalisation_scope="dataset",
        embedding=str(ReductionMethod(reduction.method)),
    )


# ----------------------------------------------------------------------------------------------
# QC


def registration_figure(
    pair_id: str,
    histology: np.ndarray,
    registered: np.ndarray,
    coverage: np.ndarray,
    title: str = "",
) -> Figure:
    """Histology | registered MSI | overlay (H&E with the MSI footprint outline).

    Args:
        pair_id: shown in the title.
        histology: uint8 ``(H, W, 3)`` working-grid H&E.
        registered: float32 ``(H, W, 3)`` registered MSI in [0, 1].
        coverage: bool ``(H, W)``.
        title: extra title text (e.g. the TRE).
    """
    fig = Figure(figsize=(9, 3.3))
    axes = fig.subplots(1, 3)
    axes[0].imshow(histology)
    axes[0].set_title("H&E (working grid)")
    axes[1].imshow(np.clip(registered, 0, 1))
    axes[1].set_title("registered MSI (3 channels)")
    blend = 0.5 * histology.astype(np.float32) / 255.0 + 0.5 * np.clip(registered, 0, 1)
    axes[2].imshow(blend)
    axes[2].contour(coverage.astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
    axes[2].set_title("overlay, MSI footprint")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{pair_id} {title}".strip())
    fig.tight_layout()
    return fig
