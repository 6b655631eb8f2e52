"""Affine MRI -> histology registration: channels, geometry helpers, control points, and
recovery of known affines on real anatomy (synthetic histology from the MNI152 template; the
real ICBM152 2009c T1/T2 pair)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.figure import Figure
from skimage.color import rgb2gray, rgb2hed

from mrihisto_kedro.imaging import registration as reg
from mrihisto_kedro.imaging.mri import extract_slice, robust_normalise
from mrihisto_kedro.imaging.registration import channels
from mrihisto_kedro.imaging.registration.checks import check_transform
from mrihisto_kedro.imaging.registration.study import RegistrationStudyParams
from mrihisto_kedro.params import ParameterError, parse_params
from mrihisto_kedro.reporting.registration_figures import checkerboard, registration_qc_figure

# Beer-Lambert optical density (log10) per unit stain, R/G/B: scikit-image's rgb_from_hed rows
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
DAB_OD = np.array([0.27, 0.57, 0.78])


def _similarity_shear(angle_deg: float, scale: float, shear: float) -> np.ndarray:
    """2x2 matrix: rotation by ``angle_deg``, isotropic ``scale``, then x-shear ``shear``."""
    t = math.radians(angle_deg)
    rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return scale * rotation @ np.array([[1.0, shear], [0.0, 1.0]])


def _normalised_slice(volume: sitk.Image, index: int) -> sitk.Image:
    """Sagittal slice ``index`` of ``volume`` scaled to [0, 1] (the project's MRI convention)."""
    raw = extract_slice(volume, "sagittal", index)
    out = sitk.GetImageFromArray(robust_normalise(sitk.GetArrayFromImage(raw)))
    out.SetSpacing(raw.GetSpacing())
    return out


def _histology_rgb(
    concentration: np.ndarray, stain_od: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Bright-field RGB (uint8) of a stain concentration map: Beer-Lambert plus camera noise."""
    od = concentration[..., None] * stain_od
    intensity = 255.0 * np.power(10.0, -od) + 3.0 * rng.standard_normal(od.shape)
    return np.clip(np.round(intensity), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# fixtures: real anatomy


@pytest.fixture(scope="module")
def mni_slice(tmp_path_factory: pytest.TempPathFactory) -> sitk.Image:
    """Para-sagittal slice of nilearn's skull-stripped MNI152 template at 2 mm (117 x 95 px)."""
    from nilearn import datasets

    path = tmp_path_factory.mktemp("mni") / "mni152_2mm.nii.gz"
    datasets.load_mni152_template(resolution=2).to_filename(path)
    volume = sitk.ReadImage(str(path), sitk.sitkFloat32)
    return _normalised_slice(volume, volume.GetSize()[0] // 2 + 8)


class SyntheticPair:
    """A histology-like fixed image made from the MRI slice through a known affine."""

    def __init__(self, mri: sitk.Image, angle_deg: float = 8.0) -> None:
        rng = np.random.default_rng(11)
        self.mri = mri
        # ground truth as the demo writes it: MRI mm -> histology mm
        linear = _similarity_shear(angle_deg, 1.05, 0.06)
        self.ground_truth = np.hstack([linear, [[6.0], [-4.0]]])
        self.true = reg.transform_from_moving_to_fixed_affine(self.ground_truth)
        extent = np.array(mri.GetSize()) * np.array(mri.GetSpacing())
        corners = np.array([[0, 0], [extent[0], 0], [0, extent[1]], extent])
        mapped = corners @ linear.T + self.ground_truth[:, 2]
        low = mapped.min(axis=0) - 5.0
        self.spacing = 0.25  # mm: a 3.75 um/px slide reduced 67x more than the paper's
        size = np.ceil((mapped.max(axis=0) + 5.0 - low) / self.spacing).astype(int)
        grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
        grid.SetSpacing((self.spacing, self.spacing))
        grid.SetOrigin(tuple(float(v) for v in low))
        anatomy = sitk.GetArrayFromImage(reg.resample_moving(mri, grid, self.true))
        self.tissue = anatomy > 0.05
        # contrast inversion: stain is dense where T1 is dark (grey matter), pale in white matter
        concentration = np.where(self.tissue, 0.25 + 0.9 * (1.0 - anatomy), 0.0)
        concentration *= 1.0 + 0.1 * rng.standard_normal(concentration.shape)
        self.rgb = _histology_rgb(concentration, HEMATOXYLIN_OD, rng)
        self.origin = (float(low[0]), float(low[1]))
        self.fixed = reg.fixed_image_from_rgb(
            self.rgb, (self.spacing, self.spacing), "optical_density", origin_mm=self.origin
        )
        self.tissue_image = reg.mask_image(self.tissue, self.fixed)


@pytest.fixture(scope="module")
def synthetic(mni_slice: sitk.Image) -> SyntheticPair:
    return SyntheticPair(mni_slice)


@pytest.fixture(scope="module")
def synthetic_result(synthetic: SyntheticPair) -> reg.RegistrationResult:
    return reg.register_affine(synthetic.fixed, synthetic.mri)


# ----------------------------------------------------------------------------------------------
# (a) synthetic multimodal pair on real anatomy


def test_synthetic_histology_recovered_within_one_voxel(
    synthetic: SyntheticPair, synthetic_result: reg.RegistrationResult
):
    voxel = max(synthetic.mri.GetSpacing())
    points = reg.grid_points_in_mask(synthetic.tissue_image, step_mm=2.0)
    assert len(points) > 1000
    tre = reg.target_registration_error(synthetic_result.transform, synthetic.true, points)
    initial_tre = reg.target_registration_error(
        synthetic_result.initial_transform, synthetic.true, points
    )
    print(
        f"synthetic histology: TRE mean {tre.mean():.3f} mm, max {tre.max():.3f} mm "
        f"(voxel {voxel} mm), initial {initial_tre.mean():.2f} mm, "
        f"{synthetic_result.seconds:.2f} s, {synthetic_result.stop_conditions}"
    )
    assert initial_tre.mean() > 3 * voxel  # the centred initialisation alone is far off
    assert tre.max() < voxel
    assert tre.mean() < 0.25 * voxel
    assert synthetic_result.converged
    assert len(synthetic_result.stages) == 2
    assert all(m < 0 for m in synthetic_result.metric_per_stage)
    assert synthetic_result.mutual_information > 0.5
    assert synthetic_result.mutual_information_shuffled < 0.05
    assert synthetic_result.overlap_fraction == pytest.approx(1.0, abs=0.3)


def test_synthetic_histology_dice_improves(
    synthetic: SyntheticPair, synthetic_result: reg.RegistrationResult
):
    def mri_mask_on_fixed(transform: sitk.Transform) -> np.ndarray:
        resampled = reg.resample_moving(synthetic.mri, synthetic.fixed, transform)
        return sitk.GetArrayFromImage(resampled) > 0.05

    # the paper's masks: thresholded histology (tissue absorbs: OD above glass) and MRI
    histology_mask = sitk.GetArrayFromImage(synthetic.fixed) > 0.15
    identity = sitk.Transform(2, sitk.sitkIdentity)
    before = reg.dice(histology_mask, mri_mask_on_fixed(identity))
    after = reg.dice(histology_mask, mri_mask_on_fixed(synthetic_result.transform))
    print(f"synthetic histology: Dice before {before:.3f}, after {after:.3f}")
    assert after > before
    assert after > 0.95


def test_registration_is_deterministic(
    synthetic: SyntheticPair, synthetic_result: reg.RegistrationResult
):
    again = reg.register_affine(synthetic.fixed, synthetic.mri)
    np.testing.assert_array_equal(
        reg.affine_to_matrix(again.transform), reg.affine_to_matrix(synthetic_result.transform)
    )
    assert again.transform.GetParameters() == synthetic_result.transform.GetParameters()
    assert again.metric_per_stage == synthetic_result.metric_per_stage
    assert again.iterations_per_stage == synthetic_result.iterations_per_stage


def test_fixed_image_is_reduced_before_optimisation(synthetic: SyntheticPair):
    params = reg.RegistrationParams(fixed_max_size=256, fixed_spacing_fraction=None)
    result = reg.register_affine(synthetic.fixed, synthetic.mri, params)
    factor = math.ceil(max(synthetic.fixed.GetSize()) / 256)
    assert result.optimisation_spacing_mm == pytest.approx((factor * 0.25, factor * 0.25))
    points = reg.grid_points_in_mask(synthetic.tissue_image, step_mm=2.0)
    tre = reg.target_registration_error(result.transform, synthetic.true, points)
    assert tre.mean() < max(synthetic.mri.GetSpacing())


def test_registration_with_masks(synthetic: SyntheticPair):
    """Masks restrict the metric; a dilated tissue mask keeps the tissue border in play."""
    fixed_mask = sitk.BinaryDilate(synthetic.tissue_image, [12, 12])
    moving_mask = sitk.GetArrayFromImage(synthetic.mri) >= 0.0
    result = reg.register_affine(
        synthetic.fixed, synthetic.mri, fixed_mask=fixed_mask, moving_mask=moving_mask
    )
    points = reg.grid_points_in_mask(synthetic.tissue_image, step_mm=2.0)
    tre = reg.target_registration_error(result.transform, synthetic.true, points)
    assert tre.mean() < 0.25 * max(synthetic.mri.GetSpacing())
    with pytest.raises(ValueError, match="mask shape"):
        reg.register_affine(synthetic.fixed, synthetic.mri, fixed_mask=np.ones((3, 3), bool))


def test_start_offsets_keep_the_lowest_metric(
    synthetic: SyntheticPair, synthetic_result: reg.RegistrationResult
):
    """Every (angle, offset) start runs; the kept one has the lowest first-stage metric and its
    start is the centred initialisation shifted by the offset in moving pixels."""
    spacing = np.asarray(synthetic.mri.GetSpacing())
    far = reg.RegistrationParams(initial_offsets_px=((-25.0, 0.0),))  # 50 mm off: the wrong start
    lost = reg.register_affine(synthetic.fixed, synthetic.mri, far)
    both = reg.RegistrationParams(initial_offsets_px=((-25.0, 0.0), (0.0, 0.0)))
    result = reg.register_affine(synthetic.fixed, synthetic.mri, both)
    assert lost.metric_per_stage[0] > synthetic_result.metric_per_stage[0]
    assert result.start_offset_px == (0.0, 0.0)
    assert result.metric_per_stage == pytest.approx(synthetic_result.metric_per_stage)
    assert lost.start_offset_px == (-25.0, 0.0)
    for point in ((10.0, 20.0), (-35.0, 5.0)):
        shifted = np.asarray(lost.initial_transform.TransformPoint(point))
        centred = np.asarray(synthetic_result.initial_transform.TransformPoint(point))
        np.testing.assert_allclose(shifted - centred, [-25.0 * spacing[0], 0.0], atol=1e-9)
    points = reg.grid_points_in_mask(synthetic.tissue_image, step_mm=2.0)
    tre = reg.target_registration_error(result.transform, synthetic.true, points)
    assert tre.mean() < 0.25 * max(spacing)


@pytest.mark.parametrize(
    "offsets", [(), ((1.0,),), ((float("nan"), 0.0),), "centre", ((1.0, 2.0, 3.0),)]
)
def test_start_offsets_are_validated(offsets: object):
    with pytest.raises(ValueError, match="initial_offsets_px"):
        reg.RegistrationParams(initial_offsets_px=offsets)  # type: ignore[arg-type]


def test_slide_mounted_at_another_angle_needs_start_angles(mni_slice: sitk.Image):
    """Gradient descent alone cannot undo a ~100 deg turn; four start angles can."""
    turned = SyntheticPair(mni_slice, angle_deg=98.0)
    params = reg.RegistrationParams(initial_angles_deg=(0, 90, 180, 270))
    result = reg.register_affine(turned.fixed, turned.mri, params)
    assert result.start_angle_deg == 270.0  # fixed->moving turns the other way (-98 deg)
    points = reg.grid_points_in_mask(turned.tissue_image, step_mm=2.0)
    tre = reg.target_registration_error(result.transform, turned.true, points)
    assert tre.max() < max(turned.mri.GetSpacing())
    initial = reg.target_registration_error(result.initial_transform, turned.true, points)
    assert initial.mean() < 10 * max(turned.mri.GetSpacing())  # the kept start is ~8 deg off


# ----------------------------------------------------------------------------------------------
# (b) the real ICBM152 2009c T1/T2 pair


@pytest.fixture(scope="module")
def icbm_pair(shared_data: Path) -> tuple[sitk.Image, sitk.Image]:
    folder = shared_data / "mri" / "icbm152_2009c_2mm"
    t1 = sitk.ReadImage(str(folder / "icbm152_2009c_sym_t1_2mm.nii.gz"), sitk.sitkFloat32)
    t2 = sitk.ReadImage(str(folder / "icbm152_2009c_sym_t2_2mm.nii.gz"), sitk.sitkFloat32)
    return t1, t2


@pytest.mark.parametrize("slice_index", [36, 48])
def test_icbm_t1_t2_known_affine_recovered(
    icbm_pair: tuple[sitk.Image, sitk.Image], slice_index: int
):
    t1 = _normalised_slice(icbm_pair[0], slice_index)
    t2 = _normalised_slice(icbm_pair[1], slice_index)
    centre = np.array(t1.GetSize()) * np.array(t1.GetSpacing()) / 2.0
    linear = _similarity_shear(8.0, 1.05, 0.05)  # ~8 deg, 5 % scale, shear
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - linear @ centre + np.array([5.0, -4.0])  # ~5 mm shift
    true = reg.matrix_to_affine(matrix)  # fixed (T1) mm -> moving mm
    # moving(y) = T2(true^-1(y)), so moving(true(x)) = T2(x), aligned with T1(x)
    moving = reg.resample_moving(t2, t2, reg.invert(true))

    result = reg.register_affine(t1, moving)
    head = reg.mask_image(sitk.GetArrayFromImage(t1) > 0.1, t1)
    points = reg.grid_points_in_mask(head, step_mm=4.0)
    tre = reg.target_registration_error(result.transform, true, points)
    initial = reg.target_registration_error(result.initial_transform, true, points)
    voxel = max(t1.GetSpacing())
    print(
        f"ICBM T1<-T2 slice {slice_index}: TRE mean {tre.mean():.3f} mm, max {tre.max():.3f} mm "
        f"(voxel {voxel} mm; initial {initial.mean():.2f} mm), MI "
        f"{result.mutual_information:.3f} nats, {result.seconds:.2f} s"
    )
    assert initial.mean() > 2 * voxel
    assert tre.mean() < voxel
    assert result.converged


# ----------------------------------------------------------------------------------------------
# (d) failures are loud


def test_pure_noise_moving_is_an_error(synthetic: SyntheticPair):
    rng = np.random.default_rng(1)
    noise = sitk.GetImageFromArray(
        rng.random(sitk.GetArrayViewFromImage(synthetic.mri).shape).astype(np.float32)
    )
    noise.CopyInformation(synthetic.mri)
    with pytest.raises(reg.RegistrationError, match="no more information than chance|drifted"):
        reg.register_affine(synthetic.fixed, noise)


def test_pure_noise_fixed_is_an_error(synthetic: SyntheticPair):
    rng = np.random.default_rng(2)
    noise = sitk.GetImageFromArray(
        rng.random(sitk.GetArrayViewFromImage(synthetic.fixed).shape).astype(np.float32)
    )
    noise.CopyInformation(synthetic.fixed)
    with pytest.raises(reg.RegistrationError, match="no more information than chance|drifted"):
        reg.register_affine(noise, synthetic.mri)


def test_constant_image_is_an_error(synthetic: SyntheticPair):
    blank = sitk.Image(synthetic.mri.GetSize(), sitk.sitkFloat32) + 0.5
    blank.CopyInformation(synthetic.mri)
    with pytest.raises(reg.RegistrationError, match="moving image is constant"):
        reg.register_affine(synthetic.fixed, blank)
    glass = sitk.Image(synthetic.fixed.GetSize(), sitk.sitkFloat32)
    glass.CopyInformation(synthetic.fixed)
    with pytest.raises(reg.RegistrationError, match="fixed image is constant"):
        reg.register_affine(glass, synthetic.mri)


def test_degenerate_transforms_are_rejected():
    params = reg.RegistrationParams()
    mirrored = reg.matrix_to_affine(np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    with pytest.raises(reg.RegistrationError, match="determinant"):
        check_transform(mirrored, params, "test")
    collapsed = reg.matrix_to_affine(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(reg.RegistrationError, match="determinant"):
        check_transform(collapsed, params, "test")
    blown_up = reg.matrix_to_affine(np.array([[10.0, 0.0, 0.0], [0.0, 0.5, 0.0]]))
    with pytest.raises(reg.RegistrationError, match="implausible scale"):
        check_transform(blown_up, params, "test")
    check_transform(reg.matrix_to_affine(np.eye(3)), params, "test")


def test_wrong_images_are_value_errors(synthetic: SyntheticPair):
    rgb = reg.rgb_to_sitk(synthetic.rgb, (0.25, 0.25))
    with pytest.raises(ValueError, match="single-channel"):
        reg.register_affine(rgb, synthetic.mri)
    bad = sitk.GetArrayFromImage(synthetic.mri)
    bad[0, 0] = np.nan
    bad_image = sitk.GetImageFromArray(bad)
    with pytest.raises(ValueError, match="non-finite"):
        reg.register_affine(synthetic.fixed, bad_image)


# ----------------------------------------------------------------------------------------------
# parameters


def test_params_from_yaml_like_mapping():
    params = parse_params(
        reg.RegistrationParams,
        {
            "stages": ["rigid", "affine"],
            "iterations": [100, 200],
            "shrink_factors": [2, 1],
            "smoothing_sigmas": [1, 0],
            "optimizer": "gradient_descent",
            "fixed_max_size": None,
        },
        "registration.params",
    )
    assert params.stages == (reg.TransformStage.RIGID, reg.TransformStage.AFFINE)
    assert params.stage_iterations() == (100, 200)
    assert params.optimizer is reg.OptimizerKind.GRADIENT_DESCENT
    assert reg.RegistrationParams(iterations=(50,)).stage_iterations() == (50, 50)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"sampling_percentage": 1.5},
            r"'registration\.params\.sampling_percentage' must be in \(0, 1\], got 1\.5",
        ),
        ({"sampling_percentage": 0.0}, r"'registration\.params\.sampling_percentage' must be in"),
        ({"seed": 0}, r"'registration\.params\.seed' must be >= 1, got 0"),
        ({"metric_bins": 3}, r"'registration\.params\.metric_bins' must be >= 4, got 3"),
        ({"min_samples": 0}, r"'registration\.params\.min_samples' must be >= 1"),
        ({"shrink_factors": [], "smoothing_sigmas": []}, r"'registration\.params\.shrink_factors'"),
        ({"shrink_factors": [2, 0]}, r"'registration\.params\.shrink_factors\[1\]' must be >= 1"),
        (
            {"shrink_factors": [4, 2, 1], "smoothing_sigmas": [1, 0]},
            r"'registration\.params\.smoothing_sigmas' must have as many levels as "
            r"shrink_factors \(3\), got 2",
        ),
        (
            {"smoothing_sigmas": [1, -1, 0]},
            r"'registration\.params\.smoothing_sigmas\[1\]' must be >= 0",
        ),
        ({"stages": []}, r"'registration\.params\.stages' must name at least one transform"),
        (
            {"stages": ["affine", "similarity"]},
            r"'registration\.params\.stages'.*degrees of freedom",
        ),
        ({"stages": ["rigid", "shear"]}, r"'registration\.params\.stages\[1\]' = 'shear'"),
        (
            {"stages": ["similarity", "affine"], "iterations": [1, 2, 3]},
            r"'registration\.params\.iterations' must hold one count per stage \(2\)",
        ),
        ({"iterations": [0]}, r"'registration\.params\.iterations\[0\]' must be >= 1"),
        ({"initialization": "centre"}, r"'registration\.params\.initialization' = 'centre'"),
        ({"learning_rate": 0.0}, r"'registration\.params\.learning_rate' must be > 0"),
        ({"maximum_step_mm": -1.0}, r"'registration\.params\.maximum_step_mm' must be > 0"),
        ({"min_step": 0.0}, r"'registration\.params\.min_step' must be > 0"),
        (
            {"relaxation_factor": 1.0},
            r"'registration\.params\.relaxation_factor' must be in \(0, 1\)",
        ),
        ({"convergence_window": 1}, r"'registration\.params\.convergence_window' must be >= 2"),
        ({"convergence_min_value": 0.0}, r"'registration\.params\.convergence_min_value'"),
        ({"initial_angles_deg": []}, r"'registration\.params\.initial_angles_deg' must hold"),
        (
            {"initial_angles_deg": [0.0, float("inf")]},
            r"'registration\.params\.initial_angles_deg\[1\]' must be a finite number",
        ),
        ({"fixed_max_size": 8}, r"'registration\.params\.fixed_max_size' must be >= 16"),
        ({"fixed_spacing_fraction": 0.0}, r"'registration\.params\.fixed_spacing_fraction'"),
        ({"max_scale": 1.0}, r"'registration\.params\.max_scale' must be > 1, got 1\.0"),
        ({"min_overlap": 1.5}, r"'registration\.params\.min_overlap' must be in \[0, 1\]"),
        ({"min_information_gain": -0.1}, r"'registration\.params\.min_information_gain'"),
        ({"number_of_threads": 0}, r"'registration\.params\.number_of_threads' must be >= 1"),
        ({"metric_bin": 50}, r"'registration\.params' has unknown key\(s\) 'metric_bin'"),
    ],
)
def test_bad_params_name_the_key(values: dict, message: str):
    with pytest.raises(ParameterError, match=message):
        parse_params(reg.RegistrationParams, values, "registration.params")


def test_params_keep_their_accepted_edges():
    """The bounds are the documented ones: closed where they were closed, no limits lost."""
    edges = reg.RegistrationParams(
        metric_bins=4,
        sampling_percentage=1.0,
        min_samples=1,
        seed=1,
        shrink_factors=(1,),
        smoothing_sigmas=(0.0,),
        convergence_window=2,
        fixed_max_size=16,
        maximum_step_mm=1e-3,
        fixed_spacing_fraction=None,
        max_scale=float("inf"),  # no scale check
        min_overlap=0.0,
        min_information_gain=0.0,
        number_of_threads=None,
        initial_angles_deg=(0, 90),
    )
    assert edges.initial_angles_deg == (0.0, 90.0)
    assert all(type(a) is float for a in edges.initial_angles_deg)
    assert reg.RegistrationParams(min_overlap=1.0, stages=("affine",), iterations=(5,))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dice_threshold": 0.0}, r"'registration\.scoring\.dice_threshold' must be in \(0, 1\]"),
        ({"min_structure": 1.2}, r"'registration\.scoring\.min_structure' must be in \[0, 1\]"),
        ({"mi_bins": 1}, r"'registration\.scoring\.mi_bins' must be >= 2, got 1"),
        ({"mi_base": 1.0}, r"'registration\.scoring\.mi_base' must be > 1, got 1\.0"),
        ({"tre_grid_step_mm": 0}, r"'registration\.scoring\.tre_grid_step_mm' must be > 0"),
    ],
)
def test_bad_scoring_names_the_key(values: dict, message: str):
    with pytest.raises(ParameterError, match=message):
        parse_params(RegistrationStudyParams, {"scoring": values}, "registration")


