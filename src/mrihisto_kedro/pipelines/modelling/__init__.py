"""modelling: tile sets per experiment and pix2pix / CycleGAN / U-Net training tracked in MLflow."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
