"""Thin nodes of the inference pipelines: a new MRI slice -> a slide, a new volume -> a volume."""

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
from mrihisto_kedro.evaluation.volume_translation import NewVolumeParams, translate_volume
from mrihisto_kedro.imaging.input_spec import generator_input_spec
from mrihisto_kedro.nn.generators import size_multiple
from mrihisto_kedro.nn.inference import load_predictor
from mrihisto_kedro.params import Params, parse_params

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceParams(Params):
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
    spec = generator_input_spec(generator, "inference_generator")
    model_input, mpp = new_slice_input(mri, p.new_slice, source, spec)
    window = min(p.synthesis.window or 256, *model_input.shape[1:])
    h, w = model_input.shape[1:]
    logger.info("inference: %s -> %dx%d px at %.2f um/px, window %d", source, w, h, mpp, window)
    return SyntheticSlideJob(
        mri=model_input,
        generator=generator,
        options=stitch_options(p.synthesis, window),
        mpp=mpp,
        device=p.synthesis.device,
        description={"Source": source},
    )


@dataclass(frozen=True)
class VolumeInferenceParams(Params):
    """``inference_volume``: the new volume's options (the rest is in ``generator.pt``)."""

    new_volume: NewVolumeParams = field(default_factory=NewVolumeParams)


def translate_new_volume(
    generator: dict[str, Any], mri: sitk.Image, inference_volume: dict[str, Any]
) -> sitk.Image:
    """Translate a whole new MRI volume (T1 -> T2) with an MRI -> MRI generator.

    The generator file's ``input_spec`` gives the plane, pixel size, normalisation and padding;
    the output is a float32 volume in [0, 1] on the input's grid (written as NIfTI).
    """
    p = parse_params(VolumeInferenceParams, inference_volume, "inference_volume").new_volume
    spec = generator_input_spec(generator, "inference_volume_generator")
    if spec is None:
        raise ValueError(
            "inference_volume_generator records no input_spec (written before the model file "
            "stored how it was trained): retrain it with `kedro run --pipeline=modelling`"
        )
    predictor = load_predictor(generator, device=p.device)
    return translate_volume(
        mri,
        predictor,
        spec,
        output_range=tuple(generator["output_range"]),
        multiple=size_multiple(generator["architecture"]),
        batch_size=p.batch_size,
        volume_index=p.volume_index,
        source="inference_volume_mri",
    )