def test_study_params_nest_and_coerce():
    study = parse_params(
        RegistrationStudyParams,
        {"channel": "DAB", "scoring": {"mi_base": 2}, "optimiser": {"stages": ["rigid"]}},
        "registration",
    )
    assert study.channel is reg.TissueChannel.DAB and study.scoring.mi_base == 2.0
    assert study.optimiser.stages == (reg.TransformStage.RIGID,)
    assert study.optimiser.stage_iterations() == (300,)
    assert RegistrationStudyParams(max_grid_px=64).max_grid_px == 64
    with pytest.raises(ParameterError, match=r"'registration\.max_grid_px' must be >= 64, got 63"):
        parse_params(RegistrationStudyParams, {"max_grid_px": 63}, "registration")


# ----------------------------------------------------------------------------------------------
# channels and slide geometry


def test_tissue_channels_match_scikit_image():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    hed = rgb2hed(rgb)
    for k, channel in enumerate(("hematoxylin", "eosin", "dab")):
        out = reg.tissue_channel(rgb, channel)
        assert out.dtype == np.float32 and out.shape == (37, 53)
        np.testing.assert_allclose(out, hed[..., k], rtol=1e-6, atol=1e-6)
    gray = reg.tissue_channel(rgb, reg.TissueChannel.GRAY_INVERTED)
    np.testing.assert_allclose(gray, 1.0 - rgb2gray(rgb), atol=1e-6)
    od = reg.tissue_channel(rgb, "optical_density")
    expected = -np.log10(np.maximum(rgb.astype(float), 1.0) / 255.0).sum(axis=2)
    np.testing.assert_allclose(od, expected, rtol=1e-6)


