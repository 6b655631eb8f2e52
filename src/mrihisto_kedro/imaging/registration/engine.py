"""The SimpleITK engine: affine multimodal registration of an MRI slice to a histology channel.

:func:`register_affine`: Mattes mutual information, a multi-resolution pyramid, a centred
initialisation (image moments or geometric centres, optionally from several start angles and
offsets), then one optimisation per stage (by default a similarity stage and a full affine stage,
the order of the reproduced paper's MATLAB recipe). Optimizer scales are estimated from physical
shift (``SetOptimizerScalesFromPhysicalShift``). The fixed image is reduced (block mean) before
optimisation so that gigapixel-sized slides register in seconds. A failed optimisation raises
:class:`~.checks.RegistrationError`; it never returns an identity transform silently.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .channels import mask_image
from .checks import (
    RegistrationError,
    check_scalar_image,
    check_transform,
    information_check,
)
from .params import (
    Initialization,
    LearningRateEstimation,
    OptimizerKind,
    RegistrationParams,
    SamplingStrategy,
    TransformStage,
)
from .transforms import affine_to_matrix, linear_transform, matrix_to_affine

__all__ = ["RegistrationResult", "StageResult", "register_affine"]


_SAMPLING = {
    SamplingStrategy.RANDOM: sitk.ImageRegistrationMethod.RANDOM,
    SamplingStrategy.REGULAR: sitk.ImageRegistrationMethod.REGULAR,
    SamplingStrategy.NONE: sitk.ImageRegistrationMethod.NONE,
}
_ESTIMATE = {
    LearningRateEstimation.ONCE: sitk.ImageRegistrationMethod.Once,
    LearningRateEstimation.EACH_ITERATION: sitk.ImageRegistrationMethod.EachIteration,
    LearningRateEstimation.NEVER: sitk.ImageRegistrationMethod.Never,
}


@dataclass(frozen=True)
class StageResult:
    """Outcome of one optimisation stage.

    Attributes:
        stage: the transform optimised.
        metric_value: Mattes metric at the end (negative mutual information in nats, on the
            last level's samples; lower is better).
        iterations: iterations run at each pyramid level.
        stop_condition: ITK's description of why the optimizer stopped at the last level.
        converged: the last level stopped before its iteration limit.
    """

    stage: TransformStage
    metric_value: float
    iterations: tuple[int, ...]
    stop_condition: str
    converged: bool


@dataclass(frozen=True)
class RegistrationResult:
    """Result of :func:`register_affine`.

    Attributes:
        transform: optimised fixed (histology) mm -> moving (MRI) mm ``AffineTransform``.
        initial_transform: the start the kept result came from: the centred initialisation
            rotated by ``start_angle_deg`` and shifted by ``start_offset_px`` (fixed -> moving).
        start_angle_deg: the entry of ``initial_angles_deg`` whose first stage was kept.
        start_offset_px: the entry of ``initial_offsets_px`` whose first stage was kept.
        stages: one :class:`StageResult` per stage.
        converged: every stage's last pyramid level stopped before its iteration limit.
        seconds: wall time of the whole call (reduction, optimisation, checks).
        mutual_information: MI (nats, 32 bins) of fixed and resampled moving on the reduced
            fixed grid, where they overlap.
        mutual_information_shuffled: the same with the moving values shuffled (chance level).
        overlap_fraction: fraction of the fixed pixels (inside the fixed mask if used) that map
            inside the moving image.
        optimisation_spacing_mm: pixel size of the reduced fixed image the optimizer saw.
        warnings: human-readable notes on a result that is usable but worth a look (a stage
            that stopped at its iteration limit); empty when all is well.
    """

    transform: sitk.AffineTransform
    initial_transform: sitk.AffineTransform
    start_angle_deg: float
    stages: tuple[StageResult, ...]
    converged: bool
    seconds: float
    mutual_information: float
    mutual_information_shuffled: float
    overlap_fraction: float
    optimisation_spacing_mm: tuple[float, float]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    start_offset_px: tuple[float, float] = (0.0, 0.0)

    @property
    def metric_per_stage(self) -> tuple[float, ...]:
        """Final Mattes metric value of each stage (negative MI, nats)."""
        return tuple(s.metric_value for s in self.stages)

    @property
    def iterations_per_stage(self) -> tuple[int, ...]:
        """Total iterations (all pyramid levels) of each stage."""
        return tuple(sum(s.iterations) for s in self.stages)

    @property
    def stop_conditions(self) -> tuple[str, ...]:
        """ITK's stop condition description of each stage."""
        return tuple(s.stop_condition for s in self.stages)


def _itk_message(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("sitk::ERROR:", "ITK ERROR:", "ERROR:"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return " ".join(text.split())[:400]


def _reduce_fixed(
    fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams
) -> tuple[sitk.Image, tuple[int, int]]:
    """Block-mean reduction of the fixed image before optimisation, and the factors used."""
    size = fixed.GetSize()
    spacing = fixed.GetSpacing()
    factors = [1, 1]
    if params.fixed_max_size is not None:
        limit = math.ceil(max(size) / params.fixed_max_size)
        factors = [max(f, limit) for f in factors]
    if params.fixed_spacing_fraction is not None:
        target = params.fixed_spacing_fraction * min(moving.GetSpacing())
        factors = [max(f, int(target / s)) for f, s in zip(factors, spacing, strict=True)]
    factors = [max(1, min(f, n)) for f, n in zip(factors, size, strict=True)]
    if factors == [1, 1]:
        return fixed, (1, 1)
    return sitk.BinShrink(fixed, factors), (factors[0], factors[1])


def _stage_transform(stage: TransformStage, previous: sitk.Transform) -> sitk.Transform:
    """A transform of kind ``stage`` equal to (or best approximating) ``previous``."""
    matrix = affine_to_matrix(previous)
    center = np.asarray(linear_transform(previous).GetCenter(), dtype=np.float64)
    linear = matrix[:2, :2]
    translation = matrix[:2, 2] + linear @ center - center
    tx: sitk.AffineTransform | sitk.Similarity2DTransform | sitk.Euler2DTransform
    if stage is TransformStage.AFFINE:
        tx = sitk.AffineTransform(2)
        tx.SetMatrix(tuple(float(v) for v in linear.ravel()))
    else:
        angle = math.atan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1])
        if stage is TransformStage.SIMILARITY:
            tx = sitk.Similarity2DTransform()
            tx.SetScale(float(math.sqrt(max(abs(np.linalg.det(linear)), 1e-12))))
        else:
            tx = sitk.Euler2DTransform()
        tx.SetAngle(angle)
    tx.SetCenter(tuple(float(v) for v in center))
    tx.SetTranslation(tuple(float(v) for v in translation))
    return tx


def _initial_transform(
    fixed: sitk.Image,
    moving: sitk.Image,
    params: RegistrationParams,
    fixed_mask: sitk.Image | None,
    moving_mask: sitk.Image | None,
) -> sitk.Transform:
    """Centred initial transform of the first stage's kind."""
    mode = (
        sitk.CenteredTransformInitializerFilter.MOMENTS
        if params.initialization is Initialization.MOMENTS
        else sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    f_img, m_img = fixed, moving
    if params.initialization is Initialization.MOMENTS:
        # image moments are only meaningful for non-negative "mass"; masks are better still
        f_img = sitk.Cast(fixed_mask, sitk.sitkFloat32) if fixed_mask is not None else fixed
        m_img = sitk.Cast(moving_mask, sitk.sitkFloat32) if moving_mask is not None else moving
    base: sitk.Transform = {
        TransformStage.RIGID: sitk.Euler2DTransform(),
        TransformStage.SIMILARITY: sitk.Similarity2DTransform(),
        TransformStage.AFFINE: sitk.AffineTransform(2),
    }[params.stages[0]]
    try:
        return sitk.CenteredTransformInitializer(f_img, m_img, base, mode)
    except RuntimeError as exc:
        raise RegistrationError(f"centred initialisation failed: {_itk_message(exc)}") from exc


def _sampling_per_level(
    fixed: sitk.Image, fixed_mask: sitk.Image | None, params: RegistrationParams
) -> list[float]:
    """Sampling fraction per pyramid level: ``sampling_percentage``, raised to reach
    ``min_samples`` points (inside the fixed mask) where a shrunk level has too few pixels."""
    size = fixed.GetSize()
    inside = 1.0
    if fixed_mask is not None:
        inside = float(np.count_nonzero(sitk.GetArrayViewFromImage(fixed_mask))) / math.prod(size)
    fractions = []
    for shrink in params.shrink_factors:
        n_pixels = math.prod(math.ceil(n / shrink) for n in size) * inside
        wanted = params.min_samples / max(n_pixels, 1.0)
        fractions.append(min(1.0, max(params.sampling_percentage, wanted)))
    return fractions


def _configure_method(
    params: RegistrationParams,
    iterations: int,
    smoothing_mm: Sequence[float],
    sampling_per_level: Sequence[float],
    fixed_mask: sitk.Image | None,
    moving_mask: sitk.Image | None,
) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.metric_bins)
    reg.SetMetricSamplingStrategy(_SAMPLING[params.sampling_strategy])
    if params.sampling_strategy is not SamplingStrategy.NONE:
        reg.SetMetricSamplingPercentagePerLevel(list(sampling_per_level), params.seed)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    # Mattes MI uses only the moving image's gradient; the fixed one would be computed for nothing
    reg.MetricUseFixedImageGradientFilterOff()
    if params.moving_gradient_filter:
        reg.MetricUseMovingImageGradientFilterOn()
    else:
        reg.MetricUseMovingImageGradientFilterOff()
    estimate = _ESTIMATE[params.learning_rate_estimation]
    max_step = params.maximum_step_mm or 0.0
    if params.optimizer is OptimizerKind.GRADIENT_DESCENT:
        reg.SetOptimizerAsGradientDescent(
            learningRate=params.learning_rate,
            numberOfIterations=iterations,
            convergenceMinimumValue=params.convergence_min_value,
            convergenceWindowSize=params.convergence_window,
            estimateLearningRate=estimate,
            maximumStepSizeInPhysicalUnits=max_step,
        )
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=params.learning_rate,
            minStep=params.min_step,
            numberOfIterations=iterations,
            relaxationFactor=params.relaxation_factor,
            estimateLearningRate=estimate,
            maximumStepSizeInPhysicalUnits=max_step,
        )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(params.shrink_factors))
    reg.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_mm])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if params.number_of_threads is not None:
        reg.SetNumberOfThreads(params.number_of_threads)
    return reg


