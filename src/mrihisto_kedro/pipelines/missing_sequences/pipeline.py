"""missing_sequences pipeline: seed 002's missing-sequence table on the real ICBM152 T1/T2 pair.

One Kedro namespace, ``missing_sequences``, over the ``t1_to_t2`` tile set (block-split axial
slices, A = T1, B = T2) and two trained T1 -> T2 generators of the modelling pipeline
(``t1_to_t2``: CycleGAN, ``t1_to_t2_pix2pix``: pix2pix)::

    kedro run --pipeline=missing_sequences
    kedro run --pipeline=missing_sequences \\
        --params="missing_sequences.synthesis.refinement.transfer.steps=20"

Nodes: ``train_dcgan`` (T2 slices of the training split; checkpointed every epoch in
``dcgan_checkpoints``, so a killed run resumes: ``missing_sequences.dcgan.resume``) ->
``synthesise`` (every method on the test slices, with and without style refinement) -> ``table``
(long metric table, markdown, figure).
"""

from typing import Any

from kedro.pipeline import Node, Pipeline

from mrihisto_kedro.experiments import Task

from .nodes import sequence_table_node, synthesise_sequences, train_sequence_dcgan_node

#: the modelling outputs this pipeline reads
INPUTS = {
    "tileset": "t1_to_t2.tileset",
    "cyclegan_generator": "t1_to_t2.generator",
    "pix2pix_generator": "t1_to_t2_pix2pix.generator",
}


#: inputs of the ``synthesise`` and ``table`` nodes (template names, inside the namespace)
_SYNTHESIS_INPUTS = [
    "tileset",
    "pix2pix_generator",
    "cyclegan_generator",
    "dcgan",
    "params:synthesis",
]
_TABLE_INPUTS = [
    "tileset",
    "synthetic",
    "refinement_history",
    "dcgan",
    "params:table",
    "params:synthesis",
]


def create_pipeline(**kwargs: Any) -> Pipeline:
    """The ``missing_sequences`` namespace: DCGAN, synthesis with refinement, the table; its
    nodes are tagged ``mri_to_mri`` like the T1 -> T2 experiments they read."""
    template = Pipeline(
        [
            Node(
                train_sequence_dcgan_node,
                ["tileset", "params:dcgan", "dcgan_checkpoints"],
                ["dcgan", "dcgan_history"],
                name="train_dcgan",
            ),
            Node(
                synthesise_sequences,
                _SYNTHESIS_INPUTS,
                ["synthetic", "refinement_history"],
                name="synthesise",
            ),
            Node(sequence_table_node, _TABLE_INPUTS, ["table", "table_md", "figure"], name="table"),
        ]
    )
    return Pipeline(
        template, namespace="missing_sequences", inputs=INPUTS, tags=Task.MRI_TO_MRI.value
    )
