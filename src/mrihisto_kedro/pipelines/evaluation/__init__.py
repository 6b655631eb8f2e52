"""evaluation pipeline: metric tables and synthetic whole slides of the trained experiments."""

from .pipeline import create_msi_evaluation, create_pipeline

__all__ = ["create_msi_evaluation", "create_pipeline"]
