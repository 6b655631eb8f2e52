"""registration: affine MRI -> histology registration (intensity-based or control points)."""

from .pipeline import create_control_point_pipeline, create_pipeline

__all__ = ["create_control_point_pipeline", "create_pipeline"]
