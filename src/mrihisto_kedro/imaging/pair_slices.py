"""The MRI slice of each histology/MRI pair of a manifest, normalised to [0, 1] (no Kedro).

Each row of a validated pairs table (``pair_id, mri, plane, slice_index`` and optionally
``mri_volume``, the volume of a 4-D file) names one slice; every MRI file is read once however
many pairs cut it, and each slice keeps its in-plane spacing in mm
(:func:`mrihisto_kedro.imaging.mri.normalised_slice`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.mri import MriNormalisation, Plane, normalised_slice

__all__ = ["pair_mri_slices"]


def pair_mri_slices(
    pairs: pd.DataFrame,
    mri_volumes: Mapping[str, Callable[[], sitk.Image]],
    normalisation: MriNormalisation,
) -> dict[str, sitk.Image]:
    """Extract and normalise the MRI slice of every pair.

    Args:
        pairs: one row per pair with ``pair_id``, ``mri`` (a key of ``mri_volumes``),
            ``plane`` (``sagittal|coronal|axial``), ``slice_index`` and optionally
            ``mri_volume`` (0-based volume of a 4-D file; 0 when absent).
        mri_volumes: ``{file name: loader}``; each loader is called at most once.
        normalisation: percentiles mapped to 0 and 1.

    Returns:
        ``{pair_id: float32 2-D image in [0, 1]}`` with spacing in mm, in the rows' order.

    Raises:
        ValueError: an unknown plane, an index out of range or a constant slice.
    """
    volumes: dict[str, sitk.Image] = {}
    out: dict[str, sitk.Image] = {}
    for row in pairs.to_dict("records"):
        name = str(row["mri"])
        if name not in volumes:
            volumes[name] = mri_volumes[name]()
        out[str(row["pair_id"])] = normalised_slice(
            volumes[name],
            Plane(row["plane"]),
            int(row["slice_index"]),
            normalisation,
            volume_index=int(row.get("mri_volume", 0)),
        )
    return out
