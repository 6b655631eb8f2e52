"""The ``pairs`` manifest: one row per histology section and its MRI slice (no Kedro imports).

Columns (DESIGN.md section 3): ``pair_id, specimen_id, slide, mri, plane, slice_index, split``.
``slide`` and ``mri`` name files inside the slides folder and the MRI folder (paths relative to
those folders, as Kedro's ``PartitionedDataset`` lists them). ``split`` may be empty: then
:func:`assign_splits` assigns whole specimens to train/val/test.

Optional columns: ``slide_mpp`` (and ``slide_mpp_y`` for non-square pixels), the slide's level-0
microns per pixel, for slides whose files do not record it (TCGA JPEG2000 ``.svs``, plain TIFFs)
or record it wrongly. The validated manifest carries the pixel size every slide will be processed
with in ``slide_mpp_x_um``, ``slide_mpp_y_um`` and where it came from in ``slide_mpp_source``.
``mri_volume``: the 0-based volume of a 4-D MRI (time, echo, b-value) to slice; required for 4-D
files, 0 for 3-D ones.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.mri import (
    Plane,
    extract_slice,
    select_volume,
    slice_count,
    volume_count,
)
from mrihisto_kedro.params import Params, Range, fail

logger = logging.getLogger(__name__)

#: a pair id names files (``aligned_mri/<pair_id>.mha``): one safe path component
_SAFE_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

REQUIRED_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "specimen_id",
    "slide",
    "mri",
    "plane",
    "slice_index",
    "split",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
MPP_COLUMNS: tuple[str, ...] = ("slide_mpp", "slide_mpp_y")
"""Optional manifest columns: level-0 microns per pixel (x; y when pixels are not square)."""
PLAUSIBLE_MPP_UM: tuple[float, float] = (0.05, 500.0)
"""Level-0 pixel sizes accepted, in µm: from a 100x objective (about 0.1 µm) to a slide that was
already downsampled (tens of µm); 1000 µm (a millimetre per pixel) is a guess, not a scan."""
MPP_MISMATCH = 0.01
"""Relative difference between the manifest's and the file's mpp that is logged as a warning."""


PLAUSIBLE_SPACING_MM: tuple[float, float] = (0.01, 20.0)

#: fewest pixels along either side of an MRI slice that masks and registration work on (a
#: 2-voxel-thin volume failed deep inside ITK's smoothing; issue 15)
MIN_SLICE_PX = 16
"""MRI voxel spacings accepted, in mm: from ex-vivo microscopy MRI (tens of µm) to thick clinical
slices; 0 or 1000 is a broken header."""


@dataclass(frozen=True)
class MriHeader:
    """What validation needs from an MRI file.

    Attributes:
        path: the user's file or DICOM folder, as errors should name it.
        volumes: number of 3-D volumes (1 for a 3-D file, the 4th size of a 4-D one).
        spacing_mm: voxel spacing of the first three axes in mm.
        slice_shapes: ``{plane: (rows, cols)}`` of that plane's slices.
        intensity_range: smallest and largest voxel value (of every volume).
    """

    path: str
    volumes: int
    spacing_mm: tuple[float, float, float]
    slice_shapes: Mapping[str, tuple[int, int]] | None = None
    intensity_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class SlideHeader:
    """What validation needs from a slide file's header.

    Attributes:
        path: the user's file, as errors should name it.
        mpp: level-0 microns per pixel ``(x, y)`` the file records, ``None`` when it records none.
    """

    path: str
    mpp: tuple[float, float] | None
    dimensions: tuple[int, int] | None = None
    file_bytes: int | None = None


@dataclass(frozen=True)
class SlideLimits(Params):
    """``data_engineering.slide_limits``: a slide header's plausibility, before any pixel.

    A 68 KB TIFF whose header claimed 200,000 x 200,000 px was streamed for 131 s at 5 GB of
    memory before anything failed (issue 15). The defaults are generous: the largest 40x
    whole-slide scans are about 1.5e10 px, and single-file JPEG / JPEG 2000 slides hold
    0.02-0.5 bytes per pixel (CMU-1-Small-Region.svs: 0.29).

    Attributes:
        max_level0_px: largest level-0 pixel count accepted (width x height).
        min_bytes_per_px: smallest file size per claimed level-0 pixel for single-file
            TIFF-family slides (``.svs .tif .tiff .ndpi .scn .bif .qptiff``); multi-file formats
            (MRXS, VMS) keep their pixels in other files and are not checked.
    """

    max_level0_px: float = 5e10
    min_bytes_per_px: float = 1e-4

    def problems(self, header: SlideHeader, where: str) -> list[str]:
        """Why ``header`` is implausible (empty when it is not)."""
        if header.dimensions is None:
            return []
        w, h = header.dimensions
        px = float(w) * float(h)
        fix = "; if the file is genuine, raise data_engineering.slide_limits."
        if px > self.max_level0_px:
            return [
                f"{where}: slide {header.path} claims {w} x {h} px at level 0 ({px / 1e9:.1f} "
                f"Gpx), above max_level0_px = {self.max_level0_px:.3g}: refused before reading "
                f"any pixel{fix}max_level0_px"
            ]
        single_file = Path(header.path).suffix.lower() in _SINGLE_FILE_SLIDES
        if single_file and header.file_bytes is not None and px > 0:
            per_px = header.file_bytes / px
            if per_px < self.min_bytes_per_px:
                return [
                    f"{where}: slide {header.path} claims {w} x {h} px ({px / 1e9:.2f} Gpx) in "
                    f"a file of {header.file_bytes / 1e3:.0f} KB ({per_px:.1e} bytes per pixel; "
                    "compressed slides hold about 0.02-0.5): its header is damaged or forged, "
                    f"refused before reading any pixel{fix}min_bytes_per_px"
                ]
        return []


_SINGLE_FILE_SLIDES = {".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".qptiff"}


class ManifestError(ValueError):
    """The pairs manifest is inconsistent with itself or with the files it names."""


def _blank(value: object) -> bool:
    return (
        value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""
    )


class InputHeaders:
    """The headers :func:`validate_pairs` asks about, read through the folders' loaders.

    Each MRI is loaded once (its geometry and slice counts), each slide's header once (OpenSlide
    reads no pixels to open a file).

    Args:
        slides: ``{name: callable returning an open Slide}`` (a context manager).
        mri_volumes: ``{name: callable returning a SimpleITK image}``.
        mri_source: how to name an MRI's file in errors (default: its name).
    """

    def __init__(
        self,
        slides: Mapping[str, Callable[[], Any]],
        mri_volumes: Mapping[str, Callable[[], sitk.Image]],
        mri_source: Callable[[str], str] = str,
    ) -> None:
        self._slides, self._mri, self._source = slides, mri_volumes, mri_source
        self._volumes: dict[str, sitk.Image] = {}

    def _volume(self, name: str) -> sitk.Image:
        if name not in self._volumes:
            self._volumes[name] = self._mri[name]()
        return self._volumes[name]

    def slide(self, name: str) -> SlideHeader:
        """The slide's file and level-0 mpp."""
        with self._slides[name]() as slide:
            path = Path(slide.path)
            return SlideHeader(
                path=str(path),
                mpp=slide.mpp,
                dimensions=slide.dimensions,
                file_bytes=path.stat().st_size if path.is_file() else None,
            )

    def mri(self, name: str) -> MriHeader:
        """The MRI's file, volume count and spacing; a 2-D or 5-D image is an error naming it."""
        image = self._volume(name)
        if image.GetDimension() not in (3, 4):
            raise ManifestError(
                f"MRI {self._source(name)} is a {image.GetDimension()}-D image; the manifest's "
                "mri must be a 3-D volume or a 4-D series of volumes"
            )
        sx, sy, sz = (float(v) for v in image.GetSpacing()[:3])
        first = select_volume(image, 0)
        shapes: dict[str, tuple[int, int]] = {}
        for p in Plane:
            cols, rows = extract_slice(first, p, 0).GetSize()  # a 2-D slice: (x, y) sizes
            shapes[p.value] = (rows, cols)
        voxels = sitk.GetArrayViewFromImage(image)  # a view: no copy (4-D too)
        return MriHeader(
            self._source(name),
            volume_count(image),
            (sx, sy, sz),
            shapes,
            (float(voxels.min()), float(voxels.max())),
        )

    def slice_count(self, name: str, plane: str) -> int:
        """Slices of the MRI in ``plane`` (every volume of a 4-D file has the same)."""
        return slice_count(select_volume(self._volume(name), 0), plane)


