"""msi_data_engineering: imzML -> peak stacks -> 3 channels -> registration to H&E -> paired tile
sets (black and white padding) for seed 003's experiments, on the ``msi_*`` raw inputs."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
