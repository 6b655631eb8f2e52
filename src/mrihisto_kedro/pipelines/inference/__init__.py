"""inference pipeline: a trained generator + a new MRI slice -> a synthetic whole-slide TIFF."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
