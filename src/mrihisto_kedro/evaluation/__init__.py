"""Evaluation of trained translation models: per-tile metrics, set metrics, report tables.

Library code (no Kedro imports), usable from a notebook:

- :mod:`mrihisto_kedro.evaluation.experiment`: one trained generator measured on its
  experiment's tiles (:func:`~mrihisto_kedro.evaluation.experiment.evaluate_model`, its
  parameters :class:`~mrihisto_kedro.evaluation.experiment.EvaluationParams`).
- :mod:`mrihisto_kedro.evaluation.tiles`: run a generator over a tile set and measure every tile
  (L1, PSNR, SSIM, MI, LPIPS) and every set (FID, KID) against the target and the input.
- :mod:`mrihisto_kedro.evaluation.backends`: the pretrained feature networks (or why not).
- :mod:`mrihisto_kedro.evaluation.table`: the long metric table with bootstrap intervals over
  slides, and its markdown rendering.
- :mod:`mrihisto_kedro.evaluation.degenerate`: flags of a collapsed or trivial model.
- :mod:`mrihisto_kedro.evaluation.report_tables`: Table 1 of paper 000, the pix2pix-vs-U-Net
  table and paper 003's MSI tables from every experiment's rows
  (:mod:`~mrihisto_kedro.evaluation.paper003`: the paper's claim under them).
- :mod:`mrihisto_kedro.evaluation.synthesis`: a generator slid over a whole MRI slice;
  :mod:`mrihisto_kedro.evaluation.slide_synthesis`: synthetic slides of every registered pair.

MLflow logging is in :mod:`mrihisto_kedro.tracking.evaluation_runs`, figures in
:mod:`mrihisto_kedro.reporting.evaluation_figures`.
"""
