"""Virtual GFAP sections: RGB DAB + haematoxylin slides rendered from MRI tissue maps (no Kedro).

A section is rendered from the grey/white matter probability maps of one MRI slice
(:class:`TissueMaps`) seen through a recorded 2-D affine (:class:`Affine2D`) that maps MRI slice
millimetres to histology level-0 millimetres:

* MRI slice pixel ``(col, row)`` lies at ``(col * spacing_x, row * spacing_y)`` mm (the convention
  of :func:`mrihisto_kedro.imaging.mri.extract_slice`);
* histology level-0 pixel ``(c, r)`` lies at ``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm;
* ``x_hist = A @ x_mri + t`` with ``A = R(rotation) @ Shear(shear) @ diag(scale_x, scale_y)``.

Appearance (Beer-Lambert optical densities, converted to RGB through a per-slide lookup table):
white glass outside the tissue; inside it a haematoxylin counterstain with scattered dark-blue
nuclei (denser in grey matter) and brown DAB: diffuse fibrillary staining and dense fibrous
astrocytes in white matter, sparse protoplasmic astrocytes in grey matter, a stronger glial band
along tissue edges (glia limitans, ventricle walls). Per-slide variation: stain vectors, stain
strengths, glass tint and a slow staining gradient (:class:`StainStyle`); the tissue outline is
slightly irregular. Cell sizes are set in level-0 pixels (a few pixels per nucleus, about 30 px per
astrocyte) so that textures are visible at any mpp; they are not to physical scale.

Rendering cost is dominated by a fixed number of vectorised float32 passes per pixel: the tissue
maps are evaluated through the inverse affine on a coarse corner grid (``coarse_factor`` level-0
pixels apart), bilinearly upsampled block by block, and combined with precomputed periodic texture
tiles (two incommensurate periods for the densest texture to hide repetition).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from mrihisto_kedro.params import Params, Range, fail

# periods (pixels) of the texture tiles: FFT-friendly, pairwise different so repeats do not line
# up.
_PERIOD_WM_ASTRO_A = 1000
_PERIOD_WM_ASTRO_B = 972  # lcm with the above: 243000 px, so the summed WM texture never repeats
_PERIOD_GM_ASTRO = 1024
_PERIOD_NUCLEI = 1008
_PERIOD_GM_NUCLEI = 960

#: µm per pixel at which the texture prototypes of :func:`_make_textures` have their real size:
#: nuclei 5.6-9.6 µm (small) and 10-16 µm (large) across, fibrous astrocytes' processes 16-32 µm
#: long, protoplasmic ones' 8-20 µm, somata about 8 µm. Rendering with ``cell_mpp`` equal to the
#: slide's mpp draws cells of real size; the miniature default demo renders at this value on
#: slides of about 17 µm per pixel, so its cells are drawn about 8.5 times their real size.
TEXTURE_MPP = 2.0

# optical density ranges of the lookup table (OD per unit stain vector).
_DAB_OD_MAX = 2.5
_HAEM_OD_MAX = 2.0

_NOMINAL_DAB = (0.268, 0.570, 0.776)  # Ruifrok & Johnston DAB OD vector (R, G, B)
_NOMINAL_HAEM = (0.650, 0.704, 0.286)  # Ruifrok & Johnston haematoxylin OD vector


@dataclass(frozen=True)
class TissueMaps:
    """Tissue probability maps of one MRI slice.

    Attributes:
        gm: grey-matter probability, float32 array ``(rows, cols)`` in ``[0, 1]``.
        wm: white-matter probability, float32 array ``(rows, cols)`` in ``[0, 1]``;
            ``1 - gm - wm`` is background (outside the specimen, ventricles, sulci).
        spacing_mm: pixel spacing ``(x, y)`` = ``(column, row)`` in mm.
    """

    gm: np.ndarray
    wm: np.ndarray
    spacing_mm: tuple[float, float]

    def __post_init__(self) -> None:
        gm = np.asarray(self.gm, dtype=np.float32)
        wm = np.asarray(self.wm, dtype=np.float32)
        if gm.ndim != 2 or gm.shape != wm.shape:
            raise ValueError(f"gm and wm must be 2-D of one shape, got {gm.shape}, {wm.shape}")
        if min(gm.shape) < 2:
            raise ValueError(f"tissue maps must be at least 2x2 pixels, got {gm.shape}")
        if len(self.spacing_mm) != 2 or min(self.spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be two positive values, got {self.spacing_mm}")
        object.__setattr__(self, "gm", np.clip(gm, 0.0, 1.0))
        object.__setattr__(self, "wm", np.clip(wm, 0.0, 1.0))
        object.__setattr__(
            self, "spacing_mm", (float(self.spacing_mm[0]), float(self.spacing_mm[1]))
        )

    @classmethod
    def from_slices(cls, gm: sitk.Image, wm: sitk.Image) -> TissueMaps:
        """Build from two 2-D slices (as returned by ``extract_slice``) of GM and WM volumes."""
        if gm.GetSize() != wm.GetSize() or gm.GetDimension() != 2:
            raise ValueError(f"need two 2-D slices of one size, got {gm.GetSize()}, {wm.GetSize()}")
        spacing = gm.GetSpacing()
        return cls(
            gm=sitk.GetArrayFromImage(gm).astype(np.float32),
            wm=sitk.GetArrayFromImage(wm).astype(np.float32),
            spacing_mm=(float(spacing[0]), float(spacing[1])),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the maps."""
        return (int(self.gm.shape[0]), int(self.gm.shape[1]))

    @property
    def tissue(self) -> np.ndarray:
        """Tissue probability ``clip(gm + wm, 0, 1)``, float32 ``(rows, cols)``."""
        return np.clip(self.gm + self.wm, 0.0, 1.0)

    def tissue_points_mm(self, threshold: float = 0.5) -> np.ndarray:
        """Physical ``(x, y)`` mm of the pixel centres with tissue probability above threshold.

        Returns:
            float64 array ``(N, 2)``.
        """
        rows, cols = np.nonzero(self.tissue > threshold)
        return np.stack([cols * self.spacing_mm[0], rows * self.spacing_mm[1]], axis=1).astype(
            np.float64
        )


