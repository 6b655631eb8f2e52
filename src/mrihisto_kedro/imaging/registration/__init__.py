"""Affine multimodal registration of an MRI slice (moving) to a downsampled slide (fixed).

Pure functions on ``SimpleITK`` images and NumPy arrays (no Kedro imports); the ``registration``
pipeline's nodes call them. The public names of the modules below are re-exported here, so
``from mrihisto_kedro.imaging.registration import register_affine`` works.

Modules (one concept each)
--------------------------
* :mod:`.channels`: registration channels of a stained RGB slide, slides and masks as images.
* :mod:`.transforms`: affine matrices, inverses, mapping points, resampling the moving image.
* :mod:`.scores`: Dice, target registration error, grid points in a mask.
* :mod:`.control_points`: landmark CSV files and the least-squares affine (paper 003).
* :mod:`.params`: :class:`RegistrationParams` and its option enums.
* :mod:`.checks`: :class:`RegistrationError` and the plausibility checks of the engine.
* :mod:`.engine`: :func:`register_affine`, the SimpleITK optimisation, and its result.
* :mod:`.geometry`: checks of spacings, origins and point arrays in mm.
* :mod:`.qc`: structure agreement, the QC verdict, which pairs may be tiled, QC images.
* :mod:`.pairs`: one MRI slice registered to its downsampled section and scored.
* :mod:`.study`: every pair of a manifest registered, judged and reported.

Geometry and conventions
------------------------
* The **moving** image is a 2-D MRI slice as produced by :mod:`mrihisto_kedro.imaging.mri`:
  float32 in ``[0, 1]``, spacing ``(col_mm, row_mm)``, origin ``(0, 0)``, identity direction.
* The **fixed** image is one channel of a downsampled histology slide
  (:func:`tissue_channel`, :func:`fixed_image_from_rgb`): pixel size ``mpp * factor`` µm, i.e. a
  spacing of ``mpp * factor / 1000`` mm. Level-0 pixel ``(c, r)`` of the slide lies at
  ``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm, so the centre of downsampled pixel ``(0, 0)`` (the
  mean of ``factor x factor`` level-0 pixels) lies at ``(factor - 1) / 2`` level-0 pixels:
  :func:`downsampled_origin_mm` gives that origin.
* Points are physical ``(x, y)`` millimetres (``x`` along columns, ``y`` along rows), arrays of
  points have shape ``(N, 2)``.
* A registration transform maps **fixed (histology) points to moving (MRI) points**, as in
  ITK: ``moving_point = T(fixed_point)``. Resampling the MRI onto the histology grid uses ``T``
  directly (:func:`resample_moving`). A ground truth given the other way round (MRI mm ->
  histology mm, as the built-in demo writes it) is turned into a fixed->moving transform by
  :func:`transform_from_moving_to_fixed_affine`.
* Affine transforms are handled as ``sitk.AffineTransform`` objects (centre, matrix,
  translation; ``T(p) = A (p - c) + t + c``) or as homogeneous ``(3, 3)`` matrices
  (:func:`affine_to_matrix`, :func:`matrix_to_affine`).

Intensity-based registration (:func:`register_affine`)
-------------------------------------------------------
Mattes mutual information, a multi-resolution pyramid, a centred initialisation (image moments or
geometric centres), then one optimisation per stage (by default a similarity stage and a full
affine stage, the order of the reproduced paper's MATLAB recipe). Optimizer scales are estimated
from physical shift (``SetOptimizerScalesFromPhysicalShift``). The fixed image is reduced
(block mean) before optimisation so that gigapixel-sized slides register in seconds. A failed
optimisation raises :class:`RegistrationError`; it never returns an identity transform silently.

Control points (:func:`affine_from_control_points`, :func:`read_control_points`)
--------------------------------------------------------------------------------
Least-squares affine from clicked landmarks (paper 003), with per-point residuals.
"""

from mrihisto_kedro.imaging.downsample import downsampled_origin_mm

from .channels import (
    TissueChannel,
    fixed_image_from_rgb,
    mask_image,
    rgb_to_sitk,
    tissue_channel,
)
from .checks import RegistrationError
from .control_points import (
    ControlPointError,
    ControlPoints,
    affine_from_control_points,
    read_control_points,
)
from .engine import RegistrationResult, StageResult, register_affine
from .params import (
    Initialization,
    Interpolator,
    LearningRateEstimation,
    OptimizerKind,
    RegistrationParams,
    SamplingStrategy,
    TransformStage,
)
from .scores import dice, grid_points_in_mask, target_registration_error
from .transforms import (
    affine_to_matrix,
    apply_transform,
    carry_records,
    invert,
    matrix_to_affine,
    resample_moving,
    transform_from_moving_to_fixed_affine,
)

__all__ = [
    "ControlPointError",
    "ControlPoints",
    "Initialization",
    "Interpolator",
    "LearningRateEstimation",
    "OptimizerKind",
    "RegistrationError",
    "RegistrationParams",
    "RegistrationResult",
    "SamplingStrategy",
    "StageResult",
    "TissueChannel",
    "TransformStage",
    "affine_from_control_points",
    "affine_to_matrix",
    "apply_transform",
    "dice",
    "downsampled_origin_mm",
    "fixed_image_from_rgb",
    "grid_points_in_mask",
    "invert",
    "mask_image",
    "matrix_to_affine",
    "read_control_points",
    "register_affine",
    "carry_records",
    "resample_moving",
    "rgb_to_sitk",
    "target_registration_error",
    "tissue_channel",
    "transform_from_moving_to_fixed_affine",
]
