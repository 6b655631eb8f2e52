r"""inference pipeline: one command from a trained model and a new MRI to a synthetic slide::

    kedro run --pipeline=inference \
        --params="inference_mri=t1.nii.gz,inference.new_slice.slice_index=90"

``inference_generator`` picks the model (default: ``data/06_models/tiles_256/generator.pt``),
``inference_output`` the TIFF (default: ``data/07_model_output/inference/synthetic.svs``).
The file paths are runtime parameters used by the catalog (``${runtime_params:...}``).
"""

from kedro.pipeline import Node, Pipeline

from .nodes import synthesise_new_slide, translate_new_volume


def create_pipeline(**kwargs) -> Pipeline:
    """A single node; registered alone (not part of the default run)."""
    return Pipeline(
        [
            Node(
                synthesise_new_slide,
                ["inference_generator", "inference_mri", "params:inference"],
                "inference_slide",
                name="synthesise_new_slide",
            )
        ]
    )


def create_volume_pipeline(**kwargs) -> Pipeline:
    """An MRI -> MRI generator (``t1_to_t2``, ``t1_to_t2_pix2pix``) on a whole new volume::

        kedro run --pipeline=inference_volume --params="inference_volume_mri=t1.nii.gz"

    ``inference_volume_generator`` picks the model (default
    ``data/06_models/t1_to_t2/generator.pt``), ``inference_volume_output`` the NIfTI written
    on the input's grid (default ``data/07_model_output/inference/synthetic_t2.nii.gz``).
    """
    return Pipeline(
        [
            Node(
                translate_new_volume,
                [
                    "inference_volume_generator",
                    "inference_volume_mri",
                    "params:inference_volume",
                ],
                "inference_volume_output",
                name="translate_new_volume",
            )
        ]
    )
