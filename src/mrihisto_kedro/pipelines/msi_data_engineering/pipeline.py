"""msi_data_engineering pipeline: imzML + H&E -> registered 3-channel MSI -> paired tile sets.

``create_pipeline()`` (registered as ``msi_data_engineering``) first simulates the built-in MSI
demo (``demo_msi_*`` in ``data/01_raw/demo_msi``) and runs the analysis on it. On your own data,
point ``msi_pairs``, ``msi_imzml``, ``msi_histology`` (and ``msi_control_points``) at your files in
``conf/local/catalog.yml`` and run :func:`create_analysis_pipeline` alone, registered as
``msi_analysis`` (the demo never writes there)::

    kedro run --pipeline=msi_data_engineering
    kedro run --pipeline=msi_data_engineering \\
        --params="msi_data_engineering.registration.mode=intensity"
    kedro run --pipeline=msi_analysis          # your data, as conf/local/catalog.yml says

Outputs: ``msi_to_he_black.tileset`` and ``msi_to_he_white.tileset`` (read by the modelling
pipeline's ``msi_to_he_black``, ``msi_to_he_white`` and ``msi_unet`` experiments) and
``msi_registration_report`` (TRE against the demo's known affine, in µm). Paper 003's own
whole-specimen design reads the registered pairs in the ``msi_whole_specimen`` pipeline.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from mrihisto_kedro.msi.reduction import PadColour

from .nodes import (
    assign_msi_splits,
    build_msi_tiles,
    build_peak_stacks,
    make_msi_demo,
    reduce_peak_stacks,
    register_msi_pairs,
)

#: raw inputs of the analysis -> the demo's datasets (the demo's ground truth is its manifest)
DEMO_MSI_INPUTS: dict[str, str] = {
    "msi_pairs": "demo_msi_ground_truth",
    "msi_imzml": "demo_msi_imzml",
    "msi_histology": "demo_msi_histology",
    "msi_control_points": "demo_msi_control_points",
    "msi_ground_truth": "demo_msi_ground_truth",
}

#: padding colour -> the experiment namespace whose ``tileset`` it builds (the paper compared
#: both paddings): outputs ``msi_to_he_black.tileset`` and ``msi_to_he_white.tileset``
TILE_EXPERIMENTS: dict[PadColour, str] = {
    PadColour.BLACK: "msi_to_he_black",
    PadColour.WHITE: "msi_to_he_white",
}


def _tiles_for(colour: PadColour):  # noqa: ANN202
    """``build_msi_tiles`` with ``padding`` bound, keeping its name for Kedro and kedro-viz."""
    return update_wrapper(partial(build_msi_tiles, padding=colour), build_msi_tiles)


def create_demo_pipeline(**kwargs) -> Pipeline:
    """Simulate the paired MSI/H&E demo into ``data/01_raw/demo_msi``."""
    return Pipeline(
        [
            Node(
                make_msi_demo,
                "params:msi_data_engineering.demo",
                [
                    "demo_msi_imzml",
                    "demo_msi_histology",
                    "demo_msi_ground_truth",
                    "demo_msi_peaks",
                    "demo_msi_control_points",
                ],
                name="make_msi_demo",
            )
        ]
    )


#: the registration node's outputs, in the order ``register_msi_pairs`` returns them
REGISTRATION_OUTPUTS: list[str] = [
    "msi_registration_transforms",
    "msi_histology_grid",
    "msi_registered_black",
    "msi_registered_white",
    "msi_coverage",
    "msi_registration_report",
    "msi_registration_qc",
]


def _registration_node() -> Node:
    """Reduced MSI + H&E (+ landmarks, + known affines) -> registered pairs and their report."""
    return Node(
        register_msi_pairs,
        [
            "msi_pairs_with_splits",
            "msi_reduced",
            "msi_histology",
            "msi_control_points",
            "msi_ground_truth",
            "params:msi_data_engineering.registration",
        ],
        REGISTRATION_OUTPUTS,
        name="register_msi_pairs",
    )


def _tiles_pipeline(colour: PadColour, experiment: str) -> Pipeline:
    """``<experiment>.build_tiles``: the ``colour``-padded pairs -> ``<experiment>.tileset``."""
    pairs = ["msi_pairs_with_splits", "msi_histology_grid", f"msi_registered_{colour.value}"]
    inputs = [*pairs, "msi_coverage"]
    params = ["params:msi_data_engineering.tiling", "params:msi_data_engineering.reduction"]
    node = Node(_tiles_for(colour), [*inputs, *params], "tileset", name="build_tiles")
    return Pipeline([node], namespace=experiment, inputs=set(inputs), parameters=set(params))


def create_analysis_pipeline(**kwargs) -> Pipeline:
    """Manifest -> splits -> peak stacks -> 3 channels -> registration -> tile sets.

    Inputs: ``msi_pairs``, ``msi_imzml``, ``msi_histology``, ``msi_control_points`` (read in
    ``control_points`` mode only, but listed: the folder must exist), ``msi_ground_truth``
    (optional file).
    """
    splits = ["msi_pairs", "params:msi_data_engineering.splits"]
    spectra = ["msi_pairs_with_splits", "msi_imzml", "params:msi_data_engineering.spectra"]
    nodes = [
        Node(assign_msi_splits, splits, "msi_pairs_with_splits", name="assign_msi_splits"),
        Node(
            build_peak_stacks,
            spectra,
            ["msi_peak_stacks", "msi_peaks"],
            name="build_peak_stacks",
        ),
        Node(
            reduce_peak_stacks,
            ["msi_peak_stacks", "params:msi_data_engineering.reduction"],
            "msi_reduced",
            name="reduce_peak_stacks",
        ),
        _registration_node(),
    ]
    tiles = [_tiles_pipeline(colour, name) for colour, name in TILE_EXPERIMENTS.items()]
    return sum(tiles, start=Pipeline(nodes))


def create_pipeline(**kwargs) -> Pipeline:
    """The demo, then the analysis on it (``kedro run --pipeline=msi_data_engineering``)."""
    return create_demo_pipeline() + Pipeline(create_analysis_pipeline(), inputs=DEMO_MSI_INPUTS)