def validate_pairs(
    pairs: pd.DataFrame,
    slide_names: set[str] | Mapping[str, object],
    mri_slice_counts: Callable[[str, str], int],
    mri_names: set[str] | Mapping[str, object],
    source: str = "pairs manifest",
    *,
    slide_header: Callable[[str], SlideHeader] | None = None,
    default_slide_mpp: float | None = None,
    mri_header: Callable[[str], MriHeader] | None = None,
    slide_limits: SlideLimits | None = None,
) -> pd.DataFrame:
    """Check every row of the manifest before any work is done.

    Args:
        pairs: the manifest table.
        slide_names: names of the slide files that exist (partition ids of the slides folder).
        mri_slice_counts: ``f(mri_name, plane) -> number of slices`` for an existing MRI file.
        mri_names: names of the MRI files that exist.
        source: how to name the manifest in errors; ``pairs.attrs["source"]`` (the file path,
            set by ``PairsManifestDataset``) takes precedence.
        slide_header: ``f(slide_name) -> SlideHeader`` for an existing slide (reads the header
            only). When given, every slide must end with a plausible level-0 pixel size: the
            manifest's ``slide_mpp`` / ``slide_mpp_y``, else the file's, else
            ``default_slide_mpp``; a slide with none is an error naming its file.
        default_slide_mpp: µm per level-0 pixel for slides whose file records none and whose
            row gives none (the ``data_engineering.slide_mpp`` parameter). Never overrides a file.
        mri_header: ``f(mri_name) -> MriHeader`` for an existing MRI. When given, spacings must
            be plausible and a 4-D file needs the row's ``mri_volume``; ``mri_slice_counts`` is
            then asked about the selected volume.

    Returns:
        A clean copy: ids and names as stripped strings, ``slice_index`` as int, ``plane``
        lower-case, ``split`` as a string ('' when empty); with ``slide_header``, also
        ``slide_mpp_x_um``, ``slide_mpp_y_um`` (float) and ``slide_mpp_source`` (``file``,
        ``manifest`` or ``parameter``); with ``mri_header``, ``mri_volume`` (int).

    Raises:
        ManifestError: naming the manifest, the row (1-based, as in a spreadsheet after the
            header) with its ``pair_id``, the field and what is wrong. All problems are reported
            together.
    """
    source = str(pairs.attrs.get("source", source))
    missing = [c for c in REQUIRED_COLUMNS if c not in pairs.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            f"required columns are {', '.join(REQUIRED_COLUMNS)}"
        )
    if len(pairs) == 0:
        raise ManifestError(f"{source}: has no rows")
    problems: list[str] = []
    out = pairs.copy()
    counts_cache: dict[tuple[str, str], int] = {}
    headers: dict[str, SlideHeader] = {}
    mri_headers: dict[str, MriHeader] = {}
    seen: dict[str, int] = {}
    clean_rows = []
    for i, row in enumerate(pairs.to_dict("records")):
        line = i + 2  # header is line 1
        where = f"row {line} (pair_id={row.get('pair_id')!r})"
        rec: dict[str, Any] = {}  # the cleaned row: str fields, int slice_index, float mpp
        for col in ("pair_id", "specimen_id", "slide", "mri"):
            if _blank(row[col]):
                problems.append(f"{where}: field '{col}' is empty")
            rec[col] = "" if _blank(row[col]) else str(row[col]).strip()
        pid = rec["pair_id"]
        if pid and not _SAFE_ID.fullmatch(pid):
            problems.append(
                f"{where}: field 'pair_id' = {pid!r} is not a safe file name: use letters, "
                "digits, '_', '-' and '.' (no path separators, no '..'), starting with a "
                "letter or digit; it names output files such as aligned_mri/<pair_id>.mha"
            )
        if pid:
            if pid in seen:
                problems.append(f"{where}: field 'pair_id' duplicates row {seen[pid]}")
            else:
                seen[pid] = line
        if rec["slide"] and rec["slide"] not in slide_names:
            problems.append(f"{where}: field 'slide' names a missing file {rec['slide']!r}")
        mri_ok = bool(rec["mri"]) and rec["mri"] in mri_names
        if rec["mri"] and not mri_ok:
            problems.append(f"{where}: field 'mri' names a missing file {rec['mri']!r}")
        plane_raw = "" if _blank(row["plane"]) else str(row["plane"]).strip().lower()
        try:
            plane = Plane(plane_raw)
        except ValueError:
            problems.append(
                f"{where}: field 'plane' = {row['plane']!r} is not one of "
                f"{', '.join(p.value for p in Plane)}"
            )
            plane = None
        rec["plane"] = plane_raw
        index_raw = row["slice_index"]
        try:
            index = int(index_raw)
            if float(index_raw) != index:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"{where}: field 'slice_index' = {index_raw!r} is not an integer")
            index = None
        rec["slice_index"] = index if index is not None else -1
        if mri_header is not None:
            if mri_ok and rec["mri"] not in mri_headers:
                mri_headers[rec["mri"]] = mri_header(rec["mri"])
            volume, mri_ok = _check_mri(row, mri_headers.get(rec["mri"]), where, problems, mri_ok)
            rec["mri_volume"] = volume
        if index is not None and plane is not None and mri_ok:
            key = (rec["mri"], plane.value)
            if key not in counts_cache:
                counts_cache[key] = mri_slice_counts(rec["mri"], plane.value)
            n = counts_cache[key]
            if not 0 <= index < n:
                problems.append(
                    f"{where}: field 'slice_index' = {index} is out of range 0..{n - 1} for "
                    f"{plane.value} slices of {rec['mri']!r}"
                )
        split = "" if _blank(row["split"]) else str(row["split"]).strip().lower()
        if split and split not in SPLITS:
            problems.append(f"{where}: field 'split' = {row['split']!r} is not one of {SPLITS}")
        rec["split"] = split
        if slide_header is not None:
            header = None
            if rec["slide"] and rec["slide"] in slide_names:
                if rec["slide"] not in headers:
                    headers[rec["slide"]] = slide_header(rec["slide"])
                header = headers[rec["slide"]]
            rec.update(_resolve_mpp(row, header, default_slide_mpp, where, problems))
            if header is not None and slide_limits is not None:
                problems += slide_limits.problems(header, where)
        clean_rows.append(rec)
    if problems:
        raise ManifestError(f"{source}: " + "; ".join(problems))
    columns = ["pair_id", "specimen_id", "slide", "mri", "plane", "slice_index", "split"]
    if slide_header is not None:
        columns += ["slide_mpp_x_um", "slide_mpp_y_um", "slide_mpp_source"]
    if mri_header is not None:
        columns += ["mri_volume"]
    for col in columns:
        out[col] = [r[col] for r in clean_rows]
    out["slice_index"] = out["slice_index"].astype(int)
    # a specimen split between train and test would leak: refuse it
    given = out[out["split"] != ""]
    per_specimen = given.groupby("specimen_id")["split"].nunique()
    mixed = per_specimen[per_specimen > 1]
    if len(mixed):
        raise ManifestError(
            f"{source}: specimen(s) {', '.join(map(str, mixed.index))} appear in more than one "
            "split; splits must be by specimen"
        )
    return out