@dataclass(frozen=True)
class Affine2D:
    """2-D affine map ``y = matrix @ x + translation`` (mm to mm).

    Attributes:
        matrix: linear part, ``((a11, a12), (a21, a22))``.
        translation: ``(tx, ty)`` in mm.
    """

    matrix: tuple[tuple[float, float], tuple[float, float]]
    translation: tuple[float, float]

    @classmethod
    def from_parameters(
        cls,
        rotation_deg: float = 0.0,
        scale_x: float = 1.0,
        scale_y: float = 1.0,
        shear_deg: float = 0.0,
        translation: tuple[float, float] = (0.0, 0.0),
    ) -> Affine2D:
        """``A = R(rotation) @ [[1, tan(shear)], [0, 1]] @ diag(scale_x, scale_y)``.

        The rotation turns ``+x`` towards ``+y`` (clockwise on screen, where rows run down).
        """
        theta = math.radians(rotation_deg)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        shear = np.array([[1.0, math.tan(math.radians(shear_deg))], [0.0, 1.0]])
        linear = rot @ shear @ np.diag([scale_x, scale_y])
        return cls.from_array(np.column_stack([linear, np.asarray(translation, dtype=float)]))

    @classmethod
    def from_array(cls, array: np.ndarray) -> Affine2D:
        """From a ``(2, 3)`` array ``[[a11, a12, tx], [a21, a22, ty]]``."""
        a = np.asarray(array, dtype=float)
        if a.shape != (2, 3):
            raise ValueError(f"expected a (2, 3) array, got {a.shape}")
        return cls(
            matrix=((float(a[0, 0]), float(a[0, 1])), (float(a[1, 0]), float(a[1, 1]))),
            translation=(float(a[0, 2]), float(a[1, 2])),
        )

    def as_array(self) -> np.ndarray:
        """``(2, 3)`` float64 array ``[[a11, a12, tx], [a21, a22, ty]]``."""
        return np.column_stack([np.asarray(self.matrix), np.asarray(self.translation)])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points ``(N, 2)`` (x, y mm) forward; returns ``(N, 2)`` float64."""
        p = np.asarray(points, dtype=float)
        return p @ np.asarray(self.matrix).T + np.asarray(self.translation)

    def inverse(self) -> Affine2D:
        """The inverse map."""
        inv = np.linalg.inv(np.asarray(self.matrix))
        return Affine2D.from_array(np.column_stack([inv, -inv @ np.asarray(self.translation)]))


@dataclass(frozen=True)
class SectionGeometry:
    """Where an MRI slice lands on a virtual slide.

    Attributes:
        transform: MRI slice mm -> histology level-0 mm.
        mpp: level-0 microns per pixel ``(x, y)``.
        height: level-0 height in pixels.
        width: level-0 width in pixels.
        rotation_deg: rotation of ``transform`` (degrees).
        scale_x: x scale of ``transform``.
        scale_y: y scale of ``transform``.
        shear_deg: shear angle of ``transform`` (degrees).
    """

    transform: Affine2D
    mpp: tuple[float, float]
    height: int
    width: int
    rotation_deg: float = 0.0
    scale_x: float = 1.0
    scale_y: float = 1.0
    shear_deg: float = 0.0


def plan_section_geometry(
    maps: TissueMaps,
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    max_rotation_deg: float = 15.0,
    max_scale_change: float = 0.08,
    max_shear_deg: float = 5.0,
    fill: float = 0.85,
    max_shift_fraction: float = 0.8,
) -> SectionGeometry:
    """Draw a random section placement so the tissue fills most of a ``height x width`` slide.

    Draws, in this order, rotation ``U(-max_rotation_deg, +)``, ``scale_x`` and ``scale_y``
    ``U(1 - max_scale_change, 1 + max_scale_change)``, shear ``U(-max_shear_deg, +)`` and a shift
    of the tissue's centre from the slide centre of up to ``max_shift_fraction`` of the free
    margin. The isotropic mpp (rounded to 4 decimals so it survives text metadata) is the smallest
    that makes the transformed tissue bounding box span at most ``fill`` of the slide.

    Args:
        maps: tissue maps of the MRI slice (tissue is ``gm + wm > 0.5``).
        height: level-0 height in pixels.
        width: level-0 width in pixels.
        rng: random generator.
        max_rotation_deg: rotation range in degrees.
        max_scale_change: relative scale range.
        max_shear_deg: shear range in degrees.
        fill: fraction of the slide's width or height the tissue spans, in ``(0, 1]``.
        max_shift_fraction: fraction of the free margin the tissue may be shifted, ``[0, 1]``.

    Returns:
        The geometry (transform, mpp, size, parameters).

    Raises:
        ValueError: bad sizes or ranges, or no tissue in the maps.
    """
    if height < 8 or width < 8:
        raise ValueError(f"slide must be at least 8x8 pixels, got {height}x{width}")
    if not 0.0 < fill <= 1.0:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    if not 0.0 <= max_shift_fraction <= 1.0:
        raise ValueError(f"max_shift_fraction must be in [0, 1], got {max_shift_fraction}")
    if not 0.0 <= max_scale_change < 1.0:
        raise ValueError(f"max_scale_change must be in [0, 1), got {max_scale_change}")
    points = maps.tissue_points_mm()
    if len(points) == 0:
        raise ValueError("the tissue maps contain no tissue (gm + wm > 0.5 nowhere)")
    rotation = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
    scale_x = float(rng.uniform(1.0 - max_scale_change, 1.0 + max_scale_change))
    scale_y = float(rng.uniform(1.0 - max_scale_change, 1.0 + max_scale_change))
    shear = float(rng.uniform(-max_shear_deg, max_shear_deg))
    shift = rng.uniform(-1.0, 1.0, size=2)
    linear = Affine2D.from_parameters(rotation, scale_x, scale_y, shear)
    # pixel footprints: centres +- half a pixel, so the box covers whole voxels.
    half = 0.5 * np.asarray(maps.spacing_mm)
    corners = np.concatenate([points + half * np.array(s) for s in _CORNER_SIGNS])
    mapped = linear.apply(corners)
    lo, hi = mapped.min(axis=0), mapped.max(axis=0)
    extent = hi - lo
    mpp = max(extent[0] / (fill * width), extent[1] / (fill * height)) * 1000.0
    mpp = round(math.ceil(mpp * 1e4 - 1e-6) / 1e4, 4)
    slide_mm = np.array([width, height], dtype=float) * mpp / 1000.0
    margin = np.maximum(slide_mm - extent, 0.0) / 2.0
    target_centre = slide_mm / 2.0 + shift * max_shift_fraction * margin
    translation = target_centre - (lo + hi) / 2.0
    transform = Affine2D.from_parameters(rotation, scale_x, scale_y, shear, tuple(translation))
    return SectionGeometry(
        transform=transform,
        mpp=(float(mpp), float(mpp)),
        height=int(height),
        width=int(width),
        rotation_deg=rotation,
        scale_x=scale_x,
        scale_y=scale_y,
        shear_deg=shear,
    )


_CORNER_SIGNS = ((-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0))


_Transmission = Annotated[float, Range(gt=0.0, le=1.0)]
_OpticalDensity = Annotated[float, Range(ge=0.0)]


@dataclass(frozen=True)
class StainStyle(Params):
    """Per-slide staining appearance.

    Optical densities (OD) are natural-log: a pixel transmits ``background * exp(-OD)`` per
    channel, with ``OD = dab * dab_vector + haematoxylin * haematoxylin_vector`` (both vectors
    scaled to unit length when rendering).

    Attributes:
        background_rgb: glass transmission per channel, ``(r, g, b)`` in ``(0, 1]``.
        dab_vector: OD direction of DAB (brown) over ``(r, g, b)``: 3 non-negative values, not
            all 0.
        haematoxylin_vector: OD direction of haematoxylin (blue) over ``(r, g, b)``, likewise.
        dab_gain: multiplies every DAB OD (staining strength), >= 0.
        haematoxylin_gain: multiplies every haematoxylin OD, >= 0.
        wm_dab: diffuse DAB OD of white-matter neuropil, >= 0.
        gm_dab: diffuse DAB OD of grey-matter neuropil, >= 0.
        edge_gain: extra white-matter-like astrocytic staining (relative) in the glial band
            along tissue edges (glia limitans, ventricle walls), >= 0.
        haematoxylin_base: diffuse haematoxylin OD of all tissue, >= 0.
        gradient: amplitude of the slow multiplicative DAB staining gradient (0 = uniform),
            in ``[0, 1)``.
    """

    background_rgb: tuple[_Transmission, _Transmission, _Transmission] = (0.96, 0.955, 0.95)
    dab_vector: tuple[_OpticalDensity, _OpticalDensity, _OpticalDensity] = _NOMINAL_DAB
    haematoxylin_vector: tuple[_OpticalDensity, _OpticalDensity, _OpticalDensity] = _NOMINAL_HAEM
    dab_gain: Annotated[float, Range(ge=0.0)] = 1.0
    haematoxylin_gain: Annotated[float, Range(ge=0.0)] = 1.0
    wm_dab: Annotated[float, Range(ge=0.0)] = 0.38
    gm_dab: Annotated[float, Range(ge=0.0)] = 0.07
    edge_gain: Annotated[float, Range(ge=0.0)] = 1.2
    haematoxylin_base: Annotated[float, Range(ge=0.0)] = 0.10
    gradient: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.12

    def validate(self) -> None:
        """Each stain has a direction (its vector is not all zeros)."""
        for name in ("dab_vector", "haematoxylin_vector"):
            if not any(getattr(self, name)):
                fail(name, f"must not be all 0, got {getattr(self, name)}")


def _unit(vector: tuple[float, float, float]) -> np.ndarray:
    """``vector`` scaled to unit length (float64 ``(3,)``)."""
    values = np.asarray(vector, dtype=float)
    return values / np.linalg.norm(values)


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    """The three values of an ``(R, G, B)`` array as Python floats."""
    r, g, b = (float(v) for v in values)
    return r, g, b


def random_stain_style(rng: np.random.Generator, variation: float = 1.0) -> StainStyle:
    """Draw a plausible per-slide stain appearance around :class:`StainStyle`'s defaults.

    Args:
        rng: random generator (draws a fixed number of values).
        variation: scales every jitter; 0 returns the nominal style.

    Returns:
        The style.
    """
    v = float(variation)
    u = rng.uniform(-1.0, 1.0, size=13)
    tint = 0.955 + v * 0.02 * u[0:3] + v * 0.015 * u[3]
    dab = np.clip(np.asarray(_NOMINAL_DAB) + v * 0.05 * u[4:7], 0.02, None)
    haem = np.clip(np.asarray(_NOMINAL_HAEM) + v * 0.05 * u[7:10], 0.02, None)
    return StainStyle(
        background_rgb=_rgb(np.clip(tint, 0.9, 1.0)),
        dab_vector=_rgb(dab),
        haematoxylin_vector=_rgb(haem),
        dab_gain=float(1.0 + v * 0.22 * u[10]),
        haematoxylin_gain=float(1.0 + v * 0.22 * u[11]),
        gradient=float(np.clip(0.12 + v * 0.06 * u[12], 0.0, 0.5)),
    )


# ----------------------------------------------------------------------------------------------
# textures


class _PeriodicTexture:
    """A periodic float32 tile, pre-extended so any ``(h, w)`` window is a view (no copy)."""

    def __init__(
        self, tile: np.ndarray, max_rows: int, max_cols: int, rng: np.random.Generator
    ) -> None:
        period_r, period_c = tile.shape
        self.ext = np.pad(tile.astype(np.float32), ((0, max_rows), (0, max_cols)), mode="wrap")
        self.period = (period_r, period_c)
        self.offset = (int(rng.integers(period_r)), int(rng.integers(period_c)))

    def window(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """The texture over level-0 rows ``row..row+height`` and columns ``col..col+width``."""
        r = (row + self.offset[0]) % self.period[0]
        c = (col + self.offset[1]) % self.period[1]
        return self.ext[r : r + height, c : c + width]


def _segment_intensity(
    yy: np.ndarray, xx: np.ndarray, start: np.ndarray, angle: float, length: float, width: float
) -> np.ndarray:
    """Tapered line from ``start`` at ``angle``: intensity in ``[0, 1]`` on grid ``(yy, xx)``."""
    d = np.array([math.cos(angle), math.sin(angle)])
    px, py = xx - start[0], yy - start[1]
    s = np.clip(px * d[0] + py * d[1], 0.0, length)
    dist2 = (px - s * d[0]) ** 2 + (py - s * d[1]) ** 2
    return np.exp(-dist2 / (2.0 * width**2)) * np.sqrt(1.0 - s / length)


def _astrocyte_prototypes(
    rng: np.random.Generator,
    count: int,
    radius: int,
    processes: tuple[int, int],
    length: tuple[float, float],
    width: float,
    body_sigma: float,
) -> np.ndarray:
    """Star-shaped astrocyte stamps: body plus branched processes.

    Returns:
        float32 ``(count, 2 * radius + 1, 2 * radius + 1)`` with values in ``[0, 1]``.
    """
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float64)
    out = np.empty((count, 2 * radius + 1, 2 * radius + 1), dtype=np.float32)
    origin = np.zeros(2)
    for i in range(count):
        stamp = np.exp(-(xx**2 + yy**2) / (2.0 * body_sigma**2))
        for _ in range(int(rng.integers(processes[0], processes[1] + 1))):
            angle = float(rng.uniform(0.0, 2.0 * math.pi))
            ln = float(min(rng.uniform(*length), radius - 1.0))
            stamp = np.maximum(stamp, 0.8 * _segment_intensity(yy, xx, origin, angle, ln, width))
            if rng.random() < 0.5:  # one side branch from the middle of the process
                mid = 0.5 * ln * np.array([math.cos(angle), math.sin(angle)])
                branch = angle + float(rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.9))
                blen = 0.45 * ln
                stamp = np.maximum(
                    stamp, 0.55 * _segment_intensity(yy, xx, mid, branch, blen, 0.8 * width)
                )
        out[i] = stamp
    return out


def _nucleus_prototypes(
    rng: np.random.Generator, count: int, radius: int, size: tuple[float, float]
) -> np.ndarray:
    """Round-to-oval nuclei with soft edges and slightly darker rims.

    Returns:
        float32 ``(count, 2 * radius + 1, 2 * radius + 1)`` with values in ``[0, 1]``.
    """
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float64)
    out = np.empty((count, 2 * radius + 1, 2 * radius + 1), dtype=np.float32)
    for i in range(count):
        a = float(rng.uniform(*size))
        b = a * float(rng.uniform(0.6, 1.0))
        angle = float(rng.uniform(0.0, math.pi))
        c, s = math.cos(angle), math.sin(angle)
        u = (c * xx + s * yy) / a
        v = (-s * xx + c * yy) / b
        r = np.sqrt(u**2 + v**2)
        out[i] = (1.0 / (1.0 + np.exp((r - 1.0) / 0.12))) * (0.8 + 0.2 * np.clip(r, 0.0, 1.0))
    return out


def _scatter(
    rng: np.random.Generator,
    period: int,
    prototypes: np.ndarray,
    count: int,
    amplitude: tuple[float, float],
) -> np.ndarray:
    """Add ``count`` randomly placed and scaled stamps to a periodic ``(period, period)`` tile.

    Returns:
        float32 ``(period, period)``; stamps crossing an edge wrap around.
    """
    size = prototypes.shape[1]
    canvas = np.zeros((period + size, period + size), dtype=np.float32)
    rows = rng.integers(0, period, size=count)
    cols = rng.integers(0, period, size=count)
    which = rng.integers(0, len(prototypes), size=count)
    amps = rng.uniform(amplitude[0], amplitude[1], size=count).astype(np.float32)
    for r, c, k, a in zip(rows, cols, which, amps, strict=True):
        canvas[r : r + size, c : c + size] += a * prototypes[k]
    tile = canvas[:period, :period].copy()
    tile[:size, :] += canvas[period:, :period]
    tile[:, :size] += canvas[:period, period:]
    tile[:size, :size] += canvas[period:, period:]
    return tile


def _periodic_noise(
    rng: np.random.Generator, period: int, sigma: tuple[float, float], angle: float = 0.0
) -> np.ndarray:
    """Zero-mean, unit-variance periodic Gaussian noise, (an)isotropically smoothed via the FFT.

    Args:
        rng: random generator.
        period: tile size in pixels.
        sigma: Gaussian smoothing ``(along, across)`` the direction ``angle``, in pixels.
        angle: direction (radians) of the ``along`` axis.

    Returns:
        float32 ``(period, period)``.
    """
    white = rng.standard_normal((period, period))
    fy = np.fft.fftfreq(period)[:, None]
    fx = np.fft.rfftfreq(period)[None, :]
    c, s = math.cos(angle), math.sin(angle)
    f_along = c * fx + s * fy
    f_across = -s * fx + c * fy
    kernel = np.exp(-2.0 * math.pi**2 * ((sigma[0] * f_along) ** 2 + (sigma[1] * f_across) ** 2))
    noise = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=(period, period))
    noise -= noise.mean()
    noise /= max(float(noise.std()), 1e-12)
    return noise.astype(np.float32)


@dataclass
class _TextureBank:
    """All texture tiles of one slide (level-0 OD contributions before gains)."""

    wm_astro_a: _PeriodicTexture
    wm_astro_b: _PeriodicTexture
    gm_astro: _PeriodicTexture
    nuclei: _PeriodicTexture
    gm_nuclei: _PeriodicTexture


def _make_textures(
    rng: np.random.Generator,
    style: StainStyle,
    max_rows: int,
    max_cols: int,
    scale: float = 1.0,
) -> _TextureBank:
    """Draw the texture tiles of one slide; the diffuse ODs of the style are folded in.

    The WM pair sums to ``wm_dab`` + fibrous astrocytes, the GM tile is ``gm_dab`` + protoplasmic
    astrocytes, the nuclei tile ``haematoxylin_base`` + nuclei (OD before gains).

    ``scale``: slide pixels per prototype pixel (``TEXTURE_MPP / cell_mpp``, >= 1): cell sizes
    grow by it and cell counts per tile fall by its square, so the density per µm² is kept. The
    tile periods stay in pixels (a memory choice, not a physical one). ``1.0`` draws exactly the
    textures this function always drew.
    """
    k, k2 = float(scale), float(scale) ** 2

    def radius(r: int) -> int:
        return int(round(r * k))

    fibrous = _astrocyte_prototypes(
        rng,
        24,
        radius=radius(16),
        processes=(6, 10),
        length=(8.0 * k, 16.0 * k),
        width=0.7 * k,
        body_sigma=1.3 * k,
    )
    protoplasmic = _astrocyte_prototypes(
        rng,
        24,
        radius=radius(12),
        processes=(4, 7),
        length=(4.0 * k, 10.0 * k),
        width=0.9 * k,
        body_sigma=1.7 * k,
    )
    small_nuclei = _nucleus_prototypes(rng, 24, radius=radius(5), size=(1.4 * k, 2.4 * k))
    large_nuclei = _nucleus_prototypes(rng, 12, radius=radius(7), size=(2.6 * k, 4.0 * k))

    def count(period: int, per_px2: float) -> int:
        return int(period * period // (per_px2 * k2))

    def wm_tile(period: int) -> np.ndarray:
        tile = _scatter(rng, period, fibrous, count=count(period, 1400), amplitude=(0.55, 1.05))
        angle = float(rng.uniform(0.0, math.pi))
        fibres = _periodic_noise(rng, period, sigma=(6.0 * k, 0.9 * k), angle=angle)
        tile += 0.12 * np.maximum(fibres - 0.3, 0.0)
        tile += 0.05 * np.maximum(_periodic_noise(rng, period, sigma=(0.8 * k, 0.8 * k)), 0.0)
        return tile

    gm_tile = _scatter(
        rng,
        _PERIOD_GM_ASTRO,
        protoplasmic,
        count=count(_PERIOD_GM_ASTRO, 2600),
        amplitude=(0.3, 0.7),
    )
    gm_tile += 0.04 * np.maximum(
        _periodic_noise(rng, _PERIOD_GM_ASTRO, sigma=(0.8 * k, 0.8 * k)), 0.0
    )
    nuclei = _scatter(
        rng, _PERIOD_NUCLEI, small_nuclei, count=count(_PERIOD_NUCLEI, 420), amplitude=(0.6, 1.1)
    )
    nuclei += 0.03 * np.maximum(_periodic_noise(rng, _PERIOD_NUCLEI, sigma=(0.7 * k, 0.7 * k)), 0.0)
    gm_nuclei = _scatter(
        rng,
        _PERIOD_GM_NUCLEI,
        small_nuclei,
        count=count(_PERIOD_GM_NUCLEI, 520),
        amplitude=(0.6, 1.1),
    )
    gm_nuclei += _scatter(
        rng,
        _PERIOD_GM_NUCLEI,
        large_nuclei,
        count=count(_PERIOD_GM_NUCLEI, 2500),
        amplitude=(0.25, 0.45),
    )
    return _TextureBank(
        wm_astro_a=_PeriodicTexture(
            wm_tile(_PERIOD_WM_ASTRO_A) + style.wm_dab, max_rows, max_cols, rng
        ),
        wm_astro_b=_PeriodicTexture(wm_tile(_PERIOD_WM_ASTRO_B), max_rows, max_cols, rng),
        gm_astro=_PeriodicTexture(gm_tile + style.gm_dab, max_rows, max_cols, rng),
        nuclei=_PeriodicTexture(nuclei + style.haematoxylin_base, max_rows, max_cols, rng),
        gm_nuclei=_PeriodicTexture(gm_nuclei, max_rows, max_cols, rng),
    )


def _fourier_field(
    rng: np.random.Generator, n_modes: int, wavelength_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random Fourier modes of a smooth, resolution-independent noise field (see `_eval_field`).

    Returns:
        ``(frequencies (n, 2) in 1/mm, phases (n,), amplitudes (n,))``.
    """
    angles = rng.uniform(0.0, 2.0 * math.pi, size=n_modes)
    radii = rng.uniform(0.6, 1.4, size=n_modes) / wavelength_mm
    freqs = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=n_modes)
    amps = rng.standard_normal(n_modes) * math.sqrt(2.0 / n_modes)
    return freqs, phases, amps


