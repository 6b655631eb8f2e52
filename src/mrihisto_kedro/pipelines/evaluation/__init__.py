"""evaluation pipeline: metric tables and synthetic whole slides of the trained experiments."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