def test_tissue_channel_values_and_chunking(monkeypatch: pytest.MonkeyPatch):
    rgb = np.full((5, 7, 3), 255, dtype=np.uint8)
    rgb[2, 3] = (0, 0, 0)
    od = reg.tissue_channel(rgb, "optical_density")
    assert od[0, 0] == 0.0
    assert od[2, 3] == pytest.approx(3 * math.log10(255))
    rng = np.random.default_rng(4)
    big = rng.integers(0, 256, size=(61, 17, 3), dtype=np.uint8)
    whole = reg.tissue_channel(big, "dab")
    monkeypatch.setattr(channels, "_CHUNK_PIXELS", 40)  # blocks of 2 rows
    np.testing.assert_array_equal(reg.tissue_channel(big, "dab"), whole)
    with pytest.raises(ValueError, match="uint8"):
        reg.tissue_channel(big.astype(np.float32), "dab")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        reg.tissue_channel(big[..., :2], "dab")
    with pytest.raises(ValueError):
        reg.tissue_channel(big, "giemsa")


def test_downsampled_origin_places_block_means_exactly():
    """A level-0 ramp whose value is each pixel's x (mm): block means land on pixel centres."""
    factor, mpp = 15, 0.25
    level0 = np.tile(np.arange(150) * mpp / 1000.0, (30, 1))  # value = physical x in mm
    down = level0.reshape(2, factor, 10, factor).mean(axis=(1, 3))
    spacing = factor * mpp / 1000.0
    origin = reg.downsampled_origin_mm(factor, mpp)
    assert origin == pytest.approx(((factor - 1) / 2 * mpp / 1000,) * 2)
    image = reg.fixed_image_from_rgb(
        np.zeros((2, 10, 3), np.uint8), (spacing, spacing), origin_mm=origin
    )
    for col in range(10):
        x_mm = image.TransformIndexToPhysicalPoint((col, 0))[0]
        assert x_mm == pytest.approx(down[0, col], abs=1e-12)
    assert reg.downsampled_origin_mm((4, 2), (0.5, 0.25)) == pytest.approx((0.00075, 0.000125))
    with pytest.raises(ValueError):
        reg.downsampled_origin_mm(0.5, 0.25)


