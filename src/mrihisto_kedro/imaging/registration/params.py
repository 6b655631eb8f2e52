"""Parameters of intensity-based registration (:class:`RegistrationParams`) and their options.

Every option string is a ``StrEnum``; :class:`RegistrationParams` is a
:class:`~mrihisto_kedro.params.Params`: strings are coerced to their enum once, on construction,
ranges are declared on the fields, and a bad value raises
:class:`~mrihisto_kedro.params.ParameterError` naming its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from mrihisto_kedro.params import Params, Range, fail

__all__ = [
    "Initialization",
    "Interpolator",
    "LearningRateEstimation",
    "OptimizerKind",
    "RegistrationParams",
    "SamplingStrategy",
    "TransformStage",
]


class SamplingStrategy(StrEnum):
    """Which fixed-image points the metric samples: random, a perturbed regular grid, or all."""

    RANDOM = "random"
    REGULAR = "regular"
    NONE = "none"


class Initialization(StrEnum):
    """Centred initialisation: align centres of mass (``moments``) or image centres."""

    MOMENTS = "moments"
    GEOMETRY = "geometry"


class TransformStage(StrEnum):
    """Transform optimised in one stage (degrees of freedom: 3, 4, 6)."""

    RIGID = "rigid"
    SIMILARITY = "similarity"
    AFFINE = "affine"


class OptimizerKind(StrEnum):
    """ITK v4 optimizer: plain gradient descent or regular-step gradient descent."""

    GRADIENT_DESCENT = "gradient_descent"
    REGULAR_STEP_GRADIENT_DESCENT = "regular_step_gradient_descent"


class LearningRateEstimation(StrEnum):
    """When ITK re-estimates the learning rate from the scales (``never``: use learning_rate)."""

    ONCE = "once"
    EACH_ITERATION = "each_iteration"
    NEVER = "never"


class Interpolator(StrEnum):
    """Interpolation of the moving image: ``linear`` for intensities, ``nearest`` for masks."""

    LINEAR = "linear"
    NEAREST = "nearest"


_STAGE_ORDER = {
    TransformStage.RIGID: 0,
    TransformStage.SIMILARITY: 1,
    TransformStage.AFFINE: 2,
}


#: a finite number (start angles and offsets)
_Finite = Annotated[float, Range()]


@dataclass(frozen=True)
class RegistrationParams(Params):
    """Parameters of :func:`register_affine` (all validated on construction).

    Attributes:
        metric_bins: histogram bins of the Mattes mutual information metric (>= 4).
        sampling_strategy: ``random``, ``regular`` (a grid with random jitter) or ``none``
            (every fixed pixel).
        sampling_percentage: fraction of fixed pixels sampled, in ``(0, 1]``.
        min_samples: at pyramid levels where that fraction gives fewer points, the fraction is
            raised (up to 1) to sample this many (a 50-bin joint histogram estimated from a
            few hundred points of a coarse, small level is noise and sends the optimizer
            astray).
        seed: seed of the metric's sampler and of the information check (>= 1; SimpleITK
            treats 0 as "seed from the wall clock", which would break reproducibility).
        shrink_factors: per pyramid level, how much the (reduced) fixed image is shrunk, e.g.
            ``(4, 2, 1)``; the last should be 1.
        smoothing_sigmas: per pyramid level, Gaussian sigma in units of the moving image's
            largest voxel size, applied to both images in mm (so both are smoothed alike
            whatever their pixel sizes), e.g. ``(2, 1, 0)``.
        iterations: maximum optimizer iterations per pyramid level, one value per stage (or a
            single value for all stages).
        optimizer: ``regular_step_gradient_descent`` (default: halves its step whenever the
            gradient turns, so it settles) or ``gradient_descent`` (a fixed step; with the
            estimated learning rate it was measured oscillating one voxel around the optimum
            and stopping 7 mm off on the synthetic test pair).
        learning_rate: optimizer learning rate; used as given only with
            ``learning_rate_estimation = never`` (otherwise ITK estimates it from the scales so
            that one step moves a point by at most ``maximum_step_mm``).
        learning_rate_estimation: ``once`` per level, ``each_iteration`` or ``never``.
        maximum_step_mm: largest physical shift of one step when the learning rate is
            estimated; ``None`` = the fixed image's voxel size at that pyramid level.
        moving_gradient_filter: let ITK precompute the moving image's gradient with a
            Gaussian-derivative filter (ITK's default) instead of taking finite differences of
            the interpolated moving image at each sample point. Off by default: with a moving
            image coarser than the fixed grid (an MRI slice against a slide) the precomputed
            gradient does not match the metric it is the derivative of, and the optimizer was
            measured walking uphill until its iteration limit (TRE 1.4-2.6 MRI pixels instead
            of 0.1-0.2 on the benchmark's haematoxylin and grey channels).
        min_step: regular-step optimizer only: stop when the step falls below this.
        relaxation_factor: regular-step optimizer only: step reduction on direction change.
        convergence_window: gradient descent: iterations over which convergence is checked.
        convergence_min_value: gradient descent: stop when the metric's normalised change over
            the window falls below this.
        initialization: ``moments`` (centres of mass; of the masks when masks are used) or
            ``geometry`` (image centres).
        initial_angles_deg: start rotations (degrees, about the centred initialisation) to try;
            the first stage is optimised from each and the one with the best (lowest) metric
            continues. Use e.g. ``(0, 90, 180, 270)`` when slides may be mounted at any angle:
            gradient descent only corrects rotations of a few tens of degrees.
        initial_offsets_px: start translations ``(x, y)`` in moving-image pixels, added to each
            start angle's initialisation; every (angle, offset) start's first stage is
            optimised and the lowest metric continues. Use a small grid (e.g. offsets of -1, 0,
            1 pixel) when the images hold so few moving pixels that Mattes MI has local optima
            a pixel or two away (a 21 x 21 MSI raster).
        stages: transforms optimised in turn, each starting from the previous result, in
            non-decreasing order of freedom (``rigid`` < ``similarity`` < ``affine``); the
            default is the paper's MATLAB recipe, similarity first, then affine.
        fixed_max_size: before optimisation the fixed image is reduced (block mean, integer
            factor) to at most this many pixels on its long side; ``None`` = no limit.
        fixed_spacing_fraction: ... and reduced further while its pixels stay no larger than
            this fraction of the moving image's smallest voxel size (a finer fixed image
            carries nothing the MRI can match); ``None`` = no such reduction.
        use_masks: restrict the metric to the masks passed to :func:`register_affine` (fixed:
            samples; moving: mapped points). Pass masks with a margin around the tissue: the
            tissue border carries most of the signal.
        max_scale: the fixed->moving linear part's singular values must lie in
            ``[1 / max_scale, max_scale]`` (> 1; ``.inf``: not checked); outside, the result
            is degenerate.
        min_overlap: fraction of fixed pixels (inside the fixed mask when masks are used) that
            must map inside the moving image, in ``[0, 1]``.
        min_information_gain: mutual information (nats, 32-bin histogram on the reduced fixed
            grid) of the registered pair must exceed that of the same pixels with the moving
            values shuffled by at least this much; otherwise the images share no information
            (noise, blank images) and the registration is an error.
        number_of_threads: ITK threads while optimising (set as ITK's process-wide default
            for the duration of the call, then restored); ``None`` = leave ITK's default (all
            cores). The default 1 makes results bit-identical run to run: with several threads
            ITK's Mattes metric adds per-thread partial sums in varying order. The optimisation
            runs on the reduced fixed image and takes well under a second to a few seconds, so
            one thread costs little.
    """

    metric_bins: Annotated[int, Range(ge=4)] = 50
    sampling_strategy: SamplingStrategy = SamplingStrategy.RANDOM
    sampling_percentage: Annotated[float, Range(gt=0.0, le=1.0)] = 0.2
    min_samples: Annotated[int, Range(ge=1)] = 5000
    seed: Annotated[int, Range(ge=1)] = 20240917  # 0 would seed from the wall clock
    shrink_factors: tuple[Annotated[int, Range(ge=1)], ...] = (4, 2, 1)
    smoothing_sigmas: tuple[Annotated[float, Range(ge=0.0)], ...] = (2.0, 1.0, 0.0)
    iterations: tuple[Annotated[int, Range(ge=1)], ...] = (300,)
    optimizer: OptimizerKind = OptimizerKind.REGULAR_STEP_GRADIENT_DESCENT
    learning_rate: Annotated[float, Range(gt=0.0)] = 1.0
    learning_rate_estimation: LearningRateEstimation = LearningRateEstimation.ONCE
    maximum_step_mm: Annotated[float, Range(gt=0.0)] | None = None
    moving_gradient_filter: bool = False
    min_step: Annotated[float, Range(gt=0.0)] = 1e-4
    relaxation_factor: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.5
    convergence_window: Annotated[int, Range(ge=2)] = 10
    convergence_min_value: Annotated[float, Range(gt=0.0)] = 1e-6
    initialization: Initialization = Initialization.MOMENTS
    initial_angles_deg: tuple[_Finite, ...] = (0.0,)
    initial_offsets_px: tuple[tuple[_Finite, _Finite], ...] = ((0.0, 0.0),)
    stages: tuple[TransformStage, ...] = (
        TransformStage.SIMILARITY,
        TransformStage.AFFINE,
    )
    fixed_max_size: Annotated[int, Range(ge=16)] | None = 1024
    fixed_spacing_fraction: Annotated[float, Range(gt=0.0)] | None = 0.5
    use_masks: bool = True
    max_scale: Annotated[float, Range(gt=1.0, finite=False)] = 4.0  # .inf: no scale check
    min_overlap: Annotated[float, Range(ge=0.0, le=1.0)] = 0.5
    min_information_gain: Annotated[float, Range(ge=0.0)] = 0.1
    number_of_threads: Annotated[int, Range(ge=1)] | None = 1

    def validate(self) -> None:
        """The pyramid's levels agree, the stages gain freedom, one iteration count per stage."""
        if not self.shrink_factors:
            fail("shrink_factors", "must hold at least one pyramid level")
        if len(self.smoothing_sigmas) != len(self.shrink_factors):
            fail(
                "smoothing_sigmas",
                f"must have as many levels as shrink_factors ({len(self.shrink_factors)}), "
                f"got {len(self.smoothing_sigmas)}",
            )
        if not self.stages:
            fail("stages", "must name at least one transform")
        order = [_STAGE_ORDER[s] for s in self.stages]
        if order != sorted(order):
            fail(
                "stages",
                "must not lose degrees of freedom (rigid < similarity < affine), got "
                f"{[str(s) for s in self.stages]}",
            )
        if len(self.iterations) not in (1, len(self.stages)):
            fail(
                "iterations",
                f"must hold one count per stage ({len(self.stages)}) or one for all, got "
                f"{len(self.iterations)}",
            )
        if not self.initial_angles_deg:
            fail("initial_angles_deg", "must hold at least one angle")
        if not self.initial_offsets_px:
            fail("initial_offsets_px", "must hold at least one (x, y) pair")

    def stage_iterations(self) -> tuple[int, ...]:
        """Maximum iterations per pyramid level for each stage (``iterations`` broadcast)."""
        if len(self.iterations) == 1:
            return self.iterations * len(self.stages)
        return self.iterations
