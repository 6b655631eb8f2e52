"""All specimens' peak stacks embedded together in 3 channels in [0, 1] (no Kedro).

Step 2 of paper 003's MSI processing: the peak vectors of all specimens' pixels are embedded
together (PCA, t-SNE, UMAP) and scaled together, so a colour means the same chemistry in every
specimen (a per-specimen PCA would give each specimen its own colour code and a model could not
generalise between them). The embedding is unsupervised: it sees MSI only, never the histology,
so no test-specimen H&E leaks into training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.imaging.pair_records import agreed
from mrihisto_kedro.msi.geometry import image_to_array
from mrihisto_kedro.msi.params import ReductionMethod, ReductionParams
from mrihisto_kedro.msi.reduction import reduce_to_rgb

__all__ = ["ReductionRecord", "ReductionRecordError", "reduce_images", "reduce_jointly"]

#: metadata keys of a reduced MSI image (kept by ``.mha`` files and carried by registration)
EMBEDDING_KEY = "mrihisto_embedding"
LOWER_KEY = "mrihisto_lower_percentile"
UPPER_KEY = "mrihisto_upper_percentile"


class ReductionRecordError(ValueError):
    """A reduced MSI image does not record its reduction, or the images disagree."""


@dataclass(frozen=True)
class ReductionRecord:
    """How a reduced MSI image was made, as the image itself records it.

    Steps after ``reduce_peak_stacks`` (tiling, whole views) read it from the images they are
    given, not from today's ``msi_data_engineering.reduction`` parameters, so a changed
    parameter without a re-run cannot mislabel a generator's input spec.

    Attributes:
        embedding: the embedding (``pca``, ``tsne``, ``umap``).
        lower_percentile, upper_percentile: the study-wide scaling to [0, 1] (percent).
    """

    embedding: ReductionMethod
    lower_percentile: float
    upper_percentile: float

    @classmethod
    def of(cls, params: ReductionParams) -> ReductionRecord:
        """The record of a reduction run with ``params``."""
        lower, upper = params.percentiles
        return cls(ReductionMethod(params.method), float(lower), float(upper))

    def write(self, image: sitk.Image) -> None:
        """Store the record in ``image``'s metadata."""
        image.SetMetaData(EMBEDDING_KEY, str(self.embedding))
        image.SetMetaData(LOWER_KEY, repr(self.lower_percentile))
        image.SetMetaData(UPPER_KEY, repr(self.upper_percentile))

    @classmethod
    def read(cls, image: sitk.Image, source: str) -> ReductionRecord:
        """The record stored in ``image``.

        Raises:
            ReductionRecordError: missing or invalid keys (names ``source`` and the fix).
        """
        try:
            return cls(
                ReductionMethod(image.GetMetaData(EMBEDDING_KEY)),
                float(image.GetMetaData(LOWER_KEY)),
                float(image.GetMetaData(UPPER_KEY)),
            )
        except (RuntimeError, ValueError) as exc:  # RuntimeError: SimpleITK's missing key
            raise ReductionRecordError(
                f"{source}: records no MSI reduction ({EMBEDDING_KEY!r}, {LOWER_KEY!r}, "
                f"{UPPER_KEY!r} in its metadata); it was written by an older version: re-run "
                "`kedro run --pipeline=msi_data_engineering`"
            ) from exc

    @staticmethod
    def agreed(records: Iterable[tuple[str, ReductionRecord]]) -> ReductionRecord:
        """The one record that every ``(pair_id, record)`` holds
        (:func:`~mrihisto_kedro.imaging.pair_records.agreed`).

        Raises:
            ReductionRecordError: no records, or pairs reduced differently (named, with the
                re-run of msi_data_engineering).
        """
        return agreed(
            dict(records),
            "the MSI reductions that the registered MSI images record",
            "they were not reduced together: re-run `kedro run --pipeline=msi_data_engineering`",
            describe=lambda r: (
                f"{r.embedding} scaled at percentiles ({r.lower_percentile:g}, "
                f"{r.upper_percentile:g})"
            ),
            error=ReductionRecordError,
        )


