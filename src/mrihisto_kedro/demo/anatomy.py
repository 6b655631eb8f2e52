"""Real anatomy for the demo: the ICBM152 template and ex-vivo "specimen blocks" cut from it.

The template is the skull-stripped ICBM152 2009a T1 template (1 mm isotropic, intensities scaled to
``[0, 1]``) and its grey/white matter probability maps, which ship inside the ``nilearn`` package
(no download). They are converted to ``SimpleITK`` images in ITK's LPS physical space, keeping the
NIfTI affine (NIfTI stores RAS, so the first two rows of the affine change sign).

A specimen block is a box of the template around the corpus callosum, like the post-mortem tissue
blocks of the reproduced paper: a lateral slab left or right of the midline (``thickness_mm``
wide, starting ``lateral_offset_mm`` from the midline) and a sagittal window of roughly
90 mm (superior-inferior) x 120 mm (anterior-posterior). Its sub-volumes keep the template's
physical origin, spacing (1 mm) and direction, so a block written as NIfTI lies where it lay in
the template.

Coordinates in this module are MNI (RAS) millimetres unless a name says ``lps``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.params import Params, Range, fail

#: MNI (RAS) position in mm around which specimen blocks are centred by default: the middle of the
#: corpus callosum's sagittal profile (genu at y ~ +32, splenium at y ~ -40, body at z ~ +20).
CORPUS_CALLOSUM_CENTRE_MM: tuple[float, float, float] = (0.0, -6.0, 15.0)

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


class Hemisphere(StrEnum):
    """Side of the midline a specimen block comes from."""

    LEFT = "left"
    RIGHT = "right"


@dataclass(frozen=True)
class Icbm152:
    """The ICBM152 2009a template as ``SimpleITK`` images (LPS physical space, 1 mm voxels).

    All three images share one grid: size ``(197, 233, 189)`` voxels ``(x, y, z)``, spacing
    ``(1, 1, 1)`` mm, direction ``diag(-1, -1, 1)`` (voxel ``i`` runs to the patient's right,
    ``j`` anterior, ``k`` superior). Treat them as read-only: they are cached and shared.

    Attributes:
        t1: skull-stripped T1 intensities, float32 in ``[0, 1]`` (0 outside the brain).
        gm: grey-matter probability, float32 in ``[0, 1]``.
        wm: white-matter probability, float32 in ``[0, 1]``.
    """

    t1: sitk.Image
    gm: sitk.Image
    wm: sitk.Image


def nifti_to_sitk(image: nib.spatialimages.SpatialImage) -> sitk.Image:
    """Convert a 3-D nibabel image to a float32 ``SimpleITK`` image, keeping its affine.

    NIfTI affines map voxel indices to RAS millimetres, ITK to LPS: the first two rows of the
    affine are negated, then split into spacing (column norms), direction (normalised columns) and
    origin (translation). The result is what ``sitk.ReadImage`` returns for the same file.

    Args:
        image: 3-D nibabel image with voxel array of shape ``(I, J, K)``.

    Returns:
        ``SimpleITK`` image of size ``(I, J, K)``, float32 pixels (scaled values, as
        ``get_fdata``), spacing in mm, LPS origin and direction.

    Raises:
        ValueError: the image is not 3-D or its affine is singular.
    """
    if len(image.shape) != 3:
        raise ValueError(f"expected a 3-D image, got shape {image.shape}")
    affine = _RAS_TO_LPS @ np.asarray(image.affine, dtype=float)[:3, :]
    linear = affine[:, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(linear)) < 1e-12:
        raise ValueError(f"singular affine {image.affine.tolist()}")
    direction = linear / spacing
    data = np.asarray(image.get_fdata(dtype=np.float32), dtype=np.float32)
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    out.SetSpacing([float(s) for s in spacing])
    out.SetOrigin([float(o) for o in affine[:, 3]])
    out.SetDirection([float(d) for d in direction.ravel()])
    return out


@functools.lru_cache(maxsize=1)
def load_icbm152() -> Icbm152:
    """Load the ICBM152 T1, GM and WM templates shipped with nilearn (offline, cached).

    Returns:
        :class:`Icbm152` with three float32 images on one 1 mm grid (about 35 MB each).
    """
    from nilearn import datasets

    return Icbm152(
        t1=nifti_to_sitk(datasets.load_mni152_template(resolution=1)),
        gm=nifti_to_sitk(datasets.load_mni152_gm_template(resolution=1)),
        wm=nifti_to_sitk(datasets.load_mni152_wm_template(resolution=1)),
    )


@dataclass(frozen=True)
class BlockGeometry(Params):
    """Where a specimen block is cut from the template (MNI/RAS millimetres).

    Attributes:
        hemisphere: side of the midline.
        lateral_offset_mm: distance of the block's medial face from the midline, >= 0.
        thickness_mm: lateral (left-right) extent of the block, > 0.
        centre_ap_mm: MNI ``y`` of the block centre (anterior positive).
        centre_si_mm: MNI ``z`` of the block centre (superior positive).
        length_ap_mm: anterior-posterior extent, > 0.
        height_si_mm: superior-inferior extent, > 0.
        outline_exponent: the block is trimmed, identically on every sagittal slice, to the
            superellipse ``|u|**p + |v|**p <= r(phi)**p`` inscribed in its sagittal window
            (``u``, ``v`` in ``[-1, 1]``, ``p`` this exponent), as a hand-cut block has rounded
            corners; ``None`` keeps the full box.
        outline_harmonics: Fourier coefficients ``(a2, b2, a3, b3, ...)`` of the outline radius
            ``r(phi) = 1 + sum_n a_n cos(n phi) + b_n sin(n phi)``, ``n = 2, 3, ...``.
    """

    hemisphere: Hemisphere
    lateral_offset_mm: Annotated[float, Range(ge=0.0)]
    thickness_mm: Annotated[float, Range(gt=0.0)]
    centre_ap_mm: float = CORPUS_CALLOSUM_CENTRE_MM[1]
    centre_si_mm: float = CORPUS_CALLOSUM_CENTRE_MM[2]
    length_ap_mm: Annotated[float, Range(gt=0.0)] = 120.0
    height_si_mm: Annotated[float, Range(gt=0.0)] = 90.0
    outline_exponent: Annotated[float, Range(ge=1.0)] | None = 4.0
    outline_harmonics: tuple[float, ...] = ()

    def validate(self) -> None:
        """The outline harmonics come in ``(a_n, b_n)`` pairs."""
        if len(self.outline_harmonics) % 2:
            fail(
                "outline_harmonics",
                f"needs (a_n, b_n) pairs: an even number of values, got "
                f"{len(self.outline_harmonics)}",
            )

    def ras_bounds(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """``((x_min, x_max), (y_min, y_max), (z_min, z_max))`` of the block in MNI mm."""
        if self.hemisphere is Hemisphere.RIGHT:
            x = (self.lateral_offset_mm, self.lateral_offset_mm + self.thickness_mm)
        else:
            x = (-self.lateral_offset_mm - self.thickness_mm, -self.lateral_offset_mm)
        y = (self.centre_ap_mm - self.length_ap_mm / 2, self.centre_ap_mm + self.length_ap_mm / 2)
        z = (self.centre_si_mm - self.height_si_mm / 2, self.centre_si_mm + self.height_si_mm / 2)
        return x, y, z


@dataclass(frozen=True)
class SpecimenBlock:
    """A tissue block cut from the template: T1 volume plus tissue maps on the same grid.

    All three images have the same size ``(X, Y, Z)`` voxels (``X`` lateral, about
    ``thickness_mm``), 1 mm spacing, the template's direction and their true physical origin.

    Attributes:
        geometry: the box that was cut.
        t1: T1 intensities, float32 in ``[0, 1]``; 0 outside the brain.
        gm: grey-matter probability restricted to the brain (0 where ``t1 == 0``), float32.
        wm: white-matter probability restricted to the brain, float32; ``gm + wm <= 1``.
    """

    geometry: BlockGeometry
    t1: sitk.Image
    gm: sitk.Image
    wm: sitk.Image


def _index_range(
    image: sitk.Image, axis: int, lo_lps: np.ndarray, hi_lps: np.ndarray
) -> tuple[int, int]:
    """Voxel index range ``[start, stop)`` along ``axis`` whose centres lie in the physical box."""
    a = image.TransformPhysicalPointToContinuousIndex([float(v) for v in lo_lps])[axis]
    b = image.TransformPhysicalPointToContinuousIndex([float(v) for v in hi_lps])[axis]
    start = int(np.ceil(min(a, b) - 1e-6))
    stop = int(np.floor(max(a, b) + 1e-6)) + 1
    return start, stop


def cut_block(template: Icbm152, geometry: BlockGeometry) -> SpecimenBlock:
    """Cut one specimen block out of the template.

    Voxels whose centres lie inside the geometry's box (bounds inclusive) are kept, so a 12 mm
    thick block has 13 voxels across at 1 mm.

    Args:
        template: the loaded template (:func:`load_icbm152`).
        geometry: the box in MNI mm.

    Returns:
        The block's sub-volumes (copies; the template is not modified).

    Raises:
        ValueError: the box leaves the template's field of view or is thinner than two voxels.
    """
    (x0, x1), (y0, y1), (z0, z1) = geometry.ras_bounds()
    lo = _RAS_TO_LPS @ np.array([x0, y0, z0])
    hi = _RAS_TO_LPS @ np.array([x1, y1, z1])
    size = template.t1.GetSize()
    ranges = []
    for axis in range(3):
        start, stop = _index_range(template.t1, axis, lo, hi)
        if start < 0 or stop > size[axis]:
            raise ValueError(
                f"block {geometry} leaves the template along voxel axis {axis}: "
                f"[{start}, {stop}) not within [0, {size[axis]})"
            )
        if stop - start < 2:
            raise ValueError(f"block {geometry} is thinner than two voxels along axis {axis}")
        ranges.append(slice(start, stop))
    sx, sy, sz = ranges
    t1 = sitk.Cast(template.t1[sx, sy, sz], sitk.sitkFloat32)
    t1_arr = sitk.GetArrayFromImage(t1)  # (Z, Y, X)
    t1_arr *= _outline_mask(geometry, t1_arr.shape[0], t1_arr.shape[1])[:, :, None]
    t1 = _like(t1, t1_arr)
    brain = t1_arr > 0
    gm_arr = np.where(brain, sitk.GetArrayFromImage(template.gm[sx, sy, sz]), 0.0)
    wm_arr = np.where(brain, sitk.GetArrayFromImage(template.wm[sx, sy, sz]), 0.0)
    total = gm_arr + wm_arr
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0)
    gm = _like(t1, (gm_arr * scale).astype(np.float32))
    wm = _like(t1, (wm_arr * scale).astype(np.float32))
    return SpecimenBlock(geometry=geometry, t1=t1, gm=gm, wm=wm)


def resample_block(block: SpecimenBlock, spacing_mm: float) -> SpecimenBlock:
    """``block`` on an isotropic grid of ``spacing_mm`` (e.g. paper 000's 0.4 mm MRI).

    Linear interpolation of the T1 and of both tissue maps; the first voxel's centre, the
    direction and the physical extent (to within one new voxel) are kept, so the block's mm
    coordinates do not move. Resampling adds grid points, not anatomy: the template's detail is
    still that of its 1 mm voxels.

    Raises:
        ValueError: ``spacing_mm`` not positive.
    """
    if not spacing_mm > 0:
        raise ValueError(f"spacing_mm must be > 0, got {spacing_mm}")
    old_spacing = np.array(block.t1.GetSpacing())
    old_size = np.array(block.t1.GetSize())
    extent = (old_size - 1) * old_spacing
    size = [int(n) for n in np.floor(extent / spacing_mm + 1e-6).astype(int) + 1]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing((float(spacing_mm),) * 3)
    reference.SetOrigin(block.t1.GetOrigin())
    reference.SetDirection(block.t1.GetDirection())

    def resample(image: sitk.Image) -> sitk.Image:
        out = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
        return sitk.Cast(out, sitk.sitkFloat32)

    return SpecimenBlock(
        geometry=block.geometry, t1=resample(block.t1), gm=resample(block.gm), wm=resample(block.wm)
    )


def _outline_mask(geometry: BlockGeometry, n_si: int, n_ap: int) -> np.ndarray:
    """Sagittal trimming mask of shape ``(n_si, n_ap)`` (float32 0/1) for the block's outline."""
    if geometry.outline_exponent is None:
        return np.ones((n_si, n_ap), dtype=np.float32)
    v = np.linspace(-1.0, 1.0, n_si)[:, None]
    u = np.linspace(-1.0, 1.0, n_ap)[None, :]
    phi = np.arctan2(v, u)
    radius = np.ones_like(phi)
    coeffs = geometry.outline_harmonics
    for n, (a, b) in enumerate(zip(coeffs[0::2], coeffs[1::2], strict=True), start=2):
        radius += a * np.cos(n * phi) + b * np.sin(n * phi)
    p = geometry.outline_exponent
    inside = np.abs(u) ** p + np.abs(v) ** p <= np.maximum(radius, 0.0) ** p
    return inside.astype(np.float32)


def _like(reference: sitk.Image, array: np.ndarray) -> sitk.Image:
    """``array`` (``(Z, Y, X)`` order) as an image with ``reference``'s geometry."""
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(reference)
    return out


def specimen_layout(
    n_specimens: int,
    rngs: Sequence[np.random.Generator] | None = None,
    *,
    thickness_mm: float = 12.0,
    min_lateral_offset_mm: float = 1.0,
    max_lateral_offset_mm: float = 19.0,
    length_ap_mm: float = 120.0,
    height_si_mm: float = 90.0,
    size_jitter_mm: float = 5.0,
    centre_jitter_mm: float = 4.0,
    outline_exponent: float | None = 4.0,
    outline_jitter: float = 0.03,
) -> list[BlockGeometry]:
    """Geometries of ``n_specimens`` blocks, alternating right/left, at different lateral offsets.

    Specimen ``k`` (0-based) is in the right hemisphere when ``k`` is even, left when odd; the
    ``m``-th block of a hemisphere starts at an offset evenly spaced between
    ``min_lateral_offset_mm`` and ``max_lateral_offset_mm``. With ``rngs`` (one generator per
    specimen; 12 uniforms are drawn from each) the sagittal window's size and centre get uniform
    jitter of ``+-size_jitter_mm`` and ``+-centre_jitter_mm`` and the outline random harmonics;
    without them the layout is the nominal one.

    Args:
        n_specimens: number of blocks, >= 1.
        rngs: optional per-specimen generators for the jitter (``n_specimens`` of them).
        thickness_mm: lateral extent of each block (mm).
        min_lateral_offset_mm: smallest distance of a medial face from the midline (mm).
        max_lateral_offset_mm: largest distance of a medial face from the midline (mm).
        length_ap_mm: nominal anterior-posterior extent (mm).
        height_si_mm: nominal superior-inferior extent (mm).
        size_jitter_mm: maximum change of each in-plane extent (mm).
        centre_jitter_mm: maximum shift of the in-plane centre (mm).
        outline_exponent: superellipse exponent of the trimmed outline (see
            :class:`BlockGeometry`), ``None`` for plain boxes.
        outline_jitter: maximum magnitude of each outline harmonic (``n = 2..5``) drawn with
            ``rngs`` (relative radius change).

    Returns:
        One :class:`BlockGeometry` per specimen.

    Raises:
        ValueError: ``n_specimens < 1``, inconsistent offsets or the wrong number of ``rngs``.
    """
    if n_specimens < 1:
        raise ValueError(f"n_specimens must be >= 1, got {n_specimens}")
    if not 0 <= min_lateral_offset_mm <= max_lateral_offset_mm:
        raise ValueError(
            "need 0 <= min_lateral_offset_mm <= max_lateral_offset_mm, got "
            f"{min_lateral_offset_mm}, {max_lateral_offset_mm}"
        )
    if rngs is not None and len(rngs) != n_specimens:
        raise ValueError(f"need {n_specimens} generators in rngs, got {len(rngs)}")
    per_side = [(n_specimens + 1) // 2, n_specimens // 2]
    geometries = []
    for k in range(n_specimens):
        side = k % 2
        m = k // 2
        count = per_side[side]
        frac = m / (count - 1) if count > 1 else 0.0
        offset = min_lateral_offset_mm + frac * (max_lateral_offset_mm - min_lateral_offset_mm)
        jitter = rngs[k].uniform(-1.0, 1.0, size=12) if rngs is not None else np.zeros(12)
        geometries.append(
            BlockGeometry(
                hemisphere=Hemisphere.RIGHT if side == 0 else Hemisphere.LEFT,
                lateral_offset_mm=float(offset),
                thickness_mm=float(thickness_mm),
                centre_ap_mm=float(CORPUS_CALLOSUM_CENTRE_MM[1] + centre_jitter_mm * jitter[0]),
                centre_si_mm=float(CORPUS_CALLOSUM_CENTRE_MM[2] + centre_jitter_mm * jitter[1]),
                length_ap_mm=float(round(length_ap_mm + size_jitter_mm * jitter[2])),
                height_si_mm=float(round(height_si_mm + size_jitter_mm * jitter[3])),
                outline_exponent=outline_exponent,
                outline_harmonics=tuple(float(outline_jitter * j) for j in jitter[4:]),
            )
        )
    return geometries
