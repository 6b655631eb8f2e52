"""Paper 003's own design as an option: whole specimen views, pix2pix vs the patch U-Net."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