def _eval_field(
    field: tuple[np.ndarray, np.ndarray, np.ndarray], x_mm: np.ndarray, y_mm: np.ndarray
) -> np.ndarray:
    """Evaluate a Fourier-mode field (about unit variance) on a grid of ``x_mm`` (cols), ``y_mm``.

    Args:
        field: output of :func:`_fourier_field`.
        x_mm: column positions, shape ``(w,)``.
        y_mm: row positions, shape ``(h,)``.

    Returns:
        float32 ``(h, w)``.
    """
    freqs, phases, amps = field
    out = np.zeros((len(y_mm), len(x_mm)), dtype=np.float64)
    for (fx, fy), ph, a in zip(freqs, phases, amps, strict=True):
        # cos(a + b) = cos a cos b - sin a sin b: separable, O(h + w) trig per mode
        ax = 2.0 * math.pi * fx * x_mm + ph
        by = 2.0 * math.pi * fy * y_mm
        out += a * (np.cos(by)[:, None] * np.cos(ax)[None, :])
        out -= a * (np.sin(by)[:, None] * np.sin(ax)[None, :])
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# rendering


@dataclass
class _CoarseMaps:
    """Per-corner texture weights on the coarse grid (``(rows_c + 1, cols_c + 1)`` each).

    Level-0 DAB OD = ``dab_wm * wm_texture + dab_gm * gm_texture``; haematoxylin OD =
    ``haem * nuclei_texture + haem_gm * gm_nuclei_texture``.
    """

    dab_wm: np.ndarray
    dab_gm: np.ndarray
    haem: np.ndarray
    haem_gm: np.ndarray