@contextlib.contextmanager
def _itk_threads(number: int | None) -> Iterator[None]:
    """Run ITK with ``number`` threads (process-wide default), restoring the previous default.

    ``ImageRegistrationMethod.SetNumberOfThreads`` does not reach the metric, whose threads
    come from ITK's global default; with more than one thread the Mattes metric's per-thread
    sums are combined in varying order and results differ run to run in the last digits, which
    the optimizer amplifies.
    """
    if number is None:
        yield
        return
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(number)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


@dataclass(frozen=True)
class _StageContext:
    """What every optimisation stage of one registration shares."""

    fixed: sitk.Image
    moving: sitk.Image
    params: RegistrationParams
    smoothing_mm: list[float]
    sampling: list[float]
    fixed_mask: sitk.Image | None
    moving_mask: sitk.Image | None


def _rotated(transform: sitk.Transform, angle_deg: float) -> sitk.AffineTransform:
    """``transform`` preceded by a rotation of ``angle_deg`` about its centre.

    The centre of rotation still maps where it did, so a centred initialisation keeps its
    translation; the fixed->moving linear part becomes ``A @ R(angle)``.
    """
    centre = np.asarray(linear_transform(transform).GetCenter(), dtype=np.float64)
    matrix = affine_to_matrix(transform)
    t = math.radians(angle_deg)
    rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    linear = matrix[:2, :2] @ rotation
    mapped_centre = matrix[:2, :2] @ centre + matrix[:2, 2]
    out = np.eye(3)
    out[:2, :2] = linear
    out[:2, 2] = mapped_centre - linear @ centre
    return matrix_to_affine(out, center=tuple(float(v) for v in centre))


