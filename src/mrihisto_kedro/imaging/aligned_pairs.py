"""One registered MRI/histology pair loaded onto its downsampled grid, for tiling (no Kedro).

The registration pipeline writes, per pair, the aligned MRI slice and its coverage mask on the
downsampled histology grid; data_engineering writes the downsampled slide and its tissue mask.
:func:`aligned_pair_loaders` turns a pairs table and those per-pair partitions into one
zero-argument loader per pair that :class:`~mrihisto_kedro.imaging.tiling.PairTilesJob` calls
when it needs the pair (twice: to plan, then to cut), so one pair at a time is in memory.
:func:`recorded_pair_normalisation` reads the MRI normalisation the aligned MRI files record,
from their headers alone when given :func:`image_metadata` loaders.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.downsample import recorded_downsample
from mrihisto_kedro.imaging.level_array import LevelArray
from mrihisto_kedro.imaging.mri import (
    MriNormalisation,
    NormalisationRecordError,
    recorded_normalisation,
)
from mrihisto_kedro.imaging.pair_records import agreed
from mrihisto_kedro.imaging.sitk_io import ImageReadError
from mrihisto_kedro.imaging.slides import Slide
from mrihisto_kedro.imaging.tiling import AlignedPair

__all__ = [
    "PairLoader",
    "aligned_pair",
    "aligned_pair_loaders",
    "image_metadata",
    "level0_mpp",
    "recorded_pair_normalisation",
    "tissue_on_grid",
]

#: one partition, read when called
_Partition = Callable[[], Any]
#: a pair on its grid and its slide's level-0 microns per pixel ``(x, y)``, read when called
PairLoader = Callable[[], tuple[AlignedPair, tuple[float, float]]]


def tissue_on_grid(mask: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """``mask`` resampled (nearest neighbour) onto ``reference``'s grid, as bool ``(H, W)``."""
    resampled = sitk.Resample(
        mask, reference, sitk.Transform(2, sitk.sitkIdentity), sitk.sitkNearestNeighbor, 0
    )
    return sitk.GetArrayFromImage(resampled) != 0


def level0_mpp(slide: Slide, factor: float) -> tuple[float, float]:
    """Level-0 microns per pixel ``(x, y)`` of the slide a downsampled ``slide`` was made from.

    Raises:
        ValueError: the downsampled slide records no microns per pixel.
    """
    if slide.mpp is None:
        raise ValueError(f"downsampled slide {slide.path} records no microns per pixel")
    return (slide.mpp[0] / factor, slide.mpp[1] / factor)


def aligned_pair(
    row: Any,
    mri_loader: _Partition,
    mri_mask: _Partition,
    slide_loader: _Partition,
    slide_mask: _Partition,
) -> tuple[AlignedPair, tuple[float, float]]:
    """One registered pair on its downsampled grid, and the slide's level-0 mpp ``(x, y)``.

    ``row`` has ``pair_id``, ``specimen_id`` and ``split``. The MRI becomes float32 ``(H, W)``;
    the histology is a :class:`LevelArray` over the open downsampled slide, so tiling reads the
    windows it keeps, by region, never the whole level. Tissue is the slide's tissue mask AND
    the registered MRI's coverage, both on the MRI's grid. The downsampling factor is the one
    the slide records (:func:`~mrihisto_kedro.imaging.downsample.recorded_downsample`).
    """
    mri: sitk.Image = mri_loader()
    slide: Slide = slide_loader()
    factor = recorded_downsample(slide)
    tissue = tissue_on_grid(slide_mask(), mri) & tissue_on_grid(mri_mask(), mri)
    pair = AlignedPair(
        pair_id=row.pair_id,
        specimen_id=row.specimen_id,
        split=row.split,
        mri=np.asarray(sitk.GetArrayFromImage(mri), dtype=np.float32),
        histology=LevelArray(slide, 0),
        tissue=tissue,
        downsample=factor,
    )
    return pair, level0_mpp(slide, factor)


def aligned_pair_loaders(
    pairs: pd.DataFrame,
    aligned_mri: Mapping[str, _Partition],
    aligned_mri_masks: Mapping[str, _Partition],
    downsampled_slides: Mapping[str, _Partition],
    slide_masks: Mapping[str, _Partition],
) -> list[PairLoader]:
    """One :func:`aligned_pair` loader per row of ``pairs``, in the rows' order.

    Args:
        pairs: ``pair_id, specimen_id, split`` per pair to load.
        aligned_mri, aligned_mri_masks: ``{pair_id: loader}`` of the registered MRI slice and
            its coverage mask (SimpleITK images on the downsampled grid).
        downsampled_slides: ``{pair_id: loader}`` of the downsampled slide (a ``Slide``).
        slide_masks: ``{pair_id: loader}`` of the slide's tissue mask (a SimpleITK image).

    Raises:
        KeyError: a pair without one of its four partitions.
    """
    loaders: list[PairLoader] = []
    for row in pairs.itertuples():
        pair_id = str(row.pair_id)
        partitions = (aligned_mri, aligned_mri_masks, downsampled_slides, slide_masks)
        loaders.append(partial(aligned_pair, row, *(loads[pair_id] for loads in partitions)))
    return loaders


def image_metadata(path: str | os.PathLike[str]) -> sitk.Image:
    """The metadata dictionary of an image file, read from its header alone (no pixels).

    Returned on a 1-pixel ``uint8`` image of the file's dimension, for the readers of recorded
    keys (:func:`~mrihisto_kedro.imaging.mri.recorded_normalisation`); its size, spacing and
    pixels are not the file's. A 24 Mpx compressed float32 ``.mha``: under 1 ms, against
    0.2 s for the whole image.

    Raises:
        ImageReadError: the file is missing or its header unreadable (names the path).
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(f"{path}: unreadable image header: {exc}") from exc
    header = sitk.Image([1] * reader.GetDimension(), sitk.sitkUInt8)
    for key in reader.GetMetaDataKeys():
        header.SetMetaData(key, reader.GetMetaData(key))
    return header


def recorded_pair_normalisation(
    pairs: pd.DataFrame, aligned_mri: Mapping[str, Callable[[], sitk.Image]]
) -> MriNormalisation:
    """The MRI normalisation every pair's aligned MRI records (data_engineering's, carried over
    by registration).

    Args:
        pairs: ``pair_id`` per pair (at least one).
        aligned_mri: ``{pair_id: loader}`` of the registered MRI slices, or of their metadata
            alone (:func:`image_metadata`: no pixels read); one image in memory at a time.

    Raises:
        NormalisationRecordError: an image records no normalisation (names the pair), the
            pairs record different ones (names them), or ``pairs`` is empty; the first two say
            to re-run data_engineering and registration.
    """
    records = {
        pair_id: recorded_normalisation(aligned_mri[pair_id](), f"aligned MRI of pair {pair_id}")
        for pair_id in (str(p) for p in pairs["pair_id"])
    }
    return agreed(
        records,
        "the MRI normalisation percentiles that the aligned MRI slices record",
        "re-run `kedro run --pipeline=data_engineering` and then "
        "`kedro run --pipeline=registration`",
        describe=lambda n: f"({n.lower_percentile:g}, {n.upper_percentile:g})",
        error=NormalisationRecordError,
    )