def _coarse_factor(
    mpp: tuple[float, float],
    requested: int,
    min_step_um: float = 150.0,
    max_step_um: float = 250.0,
) -> int:
    """Level-0 pixels per coarse step: at least ``requested`` and ``min_step_um``, below
    ``max_step_um``.

    The coarse maps carry MRI-scale variation (1 mm voxels), so a step of 150-250 µm loses
    nothing; on fine pixels the floor keeps the coarse grid small (at 2.4 µm/px a factor of 8
    gave 42 M corners and a 3.7 GB peak for a 60,000 x 45,000 px slide; 62 gives 0.7 M). At the
    demo's 17-20 µm/px the factor stays ``requested`` (8).
    """
    finest = max(mpp)
    factor = max(int(requested), int(min_step_um // finest))
    return max(1, min(factor, int(max_step_um // finest)))


def _coarse_maps(
    maps: TissueMaps,
    geometry: SectionGeometry,
    style: StainStyle,
    rng: np.random.Generator,
    factor: int,
    rows_c: int,
    cols_c: int,
    edge_noise: float,
) -> _CoarseMaps:
    """Evaluate the tissue maps through the inverse affine on the coarse corner grid.

    Corner ``(i, j)`` sits at level-0 pixel position ``(i * factor - 0.5, j * factor - 0.5)``, so
    level-0 pixel ``i * factor + k`` lies ``(k + 0.5) / factor`` of the way to the next corner.
    """
    mpp_x, mpp_y = (m / 1000.0 for m in geometry.mpp)
    x_mm = (np.arange(cols_c + 1) * factor - 0.5) * mpp_x
    y_mm = (np.arange(rows_c + 1) * factor - 0.5) * mpp_y
    inverse = geometry.transform.inverse()
    inv = np.asarray(inverse.matrix)
    ti = np.asarray(inverse.translation)
    xg, yg = np.meshgrid(x_mm, y_mm)
    mri_x = inv[0, 0] * xg + inv[0, 1] * yg + ti[0]
    mri_y = inv[1, 0] * xg + inv[1, 1] * yg + ti[1]
    coords = np.stack([mri_y / maps.spacing_mm[1], mri_x / maps.spacing_mm[0]])
    del xg, yg, mri_x, mri_y

    def sample(arr: np.ndarray) -> np.ndarray:
        out = ndimage.map_coordinates(arr, coords, order=3, mode="grid-constant", cval=0.0)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    gm = sample(maps.gm)
    wm = sample(maps.wm)
    total = gm + wm
    # irregular, sharp tissue edge: threshold the smooth probability with a little noise.
    noise = 0.8 * _eval_field(_fourier_field(rng, 24, 1.2), x_mm, y_mm)
    noise += 0.3 * _eval_field(_fourier_field(rng, 24, 0.4), x_mm, y_mm)
    edge_arg = np.clip((total - 0.5 + edge_noise * noise) / 0.12, -1.0, 1.0)
    tissue = 0.5 + 0.75 * edge_arg - 0.25 * edge_arg**3  # smoothstep on [-1, 1]
    safe_total = np.maximum(total, 1e-3)
    wm_frac = np.where(total > 1e-3, wm / safe_total, 0.0).astype(np.float32)
    gm_frac = 1.0 - wm_frac
    # glial band along tissue edges: tissue that is close to background.
    band_sigma = max(0.3 / (factor * max(mpp_x, mpp_y)), 0.5)
    band = tissue * (1.0 - ndimage.gaussian_filter(tissue, band_sigma, mode="nearest"))
    band = np.clip(2.5 * band, 0.0, 1.0)
    gradient = 1.0 + style.gradient * _eval_field(_fourier_field(rng, 12, 40.0), x_mm, y_mm)
    dab = style.dab_gain * np.clip(gradient, 0.3, None) * tissue
    haem = style.haematoxylin_gain * tissue
    return _CoarseMaps(
        dab_wm=dab * (wm_frac + style.edge_gain * band),
        dab_gm=dab * gm_frac,
        haem=haem,
        haem_gm=haem * gm_frac,
    )


def _stain_lut(style: StainStyle) -> np.ndarray:
    """RGB lookup table indexed by ``dab_q * 256 + haem_q`` (quantised ODs): uint8 (65536, 3)."""
    dab = np.arange(256, dtype=np.float64) * (_DAB_OD_MAX / 255.0)
    haem = np.arange(256, dtype=np.float64) * (_HAEM_OD_MAX / 255.0)
    od = (
        dab[:, None, None] * _unit(style.dab_vector)[None, None, :]
        + haem[None, :, None] * _unit(style.haematoxylin_vector)[None, None, :]
    )
    rgb = 255.0 * np.asarray(style.background_rgb)[None, None, :] * np.exp(-od)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(65536, 3)


class _Upsampler:
    """Bilinear upsampling of coarse corner maps to level-0 blocks by broadcasting.

    Columns are interpolated first (on ``n_i + 1`` coarse rows, cheap), then rows, so the
    full-resolution passes run over long contiguous rows.
    """

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.t = ((np.arange(factor, dtype=np.float32) + 0.5) / factor).astype(np.float32)

    def block(self, corners: np.ndarray, i0: int, j0: int, n_i: int, n_j: int) -> np.ndarray:
        """Level-0 values of the ``n_i x n_j`` coarse cells starting at cell ``(i0, j0)``.

        Returns:
            float32 ``(n_i * factor, n_j * factor)``.
        """
        f = self.factor
        sub = corners[i0 : i0 + n_i + 1, j0 : j0 + n_j + 1]
        cols = sub[:, :-1, None] + (sub[:, 1:] - sub[:, :-1])[:, :, None] * self.t[None, None, :]
        cols = cols.reshape(n_i + 1, n_j * f)
        out = (cols[1:] - cols[:-1])[:, None, :] * self.t[None, :, None]
        out += cols[:-1, None, :]
        return out.reshape(n_i * f, n_j * f)


def iter_virtual_gfap_strips(
    maps: TissueMaps,
    geometry: SectionGeometry,
    style: StainStyle,
    seed: int,
    *,
    strip_rows: int = 256,
    block_cols: int = 1024,
    coarse_factor: int = 8,
    edge_noise: float = 0.12,
    cell_mpp: float = TEXTURE_MPP,
) -> Iterator[tuple[int, np.ndarray]]:
    """Render a virtual GFAP section lazily, one horizontal strip at a time.

    Deterministic given the arguments (the strip and block sizes do not change the pixels).
    Memory: the textures (about 50 MB), the coarse maps and one strip; the whole slide is never
    held.

    Args:
        maps: tissue maps of the MRI slice.
        geometry: placement of the slice on the slide (transform, mpp, size).
        style: staining appearance.
        seed: seeds the textures and noise fields of this slide.
        strip_rows: level-0 rows per strip (rounded up to a multiple of the coarse factor).
        block_cols: level-0 columns processed at once inside a strip (cache-sized blocks).
        coarse_factor: level-0 pixels between coarse grid corners (raised automatically so the
            coarse step is >= 150 µm, reduced so it stays <= 250 µm).
        edge_noise: irregularity of the tissue outline, in tissue-probability units (0 = smooth).
        cell_mpp: µm per pixel at which the cells are drawn at their real size: the slide's own
            mpp for a physically true section; :data:`TEXTURE_MPP` (the default) draws the cells
            as the miniature demo always has, ``mpp / TEXTURE_MPP`` times their real size. At
            most :data:`TEXTURE_MPP` (smaller cells than the prototypes are not drawn).

    Yields:
        ``(row0, strip)``: first level-0 row and uint8 RGB pixels ``(rows, width, 3)``.
    """
    yield from _render_strips(
        maps,
        geometry,
        style,
        seed,
        None,
        strip_rows,
        block_cols,
        coarse_factor,
        edge_noise,
        cell_mpp,
    )


def _render_strips(
    maps: TissueMaps,
    geometry: SectionGeometry,
    style: StainStyle,
    seed: int,
    target: np.ndarray | None,
    strip_rows: int,
    block_cols: int,
    coarse_factor: int,
    edge_noise: float,
    cell_mpp: float,
) -> Iterator[tuple[int, np.ndarray]]:
    """Strip generator behind :func:`iter_virtual_gfap_strips`; fills ``target`` when given."""
    if strip_rows < 1 or block_cols < 1 or coarse_factor < 1:
        raise ValueError("strip_rows, block_cols and coarse_factor must be >= 1")
    if edge_noise < 0:
        raise ValueError(f"edge_noise must be >= 0, got {edge_noise}")
    if not 0 < cell_mpp <= TEXTURE_MPP:
        raise ValueError(
            f"cell_mpp must be in (0, {TEXTURE_MPP}] µm per pixel (cells of real size need "
            f"pixels of at most {TEXTURE_MPP} µm), got {cell_mpp}"
        )
    height, width = geometry.height, geometry.width
    f = _coarse_factor(geometry.mpp, coarse_factor)
    strip_rows = -(-strip_rows // f) * f
    block_cols = -(-block_cols // f) * f
    rows_c = -(-height // f)
    cols_c = -(-width // f)
    rng = np.random.default_rng(seed)
    coarse = _coarse_maps(maps, geometry, style, rng, f, rows_c, cols_c, edge_noise)
    textures = _make_textures(rng, style, strip_rows, block_cols, TEXTURE_MPP / cell_mpp)
    lut = _stain_lut(style)
    up = _Upsampler(f)
    dab_scale = np.float32(255.0 / _DAB_OD_MAX)
    haem_scale = np.float32(255.0 / _HAEM_OD_MAX)
    for row0 in range(0, height, strip_rows):
        n_rows = min(strip_rows, height - row0)
        if target is None:
            strip = np.empty((n_rows, width, 3), dtype=np.uint8)
        else:
            strip = target[row0 : row0 + n_rows]
        i0 = row0 // f
        n_i = -(-n_rows // f)
        for col0 in range(0, width, block_cols):
            n_cols = min(block_cols, width - col0)
            j0 = col0 // f
            n_j = -(-n_cols // f)
            h, w = n_i * f, n_j * f
            # DAB: wm weight * (two WM textures) + gm weight * GM texture, scaled to LUT units
            dab = np.add(
                textures.wm_astro_a.window(row0, col0, h, w),
                textures.wm_astro_b.window(row0, col0, h, w),
            )
            dab *= up.block(coarse.dab_wm, i0, j0, n_i, n_j)
            tmp = up.block(coarse.dab_gm, i0, j0, n_i, n_j)
            tmp *= textures.gm_astro.window(row0, col0, h, w)
            dab += tmp
            dab *= dab_scale
            np.clip(dab, 0.0, 255.0, out=dab)
            # haematoxylin: all-tissue nuclei + extra grey-matter nuclei
            haem = up.block(coarse.haem, i0, j0, n_i, n_j)
            haem *= textures.nuclei.window(row0, col0, h, w)
            tmp = up.block(coarse.haem_gm, i0, j0, n_i, n_j)
            tmp *= textures.gm_nuclei.window(row0, col0, h, w)
            haem += tmp
            haem *= haem_scale
            np.clip(haem, 0.0, 255.0, out=haem)
            index = dab.astype(np.int32)
            index <<= 8
            index += haem.astype(np.int32)
            strip[:, col0 : col0 + n_cols] = np.take(lut, index[:n_rows, :n_cols], axis=0)
        yield row0, strip


def render_virtual_gfap(
    maps: TissueMaps,
    geometry: SectionGeometry,
    style: StainStyle,
    seed: int,
    *,
    strip_rows: int = 256,
    block_cols: int = 1024,
    coarse_factor: int = 8,
    edge_noise: float = 0.12,
    cell_mpp: float = TEXTURE_MPP,
) -> np.ndarray:
    """Render a whole virtual GFAP section into memory.

    Same pixels as concatenating :func:`iter_virtual_gfap_strips` (see it for the arguments).

    Returns:
        uint8 RGB array ``(geometry.height, geometry.width, 3)`` (level 0).
    """
    out = np.empty((geometry.height, geometry.width, 3), dtype=np.uint8)
    for _ in _render_strips(
        maps,
        geometry,
        style,
        seed,
        out,
        strip_rows,
        block_cols,
        coarse_factor,
        edge_noise,
        cell_mpp,
    ):
        pass
    return out