def _number(
    row: Mapping[Hashable, object], column: str, where: str, problems: list[str]
) -> float | None:
    """The optional positive number in ``row[column]``; a non-number is appended to problems."""
    raw = row.get(column)
    if _blank(raw):
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        problems.append(f"{where}: field '{column}' = {raw!r} is not a positive number of µm")
        return None
    return value


def _check_mri(
    row: Mapping[Hashable, object],
    header: MriHeader | None,
    where: str,
    problems: list[str],
    mri_ok: bool,
) -> tuple[int, bool]:
    """The row's volume index of its MRI, and whether slice counts can be asked about it."""
    raw = row.get("mri_volume")
    given: int | None = None
    if not _blank(raw):
        try:
            given = int(str(raw).strip())
        except ValueError:
            problems.append(f"{where}: field 'mri_volume' = {raw!r} is not an integer")
            return 0, False
    if header is None:
        return given or 0, False
    low, high = PLAUSIBLE_SPACING_MM
    if not all(low <= s <= high for s in header.spacing_mm):
        spacing = " x ".join(f"{s:g}" for s in header.spacing_mm)
        problems.append(
            f"{where}: MRI {header.path} has voxel spacing {spacing} mm, outside the plausible "
            f"{low:g}-{high:g} mm (a missing or broken header); fix the file's spacing"
        )
        mri_ok = False
    if (
        header.intensity_range is not None
        and header.intensity_range[0] == header.intensity_range[1]
    ):
        problems.append(
            f"{where}: MRI {header.path} has one intensity everywhere "
            f"({header.intensity_range[0]:g}): it holds no image (an empty or failed export)"
        )
        mri_ok = False
    plane = str(row.get("plane", "")).strip().lower()
    shape = (header.slice_shapes or {}).get(plane)
    if shape is not None and min(shape) < MIN_SLICE_PX:
        problems.append(
            f"{where}: MRI {header.path} gives {plane} slices of {shape[0]} x {shape[1]} px; "
            f"masks and registration need at least {MIN_SLICE_PX} px along each side"
        )
        mri_ok = False
    if header.volumes > 1 and given is None:
        problems.append(
            f"{where}: MRI {header.path} is 4-D ({header.volumes} volumes); add a manifest "
            "column 'mri_volume' with the 0-based volume to slice"
        )
        return 0, False
    index = given or 0
    if not 0 <= index < header.volumes:
        problems.append(
            f"{where}: field 'mri_volume' = {index} is out of range 0..{header.volumes - 1} for "
            f"MRI {header.path}"
        )
        return 0, False
    return index, mri_ok


