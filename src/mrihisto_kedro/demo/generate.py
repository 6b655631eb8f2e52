"""The built-in demo dataset: paired MRI blocks and virtual GFAP slides with known ground truth.

Mirrors the reproduced paper (post-mortem corpus callosum specimens, MRI volumes plus one GFAP
section per specimen, sagittal MRI slices registered to the sections by a 2-D affine) with real
anatomy: each specimen is a block of the ICBM152 template around the corpus callosum
(:mod:`mrihisto_kedro.demo.anatomy`), its section is rendered from the tissue maps of one sagittal
slice of the block through a random affine that is recorded
(:mod:`mrihisto_kedro.demo.virtual_histology`).

Everything is a deterministic function of :class:`DemoParams` (specimen ``k`` draws from
``numpy.random.default_rng([seed, k])``). :func:`plan_demo` is cheap (a few seconds, mostly loading
the template); slides are rendered only when their zero-argument callables are called, one at a
time, which is what Kedro's ``PartitionedDataset`` does when it saves lazily.

Outputs of a plan (file names are the partition keys of ``data/01_raw``):

* ``volumes``: ``specimen_XX_t1.nii.gz`` -> block T1 volume (float32, 1 mm, LPS geometry kept);
* ``slides``: ``specimen_XX_gfap.svs`` -> callable returning a :class:`SlideImage` (RGB uint8,
  level 0 ``level0_height x level0_width``, ``mpp`` and ``app_mag`` set), or above
  :data:`IN_MEMORY_MAX_PX` a :class:`StreamedSlide` that renders while it is written (a
  60,000 x 45,000 px slide in about 0.5 GB of memory);
* ``pairs``: the raw manifest (``pair_id, specimen_id, slide, mri, plane, slice_index, split``;
  ``split`` empty so that the pipeline assigns splits by specimen);
* ``ground_truth``: per ``pair_id`` the affine MRI-slice-mm -> histology-level-0-mm
  (``a11, a12, a21, a22, tx, ty``: ``x_h = a11 x + a12 y + tx``, ``y_h = a21 x + a22 y + ty``)
  with ``mpp_x, mpp_y`` (µm), ``mri_spacing_x, mri_spacing_y`` (mm), its parameters and the
  slide size; MRI slice pixel ``(col, row)`` is at ``(col * mri_spacing_x, row * mri_spacing_y)``
  mm (see :func:`mrihisto_kedro.imaging.mri.extract_slice`), histology pixel ``(c, r)`` at
  ``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm;
* ``specimens``: where each block was cut from the template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.demo.anatomy import (
    SpecimenBlock,
    cut_block,
    load_icbm152,
    resample_block,
    specimen_layout,
)
from mrihisto_kedro.demo.virtual_histology import (
    TEXTURE_MPP,
    SectionGeometry,
    StainStyle,
    TissueMaps,
    iter_virtual_gfap_strips,
    plan_section_geometry,
    random_stain_style,
    render_virtual_gfap,
)
from mrihisto_kedro.imaging.mri import Plane, extract_slice, slice_count
from mrihisto_kedro.imaging.row_spool import spool_rows_to_pyramidal_tiff
from mrihisto_kedro.imaging.slide_image import SlideImage, nominal_magnification
from mrihisto_kedro.imaging.tiff import Compression, Flavour, write_pyramidal_tiff
from mrihisto_kedro.params import Params, Range, fail

PAIRS_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "specimen_id",
    "slide",
    "mri",
    "plane",
    "slice_index",
    "split",
)
GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "a11",
    "a12",
    "a21",
    "a22",
    "tx",
    "ty",
    "mpp_x",
    "mpp_y",
    "mri_spacing_x",
    "mri_spacing_y",
    "rotation_deg",
    "scale_x",
    "scale_y",
    "shear_deg",
    "level0_width",
    "level0_height",
    "cell_magnification",
)
_SLIDE_SUFFIXES = (".svs", ".tif", ".tiff")
_MAX_LATERAL_EXTENT_MM = 60.0  # a block's lateral face must stay this close to the midline
_MAX_SLICE_JITTER = 2
#: slides above this many level-0 pixels (100 Mpx: 300 MB of RGB) are rendered strip by strip
#: while they are written (:class:`StreamedSlide`) instead of into one array
IN_MEMORY_MAX_PX = 100_000_000


@dataclass(frozen=True)
class DemoParams(Params):
    """Parameters of the demo dataset (``demo``; validated on construction).

    Attributes:
        seed: master seed (>= 0); specimen ``k`` uses ``default_rng([seed, k])``.
        n_specimens: number of specimens (one slide each), 1..16; alternately right and left.
        level0_height: slide level-0 height in pixels (>= 64).
        level0_width: slide level-0 width in pixels (>= 64).
        block_thickness_mm: lateral extent of each block (2..40 mm).
        block_length_ap_mm: nominal anterior-posterior extent of each block (10..150 mm).
        block_height_si_mm: nominal superior-inferior extent of each block (10..110 mm).
        block_jitter_mm: random change of each in-plane extent and of the centre (0..10 mm).
        max_lateral_offset_mm: largest distance of a block's medial face from the midline
            (0..50 mm, and ``max_lateral_offset_mm + block_thickness_mm <= 60``).
        max_rotation_deg: section rotation range ``+-`` (0..45 degrees).
        max_scale_change: section anisotropic scale range ``+-`` (0..0.3, relative).
        max_shear_deg: section shear range ``+-`` (0..20 degrees).
        tissue_fill: fraction of the slide's width or height the tissue spans (0.3..0.98).
        stain_variation: scale of the per-slide stain jitter (0..3; 0 = identical staining).
        edge_noise: irregularity of the section outline (0..0.4, tissue-probability units).
        slide_suffix: slide file suffix, ``.svs`` (Aperio), ``.tif`` or ``.tiff``.
        true_cell_size: draw the cells at their real size in µm at each slide's mpp (nuclei
            5.6-16 µm, astrocyte processes tens of µm); needs slides of at most
            :data:`~mrihisto_kedro.demo.virtual_histology.TEXTURE_MPP` µm per pixel. ``False``
            (the miniature default demo): cells keep their pixel sizes, i.e. they are drawn
            ``mpp / TEXTURE_MPP`` times their real size; the ground truth's
            ``cell_magnification`` says how many times.
        mri_spacing_mm: resample each MRI block (T1 and the tissue maps) onto this isotropic
            spacing (paper 000: 0.4 mm; linear, same physical extent and first voxel centre);
            ``None``: the template's native 1 mm.
    """

    seed: Annotated[int, Range(ge=0)] = 2024
    n_specimens: Annotated[int, Range(ge=1, le=16)] = 8
    level0_height: Annotated[int, Range(ge=64, le=200_000)] = 6000
    level0_width: Annotated[int, Range(ge=64, le=200_000)] = 8000
    block_thickness_mm: Annotated[float, Range(ge=2.0, le=40.0)] = 12.0
    block_length_ap_mm: Annotated[float, Range(ge=10.0, le=150.0)] = 120.0
    block_height_si_mm: Annotated[float, Range(ge=10.0, le=110.0)] = 90.0
    block_jitter_mm: Annotated[float, Range(ge=0.0, le=10.0)] = 5.0
    max_lateral_offset_mm: Annotated[float, Range(ge=0.0, le=50.0)] = 19.0
    max_rotation_deg: Annotated[float, Range(ge=0.0, le=45.0)] = 15.0
    max_scale_change: Annotated[float, Range(ge=0.0, le=0.3)] = 0.08
    max_shear_deg: Annotated[float, Range(ge=0.0, le=20.0)] = 5.0
    tissue_fill: Annotated[float, Range(ge=0.3, le=0.98)] = 0.85
    stain_variation: Annotated[float, Range(ge=0.0, le=3.0)] = 1.0
    edge_noise: Annotated[float, Range(ge=0.0, le=0.4)] = 0.12
    slide_suffix: str = ".svs"
    true_cell_size: bool = False
    mri_spacing_mm: Annotated[float, Range(ge=0.1, le=2.0)] | None = None

    def validate(self) -> None:
        """Blocks stay inside the brain; the slide suffix is one the slide writer knows."""
        if self.max_lateral_offset_mm + self.block_thickness_mm > _MAX_LATERAL_EXTENT_MM:
            fail(
                "max_lateral_offset_mm",
                f"+ block_thickness_mm must be <= {_MAX_LATERAL_EXTENT_MM:g} mm (blocks must "
                f"stay inside the brain), got {self.max_lateral_offset_mm:g} + "
                f"{self.block_thickness_mm:g}",
            )
        if self.slide_suffix not in _SLIDE_SUFFIXES:
            fail(
                "slide_suffix",
                f"= {self.slide_suffix!r} is not one of: {', '.join(_SLIDE_SUFFIXES)}",
            )


@dataclass(frozen=True)
class SlideRenderer:
    """Zero-argument callable rendering one virtual slide (picklable, holds only small arrays).

    Attributes:
        maps: tissue maps of the MRI slice the section shows.
        geometry: placement of the section (transform, mpp, level-0 size).
        style: staining appearance.
        seed: texture/noise seed.
        edge_noise: outline irregularity.
        description: Aperio-style key/value metadata for the slide.
        cell_mpp: µm per pixel at which cells are drawn at their real size (the slide's mpp
            for a physically true section; ``TEXTURE_MPP`` for the miniature demo).
    """

    maps: TissueMaps
    geometry: SectionGeometry
    style: StainStyle
    seed: int
    edge_noise: float
    description: dict[str, str] = field(default_factory=dict)
    cell_mpp: float = TEXTURE_MPP

    @property
    def app_mag(self) -> float:
        """Nominal objective magnification: 10 / mpp (so 0.5 µm/px is 20x, as on Aperio)."""
        return nominal_magnification(self.geometry.mpp[0])

    def __call__(self) -> SlideImage | StreamedSlide:
        """The slide for ``OpenSlideDataset.save``: in memory up to :data:`IN_MEMORY_MAX_PX`.

        Returns:
            :meth:`render` for slides of at most ``IN_MEMORY_MAX_PX`` level-0 pixels, else a
            :class:`StreamedSlide` that renders strip by strip while it writes (same pixels).
        """
        if self.geometry.height * self.geometry.width <= IN_MEMORY_MAX_PX:
            return self.render()
        return StreamedSlide(self)

    def render(self) -> SlideImage:
        """Render the slide in memory: RGB uint8 ``(level0_height, level0_width, 3)``, its mpp."""
        pixels = render_virtual_gfap(
            self.maps,
            self.geometry,
            self.style,
            self.seed,
            edge_noise=self.edge_noise,
            cell_mpp=self.cell_mpp,
        )
        return self.slide_image(pixels)

    def slide_image(self, pixels: Any) -> SlideImage:
        """``pixels`` (numpy or pyvips) with this slide's mpp, ``AppMag`` and description."""
        return SlideImage(
            pixels=pixels,
            mpp=self.geometry.mpp,
            app_mag=self.app_mag,
            description=dict(self.description),
        )


