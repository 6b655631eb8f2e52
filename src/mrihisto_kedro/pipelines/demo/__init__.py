"""demo: generate the built-in paired MRI / virtual GFAP histology dataset with known truth."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