def reduce_jointly(
    stacks: Mapping[str, np.ndarray],
    params: ReductionParams,
    acquired: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Embed the pixels of all specimens together in 3 channels, scaled to [0, 1] together.

    The stacks are laid side by side in one mosaic (never-acquired pixels and the mosaic's
    filler masked out) and reduced with
    :func:`~mrihisto_kedro.msi.reduction.reduce_to_rgb`: one PCA (or t-SNE / UMAP) and one
    scaling for the whole study, so that a colour means the same ions in every specimen.

    Args:
        stacks: ``{pair_id: float (n_peaks, h, w)}`` with the same peaks in each.
        params: :class:`ReductionParams`.
        acquired: ``{pair_id: bool (h, w)}``; ``None``: pixels with any non-zero ion count.

    Returns:
        ``{pair_id: float32 (h, w, 3)}`` in [0, 1]; never-acquired pixels are 0.
    """
    if not stacks:
        raise ValueError("no peak stacks to reduce")
    keys = list(stacks)
    arrays = [np.asarray(stacks[k], dtype=np.float32) for k in keys]
    n_peaks = {a.shape[0] for a in arrays}
    if len(n_peaks) != 1 or any(a.ndim != 3 for a in arrays):
        raise ValueError(f"stacks must be (n_peaks, h, w) with one n_peaks, got {n_peaks}")
    height = max(a.shape[1] for a in arrays)
    width = sum(a.shape[2] for a in arrays)
    mosaic = np.zeros((arrays[0].shape[0], height, width), dtype=np.float32)
    mask = np.zeros((height, width), dtype=bool)
    spans = []
    left = 0
    for key, array in zip(keys, arrays, strict=True):
        _, h, w = array.shape
        mosaic[:, :h, left : left + w] = array
        used = (
            np.asarray(acquired[key], dtype=bool)
            if acquired is not None
            else np.any(array != 0, axis=0)
        )
        if used.shape != (h, w):
            raise ValueError(f"{key}: acquired mask {used.shape} differs from its stack {(h, w)}")
        mask[:h, left : left + w] = used
        spans.append((h, left, w))
        left += w
    rgb = reduce_to_rgb(
        mosaic,
        params.method,
        mask=mask,
        percentiles=params.percentiles,
        seed=params.seed,
        standardise=params.standardise,
        log_transform=params.log_transform,
        background=0.0,
        perplexity=params.perplexity,
        n_neighbors=params.n_neighbors,
        tsne_max_iter=params.tsne_max_iter,
    )
    return {
        key: np.ascontiguousarray(rgb[:h, left : left + w])
        for key, (h, left, w) in zip(keys, spans, strict=True)
    }


def reduce_images(
    stacks: Mapping[str, sitk.Image], params: ReductionParams
) -> dict[str, sitk.Image]:
    """:func:`reduce_jointly` on vector images (one component per peak), geometry kept.

    Pixels whose ion images are all zero (never acquired) are left out of the embedding and set
    to 0.

    Args:
        stacks: ``{pair_id: vector image}`` of
            :meth:`~mrihisto_kedro.msi.peaks.MsiPeakStacks.vector_images` (the same peaks in each).
        params: :class:`~mrihisto_kedro.msi.params.ReductionParams`.

    Returns:
        ``{pair_id: vector float32 image (3 components) in [0, 1]}`` with each stack's spacing,
        origin and direction and the :class:`ReductionRecord` in its metadata, in ``stacks``'
        order.
    """
    arrays = {k: np.moveaxis(image_to_array(v), -1, 0) for k, v in stacks.items()}
    out = {}
    for pair_id, rgb in reduce_jointly(arrays, params).items():
        image = sitk.GetImageFromArray(rgb.astype(np.float32), isVector=True)
        image.CopyInformation(stacks[pair_id])
        ReductionRecord.of(params).write(image)
        out[pair_id] = image
    return out