@dataclass(frozen=True)
class StreamedSlide:
    """A virtual slide that renders itself strip by strip into its pyramidal TIFF.

    Implements :class:`mrihisto_kedro.datasets.slide_dataset.SlideWriter`. Memory: the
    renderer's textures (about 50 MB) and one strip of 256 rows; disk: a spool file of
    ``H * W * 3`` bytes beside the destination while it is written
    (:func:`mrihisto_kedro.imaging.row_spool.spool_rows_to_pyramidal_tiff`).

    Attributes:
        renderer: the slide's renderer.
    """

    renderer: SlideRenderer

    def write_tiff(
        self,
        path: Path,
        *,
        flavour: Flavour = "aperio",
        compression: Compression = "jpeg",
        quality: int = 90,
        tile_size: int = 256,
        bigtiff: bool | None = None,
    ) -> Path:
        """Render and write the slide at ``path`` (atomically; same pixels as ``render()``)."""
        r = self.renderer
        strips = iter_virtual_gfap_strips(
            r.maps, r.geometry, r.style, r.seed, edge_noise=r.edge_noise, cell_mpp=r.cell_mpp
        )

        def write(image: Any, destination: Path) -> None:
            write_pyramidal_tiff(
                r.slide_image(image),
                destination,
                flavour=flavour,
                compression=compression,
                quality=quality,
                tile_size=tile_size,
                bigtiff=bigtiff,
            )

        return spool_rows_to_pyramidal_tiff(
            (strip for _, strip in strips),
            (r.geometry.height, r.geometry.width, 3),
            Path(path),
            write,
        )