def test_rgb_and_mask_images_keep_geometry():
    rgb = np.zeros((4, 6, 3), np.uint8)
    image = reg.rgb_to_sitk(rgb, (0.01, 0.02), (1.0, 2.0))
    assert image.GetSize() == (6, 4)
    assert image.GetNumberOfComponentsPerPixel() == 3
    assert image.GetSpacing() == (0.01, 0.02) and image.GetOrigin() == (1.0, 2.0)
    mask = reg.mask_image(np.eye(4, 6, dtype=bool), image)
    assert mask.GetPixelID() == sitk.sitkUInt8 and mask.GetOrigin() == (1.0, 2.0)
    assert sitk.GetArrayViewFromImage(mask).sum() == 4
    with pytest.raises(ValueError, match="spacing_mm"):
        reg.rgb_to_sitk(rgb, (0.0, 0.02))


# ----------------------------------------------------------------------------------------------
# affine helpers, resampling, TRE, Dice


def test_matrix_round_trips_and_inverse():
    m = np.array([[0.9, -0.2, 3.0], [0.15, 1.1, -2.0], [0.0, 0.0, 1.0]])
    for centre in [(0.0, 0.0), (12.5, -3.0)]:
        tx = reg.matrix_to_affine(m, center=centre)
        assert tx.GetCenter() == centre
        np.testing.assert_allclose(reg.affine_to_matrix(tx), m, atol=1e-12)
        np.testing.assert_allclose(reg.affine_to_matrix(reg.invert(tx)), np.linalg.inv(m))
    similarity = sitk.Similarity2DTransform(1.2, 0.3, (1.0, 2.0), (5.0, 6.0))
    point = (3.0, -4.0)
    mapped = reg.apply_transform(similarity, np.array([point]))[0]
    np.testing.assert_allclose(mapped, similarity.TransformPoint(point), atol=1e-12)
    composite = sitk.CompositeTransform([similarity, sitk.TranslationTransform(2, (1.0, -1.0))])
    np.testing.assert_allclose(
        reg.apply_transform(composite, np.array([point]))[0],
        composite.TransformPoint(point),
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="not invertible"):
        reg.invert(reg.matrix_to_affine(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])))


