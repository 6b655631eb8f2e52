"""Read and write medical images with SimpleITK, with validation and atomic writes (no Kedro).

Supported on disk:

* single files: NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd`` + ``.raw``/``.zraw``),
  NRRD (``.nrrd``, ``.nhdr`` + detached data);
* a DICOM series: a folder of slice files, read with GDCM's series sorting
  (``sitk.ImageSeriesReader.GetGDCMSeriesFileNames``) and written one file per slice;
* a single DICOM file (``.dcm``): one slice, or a multi-frame volume (read only).

A classic MR or CT DICOM without Pixel Spacing (0028,0030) is refused: GDCM would read it as
1 mm. (Enhanced multi-frame objects keep their spacing in functional groups, which GDCM reads.)

Geometry (origin in mm, spacing in mm, direction cosines; ITK's LPS physical space) is kept by
every format. Things worth knowing:

* ITK (SimpleITK 2.5 / ITK 5.4) reads a *truncated* NIfTI file without complaint (the missing
  voxels come back as garbage) and silently turns NaN and +-inf NIfTI voxels into 0. So
  :func:`read_image` reads a NIfTI file's bytes once itself (for ``.nii.gz`` by decompressing
  the stream, which also verifies the gzip CRC): it checks that the file holds all the bytes its
  header promises and counts non-finite float voxels. Other formats keep NaN/inf, which are
  counted on the loaded image.
* NIfTI header fields that ITK stores in the metadata dictionary (``qform_code``, ``srow_x``,
  ``ITK_original_direction``, ...) describe the source file only; they are dropped when writing
  to a non-NIfTI format instead of being copied into MHA/NRRD headers.
* DICOM writing needs a 3-D scalar image. ``uint8``, ``uint16`` and ``int16`` are stored as
  they are. Any other pixel type (``float32``, ``int32``, ...) is stored as unsigned 16-bit with a
  rescale slope/intercept chosen from the image's range, so values come back as ``float64``
  within ``slope / 2 = (max - min) / 131070`` of the original; with modality ``MR`` GDCM then
  uses the Enhanced MR storage class (classic MR images have no rescale tags). DICOM cannot
  express a left-handed voxel grid (direction determinant < 0): such a volume comes back
  physically identical but with its slice axis reversed.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import shutil
import struct
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.durability.atomic import (
    atomic_path,
    fsync_folder,
    replace_folder,
    staging_path,
)

__all__ = [
    "DICOM_FILE",
    "DICOM_SERIES",
    "ImageReadError",
    "ImageWriteError",
    "image_format",
    "list_dicom_series",
    "read_image",
    "write_image",
]

DICOM_SERIES = "dicom-series"
"""Format name returned by :func:`image_format` for a DICOM series folder."""
DICOM_FILE = "dicom-file"
"""Format name returned by :func:`image_format` for a single ``.dcm`` file (read only)."""

# longest suffix first so ".nii.gz" wins over ".gz"
_FILE_FORMATS: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".mha": "metaimage",
    ".mhd": "metaimage",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".dcm": DICOM_FILE,
}
# formats whose header file points at a separate data file (written side by side)
_DETACHED_HEADERS = (".mhd", ".nhdr")

# metadata that ITK's NIfTI reader adds; meaningless (and misleading) in other formats
_NIFTI_KEY_PATTERN = re.compile(
    r"^(ITK_FileNotes|ITK_original_direction|ITK_original_spacing|ITK_sform_corrected|aux_file|"
    r"bitpix|cal_max|cal_min|datatype|descrip|dim\[\d\]|dim_info|intent_code|intent_name|"
    r"intent_p\d|nifti_type|pixdim\[\d\]|qfac|qform_code|qform_code_name|qoffset_[xyz]|"
    r"quatern_[bcd]|qto_xyz|scl_inter|scl_slope|sform_code|sform_code_name|slice_code|"
    r"slice_duration|slice_end|slice_start|srow_[xyz]|sto_xyz|toffset|vox_offset|xyzt_units)$"
)

# DICOM pixel types GDCM stores without rescaling
_DICOM_NATIVE_TYPES = {sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkInt16}
_FLOAT_TYPES = {sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkVectorFloat32, sitk.sitkVectorFloat64}
# series-level DICOM tags copied onto a volume read from a series
_DICOM_SERIES_TAGS = ("0008|0060", "0008|103e", "0020|000d", "0020|000e", "0020|0052")
# classic single-frame storage classes, whose Pixel Spacing must be a top-level element
_CLASSIC_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
}
_PIXEL_SPACING = "0028|0030"
_SOP_CLASS = "0008|0016"
_GZIP_CHUNK = 16 * 1024 * 1024


class ImageReadError(ValueError):
    """An image file or DICOM folder is missing, unreadable, corrupt or holds bad values."""


class ImageWriteError(ValueError):
    """An image cannot be written to the requested path or format."""


def image_format(path: str | os.PathLike[str]) -> str:
    """Format of ``path`` from its name: ``nifti``, ``metaimage``, ``nrrd`` or ``dicom-series``.

    A path with no recognised extension that is an existing directory, or that has no suffix at
    all, is a DICOM series folder.

    Raises:
        ValueError: the extension is not one of the supported formats.
    """
    p = Path(path)
    name = p.name.lower()
    for suffix, fmt in _FILE_FORMATS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    if p.is_dir() or not p.suffix:
        return DICOM_SERIES
    supported = ", ".join(_FILE_FORMATS)
    raise ValueError(
        f"{p}: unsupported image extension {p.suffix!r}; use one of {supported} "
        "or a DICOM series folder"
    )


def _suffix_of(path: Path) -> str:
    name = path.name.lower()
    for suffix in _FILE_FORMATS:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _itk_message(exc: BaseException) -> str:
    """The useful tail of a SimpleITK exception message, on one line."""
    text = str(exc)
    for marker in ("sitk::ERROR:", "ITK ERROR:", "ERROR:"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return " ".join(text.split())[:500]


# ----------------------------------------------------------------------------------------------
# reading


def list_dicom_series(folder: str | os.PathLike[str]) -> list[str]:
    """Series Instance UIDs of the DICOM series found directly in ``folder`` (GDCM's scan)."""
    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _resolve_pixel_type(pixel_type: int | str | None) -> int | None:
    if pixel_type is None or isinstance(pixel_type, int):
        return pixel_type
    name = pixel_type if pixel_type.startswith("sitk") else f"sitk{pixel_type}"
    value = getattr(sitk, name, None)
    if not isinstance(value, int):
        raise ValueError(f"unknown SimpleITK pixel type {pixel_type!r} (e.g. 'sitkFloat32')")
    return value


def _read_dicom_series(folder: Path, series_id: str | None) -> sitk.Image:
    series_ids = list_dicom_series(folder)
    if not series_ids:
        raise ImageReadError(f"{folder}: folder holds no readable DICOM series")
    if series_id is None:
        if len(series_ids) > 1:
            listing = ", ".join(series_ids)
            raise ImageReadError(
                f"{folder}: folder holds {len(series_ids)} DICOM series ({listing}); "
                "pass series_id to choose one"
            )
        series_id = series_ids[0]
    elif series_id not in series_ids:
        raise ImageReadError(
            f"{folder}: no DICOM series {series_id!r}; found {', '.join(series_ids)}"
        )
    file_names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(file_names)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(
            f"{folder}: cannot read DICOM series {series_id} ({len(file_names)} files): "
            f"{_itk_message(exc)}"
        ) from exc
    sop = reader.GetMetaData(0, _SOP_CLASS).strip() if reader.HasMetaDataKey(0, _SOP_CLASS) else ""
    _check_dicom_spacing(Path(file_names[0]), sop, reader.HasMetaDataKey(0, _PIXEL_SPACING))
    for key in _DICOM_SERIES_TAGS:
        if reader.HasMetaDataKey(0, key):
            image.SetMetaData(key, reader.GetMetaData(0, key).strip())
    return image


def _check_dicom_spacing(path: Path, sop_class: str, has_pixel_spacing: bool) -> None:
    """Refuse a classic MR/CT DICOM without Pixel Spacing: GDCM would assume 1 mm."""
    if sop_class.rstrip("\x00 ") in _CLASSIC_SOP_CLASSES and not has_pixel_spacing:
        kind = _CLASSIC_SOP_CLASSES[sop_class.rstrip("\x00 ")]
        raise ImageReadError(
            f"{path}: this {kind} DICOM records no Pixel Spacing (0028,0030), so its pixel size "
            "is unknown (ITK would read it as 1 mm); fix the file's header, or convert it to "
            "NIfTI with the right spacing and use that file"
        )


def _read_dicom_file(path: Path) -> sitk.Image:
    """One ``.dcm`` file: a single slice (a 3-D image one voxel deep) or a multi-frame volume."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(
            f"{path}: GDCM cannot read this DICOM file (corrupt, truncated or not DICOM): "
            f"{_itk_message(exc)}"
        ) from exc
    sop = image.GetMetaData(_SOP_CLASS).strip() if image.HasMetaDataKey(_SOP_CLASS) else ""
    _check_dicom_spacing(path, sop, image.HasMetaDataKey(_PIXEL_SPACING))
    if image.GetDimension() == 2:  # a lone slice: one voxel deep, so it can be sliced
        image = sitk.JoinSeries(image)
    return image


@dataclass(frozen=True)
class _NiftiLayout:
    """Where the voxels of a NIfTI file are and how they are stored."""

    vox_offset: int  # byte offset of the first voxel
    payload: int  # bytes of voxel data
    float_dtype: np.dtype | None  # numpy dtype of float voxels (None for integer types)


# NIfTI datatype codes of floating-point voxels: float32, float64, complex64, complex128
_NIFTI_FLOAT_CODES = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}


def _nifti_layout(header: bytes) -> _NiftiLayout | None:
    """Voxel layout from a NIfTI-1/-2 header, or ``None`` if the header is not one."""
    for endian in "<>":
        if len(header) < 4:
            return None
        (sizeof_hdr,) = struct.unpack(f"{endian}i", header[:4])
        if sizeof_hdr == 348 and len(header) >= 348:
            dims = struct.unpack(f"{endian}8h", header[40:56])
            datatype, bitpix = struct.unpack(f"{endian}2h", header[70:74])
            (vox_offset_f,) = struct.unpack(f"{endian}f", header[108:112])
            vox_offset = int(vox_offset_f)
        elif sizeof_hdr == 540 and len(header) >= 540:
            datatype, bitpix = struct.unpack(f"{endian}2h", header[12:16])
            dims = struct.unpack(f"{endian}8q", header[16:80])
            (vox_offset,) = struct.unpack(f"{endian}q", header[168:176])
        else:
            continue
        ndim = int(dims[0])
        if not 1 <= ndim <= 7 or bitpix <= 0 or vox_offset < 0:
            return None
        n_voxels = math.prod(max(int(d), 1) for d in dims[1 : ndim + 1])
        code = _NIFTI_FLOAT_CODES.get(int(datatype))
        return _NiftiLayout(
            vox_offset=vox_offset,
            payload=n_voxels * int(bitpix) // 8,
            float_dtype=np.dtype(endian + code) if code else None,
        )
    return None


@dataclass
class _NiftiScan:
    """Result of reading a NIfTI file's bytes: problem found and non-finite voxel counts."""

    problem: str | None = None
    n_values: int = 0  # float values scanned (2 per complex voxel)
    n_nan: int = 0
    n_inf: int = 0


def _scan_nifti(path: Path, count_nonfinite: bool) -> _NiftiScan:
    """Check that a NIfTI file is complete and count NaN/inf voxels in one streaming pass.

    ITK does neither: it reads a truncated file without complaint and turns NaN and +-inf
    voxels into 0.
    """
    with path.open("rb") as stream:
        compressed = stream.read(2) == b"\x1f\x8b"  # gzip magic; ITK also reads plain bytes
    scan = _NiftiScan()
    try:
        with gzip.open(path, "rb") if compressed else path.open("rb") as stream:
            header = stream.read(540)
            layout = _nifti_layout(header)
            if layout is None:
                return scan  # not a header we understand: let ITK decide
            dtype = layout.float_dtype if count_nonfinite else None
            begin, end = layout.vox_offset, layout.vox_offset + layout.payload
            if dtype is None and not compressed:
                total = path.stat().st_size
            else:
                carry = b""
                total = 0
                chunk = header
                while chunk:
                    lo, hi = max(begin, total), min(end, total + len(chunk))
                    if dtype is not None and hi > lo:
                        data = carry + chunk[lo - total : hi - total]
                        usable = len(data) - len(data) % dtype.itemsize
                        values = np.frombuffer(data[:usable], dtype=dtype)
                        scan.n_values += values.size
                        scan.n_nan += int(np.count_nonzero(np.isnan(values)))
                        scan.n_inf += int(np.count_nonzero(np.isinf(values)))
                        carry = data[usable:]
                    total += len(chunk)
                    chunk = stream.read(_GZIP_CHUNK)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        scan.problem = f"corrupt or truncated gzip stream ({exc})"
        return scan
    if total < end:
        kind = "decompressed " if compressed else ""
        scan.problem = (
            f"truncated: header promises {end} bytes ({layout.payload} bytes of voxels after "
            f"offset {layout.vox_offset}) but the {kind}file holds {total}"
        )
    return scan


def _nonfinite_error(path: Path, n_nan: int, n_inf: int, n_total: int, note: str = "") -> str:
    return (
        f"{path}: image has {n_nan + n_inf} non-finite voxel values ({n_nan} NaN, {n_inf} inf) "
        f"out of {n_total}{note}; pass allow_nonfinite=True to accept"
    )


def read_image(
    path: str | os.PathLike[str],
    *,
    series_id: str | None = None,
    allow_nonfinite: bool = False,
    check_truncation: bool = True,
    pixel_type: int | str | None = None,
) -> sitk.Image:
    """Read a NIfTI/MetaImage/NRRD/DICOM file or a DICOM series folder into a ``SimpleITK.Image``.

    Args:
        path: an image file (a single ``.dcm``: one slice, read as a volume one voxel deep, or a
            multi-frame volume), or a folder holding one (or several) DICOM series.
        series_id: Series Instance UID to read when the folder holds several series.
        allow_nonfinite: accept NaN/inf voxels in floating-point images (default: refuse).
            NIfTI NaN/inf voxels then come back as 0 (ITK's reader replaces them).
        check_truncation: verify that a NIfTI file holds every voxel byte its header promises
            (``.nii.gz``: decompresses the stream once more; ITK itself does not check).
        pixel_type: optional SimpleITK pixel type to cast to (``sitk.sitkFloat32`` or
            ``"sitkFloat32"``).

    Returns:
        The image with its origin (mm), spacing (mm) and direction. A DICOM volume carries its
        series-level tags (modality, series/study/frame-of-reference UIDs, description) in its
        metadata dictionary.

    Raises:
        ImageReadError: missing path, unsupported extension, corrupt/truncated file, several
            DICOM series and no ``series_id``, or non-finite voxels. The message names the path.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: file or folder does not exist")
    if p.is_dir():
        image = _read_dicom_series(p, series_id)
    else:
        try:
            fmt = image_format(p)
        except ValueError as exc:
            raise ImageReadError(str(exc)) from exc
        if fmt == DICOM_SERIES:
            raise ImageReadError(f"{p}: a DICOM series must be read from its folder, not a file")
        if p.stat().st_size == 0:
            raise ImageReadError(f"{p}: file is empty")
        if fmt == "nifti" and (check_truncation or not allow_nonfinite):
            scan = _scan_nifti(p, count_nonfinite=not allow_nonfinite)
            if check_truncation and scan.problem is not None:
                raise ImageReadError(f"{p}: unreadable NIfTI file: {scan.problem}")
            if scan.n_nan or scan.n_inf:
                raise ImageReadError(
                    _nonfinite_error(
                        p,
                        scan.n_nan,
                        scan.n_inf,
                        scan.n_values,
                        " (ITK would silently read them as 0)",
                    )
                )
        if fmt == DICOM_FILE:
            image = _read_dicom_file(p)
        else:
            try:
                image = sitk.ReadImage(str(p))
            except RuntimeError as exc:
                raise ImageReadError(
                    f"{p}: ITK cannot read this {fmt} file (corrupt, truncated or not a {fmt} "
                    f"image): {_itk_message(exc)}"
                ) from exc
    resolved = _resolve_pixel_type(pixel_type)
    if resolved is not None and image.GetPixelID() != resolved:
        image = sitk.Cast(image, resolved)
    if not allow_nonfinite and image.GetPixelID() in _FLOAT_TYPES:
        values = sitk.GetArrayViewFromImage(image)
        finite = np.isfinite(values)
        if not finite.all():
            n_nan = int(np.count_nonzero(np.isnan(values)))
            n_inf = int(finite.size - np.count_nonzero(finite)) - n_nan
            raise ImageReadError(_nonfinite_error(p, n_nan, n_inf, finite.size))
    return image


# ----------------------------------------------------------------------------------------------
# writing


def _without_nifti_metadata(image: sitk.Image) -> sitk.Image:
    """A copy of ``image`` without the metadata keys ITK's NIfTI reader adds.

    Built with a filter (which starts an empty metadata dictionary) rather than by erasing keys
    on ``sitk.Image(image)``: in SimpleITK 2.5 that copy shares its dictionary with the
    original, and ``EraseMetaData`` on it also erases the key from the caller's image.
    """
    keys = image.GetMetaDataKeys()
    if not any(_NIFTI_KEY_PATTERN.match(k) for k in keys):
        return image
    out = sitk.Cast(image, image.GetPixelID())
    for key in keys:
        if not _NIFTI_KEY_PATTERN.match(key):
            out.SetMetaData(key, image.GetMetaData(key))
    return out


def _write_file(image: sitk.Image, dest: Path, compress: bool, fmt: str) -> None:
    """Write one image file (or a detached header and its data file) atomically."""
    if fmt != "nifti":
        image = _without_nifti_metadata(image)
    if _suffix_of(dest) in _DETACHED_HEADERS:
        _write_detached(image, dest, compress)
        return
    # the staging file keeps the extension, so that ITK picks the same writer
    with atomic_path(dest) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)


def _write_detached(image: sitk.Image, dest: Path, compress: bool) -> None:
    """Write a ``.mhd``/``.nhdr`` header and its data file(s), data first and header last.

    Not one :func:`atomic_path`: header and data file reference each other by name, so both
    are written under their final names in a private staging folder and then moved beside
    ``dest`` (each move an atomic rename; the header, renamed last, makes the new data visible).
    """
    tmp_dir = staging_path(dest)
    tmp_dir.mkdir()
    try:
        sitk.WriteImage(image, str(tmp_dir / dest.name), useCompression=compress)
        for item in sorted(tmp_dir.iterdir(), key=lambda f: f.name == dest.name):
            os.replace(item, dest.parent / item.name)
        fsync_folder(dest.parent)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _dicom_uid() -> str:
    """A fresh DICOM UID under the UUID-derived root ``2.25`` (ISO/IEC 9834-8)."""
    return f"2.25.{uuid.uuid4().int}"


def _ds(value: float) -> str:
    """Format a number as a DICOM decimal string (at most 16 characters)."""
    for digits in range(10, 3, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.3g}"


def _rescale_for_dicom(image: sitk.Image) -> tuple[sitk.Image, list[tuple[str, str]]]:
    """Image to hand to GDCM and the pixel-storage tags for storing it as 16-bit DICOM."""
    if image.GetPixelID() in _DICOM_NATIVE_TYPES:
        return image, []
    values = sitk.GetArrayViewFromImage(image)
    if values.size and not np.all(np.isfinite(values)):
        raise ImageWriteError("DICOM cannot store non-finite (NaN/inf) voxel values")
    lo = float(values.min()) if values.size else 0.0
    hi = float(values.max()) if values.size else 0.0
    intercept_text = _ds(lo)
    intercept = float(intercept_text)
    slope = (hi - intercept) / 65535.0 if hi > intercept else 1.0
    # a little margin so that the maximum still fits in 16 bits after the DS rounding
    slope_text = _ds(slope * (1.0 + 1e-6))
    tags = [
        ("0028|1052", intercept_text),  # Rescale Intercept
        ("0028|1053", slope_text),  # Rescale Slope
        ("0028|1054", "US"),  # Rescale Type: unspecified
        ("0028|0100", "16"),  # Bits Allocated
        ("0028|0101", "16"),  # Bits Stored
        ("0028|0102", "15"),  # High Bit
        ("0028|0103", "0"),  # Pixel Representation: unsigned
    ]
    return sitk.Cast(image, sitk.sitkFloat64), tags


def _write_dicom_series(
    image: sitk.Image,
    dest: Path,
    modality: str,
    series_description: str | None,
    extra_tags: Mapping[str, str] | None,
) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageWriteError(
            f"{dest}: a DICOM series needs a 3-D scalar image, got a "
            f"{image.GetDimension()}-D image with {image.GetNumberOfComponentsPerPixel()} "
            "component(s); write NIfTI/MHA/NRRD instead"
        )
    if dest.exists() and not dest.is_dir():
        raise ImageWriteError(f"{dest}: exists and is not a folder; cannot write a DICOM series")
    try:
        stored, pixel_tags = _rescale_for_dicom(image)
    except ImageWriteError as exc:
        raise ImageWriteError(f"{dest}: {exc}") from exc
    now_date, now_time = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    series_tags: list[tuple[str, str]] = [
        ("0008|0008", "DERIVED\\SECONDARY"),  # Image Type
        ("0008|0021", now_date),  # Series Date
        ("0008|0031", now_time),  # Series Time
        ("0008|0060", modality),  # Modality
        ("0008|103e", series_description or dest.name),  # Series Description
        ("0018|0050", _ds(image.GetSpacing()[2])),  # Slice Thickness (mm)
        ("0020|000d", _dicom_uid()),  # Study Instance UID
        ("0020|000e", _dicom_uid()),  # Series Instance UID
        ("0020|0052", _dicom_uid()),  # Frame of Reference UID
        *pixel_tags,
    ]
    if extra_tags:
        series_tags.extend((str(k), str(v)) for k, v in extra_tags.items())
    tmp_dir = staging_path(dest)
    tmp_dir.mkdir()
    try:
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        n_slices = image.GetSize()[2]
        for k in range(n_slices):
            # a one-slice 3-D image keeps its origin, spacing and direction, from which GDCM
            # writes Image Position/Orientation (Patient), Pixel Spacing and Spacing Between
            # Slices of that slice
            slice_k = stored[:, :, k : k + 1]  # a new image with an empty metadata dictionary
            for key, value in series_tags:
                slice_k.SetMetaData(key, value)
            slice_k.SetMetaData("0008|0018", _dicom_uid())  # SOP Instance UID
            slice_k.SetMetaData("0008|0012", now_date)  # Instance Creation Date
            slice_k.SetMetaData("0008|0013", now_time)  # Instance Creation Time
            slice_k.SetMetaData("0020|0013", str(k + 1))  # Instance Number
            writer.SetFileName(str(tmp_dir / f"slice_{k:05d}.dcm"))
            writer.Execute(slice_k)
        replace_folder(tmp_dir, dest)
    except RuntimeError as exc:
        raise ImageWriteError(
            f"{dest}: GDCM cannot write this series: {_itk_message(exc)}"
        ) from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_image(
    image: sitk.Image,
    path: str | os.PathLike[str],
    *,
    compress: bool = True,
    dicom_modality: str = "MR",
    dicom_series_description: str | None = None,
    dicom_tags: Mapping[str, str] | None = None,
) -> Path:
    """Write ``image`` atomically, keeping origin, spacing and direction.

    The image is first written to a hidden temporary file in the destination folder with the
    same extension (so ITK picks the same writer) and then renamed over ``path``; a reader never
    sees a half-written file. MetaImage ``.mhd`` and NRRD ``.nhdr`` write two files, moved data
    first and header last. A DICOM series is written into a sibling temporary folder that then
    replaces ``path`` (the old folder is removed only after the rename succeeded).

    Args:
        image: any SimpleITK image (2-D/3-D, scalar or vector; DICOM: 3-D scalar only).
        path: destination file (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``,
            ``.nhdr``) or a folder path without suffix for a DICOM series. Parent folders are
            created.
        compress: compress voxel data (gzip/zlib) where the format allows it (``.nii`` is never
            compressed: use ``.nii.gz``; DICOM is written uncompressed).
        dicom_modality: Modality tag (0008,0060) for a DICOM series.
        dicom_series_description: Series Description (0008,103E); default the folder name.
        dicom_tags: extra DICOM tags ``{"gggg|eeee": value}`` set on every slice (e.g.
            ``{"0010|0010": "Anon"}``).

    Returns:
        The path written.

    Raises:
        ImageWriteError: unsupported extension, or an image DICOM cannot store.
        TypeError: ``image`` is not a ``SimpleITK.Image``.
    """
    if not isinstance(image, sitk.Image):
        raise TypeError(f"expected a SimpleITK.Image, got {type(image).__name__}")
    dest = Path(path)
    try:
        fmt = image_format(dest)
    except ValueError as exc:
        raise ImageWriteError(str(exc)) from exc
    if fmt == DICOM_FILE:
        raise ImageWriteError(
            f"{dest}: single .dcm files are read only; write a DICOM series to a folder path"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt == DICOM_SERIES:
        _write_dicom_series(image, dest, dicom_modality, dicom_series_description, dicom_tags)
        return dest
    if dest.is_dir():
        raise ImageWriteError(f"{dest}: is a folder; cannot write a {fmt} file there")
    try:
        _write_file(image, dest, compress, fmt)
    except RuntimeError as exc:
        raise ImageWriteError(f"{dest}: ITK cannot write this image: {_itk_message(exc)}") from exc
    return dest
