r"""inference pipeline: one command from a trained model and a new MRI to a synthetic slide::

    kedro run --pipeline=inference \
        --params="inference_mri=t1.nii.gz,inference.new_slice.slice_index=90"

``inference_generator`` picks the model (default: ``data/06_models/tiles_256/generator.pt``),
``inference_output`` the TIFF (default: ``data/07_model_output/inference/synthetic.svs``).
The file paths are runtime parameters used by the catalog (``${runtime_params:...}``).
"""

from kedro.pipeline import Node, Pipeline

from .nodes import synthesise_new_slide


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