def test_ground_truth_convention():
    """The demo's affine maps MRI mm -> histology mm; the registration transform is its inverse."""
    gt = np.array([[0.95, -0.1, 4.0], [0.12, 1.02, -7.0]])
    tx = reg.transform_from_moving_to_fixed_affine(gt)
    mri_points = np.array([[0.0, 0.0], [10.0, 5.0], [-3.0, 40.0]])
    histology_points = mri_points @ gt[:, :2].T + gt[:, 2]
    np.testing.assert_allclose(reg.apply_transform(tx, histology_points), mri_points, atol=1e-12)


def test_resample_moving_translation_and_nearest():
    array = np.zeros((20, 30), np.float32)
    array[5:10, 8:12] = 1.0
    moving = sitk.GetImageFromArray(array)
    moving.SetSpacing((0.5, 0.5))
    reference = reg.rgb_to_sitk(np.zeros((40, 60, 3), np.uint8), (0.25, 0.25))
    shift = sitk.TranslationTransform(2, (1.0, 0.5))  # fixed point + (1, 0.5) mm = moving point
    out = reg.resample_moving(moving, reference, shift)
    assert out.GetSize() == (60, 40) and out.GetPixelID() == sitk.sitkFloat32
    out_arr = sitk.GetArrayFromImage(out)
    # moving pixel (col 8, row 5) at (4.0, 2.5) mm <- fixed (3.0, 2.0) mm = fixed px (12, 8)
    assert out_arr[8, 12] == pytest.approx(1.0)
    assert out_arr[7, 12] == pytest.approx(0.5)  # half-way between moving rows 4 and 5
    labels = sitk.GetImageFromArray((array > 0).astype(np.uint8))
    labels.SetSpacing((0.5, 0.5))
    nearest = reg.resample_moving(labels, reference, shift, interpolator="nearest")
    assert nearest.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(nearest))) == {0, 1}