def _resolve_mpp(
    row: Mapping[Hashable, object],
    header: SlideHeader | None,
    default: float | None,
    where: str,
    problems: list[str],
) -> dict[str, object]:
    """The level-0 mpp a row's slide is processed with, and its source (see validate_pairs)."""
    x = _number(row, "slide_mpp", where, problems)
    y = _number(row, "slide_mpp_y", where, problems)
    if y is not None and x is None:
        problems.append(f"{where}: field 'slide_mpp_y' is given without 'slide_mpp' (the x size)")
    none = {"slide_mpp_x_um": math.nan, "slide_mpp_y_um": math.nan, "slide_mpp_source": ""}
    if header is None:  # a missing slide: already reported
        return none
    mpp: tuple[float, float] | None
    if x is not None:
        mpp, origin = (x, y if y is not None else x), "manifest"
        if (
            header.mpp is not None
            and max(abs(a / b - 1.0) for a, b in zip(mpp, header.mpp, strict=True)) > MPP_MISMATCH
        ):
            logger.warning(
                "%s: slide %s records %.4g x %.4g µm/px; the manifest's slide_mpp %.4g x %.4g "
                "is used instead",
                where, header.path, *header.mpp, *mpp,
            )  # fmt: skip
    elif header.mpp is not None:
        mpp, origin = header.mpp, "file"
    elif default is not None:
        mpp, origin = (default, default), "parameter"
    else:
        problems.append(
            f"{where}: slide {header.path} records no pixel size (no openslide.mpp-x/mpp-y, "
            "common in TCGA JPEG2000 .svs and plain TIFFs) and none is given; add a manifest "
            "column 'slide_mpp' with its level-0 microns per pixel (and 'slide_mpp_y' if the "
            "pixels are not square), or pass --params=data_engineering.slide_mpp=<µm> for every "
            "slide without one"
        )
        return none
    low, high = PLAUSIBLE_MPP_UM
    if not all(low <= m <= high for m in mpp):
        problems.append(
            f"{where}: slide {header.path} has an implausible pixel size {mpp[0]:g} x {mpp[1]:g} "
            f"µm ({origin}); level-0 pixels are {low:g}-{high:g} µm (0.25 at 40x, 0.5 at 20x)"
        )
        return none
    return {"slide_mpp_x_um": mpp[0], "slide_mpp_y_um": mpp[1], "slide_mpp_source": origin}


