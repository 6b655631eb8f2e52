"""Evaluation of trained translation models: per-tile metrics, set metrics, report tables.

Library code (no Kedro imports), usable from a notebook:

- :mod:`mrihisto_kedro.evaluation.tiles`: run a generator over a tile set and measure every tile
  (L1, PSNR, SSIM, MI, LPIPS) and every set (FID, KID) against the target and the input.
- :mod:`mrihisto_kedro.evaluation.table`: the long metric table with bootstrap intervals over
  slides, and its markdown rendering (Table 1 of paper 000, the MI/SSIM table of paper 003).
"""
