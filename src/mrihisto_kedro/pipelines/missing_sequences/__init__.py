"""missing_sequences: seed 002 (DCGAN, pix2pix, CycleGAN, style refinement) on ICBM152 T1/T2."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
