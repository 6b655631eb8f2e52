"""evaluation pipeline: metric tables and synthetic whole slides of the trained experiments."""

from .pipeline import create_pipeline, measurement_pipeline

__all__ = ["measurement_pipeline", "create_pipeline"]
