"""demo: generate the built-in data with known truth: paired MRI / virtual GFAP histology, the
ICBM152 T1/T2 pair and the simulated MSI/H&E demo of seed 003."""

from .pipeline import create_mri_pipeline, create_msi_pipeline, create_pipeline

__all__ = ["create_mri_pipeline", "create_msi_pipeline", "create_pipeline"]
