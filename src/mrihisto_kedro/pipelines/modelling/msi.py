"""MSI -> H&E experiments of seed 003 as namespaces of the modelling pipeline.

``msi_to_he_black`` and ``msi_to_he_white`` train pix2pix (the paper's lr 2e-5 and lambda_L1 200)
on the black- and white-padded tile sets; ``msi_unet`` trains the U-Net regression baseline
(sigmoid, MSE) on the black-padded tiles (paper 003's own whole-specimen design is the separate
pipeline ``msi_whole_specimen``). The tile sets come from the ``msi_data_engineering`` pipeline;
each training is the same
:func:`~.nodes.train_experiment` node as every other experiment (an MLflow run with its
parameters, losses, samples and model).

The three are grouped under the node namespace ``msi_to_he`` so that one command runs them all,
while their datasets and parameters keep their own names (``msi_to_he_black.generator``,
``params:msi_unet.training``, ...)::

    kedro run --pipeline=msi_data_engineering
    kedro run --pipeline=modelling --namespaces=msi_to_he
    kedro run --pipeline=modelling --namespaces=msi_to_he.msi_unet \\
        --params="msi_unet.training.model.lr=0.01"
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import train_experiment

#: experiment -> the tile set it trains on (the U-Net baseline uses the black-padded tiles)
MSI_EXPERIMENTS: dict[str, str] = {
    "msi_to_he_black": "msi_to_he_black.tileset",
    "msi_to_he_white": "msi_to_he_white.tileset",
    "msi_unet": "msi_to_he_black.tileset",
}

#: the node namespace the three experiments are grouped under (``--namespaces=msi_to_he``)
MSI_GROUP = "msi_to_he"

_OUTPUTS = ("generator", "training_history", "training_summary")


def training_pipeline(name: str, tileset: str) -> Pipeline:
    """The experiment ``name`` trained on ``tileset`` (namespace ``name``: ``<name>.train``)."""
    train = Node(
        train_experiment,
        ["tileset", "params:training", "checkpoints"],
        list(_OUTPUTS),
        name="train",
    )
    return Pipeline(
        Pipeline([train]),
        namespace=name,
        inputs={"tileset": tileset} if tileset != f"{name}.tileset" else None,
    )


def create_msi_experiments(group: str | None = MSI_GROUP) -> Pipeline:
    """The three seed-003 trainings, optionally grouped under one node namespace.

    Args:
        group: outer node namespace (``msi_to_he``): nodes are ``msi_to_he.msi_to_he_black.train``
            and so on; ``None``: no grouping (nodes ``msi_to_he_black.train``, ...). Dataset and
            parameter names are the same either way.

    Returns:
        The pipeline; its free inputs are the two tile sets and the three ``training``
        parameter blocks.
    """
    experiments = sum(
        (training_pipeline(name, tileset) for name, tileset in MSI_EXPERIMENTS.items()),
        start=Pipeline([]),
    )
    if group is None:
        return experiments
    return Pipeline(
        experiments,
        namespace=group,
        inputs=set(MSI_EXPERIMENTS.values()),
        outputs={f"{name}.{out}" for name in MSI_EXPERIMENTS for out in _OUTPUTS},
        parameters={f"params:{name}.training" for name in MSI_EXPERIMENTS},
    )