def test_resample_moving_carries_the_mrihisto_metadata(tmp_path: Path) -> None:
    """The aligned MRI keeps what data_engineering recorded (the normalisation), not ITK's
    reader keys; sitk.Resample alone drops both."""
    from mrihisto_kedro.imaging.sitk_io import read_image, write_image

    moving = sitk.GetImageFromArray(np.ones((8, 8), np.float32))
    moving.SetMetaData("mrihisto_lower_percentile", "2.0")
    write_image(moving, tmp_path / "slice.mha")
    loaded = read_image(tmp_path / "slice.mha")
    assert "ITK_InputFilterName" in loaded.GetMetaDataKeys()
    reference = sitk.GetImageFromArray(np.zeros((4, 4), np.float32))
    for interpolator in ("linear", "nearest"):
        out = reg.resample_moving(loaded, reference, sitk.AffineTransform(2), interpolator)
        assert out.GetMetaDataKeys() == ("mrihisto_lower_percentile",)
        assert out.GetMetaData("mrihisto_lower_percentile") == "2.0"


def test_target_registration_error_and_grid():
    mask_array = np.zeros((10, 20), np.uint8)
    mask_array[2:8, 4:16] = 1
    mask = sitk.GetImageFromArray(mask_array)
    mask.SetSpacing((0.5, 0.5))
    mask.SetOrigin((10.0, 20.0))
    points = reg.grid_points_in_mask(mask, step_mm=1.0)  # every 2nd pixel
    assert len(points) == 3 * 6
    assert points.min(axis=0) == pytest.approx((10.0 + 4 * 0.5, 20.0 + 2 * 0.5))
    identity = sitk.AffineTransform(2)
    shifted = sitk.TranslationTransform(2, (3.0, 4.0))
    np.testing.assert_allclose(reg.target_registration_error(identity, identity, points), 0.0)
    np.testing.assert_allclose(reg.target_registration_error(shifted, identity, points), 5.0)
    assert reg.grid_points_in_mask(mask * 0, 1.0).shape == (0, 2)


