"""msi_data_engineering pipeline: imzML + H&E -> registered 3-channel MSI -> paired tile sets.

It reads the raw inputs ``msi_pairs``, ``msi_imzml``, ``msi_histology``, ``msi_control_points``
and ``msi_ground_truth``: point them at your files in ``conf/local/catalog.yml`` (or fill
``data/01_raw/msi``) and run it alone. The default run and ``msi`` read the simulated demo
instead (``make_msi_demo`` of the demo pipeline, ``data/01_raw/demo_msi``, mapped onto these
inputs by :data:`mrihisto_kedro.pipeline_registry.DEMO_INPUTS`)::

    kedro run --pipeline=msi_data_engineering      # your data, as conf/local/catalog.yml says
    kedro run --pipeline=msi                       # the demo, then its three models
    kedro run --pipeline=msi --to-outputs=msi_to_he_black.tileset,msi_to_he_white.tileset \\
        --params="msi_data_engineering.registration.mode=intensity"

Outputs: ``msi_to_he_black.tileset`` and ``msi_to_he_white.tileset`` (read by the modelling
pipeline's ``msi_to_he_black``, ``msi_to_he_white`` and ``msi_unet`` experiments) and
``msi_registration_report`` (TRE against a known affine, in µm, when ``msi_ground_truth`` has
one). Paper 003's own whole-specimen design reads the registered pairs in the
``msi_whole_specimen`` pipeline.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from mrihisto_kedro.msi.reduction import PadColour

from .nodes import (
    assign_msi_splits,
    build_msi_tiles,
    build_peak_stacks,
    reduce_peak_stacks,
    register_msi_pairs,
)

#: padding colour -> the experiment namespace whose ``tileset`` it builds (the paper compared
#: both paddings): outputs ``msi_to_he_black.tileset`` and ``msi_to_he_white.tileset``
TILE_EXPERIMENTS: dict[PadColour, str] = {
    PadColour.BLACK: "msi_to_he_black",
    PadColour.WHITE: "msi_to_he_white",
}


def _tiles_for(colour: PadColour):  # noqa: ANN202
    """``build_msi_tiles`` with ``padding`` bound, keeping its name for Kedro and kedro-viz."""
    return update_wrapper(partial(build_msi_tiles, padding=colour), build_msi_tiles)


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
    params = ["params:msi_data_engineering.tiling"]
    node = Node(_tiles_for(colour), [*inputs, *params], "tileset", name="build_tiles")
    return Pipeline([node], namespace=experiment, inputs=set(inputs), parameters=set(params))


def create_pipeline(**kwargs) -> Pipeline:
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
