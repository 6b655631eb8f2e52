"""Parameters of the ``msi_data_engineering`` pipeline's steps (seed 003; no Kedro).

One frozen dataclass per block of ``msi_data_engineering`` in ``conf/base/parameters_msi.yml``,
validated on construction (:class:`~mrihisto_kedro.params.Params`: ranges on the fields, cross-field
rules in ``validate``; :func:`mrihisto_kedro.params.parse_params` names the dotted key of a bad
value): :class:`SpectraParams` (``spectra``), :class:`ReductionParams` (``reduction``),
:class:`MsiRegistrationParams` (``registration``, with :class:`RegistrationMode` and the
measured :data:`MSI_OPTIMISER`) and :class:`MsiTilingParams` (``tiling``). The demo's block
(``demo``) is :class:`mrihisto_kedro.demo.msi_inputs.MsiDemoNodeParams`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

from mrihisto_kedro.imaging.registration import (
    Initialization,
    RegistrationParams,
    SamplingStrategy,
    TissueChannel,
    TransformStage,
)
from mrihisto_kedro.msi.reduction import ReductionMethod
from mrihisto_kedro.msi.spectra import BinUnit, DistanceUnit, Normalisation, RebinMethod
from mrihisto_kedro.params import Params, Range, fail

__all__ = [
    "MSI_OPTIMISER",
    "MsiRegistrationParams",
    "MsiTilingParams",
    "ReductionParams",
    "RegistrationMode",
    "SpectraParams",
]


class RegistrationMode(StrEnum):
    """How the MSI is registered to the histology.

    ``control_points``: least-squares affine from landmark pairs (the paper's method);
    ``intensity``: Mattes mutual information on one channel of the reduced MSI against a tissue
    channel of the H&E (no landmarks needed).
    """

    CONTROL_POINTS = "control_points"
    INTENSITY = "intensity"


@dataclass(frozen=True)
class SpectraParams(Params):
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

    bin_width: Annotated[float, Range(gt=0.0)] = 0.1
    bin_unit: BinUnit = BinUnit.DA
    mz_range: tuple[float, float] | None = None
    n_peaks: Annotated[int, Range(ge=1)] = 50
    min_distance: Annotated[float, Range(ge=0.0)] = 1.0
    distance_unit: DistanceUnit = DistanceUnit.DA
    prominence: float | None = None
    method: RebinMethod = RebinMethod.LINEAR
    normalisation: Normalisation = Normalisation.TIC
    half_window_bins: Annotated[int, Range(ge=0)] = 2

    def validate(self) -> None:
        """``mz_range`` is ``(min, max)`` with ``0 <= min < max`` (``0 < min`` for a ppm axis)
        and ``min_distance`` in bins is at least one bin: what
        :func:`~mrihisto_kedro.msi.spectra.make_mz_axis` and
        :func:`~mrihisto_kedro.msi.spectra.pick_peaks` would refuse later in a run."""
        if self.mz_range is not None:
            low, high = self.mz_range
            if not 0 <= low < high:
                fail("mz_range", f"must satisfy 0 <= min < max, got {self.mz_range}")
            if self.bin_unit is BinUnit.PPM and low <= 0:
                fail("mz_range", f"must start above 0 for a ppm axis (bin_unit), got {low}")
        if self.distance_unit is DistanceUnit.BINS and self.min_distance < 1:
            fail("min_distance", f"must be >= 1 with distance_unit bins, got {self.min_distance}")


@dataclass(frozen=True)
class ReductionParams(Params):
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

    def validate(self) -> None:
        """``percentiles`` is ``(lo, hi)`` with ``0 <= lo < hi <= 100``: what
        :func:`~mrihisto_kedro.msi.reduction.scale_channels` would refuse later in a run."""
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            fail("percentiles", f"must satisfy 0 <= lo < hi <= 100, got {self.percentiles}")


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
class MsiRegistrationParams(Params):
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
            ``intensity`` mode (masks: the MSI footprint on its padded canvas); default
            :data:`MSI_OPTIMISER`. A mapping in the parameters replaces it whole: the keys it
            does not list take ``RegistrationParams``' defaults, not :data:`MSI_OPTIMISER`'s.
        tre_grid_step_um: spacing of the grid of histology points (inside the registered MSI
            footprint) where the target registration error against a known affine is measured.
    """

    mode: RegistrationMode = RegistrationMode.CONTROL_POINTS
    downsample: Annotated[int, Range(ge=1)] = 4
    canvas_margin_px: Annotated[int, Range(ge=0)] = 2
    fixed_channel: TissueChannel = TissueChannel.OPTICAL_DENSITY
    moving_channel: Annotated[int, Range(ge=0, le=2)] | None = 0
    optimiser: RegistrationParams = field(default_factory=lambda: MSI_OPTIMISER)
    tre_grid_step_um: Annotated[float, Range(gt=0.0)] = 10.0


@dataclass(frozen=True)
class MsiTilingParams(Params):
    """``msi_data_engineering.tiling``: tiles on the working grid.

    Attributes:
        tile_size: tile side in grid pixels.
        stride: step between tiles in grid pixels (``None``: ``tile_size``).
        min_msi_fraction: keep a tile when at least this fraction of it is covered by MSI pixels
            (the rest is padding).
    """

    tile_size: Annotated[int, Range(ge=8)] = 32
    stride: Annotated[int, Range(ge=1)] | None = None
    min_msi_fraction: Annotated[float, Range(ge=0.0, le=1.0)] = 0.5
