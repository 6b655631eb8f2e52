"""data_engineering pipeline: manifest -> downsampled slides, MRI slices, tissue masks, QC."""

from collections.abc import Callable
from typing import Any

from kedro.pipeline import Node, Pipeline

from .nodes import (
    downsample_slides,
    extract_mri_slices,
    qc_figures,
    split_by_specimen,
    tissue_masks,
    validate_manifest,
)

_PARAMS = "params:data_engineering"
_PAIR_IMAGES = ["pairs_with_splits", "downsampled_slides", "mri_slices"]
_MASKS = ["slide_masks", "mri_masks"]


def _node(func: Callable[..., Any], inputs: list[str], outputs: str | list[str]) -> Node:
    """A node named after its function."""
    return Node(func, inputs, outputs, name=func.__name__)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Inputs: ``pairs``, ``slides``, ``mri_volumes``; parameters ``data_engineering``."""
    return Pipeline(
        [
            _node(
                validate_manifest, ["pairs", "slides", "mri_volumes", _PARAMS], "pairs_validated"
            ),
            _node(split_by_specimen, ["pairs_validated", _PARAMS], "pairs_with_splits"),
            _node(
                downsample_slides, ["pairs_with_splits", "slides", _PARAMS], "downsampled_slides"
            ),
            _node(extract_mri_slices, ["pairs_with_splits", "mri_volumes", _PARAMS], "mri_slices"),
            _node(tissue_masks, [*_PAIR_IMAGES, _PARAMS], [*_MASKS, "data_engineering_report"]),
            _node(qc_figures, [*_PAIR_IMAGES, *_MASKS, _PARAMS], "data_engineering_qc"),
        ]
    )