def _shifted(
    transform: sitk.Transform, offset_px: tuple[float, float], spacing: Sequence[float]
) -> sitk.AffineTransform:
    """``transform`` followed by a shift of ``offset_px`` moving pixels (of ``spacing`` mm)."""
    matrix = affine_to_matrix(transform)
    matrix[:2, 2] += np.asarray(offset_px, dtype=np.float64) * np.asarray(spacing[:2])
    centre = linear_transform(transform).GetCenter()
    return matrix_to_affine(matrix, center=tuple(float(v) for v in centre))


def _run_stage(
    context: _StageContext,
    stage: TransformStage,
    start: sitk.Transform,
    max_iterations: int,
) -> tuple[sitk.Transform, StageResult]:
    """Optimise a ``stage`` transform starting from ``start``; checks the result."""
    tx = _stage_transform(stage, start)
    reg = _configure_method(
        context.params,
        max_iterations,
        context.smoothing_mm,
        context.sampling,
        context.fixed_mask,
        context.moving_mask,
    )
    reg.SetInitialTransform(tx, inPlace=True)
    per_level: list[int] = []
    reg.AddCommand(sitk.sitkMultiResolutionIterationEvent, lambda: per_level.append(0))

    def count() -> None:
        per_level[-1] += 1

    reg.AddCommand(sitk.sitkIterationEvent, count)
    try:
        with _itk_threads(context.params.number_of_threads):
            reg.Execute(context.fixed, context.moving)
    except RuntimeError as exc:
        raise RegistrationError(
            f"{stage} stage: the optimizer failed: {_itk_message(exc)}"
        ) from exc
    metric = float(reg.GetMetricValue())
    if not math.isfinite(metric):
        raise RegistrationError(f"{stage} stage: metric value is {metric}")
    check_transform(tx, context.params, f"{stage} stage")
    iterations = tuple(per_level) if per_level else (int(reg.GetOptimizerIteration()),)
    return tx, StageResult(
        stage=stage,
        metric_value=metric,
        iterations=iterations,
        stop_condition=reg.GetOptimizerStopConditionDescription(),
        converged=iterations[-1] < max_iterations,
    )


