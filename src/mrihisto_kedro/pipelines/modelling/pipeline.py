"""modelling pipeline: one modular pipeline, instantiated per experiment as a Kedro namespace.

Run one experiment with one parameter overridden::

    kedro run --pipeline=modelling --namespaces=tiles_256 \
        --params="tiles_256.training.model.gan_mode=lsgan,tiles_256.training.search.n_trials=0"

(a searched key given alone is refused before any work: the search would replace it).
"""

from kedro.pipeline import Node, Pipeline

from .msi import create_msi_experiments
from .nodes import build_pair_tiles, build_volume_tiles, train_experiment

#: MRI -> histology experiments of paper 000 (tiles or whole-slide views, pix2pix)
PAIR_EXPERIMENTS = ("whole_slide_4096", "tiles_1024", "tiles_256")
_SHARED_PAIR_INPUTS = {
    "pairs_with_splits",
    "registration_report",
    "aligned_mri",
    "aligned_mri_masks",
    "downsampled_slides",
    "slide_masks",
}


def _train_node() -> Node:
    return Node(
        train_experiment,
        ["tileset", "params:training", "checkpoints"],
        ["generator", "training_history", "training_summary"],
        name="train",
    )


def _pair_experiment(name: str) -> Pipeline:
    template = Pipeline(
        [
            Node(
                build_pair_tiles,
                [
                    "pairs_with_splits",
                    "registration_report",
                    "aligned_mri",
                    "aligned_mri_masks",
                    "downsampled_slides",
                    "slide_masks",
                    "params:tiling",
                    "params:data_engineering",
                ],
                "tileset",
                name="build_tiles",
            ),
            _train_node(),
        ]
    )
    return Pipeline(
        template,
        namespace=name,
        inputs=_SHARED_PAIR_INPUTS,
        parameters={"params:data_engineering"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Every experiment: the paper's three, the U-Net baseline (on tiles_256's tiles),
    CycleGAN and pix2pix T1 -> T2 on the ICBM152 pair, and seed 003's MSI -> H&E trainings
    (grouped under the namespace ``msi_to_he``; their tile sets come from
    ``msi_data_engineering``)."""
    experiments = [_pair_experiment(name) for name in PAIR_EXPERIMENTS]
    experiments.append(
        Pipeline(
            Pipeline([_train_node()]),
            namespace="unet_baseline",
            inputs={"tileset": "tiles_256.tileset"},
        )
    )
    experiments.append(  # pix2pix T1 -> T2 (seed 002) on the same slabs as the CycleGAN
        Pipeline(
            Pipeline([_train_node()]),
            namespace="t1_to_t2_pix2pix",
            inputs={"tileset": "t1_to_t2.tileset"},
        )
    )
    experiments.append(
        Pipeline(
            Pipeline(
                [
                    Node(
                        build_volume_tiles,
                        ["icbm152_t1", "icbm152_t2", "params:tiling"],
                        "tileset",
                        name="build_tiles",
                    ),
                    _train_node(),
                ]
            ),
            namespace="t1_to_t2",
            inputs={"icbm152_t1", "icbm152_t2"},
        )
    )
    experiments.append(create_msi_experiments())
    return sum(experiments, start=Pipeline([]))
