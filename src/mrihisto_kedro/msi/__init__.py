"""Mass-spectrometry imaging (MSI): imzML reading, spectra processing, reduction to RGB.

Pure library code (no Kedro imports):

* :mod:`~mrihisto_kedro.msi.imzml`: lazy imzML/ibd reading (continuous and processed modes);
* :mod:`~mrihisto_kedro.msi.spectra`: common m/z axis, count-preserving rebinning, streamed
  summed/mean spectrum, top-N peak picking, ion-image stacks, per-pixel normalisation;
* :mod:`~mrihisto_kedro.msi.reduction`: peak stack -> 3 channels (PCA, t-SNE, UMAP) and padding
  to a histology size;
* :mod:`~mrihisto_kedro.msi.imzml_files`: an imzML/ibd pair as bytes, written durably.

Paper 003's steps for a study of several specimens (one MSI and one H&E each), one module per
step, as the ``msi_data_engineering`` pipeline's nodes call them:

* :mod:`~mrihisto_kedro.msi.params`: the parameters of every step (``msi_data_engineering.*``);
* :mod:`~mrihisto_kedro.msi.manifest`: the MSI pairs manifest and its splits by specimen;
* :mod:`~mrihisto_kedro.msi.peaks`: one common m/z axis, the study's top-N peaks, an ion image
  stack per specimen;
* :mod:`~mrihisto_kedro.msi.joint_reduction`: all specimens' stacks to 3 channels together;
* :mod:`~mrihisto_kedro.msi.geometry`: images in physical mm, the H&E's working grid;
* :mod:`~mrihisto_kedro.msi.padding`: the MSI padded black or white to the histology's extent;
* :mod:`~mrihisto_kedro.msi.registration`: affine MSI -> H&E registration (control points or
  mutual information), resampling onto the working grid;
* :mod:`~mrihisto_kedro.msi.registration_scores`: TRE against a known affine, MI before/after;
* :mod:`~mrihisto_kedro.msi.registration_study`: every pair registered and scored (the report);
* :mod:`~mrihisto_kedro.msi.tiles`: paired tiles on the shared grid of
  :func:`mrihisto_kedro.imaging.tiling.grid_tiles`;
* :mod:`~mrihisto_kedro.msi.whole_views`: paper 003's whole-specimen views.

The simulated demo is in :mod:`mrihisto_kedro.demo` (:mod:`~mrihisto_kedro.demo.msi`,
:mod:`~mrihisto_kedro.demo.msi_inputs`), its QC figures in
:mod:`mrihisto_kedro.reporting.msi_figures`.
"""

from mrihisto_kedro.msi.imzml import ImzMLMode, ImzMLReader, ImzMLReadError, Spectrum, open_imzml

__all__ = ["ImzMLMode", "ImzMLReadError", "ImzMLReader", "Spectrum", "open_imzml"]