def _best_first_stage(
    context: _StageContext, initial: sitk.Transform
) -> tuple[float, tuple[float, float], sitk.Transform, StageResult]:
    """The first stage optimised from every start (angle, offset); the lowest metric wins.

    Returns:
        ``(start angle deg, start offset px, optimised transform, stage result)``.

    Raises:
        RegistrationError: the only start failed (its error), or every start failed (all
            their errors).
    """
    params = context.params
    spacing = context.moving.GetSpacing()
    starts = [
        (angle, offset, _shifted(_rotated(initial, angle), offset, spacing))
        for angle in params.initial_angles_deg
        for offset in params.initial_offsets_px
    ]
    candidates: list[tuple[float, tuple[float, float], sitk.Transform, StageResult]] = []
    failures: list[str] = []
    for angle, offset, start_tx in starts:
        try:
            tx, result = _run_stage(
                context, params.stages[0], start_tx, params.stage_iterations()[0]
            )
        except RegistrationError as exc:
            if len(starts) == 1:
                raise
            failures.append(f"start angle {angle:g} deg, offset {offset} px: {exc}")
            continue
        candidates.append((angle, offset, tx, result))
    if not candidates:
        raise RegistrationError("every start failed: " + "; ".join(failures))
    return min(candidates, key=lambda c: c[3].metric_value)


