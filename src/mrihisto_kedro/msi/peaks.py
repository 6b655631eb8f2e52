"""Spectra -> one common m/z axis -> the study's top-N peaks -> an ion image stack per specimen.

Step 1 of paper 003's MSI processing (no Kedro): every spectrum of every specimen is rebinned
onto ONE common m/z axis, all spectra summed, the top-N peaks of the study's summed spectrum
picked, and one ion image stack made per specimen for those peaks, so channel ``k`` is the same
ion in every specimen (:func:`common_peak_stacks`; :func:`pair_peak_stacks` for the pairs of a
manifest, each file opened from its loader).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.msi.geometry import msi_image
from mrihisto_kedro.msi.imzml import ImzMLReader
from mrihisto_kedro.msi.manifest import require_pairs, validate_msi_pairs
from mrihisto_kedro.msi.params import SpectraParams
from mrihisto_kedro.msi.spectra import (
    MzAxis,
    PeakList,
    ion_images,
    make_mz_axis,
    pick_peaks,
    summed_spectrum,
)

__all__ = ["MsiPeakStacks", "common_peak_stacks", "pair_peak_stacks"]


@dataclass(frozen=True)
class MsiPeakStacks:
    """Ion images of the same peaks in every specimen.

    Attributes:
        axis: the common m/z axis.
        peaks: the peaks picked on the study's summed spectrum (m/z ascending).
        summed: float64 ``(axis.n_bins,)`` the study's summed (normalised) spectrum.
        images: ``{pair_id: float32 (n_peaks, h, w)}``; ``images[p][k]`` is ``peaks.mz[k]``.
        acquired: ``{pair_id: bool (h, w)}`` pixels that have a spectrum.
        pixel_size_um: ``{pair_id: (x, y)}`` MSI pixel size in µm.
    """

    axis: MzAxis
    peaks: PeakList
    summed: np.ndarray
    images: dict[str, np.ndarray]
    acquired: dict[str, np.ndarray]
    pixel_size_um: dict[str, tuple[float, float]]

    def peak_table(self) -> pd.DataFrame:
        """One row per peak: ``peak, mz, summed_intensity`` (m/z in Da)."""
        return pd.DataFrame(
            {
                "peak": np.arange(len(self.peaks)),
                "mz": self.peaks.mz,
                "summed_intensity": self.peaks.intensity,
            }
        )

    def vector_images(self) -> dict[str, sitk.Image]:
        """``{pair_id: vector float32 image}``: one component per peak, channels last, spacing =
        the MSI pixel size in mm, origin ``(0, 0)`` (see
        :func:`~mrihisto_kedro.msi.geometry.msi_image`)."""
        return {
            pair_id: msi_image(np.moveaxis(array, 0, -1), self.pixel_size_um[pair_id])
            for pair_id, array in self.images.items()
        }


def common_peak_stacks(
    readers: Mapping[str, ImzMLReader],
    params: SpectraParams,
    pixel_size_um: Mapping[str, float] | None = None,
) -> MsiPeakStacks:
    """Rebin every specimen onto one axis, pick the study's top peaks, image them everywhere.

    Two streamed passes over each file (summing, then imaging); memory is the output stacks plus
    one spectrum.

    Args:
        readers: ``{pair_id: open reader}``.
        params: :class:`SpectraParams`.
        pixel_size_um: fallback MSI pixel size (µm, square) per pair for files that do not state
            one.

    Returns:
        :class:`MsiPeakStacks`.

    Raises:
        ValueError: no readers, or a file without a pixel size and no fallback.
    """
    if not readers:
        raise ValueError("no MSI files to process")
    sizes: dict[str, tuple[float, float]] = {}
    for pair_id, reader in readers.items():
        size = reader.pixel_size_um
        if size is None:
            fallback = (pixel_size_um or {}).get(pair_id)
            if fallback is None or not math.isfinite(float(fallback)) or float(fallback) <= 0:
                raise ValueError(
                    f"{reader.path}: the imzML file states no pixel size; give the pair's "
                    "msi_pixel_size_um in the manifest"
                )
            size = (float(fallback), float(fallback))
        sizes[pair_id] = size
    if params.mz_range is not None:
        lo, hi = params.mz_range
    else:
        ranges = [reader.mz_range for reader in readers.values()]
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    axis = make_mz_axis(lo, hi, params.bin_width, params.bin_unit)
    total = np.zeros(axis.n_bins, dtype=np.float64)
    for reader in readers.values():
        total += summed_spectrum(
            reader, axis, method=params.method, normalisation=params.normalisation
        ).total
    peaks = pick_peaks(
        total,
        axis,
        params.n_peaks,
        min_distance=params.min_distance,
        distance_unit=params.distance_unit,
        prominence=params.prominence,
    )
    images = {
        pair_id: ion_images(
            reader,
            axis,
            peaks,
            method=params.method,
            normalisation=params.normalisation,
            half_window_bins=params.half_window_bins,
        )
        for pair_id, reader in readers.items()
    }
    acquired = {pair_id: reader.acquired_mask() for pair_id, reader in readers.items()}
    return MsiPeakStacks(
        axis=axis,
        peaks=peaks,
        summed=total,
        images=images,
        acquired=acquired,
        pixel_size_um=sizes,
    )


def pair_peak_stacks(
    pairs: pd.DataFrame,
    imzml: Mapping[str, Callable[[], ImzMLReader]],
    params: SpectraParams,
) -> MsiPeakStacks:
    """:func:`common_peak_stacks` of the manifest's pairs, every file open only while it is used.

    Args:
        pairs: the MSI pairs manifest (see :func:`~mrihisto_kedro.msi.manifest.validate_msi_pairs`);
            its optional ``msi_pixel_size_um`` column (µm) is the pixel size of files that state
            none.
        imzml: ``{pair_id: callable opening the pair's imzML file}`` (e.g. the loaders of a
            partitioned dataset); every reader is closed on return.
        params: :class:`~mrihisto_kedro.msi.params.SpectraParams`.

    Returns:
        :class:`MsiPeakStacks` with one entry per pair, in manifest order.

    Raises:
        ValueError: a pair without its imzML file, or see :func:`common_peak_stacks`.
    """
    pairs = validate_msi_pairs(pairs)
    require_pairs("imzML file", pairs, imzml)
    fallback = (
        dict(zip(pairs["pair_id"], pd.to_numeric(pairs["msi_pixel_size_um"]), strict=True))
        if "msi_pixel_size_um" in pairs.columns
        else None
    )
    with contextlib.ExitStack() as stack:
        readers = {pair_id: stack.enter_context(imzml[pair_id]()) for pair_id in pairs["pair_id"]}
        return common_peak_stacks(readers, params, fallback)
