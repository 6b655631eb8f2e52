"""inference pipelines: a trained generator + a new MRI slice -> a synthetic whole-slide TIFF
(``inference``), or an MRI -> MRI generator + a new volume -> a NIfTI volume
(``inference_volume``)."""

from .pipeline import create_pipeline, create_volume_pipeline

__all__ = ["create_pipeline", "create_volume_pipeline"]