def test_dice():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert reg.dice(a, b) == pytest.approx(0.5)
    assert reg.dice(a, a) == 1.0
    assert reg.dice(a, ~a) == 0.0
    with pytest.raises(ValueError, match="empty"):
        reg.dice(np.zeros(3, bool), np.zeros(3, bool))
    with pytest.raises(ValueError, match="same shape"):
        reg.dice(a, b[:2])


# ----------------------------------------------------------------------------------------------
# (c) control points


def _known_affine() -> sitk.AffineTransform:
    return reg.matrix_to_affine(np.array([[0.97, -0.14, 12.5], [0.11, 1.04, -7.25]]))


def test_control_points_recover_known_affine_exactly():
    rng = np.random.default_rng(8)
    truth = _known_affine()
    for n in (3, 12):
        fixed = rng.uniform(0, 40, size=(n, 2))
        moving = reg.apply_transform(truth, fixed)
        tx, residuals = reg.affine_from_control_points(moving, fixed)
        np.testing.assert_allclose(reg.affine_to_matrix(tx), reg.affine_to_matrix(truth), atol=1e-9)
        assert residuals.shape == (n,)
        assert residuals.max() < 1e-9


def test_control_points_report_residuals_of_noisy_points():
    rng = np.random.default_rng(9)
    truth = _known_affine()
    fixed = rng.uniform(0, 40, size=(30, 2))
    moving = reg.apply_transform(truth, fixed) + rng.normal(0.0, 0.1, size=(30, 2))
    tx, residuals = reg.affine_from_control_points(moving, fixed)
    assert np.all(residuals > 0)
    rms = float(np.sqrt(np.mean(residuals**2)))
    # least squares with 6 parameters: expected RMS = 0.1 * sqrt(2 * (30 - 3) / 30) mm
    assert rms == pytest.approx(0.1 * math.sqrt(2 * 27 / 30), rel=0.35)
    error = reg.target_registration_error(tx, truth, fixed)
    assert error.mean() < 0.1


def test_control_points_degenerate_cases():
    line = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    good = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 2.0]])
    with pytest.raises(reg.ControlPointError, match="fixed control points are collinear"):
        reg.affine_from_control_points(good, line)
    with pytest.raises(reg.ControlPointError, match="moving control points are collinear"):
        reg.affine_from_control_points(line, good)
    with pytest.raises(reg.ControlPointError, match="at least 3"):
        reg.affine_from_control_points(good[:2], good[:2])
    with pytest.raises(reg.ControlPointError, match="differ in length"):
        reg.affine_from_control_points(good, good[:3])
    with pytest.raises(reg.ControlPointError, match="non-finite"):
        reg.affine_from_control_points(good * np.nan, good)


