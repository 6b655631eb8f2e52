"""Missing MRI sequences (seed 002): DCGAN, pix2pix and CycleGAN T2 slices, style refinement, table.

Library code for the ``missing_sequences`` pipeline (no Kedro imports), usable from a notebook.
All images here are single-channel axial slices, float32 in [0, 1], shaped ``(N, H, W)`` (the
``t1_to_t2`` tile set's slices: A = T1, B = T2, 128 x 128 px of 2 mm voxels, zero-padded).

**Methods** (:class:`Method`), each producing one T2 slice per test slice:

- ``pix2pix``, ``cyclegan``: exported T1 -> T2 generators run on the test T1 slices;
- ``dcgan``: an unconditional DCGAN trained on the T2 slices of the training split; as many
  samples as test slices, drawn with a fixed seed. A sample is *not* paired with a test slice;
- ``identity_t1`` (the T1 slice itself) and ``inverted_t1`` (``1 - T1``; by default only inside
  the head, background kept at 0: :class:`InversionKind`): the trivial baselines a T1 -> T2
  model must beat;
- ``<method>+style``: ``pix2pix``, ``cyclegan`` and ``dcgan`` refined by Gatys style transfer
  (:func:`mrihisto_kedro.nn.style_transfer.refine`): the optimised image starts from the
  generated slice; content = the input T1 slice (for the DCGAN, which has no input, the
  generated slice itself); style = one fixed real T2 slice of the *training* slab.

**Table** (:func:`sequence_table`), in the evaluation pipeline's long format: paired metrics,
in-head metrics and baseline verdicts, FID/KID, checkerboard and the DCGAN discriminator's
accuracy (:mod:`.table` describes each row).

One concept per module, the public names re-exported here:

- :mod:`.methods`: :class:`Method`, the row order, paired or not;
- :mod:`.params`: the ``missing_sequences.*`` parameter dataclasses and option enums;
- :mod:`.slices`: one split's T1/T2 slices, resizing, the head mask;
- :mod:`.dcgan_training`: the DCGAN trained on T2 slices, its samples, its discriminator;
- :mod:`.refinement`: the style slice, the VGG trunk, refinement and its objective's record;
- :mod:`.synthesis`: every method's slices (:class:`Synthesis`) and their tile-set storage;
- :mod:`.table`: the long metric table and the baseline verdicts;
- :mod:`.report`: the table, title and markdown of a stored synthesis.

The example figure is :func:`mrihisto_kedro.reporting.sequence_figures.example_figure`.
"""

from mrihisto_kedro.sequences.dcgan_training import (
    DCGANTraining,
    dcgan_outputs,
    discriminator_probabilities,
    train_sequence_dcgan,
    train_split_dcgan,
    training_split,
)
from mrihisto_kedro.sequences.methods import (
    CONDITIONAL,
    REFINABLE,
    STYLE_SUFFIX,
    Method,
    method_order,
)
from mrihisto_kedro.sequences.params import (
    DCGANTrainingParams,
    DiscriminatorNorm,
    InversionKind,
    RefinementParams,
    SequenceTableParams,
    SynthesisParams,
)
from mrihisto_kedro.sequences.refinement import (
    RefinementSetup,
    prepare_refinement,
    refine_outputs,
    refinement_markdown,
    refinement_summary,
    style_reference,
)
from mrihisto_kedro.sequences.report import SequenceReport, sequence_report
from mrihisto_kedro.sequences.slices import (
    SequenceSlices,
    head_mask,
    resize_slices,
    split_slices,
)
from mrihisto_kedro.sequences.synthesis import (
    Synthesis,
    baseline_outputs,
    synthesis_from_tileset,
    synthesis_to_tileset,
    synthesise,
    synthesise_split,
)
from mrihisto_kedro.sequences.table import IN_HEAD, sequence_table, verdicts

__all__ = [
    "CONDITIONAL",
    "IN_HEAD",
    "REFINABLE",
    "STYLE_SUFFIX",
    "DCGANTraining",
    "DCGANTrainingParams",
    "DiscriminatorNorm",
    "InversionKind",
    "Method",
    "RefinementParams",
    "RefinementSetup",
    "SequenceReport",
    "SequenceSlices",
    "SequenceTableParams",
    "Synthesis",
    "SynthesisParams",
    "baseline_outputs",
    "dcgan_outputs",
    "discriminator_probabilities",
    "head_mask",
    "method_order",
    "prepare_refinement",
    "refine_outputs",
    "refinement_markdown",
    "refinement_summary",
    "resize_slices",
    "sequence_report",
    "sequence_table",
    "split_slices",
    "style_reference",
    "synthesis_from_tileset",
    "synthesis_to_tileset",
    "synthesise",
    "synthesise_split",
    "train_sequence_dcgan",
    "train_split_dcgan",
    "training_split",
    "verdicts",
]
