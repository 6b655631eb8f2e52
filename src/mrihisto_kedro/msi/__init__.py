"""Mass-spectrometry imaging (MSI): imzML reading, spectra processing, reduction to RGB.

Pure library code (no Kedro imports):

* :mod:`~mrihisto_kedro.msi.imzml`: lazy imzML/ibd reading (continuous and processed modes);
* :mod:`~mrihisto_kedro.msi.spectra`: common m/z axis, count-preserving rebinning, streamed
  summed/mean spectrum, top-N peak picking, ion-image stacks, per-pixel normalisation;
* :mod:`~mrihisto_kedro.msi.reduction`: peak stack -> 3 channels (PCA, t-SNE, UMAP) and padding
  to a histology size.
"""

from mrihisto_kedro.msi.imzml import ImzMLMode, ImzMLReader, ImzMLReadError, Spectrum, open_imzml

__all__ = ["ImzMLMode", "ImzMLReadError", "ImzMLReader", "Spectrum", "open_imzml"]