def test_read_control_points_units(tmp_path: Path):
    mm = tmp_path / "mm.csv"
    mm.write_text(
        "label,fixed_x_mm,fixed_y_mm,moving_x_mm,moving_y_mm,comment\n"
        "genu,1.5,2.0,10.0,20.0,first\n\n"
        ",3.0,4.5,11.0,21.0,\n"
    )
    points = reg.read_control_points(mm)
    np.testing.assert_allclose(points.fixed_mm, [[1.5, 2.0], [3.0, 4.5]])
    np.testing.assert_allclose(points.moving_mm, [[10.0, 20.0], [11.0, 21.0]])
    assert points.labels == ("genu", "2")
    mixed = tmp_path / "px.csv"
    mixed.write_text("fixed_x_px,fixed_y_px,moving_x_um,moving_y_um\n10,20,1500,250\n")
    converted = reg.read_control_points(
        mixed, fixed_spacing_mm=(0.00375, 0.004), fixed_origin_mm=(0.1, 0.2)
    )
    np.testing.assert_allclose(converted.fixed_mm, [[0.1 + 10 * 0.00375, 0.2 + 20 * 0.004]])
    np.testing.assert_allclose(converted.moving_mm, [[1.5, 0.25]])
    with pytest.raises(reg.ControlPointError, match="pass fixed_spacing_mm"):
        reg.read_control_points(mixed)


def test_read_control_points_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "fixed_x_mm,fixed_y_mm,moving_x_mm,moving_y_mm\n1,2,3,4\n1,2,three,4\n",
        encoding="utf-8",
    )
    with pytest.raises(reg.ControlPointError, match=r"bad\.csv, line 3: column 'moving_x_mm'"):
        reg.read_control_points(bad)
    short = tmp_path / "short.csv"
    short.write_text("fixed_x_mm,fixed_y_mm,moving_x_mm,moving_y_mm\n1,2,3\n")
    with pytest.raises(reg.ControlPointError, match=r"short\.csv, line 2: 3 fields"):
        reg.read_control_points(short)
    missing = tmp_path / "missing.csv"
    missing.write_text("fixed_x_mm,fixed_y_mm,mx,my\n1,2,3,4\n")
    with pytest.raises(reg.ControlPointError, match="no moving coordinate columns"):
        reg.read_control_points(missing)
    both = tmp_path / "both.csv"
    both.write_text("fixed_x_mm,fixed_y_mm,fixed_x_px,fixed_y_px,moving_x_mm,moving_y_mm\n")
    with pytest.raises(reg.ControlPointError, match="several units"):
        reg.read_control_points(both)
    empty = tmp_path / "empty.csv"
    empty.write_text("fixed_x_mm,fixed_y_mm,moving_x_mm,moving_y_mm\n")
    with pytest.raises(reg.ControlPointError, match="no control point rows"):
        reg.read_control_points(empty)
    with pytest.raises(reg.ControlPointError, match="does not exist"):
        reg.read_control_points(tmp_path / "nope.csv")


def test_control_points_from_csv_fit(tmp_path: Path):
    truth = _known_affine()
    fixed = np.array([[1.0, 1.0], [30.0, 2.0], [5.0, 25.0], [28.0, 27.0]])
    moving = reg.apply_transform(truth, fixed)
    rows = "\n".join(
        ",".join(repr(float(v)) for v in (*f, *m)) for f, m in zip(fixed, moving, strict=True)
    )
    path = tmp_path / "points.csv"
    path.write_text(f"fixed_x_mm,fixed_y_mm,moving_x_mm,moving_y_mm\n{rows}\n")
    points = reg.read_control_points(path)
    tx, residuals = reg.affine_from_control_points(points.moving_mm, points.fixed_mm)
    np.testing.assert_allclose(reg.affine_to_matrix(tx), reg.affine_to_matrix(truth), atol=1e-9)
    assert residuals.max() < 1e-9


# ----------------------------------------------------------------------------------------------
# QC figure


def test_qc_figure(
    synthetic: SyntheticPair, synthetic_result: reg.RegistrationResult, tmp_path: Path
):
    fixed = sitk.GetArrayFromImage(synthetic.fixed)
    before = sitk.GetArrayFromImage(
        reg.resample_moving(synthetic.mri, synthetic.fixed, synthetic_result.initial_transform)
    )
    after = sitk.GetArrayFromImage(
        reg.resample_moving(synthetic.mri, synthetic.fixed, synthetic_result.transform)
    )
    fig = registration_qc_figure(
        fixed,
        before,
        after,
        spacing_mm=(0.25, 0.25),
        title="synthetic",
        notes="Dice 0.80 -> 0.98",
        max_size=400,
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    out = tmp_path / "qc.png"
    fig.savefig(out)
    assert out.stat().st_size > 10_000
    board = checkerboard(np.zeros((4, 4)), np.ones((4, 4)), squares=2)
    np.testing.assert_array_equal(board[:2, :2], 0)
    np.testing.assert_array_equal(board[:2, 2:], 1)
    with pytest.raises(ValueError, match="one shape"):
        registration_qc_figure(fixed, before[:10], after)