@dataclass
class DemoPlan:
    """Everything the demo writes, with slides still unrendered.

    Attributes:
        params: the parameters it was planned from.
        volumes: MRI file name -> block T1 volume (``sitk.Image``, float32, 1 mm).
        slides: slide file name -> zero-argument callable returning a :class:`SlideImage`.
        pairs: raw manifest, columns :data:`PAIRS_COLUMNS`.
        ground_truth: one row per ``pair_id``, columns :data:`GROUND_TRUTH_COLUMNS`.
        specimens: one row per specimen: where the block was cut (MNI mm) and its size.
        blocks: specimen id -> the block (T1 and the GM/WM maps used for rendering).
        tissue_maps: pair id -> tissue maps of the MRI slice each section was rendered from.
    """

    params: DemoParams
    volumes: dict[str, sitk.Image]
    slides: dict[str, Callable[[], SlideImage | StreamedSlide]]
    pairs: pd.DataFrame
    ground_truth: pd.DataFrame
    specimens: pd.DataFrame
    blocks: dict[str, SpecimenBlock]
    tissue_maps: dict[str, TissueMaps]


def specimen_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of specimen ``index`` (0-based) under master ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def plan_demo(params: DemoParams | None = None) -> DemoPlan:
    """Plan the demo dataset: cut the blocks, choose slices, transforms and stains.

    Per specimen ``k`` the generator ``default_rng([seed, k])`` draws, in order: the block's
    jitter, the slice offset from the block's middle (``+-2`` voxels), the section geometry,
    the stain style and the slide's texture seed.

    Args:
        params: demo parameters (defaults when ``None``).

    Returns:
        The plan; slides render when their callables are called.
    """
    params = params or DemoParams()
    template = load_icbm152()
    rngs = [specimen_rng(params.seed, k) for k in range(params.n_specimens)]
    geometries = specimen_layout(
        params.n_specimens,
        rngs,
        thickness_mm=params.block_thickness_mm,
        min_lateral_offset_mm=min(1.0, params.max_lateral_offset_mm),
        max_lateral_offset_mm=params.max_lateral_offset_mm,
        length_ap_mm=params.block_length_ap_mm,
        height_si_mm=params.block_height_si_mm,
        size_jitter_mm=params.block_jitter_mm,
        centre_jitter_mm=params.block_jitter_mm * 0.8,
    )
    volumes: dict[str, sitk.Image] = {}
    slides: dict[str, Callable[[], SlideImage | StreamedSlide]] = {}
    blocks: dict[str, SpecimenBlock] = {}
    tissue_maps: dict[str, TissueMaps] = {}
    pair_rows: list[dict[str, Any]] = []
    truth_rows: list[dict[str, Any]] = []
    specimen_rows: list[dict[str, Any]] = []
    for k, (geometry, rng) in enumerate(zip(geometries, rngs, strict=True)):
        specimen_id = f"specimen_{k + 1:02d}"
        pair_id = f"pair_{k + 1:02d}"
        mri_name = f"{specimen_id}_t1.nii.gz"
        slide_name = f"{specimen_id}_gfap{params.slide_suffix}"
        block = cut_block(template, geometry)
        if params.mri_spacing_mm is not None:
            block = resample_block(block, params.mri_spacing_mm)
        n_slices = slice_count(block.t1, Plane.SAGITTAL)
        jitter = int(rng.integers(-_MAX_SLICE_JITTER, _MAX_SLICE_JITTER + 1))
        slice_index = int(np.clip((n_slices - 1) // 2 + jitter, 0, n_slices - 1))
        maps = TissueMaps.from_slices(
            extract_slice(block.gm, Plane.SAGITTAL, slice_index),
            extract_slice(block.wm, Plane.SAGITTAL, slice_index),
        )
        section = plan_section_geometry(
            maps,
            params.level0_height,
            params.level0_width,
            rng,
            max_rotation_deg=params.max_rotation_deg,
            max_scale_change=params.max_scale_change,
            max_shear_deg=params.max_shear_deg,
            fill=params.tissue_fill,
        )
        style = random_stain_style(rng, params.stain_variation)
        texture_seed = int(rng.integers(0, 2**63 - 1))
        slide_mpp = float(np.mean(section.mpp))
        if params.true_cell_size and slide_mpp > TEXTURE_MPP:
            raise ValueError(
                f"DemoParams.true_cell_size: {slide_name} would be {slide_mpp:.2f} µm per pixel; "
                f"cells of real size need at most {TEXTURE_MPP} µm (raise level0_width and "
                "level0_height, or shrink the blocks)"
            )
        cell_mpp = slide_mpp if params.true_cell_size else TEXTURE_MPP
        slice_x_mm = -block.t1.TransformIndexToPhysicalPoint((slice_index, 0, 0))[0]
        slides[slide_name] = SlideRenderer(
            maps=maps,
            geometry=section,
            style=style,
            seed=texture_seed,
            edge_noise=params.edge_noise,
            cell_mpp=cell_mpp,
            description={
                "Title": "mrihisto_kedro demo virtual GFAP section",
                "Stain": "GFAP (DAB) with haematoxylin counterstain (virtual)",
                "Specimen": specimen_id,
                "Pair": pair_id,
                "Source": f"ICBM152 2009a sagittal slice at MNI x {slice_x_mm:+.1f} mm",
                "Seed": str(params.seed),
            },
        )
        volumes[mri_name] = block.t1
        blocks[specimen_id] = block
        tissue_maps[pair_id] = maps
        pair_rows.append(
            {
                "pair_id": pair_id,
                "specimen_id": specimen_id,
                "slide": slide_name,
                "mri": mri_name,
                "plane": str(Plane.SAGITTAL),
                "slice_index": slice_index,
                "split": "",
            }
        )
        a = section.transform.as_array()
        truth_rows.append(
            {
                "pair_id": pair_id,
                "a11": a[0, 0],
                "a12": a[0, 1],
                "a21": a[1, 0],
                "a22": a[1, 1],
                "tx": a[0, 2],
                "ty": a[1, 2],
                "mpp_x": section.mpp[0],
                "mpp_y": section.mpp[1],
                "mri_spacing_x": maps.spacing_mm[0],
                "mri_spacing_y": maps.spacing_mm[1],
                "rotation_deg": section.rotation_deg,
                "scale_x": section.scale_x,
                "scale_y": section.scale_y,
                "shear_deg": section.shear_deg,
                "level0_width": section.width,
                "level0_height": section.height,
                "cell_magnification": slide_mpp / cell_mpp,
            }
        )
        (x0, x1), (y0, y1), (z0, z1) = geometry.ras_bounds()
        size = block.t1.GetSize()
        specimen_rows.append(
            {
                "specimen_id": specimen_id,
                "hemisphere": str(geometry.hemisphere),
                "lateral_offset_mm": geometry.lateral_offset_mm,
                "mni_x_min_mm": x0,
                "mni_x_max_mm": x1,
                "mni_y_min_mm": y0,
                "mni_y_max_mm": y1,
                "mni_z_min_mm": z0,
                "mni_z_max_mm": z1,
                "size_x": size[0],
                "size_y": size[1],
                "size_z": size[2],
                "slice_mni_x_mm": slice_x_mm,
            }
        )
    pairs = pd.DataFrame(pair_rows, columns=list(PAIRS_COLUMNS))
    pairs["slice_index"] = pairs["slice_index"].astype("int64")
    return DemoPlan(
        params=params,
        volumes=volumes,
        slides=slides,
        pairs=pairs,
        ground_truth=pd.DataFrame(truth_rows, columns=list(GROUND_TRUTH_COLUMNS)),
        specimens=pd.DataFrame(specimen_rows),
        blocks=blocks,
        tissue_maps=tissue_maps,
    )