@dataclass(frozen=True)
class SplitFractions(Params):
    """Fractions of specimens per split (each >= 0); they must sum to 1.

    Used where the manifest's split is empty; the defaults deal the demo's 8 specimens 5 train /
    3 test, as in the paper.

    Attributes:
        train, val, test: target fractions of the specimens in each split.
        seed: seed of the shuffle that deals the specimens (:func:`assign_splits`).
    """

    train: Annotated[float, Range(ge=0.0)] = 0.625
    val: Annotated[float, Range(ge=0.0)] = 0.0
    test: Annotated[float, Range(ge=0.0)] = 0.375
    seed: int = 42

    def validate(self) -> None:
        """The fractions sum to 1 (within 1e-6)."""
        values = (self.train, self.val, self.test)
        if abs(sum(values) - 1.0) > 1e-6:
            total = sum(values)
            fail("", f"fractions train, val, test must sum to 1, got {values} (sum {total:g})")


def assign_splits(pairs: pd.DataFrame, fractions: SplitFractions) -> pd.DataFrame:
    """Assign a split to every specimen whose rows have an empty ``split``.

    Whole specimens are assigned, never single rows, so no specimen is in two splits. Specimens
    that already carry a split keep it and count towards the targets. Specimens are shuffled with
    ``fractions.seed``; the number per split is the largest-remainder rounding of
    ``fraction * n_specimens``, with at least one train and one test specimen when there are two
    or more specimens and the fractions allow it.

    Args:
        pairs: a validated manifest (see :func:`validate_pairs`).
        fractions: target fractions of specimens.

    Returns:
        A copy with ``split`` filled for every row.
    """
    out = pairs.copy()
    specimens = list(dict.fromkeys(out["specimen_id"]))
    fixed = {
        s: out.loc[out["specimen_id"] == s, "split"].iloc[0]
        for s in specimens
        if (out.loc[out["specimen_id"] == s, "split"] != "").any()
    }
    free = [s for s in specimens if s not in fixed]
    if not free:
        return out
    n = len(specimens)
    target = np.array([fractions.train, fractions.val, fractions.test]) * n
    have = np.array([sum(1 for v in fixed.values() if v == name) for name in SPLITS])
    want = np.maximum(target - have, 0.0)
    if want.sum() == 0:
        want = np.array([fractions.train, fractions.val, fractions.test])
    want = want / want.sum() * len(free)
    counts = np.floor(want).astype(int)
    for i in np.argsort(-(want - counts))[: len(free) - counts.sum()]:
        counts[i] += 1
    if n >= 2 and fractions.test > 0 and counts[2] + have[2] == 0 and counts[0] > 1:
        counts[0] -= 1
        counts[2] += 1
    rng = np.random.default_rng(fractions.seed)
    order = [free[i] for i in rng.permutation(len(free))]
    assignment = dict(fixed)
    start = 0
    for name, count in zip(SPLITS, counts, strict=True):
        for s in order[start : start + count]:
            assignment[s] = name
        start += count
    rows = out["split"] == ""
    out.loc[rows, "split"] = out.loc[rows, "specimen_id"].map(assignment)
    return out
