"""Thin node of the inference pipeline."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import SimpleITK as sitk

from mrihisto_kedro.evaluation.synthesis import (
    NewSliceParams,
    SynthesisParams,
    SyntheticSlideJob,
    new_slice_input,
    stitch_options,
)
from mrihisto_kedro.params import parse_params

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceParams:
    """``inference``: the input MRI's preparation and the stitching (see the YAML file)."""

    new_slice: NewSliceParams = field(default_factory=NewSliceParams)
    synthesis: SynthesisParams = field(default_factory=lambda: SynthesisParams(window=256))


def synthesise_new_slide(
    generator: dict[str, Any], mri: sitk.Image, inference: dict[str, Any]
) -> SyntheticSlideJob:
    """Prepare a new MRI slice (or a volume's slice) and return the synthetic-slide job.

    The job is written by the ``inference_slide`` dataset (``OpenSlideDataset``): the
    generator runs window by window while the pyramidal TIFF is written in strips.
    """
    p = parse_params(InferenceParams, inference, "inference")
    source = (
        mri.GetMetaData("mrihisto_source")
        if mri.HasMetaDataKey("mrihisto_source")
        else "inference_mri"
    )
    model_input, mpp = new_slice_input(mri, p.new_slice, source)
    window = min(p.synthesis.window or 256, *model_input.shape[1:])
    logger.info(
        "inference: %s -> %dx%d px at %.2f um/px, window %d px",
        source,
        model_input.shape[2],
        model_input.shape[1],
        mpp,
        window,
    )
    return SyntheticSlideJob(
        mri=model_input,
        generator=generator,
        options=stitch_options(p.synthesis, window),
        mpp=mpp,
        device=p.synthesis.device,
        description={"Source": source},
    )
