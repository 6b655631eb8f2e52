"""Nodes of the registration pipeline, called directly on two small pairs of real anatomy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from matplotlib.figure import Figure
from registration_inputs import GRID_MPP, RegistrationInputs

from mrihisto_kedro.imaging.registration import (
    grid_points_in_mask,
    target_registration_error,
    transform_from_moving_to_fixed_affine,
)
from mrihisto_kedro.imaging.registration.study import REPORT_COLUMNS
from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipelines.registration.nodes import (
    register_pairs,
    register_pairs_from_control_points,
)

#: the shipped optimiser settings that differ from the defaults (parameters_registration.yml)
PARAMETERS = {"optimiser": {"iterations": [600], "use_masks": False}}


def _tre_mm(inputs: RegistrationInputs, pair_id: str, transform: sitk.Transform) -> float:
    """Mean distance (MRI mm) between the estimate and the truth on a 2 mm grid of tissue."""
    true = transform_from_moving_to_fixed_affine(inputs.truth[pair_id])
    points = grid_points_in_mask(inputs.slide_masks[pair_id], 2.0)
    return float(np.mean(target_registration_error(transform, true, points)))


@pytest.fixture(scope="module")
def intensity(registration_inputs: RegistrationInputs) -> tuple:
    """``register_pairs`` on both pairs with the shipped parameters."""
    return register_pairs(*registration_inputs.node_inputs(), PARAMETERS)


def test_register_pairs_recovers_the_known_affines(
    registration_inputs: RegistrationInputs, intensity: tuple
) -> None:
    transforms, aligned, aligned_masks, report, figures = intensity
    assert list(transforms) == list(aligned) == list(aligned_masks) == ["pair_a", "pair_b"]
    for pair_id, transform in transforms.items():
        assert _tre_mm(registration_inputs, pair_id, transform) < 0.2  # a tenth of a voxel
        # aligned images lie on the slide's grid (0.5 mm, pixel-centre origin of a 15x mean)
        slide = registration_inputs.slides[pair_id]
        for image in (aligned[pair_id], aligned_masks[pair_id]):
            assert image.GetSize() == (slide.width, slide.height)
            assert image.GetSpacing() == pytest.approx((GRID_MPP / 1000,) * 2)
            assert image.GetOrigin() == pytest.approx(
                registration_inputs.slide_masks[pair_id].GetOrigin(), abs=1e-6
            )
        assert aligned[pair_id].GetPixelID() == sitk.sitkFloat32
        assert aligned_masks[pair_id].GetPixelID() == sitk.sitkUInt8
    assert set(figures) == {"pair_a.png", "pair_b.png"}
    assert all(isinstance(f, Figure) and len(f.axes) == 4 for f in figures.values())
    assert figures["pair_a.png"].texts[0].get_text().startswith("pair_a\nintensity on")


def test_register_pairs_reports_one_row_per_pair(
    registration_inputs: RegistrationInputs, intensity: tuple
) -> None:
    report: pd.DataFrame = intensity[3]
    assert tuple(report.columns[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS
    assert report["pair_id"].tolist() == ["pair_a", "pair_b"]
    assert report["split"].tolist() == ["train", "test"]
    assert (report["mode"] == "intensity").all() and (report["channel"] == "optical_density").all()
    assert (report["dice_after"] > 0.95).all() and (
        report["dice_after"] > report["dice_before"]
    ).all()
    assert (report["mi_after"] > report["mi_before"]).all()
    assert (report["structure_after"] > 0.8).all() and report["converged"].all()
    assert not report["flagged"].any() and (report["flag_reason"] == "").all()
    # TRE only where the ground-truth table has the pair; in MRI pixels and micrometres
    a, b = report.set_index("pair_id").loc["pair_a"], report.set_index("pair_id").loc["pair_b"]
    assert a["tre_px"] < 0.1 and a["tre_um"] == pytest.approx(a["tre_px"] * 2000, rel=1e-6)
    assert a["tre_points"] > 100
    assert math.isnan(b["tre_px"]) and b["tre_points"] == 0
    # the mask settings of data_engineering, not its other columns
    assert b["slide_mask_threshold"] == 0.23 and b["mri_mask_method"] == "otsu"
    assert "tissue_fraction" not in report.columns
    assert (report["dice_threshold"] == 0.85).all() and (report["min_structure"] == 0.8).all()


def test_a_pair_below_the_dice_threshold_is_flagged_not_dropped(
    registration_inputs: RegistrationInputs,
) -> None:
    inputs = registration_inputs.node_inputs()
    pairs = inputs[0].iloc[:1]
    parameters = {**PARAMETERS, "scoring": {"dice_threshold": 1.0}}
    transforms, _, _, report, _ = register_pairs(pairs, *inputs[1:], parameters)
    assert list(transforms) == ["pair_a"]
    assert report["flagged"].tolist() == [True]
    assert report["flag_reason"].item().startswith("Dice after registration 0.9")
    assert report["dice_threshold"].item() == 1.0


def test_control_point_mode_fits_the_landmarks(
    registration_inputs: RegistrationInputs, tmp_path: Path
) -> None:
    landmarks = registration_inputs.control_point_loaders(tmp_path)
    transforms, aligned, _, report, figures = register_pairs_from_control_points(
        *registration_inputs.node_inputs(), landmarks, PARAMETERS
    )
    for pair_id, transform in transforms.items():  # exact clicks: the true affine
        assert _tre_mm(registration_inputs, pair_id, transform) < 1e-6
    assert (report["mode"] == "control_points").all()
    assert (report["cp_rms_mm"] < 1e-9).all() and report["converged"].all()
    assert set(figures) == {"pair_a.png", "pair_b.png"} and len(aligned) == 2


def test_control_point_mode_names_the_pairs_without_a_file(
    registration_inputs: RegistrationInputs, tmp_path: Path
) -> None:
    landmarks = registration_inputs.control_point_loaders(tmp_path)
    del landmarks["pair_b"]
    with pytest.raises(ValueError, match="no control point file for pair"):
        register_pairs_from_control_points(
            *registration_inputs.node_inputs(), landmarks, PARAMETERS
        )


@pytest.mark.parametrize(
    ("parameters", "key"),
    [
        ({"chanel": "dab"}, "'registration'"),
        ({"channel": "purple"}, "registration.channel"),
        ({"optimiser": {"stages": ["affine", "rigid"]}}, "registration.optimiser"),
        ({"max_grid_px": 10}, "max_grid_px"),
    ],
)
def test_a_bad_parameter_fails_before_any_pair_naming_its_key(
    registration_inputs: RegistrationInputs, parameters: dict, key: str
) -> None:
    inputs = list(registration_inputs.node_inputs())
    inputs[1] = {}  # no slide would be opened: the parameters fail first
    with pytest.raises((ParameterError, ValueError), match=key):
        register_pairs(*inputs, parameters)
