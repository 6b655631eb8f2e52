"""Synthetic whole slides: a trained generator slid over a whole aligned MRI slice.

The MRI slice lives on the (downsampled) histology grid, ``mpp`` microns per pixel. A model
trained on tiles at ``scale`` (tile pixels per grid pixel, from the tile manifest) sees the slice
resampled by ``scale``, so the synthetic slide has ``mpp / scale`` microns per pixel. Windows
overlap and are blended with a weight map (:mod:`mrihisto_kedro.imaging.stitching`); the slide is
written as a tiled pyramidal TIFF in bounded memory. The seam score
(:mod:`mrihisto_kedro.metrics.seam`) compares blended stitching with plain tiling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
from mrihisto_kedro.imaging.mri import Plane
from mrihisto_kedro.imaging.slide_image import nominal_magnification
from mrihisto_kedro.imaging.stitching import (
    StitchOptions,
    WeightKind,
    array_reader,
    stitch_to_array,
    stitch_to_tiff,
)
from mrihisto_kedro.imaging.tiff import Compression, Flavour
from mrihisto_kedro.metrics.seam import seam_score
from mrihisto_kedro.nn.inference import GeneratorPredictor, load_predictor
from mrihisto_kedro.params import Params, Range

__all__ = [
    "NewSliceParams",
    "SeamComparison",
    "SynthesisParams",
    "SyntheticSlideJob",
    "compare_seams",
    "mri_to_model_input",
    "new_slice_input",
    "stitch_options",
]


@dataclass(frozen=True)
class SynthesisParams(Params):
    """How whole slides are synthesised (``synthesis``, ``inference.synthesis``).

    Attributes:
        window: model window in pixels of the model's input grid, >= 16 (``None``: the
            experiment's tile size after scaling, i.e. what the model was trained on).
        overlap_fraction: overlap of neighbouring windows as a fraction of the window, [0, 1).
        weights: blending weight map: ``hann`` (default), ``gaussian`` or ``constant``.
        margin: context pixels fed around each window and cropped away (>= 0).
        batch_size: windows per forward pass (>= 1).
        device: ``auto`` (cuda, mps, cpu) or a torch device.
        splits: which pairs to synthesise (by their split).
        a_range: stored value range of the aligned MRI (``None``: [0, 1] for float images).
        seam_random_lines: random reference lines per axis of the seam score.
    """

    window: Annotated[int, Range(ge=16)] | None = None
    overlap_fraction: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.5
    weights: WeightKind = WeightKind.HANN
    margin: Annotated[int, Range(ge=0)] = 0
    batch_size: Annotated[int, Range(ge=1)] = 8
    device: str = "auto"
    splits: tuple[str, ...] = ("test",)
    a_range: tuple[float, float] | None = None
    seam_random_lines: int = 256


def stitch_options(params: SynthesisParams, window: int, *, blended: bool = True) -> StitchOptions:
    """Blended options from the parameters, or plain tiling (no overlap, constant weights)."""
    if not blended:
        return StitchOptions(
            window=window, overlap=0, weights=WeightKind.CONSTANT, batch_size=params.batch_size
        )
    overlap = int(round(window * params.overlap_fraction))
    return StitchOptions(
        window=window,
        overlap=min(overlap, window - 1),
        margin=params.margin,
        weights=params.weights,
        batch_size=params.batch_size,
    )


def mri_to_model_input(
    image: sitk.Image,
    scale: float | tuple[float, float],
    a_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """An aligned MRI slice as the model's input: ``(C, H', W')`` float32 in [-1, 1].

    Args:
        image: 2-D SimpleITK image (scalar or vector pixels) on the histology grid.
        scale: model pixels per grid pixel (the tile manifest's ``scale``), one number or
            ``(x, y)`` for non-square pixels; the slice is resampled by area averaging (down)
            or bilinearly (up; antialiased bilinear when one axis shrinks and the other grows)
            to ``round(H * scale_y) x round(W * scale_x)``.
        a_range: value range mapped to [-1, 1] (``None``: [0, 1]).
    """
    sx, sy = (scale, scale) if isinstance(scale, int | float) else scale
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and image.GetNumberOfComponentsPerPixel() > 1:
        arr = np.moveaxis(arr, -1, 0)
    else:
        raise ValueError(f"expected a 2-D MRI slice, got an image of size {image.GetSize()}")
    if (sx, sy) != (1.0, 1.0):
        import torch
        import torch.nn.functional as F

        h, w = arr.shape[1:]
        size = (max(1, round(h * sy)), max(1, round(w * sx)))
        t = torch.from_numpy(arr)[None]
        if sx <= 1.0 and sy <= 1.0:
            arr = F.interpolate(t, size=size, mode="area").numpy()[0]
        else:
            shrinks = sx < 1.0 or sy < 1.0
            arr = F.interpolate(t, size=size, mode="bilinear", antialias=shrinks).numpy()[0]
    lo, hi = a_range or (0.0, 1.0)
    scaled = (arr - lo) * (2.0 / (hi - lo)) - 1.0
    return np.ascontiguousarray(np.clip(np.nan_to_num(scaled, nan=-1.0), -1.0, 1.0))


@dataclass(frozen=True)
class SeamComparison:
    """Seam scores of one slide stitched with and without blending (1.0 = invisible).

    Attributes:
        plain: score of plain tiling (no overlap) at its tile borders.
        blended: score of blended stitching at the same tile-border lines of the plain grid
            and at its own window edges (the larger of the two).
        plain_image, blended_image: the two stitched outputs ``(H, W, C)`` in [0, 1].
    """

    plain: float
    blended: float
    plain_image: np.ndarray
    blended_image: np.ndarray


def _unit(out: np.ndarray, output_range: tuple[float, float]) -> np.ndarray:
    lo, hi = output_range
    return np.clip((np.moveaxis(out, 0, -1) - lo) / (hi - lo), 0.0, 1.0)


def compare_seams(
    mri: np.ndarray,
    predictor: GeneratorPredictor,
    out_channels: int,
    window: int,
    params: SynthesisParams,
    output_range: tuple[float, float] = (-1.0, 1.0),
) -> SeamComparison:
    """Stitch ``mri`` ``(C, H, W)`` in memory twice (plain, blended) and score the seams."""
    shape = mri.shape[1:]
    plain_opts = stitch_options(params, window, blended=False)
    blended_opts = stitch_options(params, window, blended=True)
    reader = array_reader(mri)
    plain = _unit(stitch_to_array(reader, predictor, shape, out_channels, plain_opts), output_range)
    blended = _unit(
        stitch_to_array(reader, predictor, shape, out_channels, blended_opts), output_range
    )
    n = params.seam_random_lines
    plain_borders = plain_opts.grid(shape).border_lines()
    own_borders = blended_opts.grid(shape).border_lines()
    blended_score = max(
        seam_score(blended, borders=plain_borders, n_random=n),
        seam_score(blended, borders=own_borders, n_random=n),
    )
    return SeamComparison(
        plain=seam_score(plain, borders=plain_borders, n_random=n),
        blended=blended_score,
        plain_image=plain,
        blended_image=blended,
    )


@dataclass
class SyntheticSlideJob:
    """A synthetic slide to be written: saved by ``OpenSlideDataset`` via :meth:`write_tiff`.

    The MRI is held in memory (it is the downsampled grid, small); the output is written in
    strips, so the TIFF can be far larger than memory when ``scale`` is large.

    Attributes:
        mri: model input ``(C, H, W)`` float32 in [-1, 1].
        generator: exported generator payload.
        options: stitching options.
        mpp: microns per pixel of the output (``None``: unknown).
        device: torch device preference.
        description: extra ImageDescription fields (e.g. experiment, pair).
    """

    mri: np.ndarray
    generator: Mapping[str, Any]
    options: StitchOptions
    mpp: float | None
    device: str = "auto"
    description: Mapping[str, str] | None = None

    def write_tiff(
        self,
        path: str | Path,
        *,
        flavour: Flavour = "aperio",
        compression: Compression = "jpeg",
        quality: int = 90,
        tile_size: int = 256,
        bigtiff: bool | None = None,
    ) -> Path:
        """Run the generator over the slice and write the pyramidal TIFF at ``path``."""
        del bigtiff  # decided by the stitching writer from the output size
        predictor = load_predictor(dict(self.generator), device=self.device)
        out_channels = int(self.generator["architecture"]["out_channels"])
        output_range = tuple(float(v) for v in self.generator.get("output_range", (-1.0, 1.0)))
        return stitch_to_tiff(
            array_reader(self.mri),
            predictor,
            self.mri.shape[1:],
            out_channels,
            Path(path),
            self.options,
            mpp=self.mpp,
            value_range=output_range,
            flavour=flavour,
            compression=compression,
            quality=quality,
            tile_size=tile_size,
            description=dict(self.description or {}),
            app_mag=nominal_magnification(self.mpp) if self.mpp is not None else None,
        )


@dataclass(frozen=True)
class NewSliceParams(Params):
    """How a user's new MRI becomes the input of a trained generator (``inference`` pipeline).

    Attributes:
        plane: ``axial``, ``coronal`` or ``sagittal`` (3-D volumes only).
        slice_index: slice of a 3-D volume (required for volumes; ignored for 2-D slices).
        normalise: scale intensities to [0, 1] by robust percentiles (raw scanner units);
            ``False`` when the slice is already in [0, 1] (e.g. an ``aligned_mri`` output).
        lower_percentile, upper_percentile: the robust percentiles.
        reference_image: optional image file whose grid (origin, spacing, size) the slice is
            resampled onto (e.g. a registered slide's mask), linear interpolation.
        transform: optional ITK transform file (e.g. a ``registration_transforms`` .tfm: grid
            mm -> MRI mm) used with ``reference_image``; identity when absent.
        model_mpp: microns per pixel (> 0) the generator was trained at, to override the one its
            file records (``None``: the file's ``input_spec``; a file without one and no
            ``model_mpp`` keeps the slice's finest pixel spacing, made square).
    Percentiles ``None`` take the generator file's (else 1 and 99.5).
    """

    plane: Plane = Plane.AXIAL
    slice_index: int | None = None
    normalise: bool = True
    lower_percentile: float | None = None
    upper_percentile: float | None = None
    reference_image: str | None = None
    transform: str | None = None
    model_mpp: Annotated[float, Range(gt=0.0)] | None = None


def new_slice_input(
    image: sitk.Image,
    params: NewSliceParams,
    source: str,
    spec: InputSpec | None = None,
) -> tuple[np.ndarray, float]:
    """A new MRI volume or slice as generator input, on a square-pixel grid.

    Both in-plane spacings are honoured: a 1.2 x 0.9375 mm slice is resampled to square pixels
    of the model's size (``params.model_mpp``, else ``spec.pixel_size_um``, else the finer of
    the two spacings), so the anatomy keeps its proportions.

    Args:
        image: 2-D slice or 3-D volume.
        params: see :class:`NewSliceParams`.
        source: the file name, for error messages.
        spec: the generator file's input spec (pixel size, percentiles, input range).

    Returns:
        ``(input (C, H, W) float32 in [-1, 1], mpp)``: microns per (square) pixel of the
        output grid.

    Raises:
        ValueError: an MRI -> MRI or MSI generator's spec, a volume without ``slice_index``, a slice
            index out of range, a reference/transform file that cannot be read (named), or a
            blank slice.
    """
    from mrihisto_kedro.imaging.mri import extract_slice, robust_normalise
    from mrihisto_kedro.imaging.sitk_io import read_image

    if spec is not None and spec.kind is InputKind.VOLUME_TO_VOLUME:
        raise ValueError(
            f"the generator for {source} translates MRI volumes (an MRI -> MRI model): run "
            "`kedro run --pipeline=inference_volume` to write a NIfTI volume instead"
        )
    if spec is not None and spec.kind is InputKind.MSI_TO_SLIDE:
        raise ValueError(
            f"the generator for {source} translates MSI embeddings ({spec.embedding}, fitted "
            "jointly on its training specimens), not MRI: it cannot be applied to an MRI slice"
        )
    if image.GetDimension() == 3:
        if params.slice_index is None:
            raise ValueError(f"{source} is a 3-D volume: give inference.new_slice.slice_index")
        try:
            image = extract_slice(image, params.plane, params.slice_index)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error
    elif image.GetDimension() != 2:
        raise ValueError(f"{source}: expected a 2-D slice or 3-D volume, got {image.GetSize()}")
    image = sitk.Cast(image, sitk.sitkFloat32)
    if params.reference_image:
        reference = read_image(params.reference_image)
        if reference.GetDimension() != 2:
            raise ValueError(f"reference image {params.reference_image} is not 2-D")
        transform = sitk.Transform(2, sitk.sitkIdentity)
        if params.transform:
            try:
                transform = sitk.ReadTransform(str(params.transform))
            except RuntimeError as error:
                raise ValueError(f"cannot read transform {params.transform}: {error}") from error
        image = sitk.Resample(image, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    if params.normalise:
        lower = params.lower_percentile
        upper = params.upper_percentile
        if lower is None:
            lower = spec.lower_percentile if spec is not None else 1.0
        if upper is None:
            upper = spec.upper_percentile if spec is not None else 99.5
        array = robust_normalise(array, lower, upper)
    if not np.isfinite(array).all() or float(np.ptp(array)) == 0.0:
        raise ValueError(f"{source}: the slice is blank or not finite after preparation")
    grid_um = (float(image.GetSpacing()[0]) * 1000.0, float(image.GetSpacing()[1]) * 1000.0)
    if params.model_mpp is not None:
        target = float(params.model_mpp)
    elif spec is not None:
        target = float(spec.pixel_size_um[0])
    else:
        target = min(grid_um)
    prepared = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    a_range = tuple(spec.input_range) if spec is not None else None
    scale = (grid_um[0] / target, grid_um[1] / target)
    return mri_to_model_input(prepared, scale, a_range), target  # type: ignore[arg-type]  # a_range: 2 floats (InputSpec checks its length)