def register_affine(
    fixed: sitk.Image,
    moving: sitk.Image,
    params: RegistrationParams | None = None,
    fixed_mask: np.ndarray | sitk.Image | None = None,
    moving_mask: np.ndarray | sitk.Image | None = None,
) -> RegistrationResult:
    """Affine multimodal registration of ``moving`` (MRI) to ``fixed`` (histology channel).

    Steps: check the images; reduce the fixed image (block mean; ``fixed_max_size``,
    ``fixed_spacing_fraction``); centred initialisation (rotated by each of
    ``initial_angles_deg``; the best first stage is kept); for each stage, Mattes MI with a
    ``shrink_factors`` / ``smoothing_sigmas`` pyramid and the chosen gradient-descent optimizer
    with scales from physical shift; then plausibility checks on the result (finite metric,
    determinant > 0, scale within ``max_scale``, overlap, information above chance).

    Runs with the same inputs and parameters give bit-identical transforms (fixed sampling
    seed, one ITK thread while optimising; see ``number_of_threads``). A wrong local optimum
    (a slide turned by more than a few tens of degrees, too few samples for the bins) is not
    detectable here: check Dice/MI of the result (the registration report flags low Dice).

    Args:
        fixed: 2-D single-channel image (e.g. :func:`fixed_image_from_rgb`), any pixel type,
            physical geometry in mm; typically thousands of pixels a side.
        moving: 2-D single-channel MRI slice (float32 in ``[0, 1]``, spacing in mm).
        params: :class:`RegistrationParams` (defaults if ``None``).
        fixed_mask: optional tissue mask of the fixed image: a boolean array of the fixed
            image's array shape ``(rows, cols)`` or a 2-D ``SimpleITK`` image (non-zero inside).
        moving_mask: optional mask of the moving image, same conventions.

    Returns:
        :class:`RegistrationResult`; ``transform`` maps fixed mm to moving mm.

    Raises:
        RegistrationError: a constant image, an ITK exception during optimisation, a non-finite
            metric value, a degenerate transform (determinant <= 0, scale outside
            ``max_scale``), too little overlap, or no more mutual information than chance.
        ValueError: images that are not 2-D scalar, non-finite pixels, masks of the wrong shape.
    """
    params = params or RegistrationParams()
    start = time.perf_counter()
    fixed_f = check_scalar_image(fixed, "fixed")
    moving_f = check_scalar_image(moving, "moving")
    fixed_mask_full = (
        mask_image(fixed_mask, fixed_f) if fixed_mask is not None and params.use_masks else None
    )
    moving_mask_img = (
        mask_image(moving_mask, moving_f) if moving_mask is not None and params.use_masks else None
    )

    fixed_opt, _ = _reduce_fixed(fixed_f, moving_f, params)
    fixed_mask_opt = None
    if fixed_mask_full is not None:
        fixed_mask_opt = sitk.Resample(
            fixed_mask_full, fixed_opt, sitk.Transform(), sitk.sitkNearestNeighbor, 0
        )
        if not np.any(sitk.GetArrayViewFromImage(fixed_mask_opt)):
            raise RegistrationError("the fixed mask is empty")
    if moving_mask_img is not None and not np.any(sitk.GetArrayViewFromImage(moving_mask_img)):
        raise RegistrationError("the moving mask is empty")

    initial = _initial_transform(fixed_opt, moving_f, params, fixed_mask_opt, moving_mask_img)
    voxel = max(moving_f.GetSpacing())
    smoothing_mm = [s * voxel for s in params.smoothing_sigmas]

    sampling = _sampling_per_level(fixed_opt, fixed_mask_opt, params)
    context = _StageContext(
        fixed=fixed_opt,
        moving=moving_f,
        params=params,
        smoothing_mm=smoothing_mm,
        sampling=sampling,
        fixed_mask=fixed_mask_opt,
        moving_mask=moving_mask_img,
    )
    stage_iterations = params.stage_iterations()
    start_angle, start_offset, current, first = _best_first_stage(context, initial)
    stage_results = [first]
    for stage, max_iterations in zip(params.stages[1:], stage_iterations[1:], strict=True):
        current, result = _run_stage(context, stage, current, max_iterations)
        stage_results.append(result)

    notes = tuple(
        f"{s.stage} stage stopped at its iteration limit ({s.iterations[-1]}) at the finest "
        f"level: {s.stop_condition}"
        for s in stage_results
        if not s.converged
    )
    final = matrix_to_affine(
        affine_to_matrix(current), center=linear_transform(current).GetCenter()
    )
    overlap, mi, shuffled = information_check(fixed_opt, moving_f, final, fixed_mask_opt, params)
    if mi - shuffled < params.min_information_gain:
        raise RegistrationError(
            f"registered images share no more information than chance: mutual information "
            f"{mi:.3f} nats vs {shuffled:.3f} with shuffled pixels (min_information_gain "
            f"{params.min_information_gain}); is one image blank or noise?"
        )
    return RegistrationResult(
        transform=final,
        initial_transform=_shifted(
            _rotated(initial, start_angle), start_offset, moving_f.GetSpacing()
        ),
        start_angle_deg=start_angle,
        start_offset_px=start_offset,
        stages=tuple(stage_results),
        converged=all(s.converged for s in stage_results),
        seconds=time.perf_counter() - start,
        mutual_information=mi,
        mutual_information_shuffled=shuffled,
        overlap_fraction=overlap,
        optimisation_spacing_mm=(fixed_opt.GetSpacing()[0], fixed_opt.GetSpacing()[1]),
        warnings=notes,
    )
