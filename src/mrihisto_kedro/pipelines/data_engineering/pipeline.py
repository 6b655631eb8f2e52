"""data_engineering pipeline: manifest -> downsampled slides, MRI slices, tissue masks, QC."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    downsample_slides,
    extract_mri_slices,
    qc_figures,
    split_by_specimen,
    tissue_masks,
    validate_manifest,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Inputs: ``pairs``, ``slides``, ``mri_volumes``; parameters ``data_engineering``."""
    return Pipeline(
        [
            Node(
                validate_manifest,
                ["pairs", "slides", "mri_volumes", "params:data_engineering"],
                "pairs_validated",
                name="validate_manifest",
            ),
            Node(
                split_by_specimen,
                ["pairs_validated", "params:data_engineering"],
                "pairs_with_splits",
                name="split_by_specimen",
            ),
            Node(
                downsample_slides,
                ["pairs_with_splits", "slides", "params:data_engineering"],
                "downsampled_slides",
                name="downsample_slides",
            ),
            Node(
                extract_mri_slices,
                ["pairs_with_splits", "mri_volumes", "params:data_engineering"],
                "mri_slices",
                name="extract_mri_slices",
            ),
            Node(
                tissue_masks,
                [
                    "pairs_with_splits",
                    "downsampled_slides",
                    "mri_slices",
                    "params:data_engineering",
                ],
                ["slide_masks", "mri_masks", "data_engineering_report"],
                name="tissue_masks",
            ),
            Node(
                qc_figures,
                [
                    "pairs_with_splits",
                    "downsampled_slides",
                    "mri_slices",
                    "slide_masks",
                    "mri_masks",
                    "params:data_engineering",
                ],
                "data_engineering_qc",
                name="qc_figures",
            ),
        ]
    )
