"""data_engineering: validate the pairs manifest, downsample slides, extract MRI slices, masks, QC."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
