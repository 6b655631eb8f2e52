"""data_engineering: validate pairs, downsample slides, extract MRI slices, masks, QC."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
