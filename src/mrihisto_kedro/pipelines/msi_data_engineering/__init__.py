"""msi_data_engineering: the simulated MSI/H&E demo, imzML -> peak stacks -> 3 channels ->
registration to H&E -> paired tile sets (black and white padding) for seed 003's experiments."""

from .pipeline import create_analysis_pipeline, create_demo_pipeline, create_pipeline

__all__ = ["create_analysis_pipeline", "create_demo_pipeline", "create_pipeline"]
