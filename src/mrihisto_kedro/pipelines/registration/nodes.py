"""Thin nodes of the registration pipeline: parse parameters, run the study, draw its figures.

The per-pair loop, the QC verdicts and the report live in
:func:`mrihisto_kedro.imaging.registration.study.register_all`; the QC figures are drawn from the
images it returns (:func:`mrihisto_kedro.reporting.registration_figures.registration_qc_figures`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.imaging.registration.study import (
    LazyImage,
    PairSources,
    RegistrationStudy,
    RegistrationStudyParams,
    register_all,
)
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.loaders import Loader
from mrihisto_kedro.reporting.registration_figures import registration_qc_figures

__all__ = [
    "RegistrationOutputs",
    "RegistrationStudyParams",
    "register_pairs",
    "register_pairs_from_control_points",
]

#: ``(transforms, aligned_mri, aligned_mri_masks, report, qc_figures)``, keyed by pair id
#: (figures by ``<pair_id>.png``): the outputs of both nodes
RegistrationOutputs = tuple[
    dict[str, sitk.Transform],
    dict[str, LazyImage],
    dict[str, LazyImage],
    pd.DataFrame,
    dict[str, Figure],
]


def _outputs(study: RegistrationStudy) -> RegistrationOutputs:
    """The study as the nodes' five outputs, its QC figures drawn."""
    figures = registration_qc_figures(study.qc)
    return study.transforms, study.aligned_mri, study.aligned_mri_masks, study.report, figures


def register_pairs(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    slide_masks: dict[str, Loader],
    mri_masks: dict[str, Loader],
    ground_truth: pd.DataFrame,
    mask_report: pd.DataFrame,
    parameters: dict[str, Any],
) -> RegistrationOutputs:
    """Intensity-based affine registration of every pair (Mattes MI, similarity then affine).

    Returns:
        ``(transforms, aligned_mri, aligned_mri_masks, report, qc_figures)``: transforms map
        histology mm -> MRI mm; aligned images lie on the downsampled histology grid; the report
        has one row per pair (``dice_*``, ``mi_*``, ``tre_*``, ``seconds``, ``converged``,
        ``flagged`` and the mask thresholds used).
    """
    params = parse_params(RegistrationStudyParams, parameters, "registration")
    sources = PairSources(downsampled_slides, mri_slices, slide_masks, mri_masks)
    return _outputs(register_all(pairs, sources, ground_truth, mask_report, params))


def register_pairs_from_control_points(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    slide_masks: dict[str, Loader],
    mri_masks: dict[str, Loader],
    ground_truth: pd.DataFrame,
    mask_report: pd.DataFrame,
    control_points: dict[str, Loader],
    parameters: dict[str, Any],
) -> RegistrationOutputs:
    """Least-squares affine from landmark pairs (one CSV per pair id); same outputs as above."""
    params = parse_params(RegistrationStudyParams, parameters, "registration")
    sources = PairSources(downsampled_slides, mri_slices, slide_masks, mri_masks, control_points)
    return _outputs(register_all(pairs, sources, ground_truth, mask_report, params))
