"""Lazy reading of imzML mass-spectrometry images (continuous and processed) with pyimzML.

An imzML dataset is a pair of files: ``name.imzML`` (XML metadata: one ``<spectrum>`` per pixel
with its position and the offsets of its arrays) and ``name.ibd`` (the binary m/z and intensity
arrays). Files can be gigabytes, so :class:`ImzMLReader` parses only the XML on opening (kept in
memory by pyimzML as a few integers per pixel) and reads one spectrum at a time from the ``.ibd``
(:meth:`ImzMLReader.spectrum`, :meth:`ImzMLReader.iter_spectra`).

Conventions:

* pixel positions: imzML ``position x`` / ``position y`` are 1-based; here they become 0-based
  array positions ``col = x - 1``, ``row = y - 1``; images built from a file have shape
  ``(H, W) = (max y, max x)`` (pixels never acquired stay empty, see
  :meth:`ImzMLReader.acquired_mask`). Only 2-D data are supported (a single ``position z``).
* m/z values are in Da (strictly: Th, the m/z unit), intensities in the file's units (counts).
* pixel size: ``(x, y)`` in µm from the ``pixel size (x)`` / ``pixel size y`` (IMS:1000046/47)
  scan-settings parameters, ``None`` when the file does not state it.
* mode: ``continuous`` files store one m/z array shared by all pixels, ``processed`` files one m/z
  array per pixel.

Every failure to open raises :class:`ImzMLReadError` naming the file and the problem (missing
``.ibd``, truncated ``.ibd``, truncated or corrupt XML, not an imzML file, compressed arrays).
"""

from __future__ import annotations

import enum
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self
from xml.etree.ElementTree import ParseError

import numpy as np

__all__ = [
    "ImzMLMode",
    "ImzMLReadError",
    "ImzMLReader",
    "Spectrum",
    "open_imzml",
]

_SNIFF_BYTES = 65536
_MZ_MIN_ACCESSION = "MS:1000528"  # lowest observed m/z
_MZ_MAX_ACCESSION = "MS:1000527"  # highest observed m/z


class ImzMLReadError(ValueError):
    """An imzML dataset cannot be opened or read; the message names the file and the problem."""


class ImzMLMode(enum.StrEnum):
    """Storage mode of an imzML file.

    ``continuous``: one m/z array for all pixels; ``processed``: one m/z array per pixel.
    """

    CONTINUOUS = "continuous"
    PROCESSED = "processed"


class Spectrum(NamedTuple):
    """One pixel's spectrum.

    Attributes:
        index: spectrum index in the file (0-based, file order).
        row: 0-based row (``position y - 1``).
        col: 0-based column (``position x - 1``).
        mz: float64 ``(n,)`` m/z values in Da, as stored (ascending in valid files).
        intensity: float64 ``(n,)`` intensities (file units, usually counts).
    """

    # the field shadows ``tuple.index`` (a method no caller of a spectrum uses)
    index: int  # type: ignore[assignment]
    row: int
    col: int
    mz: np.ndarray
    intensity: np.ndarray


def _find_ibd(path: Path) -> Path:
    """The ``.ibd`` beside ``path`` with the same stem (extension case-insensitive)."""
    candidate = path.with_suffix(".ibd")
    if candidate.is_file():
        return candidate
    for sibling in path.parent.iterdir():
        if sibling.stem == path.stem and sibling.suffix.lower() == ".ibd" and sibling.is_file():
            return sibling
    raise ImzMLReadError(
        f"cannot open imzML '{path}': its binary data file '{candidate.name}' is missing "
        f"(an imzML dataset is a .imzML + .ibd pair with the same name in the same folder)"
    )


def _sniff(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head:
        raise ImzMLReadError(f"cannot open imzML '{path}': the file is empty (0 bytes)")
    if b"<mzML" not in head and b"<indexedmzML" not in head:
        raise ImzMLReadError(
            f"cannot open imzML '{path}': not an imzML file (no <mzML> element in its first "
            f"{_SNIFF_BYTES // 1024} KiB)"
        )


def _normalise_uuid(value: str) -> str:
    return value.strip().strip("{}").replace("-", "").lower()


class ImzMLReader:
    """Lazy read-only handle on an imzML/ibd pair (the XML is parsed, spectra read on demand).

    Use :func:`open_imzml` to create one and :meth:`close` it (or use it as a context manager).
    A handle can be pickled: it is reopened from its path on unpickling.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open ``path``; raise :class:`ImzMLReadError` if that is not possible."""
        self._path = Path(path)
        self._parser: Any = None
        self._mz_cache: np.ndarray | None = None
        self._mz_range: tuple[float, float] | None = None
        self._open()

    # ------------------------------------------------------------------ opening and closing
    def _open(self) -> None:
        from pyimzml.ImzMLParser import ImzMLParser

        path = self._path
        if not path.exists():
            raise ImzMLReadError(f"cannot open imzML '{path}': the file does not exist")
        if not path.is_file():
            raise ImzMLReadError(f"cannot open imzML '{path}': not a regular file")
        _sniff(path)
        ibd_path = _find_ibd(path)
        ibd_size = ibd_path.stat().st_size
        ibd = open(ibd_path, "rb")  # owned by the parser from here on; closed by close()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pyimzML warns on odd metadata types
                parser = ImzMLParser(
                    str(path),
                    parse_lib="ElementTree",
                    ibd_file=ibd,
                    include_spectra_metadata=[_MZ_MIN_ACCESSION, _MZ_MAX_ACCESSION],
                )
        except ParseError as exc:
            ibd.close()
            raise ImzMLReadError(
                f"cannot open imzML '{path}': the XML is truncated or corrupt ({exc})"
            ) from exc
        except Exception as exc:  # pyimzML raises bare IndexError/TypeError/KeyError on bad XML
            ibd.close()
            raise ImzMLReadError(
                f"cannot open imzML '{path}': not a valid imzML file (a header element or a "
                "spectrum's position, array offset or length is missing or malformed; "
                f"{type(exc).__name__}: {exc})"
            ) from exc
        self._parser = parser
        try:
            self._check(parser, ibd_path, ibd_size)
        except ImzMLReadError:
            self.close()
            raise
        self._ibd_path = ibd_path
        coords = np.asarray(parser.coordinates, dtype=np.int64).reshape(-1, 3)
        self._cols = coords[:, 0] - 1
        self._rows = coords[:, 1] - 1
        self._shape = (int(self._rows.max()) + 1, int(self._cols.max()) + 1)
        self._lengths = np.asarray(parser.mzLengths, dtype=np.int64)
        description = parser.metadata.file_description
        if "continuous" in description:
            self._mode = ImzMLMode.CONTINUOUS
        elif "processed" in description:
            self._mode = ImzMLMode.PROCESSED
        else:  # not stated: continuous if every spectrum points at the same m/z array
            same = len(set(parser.mzOffsets)) == 1
            self._mode = ImzMLMode.CONTINUOUS if same else ImzMLMode.PROCESSED

    def _check(self, parser: Any, ibd_path: Path, ibd_size: int) -> None:
        path = self._path
        n = len(parser.coordinates)
        if n == 0:
            raise ImzMLReadError(f"cannot open imzML '{path}': it lists no spectra")
        if parser.mzPrecision is None or parser.intensityPrecision is None:
            raise ImzMLReadError(
                f"cannot open imzML '{path}': the m/z or intensity array data type is not stated"
            )
        groups = parser.metadata.referenceable_param_groups
        for group_id in (parser.mzGroupId, parser.intGroupId):
            if group_id in groups and "zlib compression" in groups[group_id]:
                raise ImzMLReadError(
                    f"cannot read imzML '{path}': its binary arrays are zlib-compressed, which "
                    "pyimzML does not decode; convert it to uncompressed imzML first"
                )
        coords = np.asarray(parser.coordinates, dtype=np.int64)
        if coords[:, :2].min() < 1:
            raise ImzMLReadError(
                f"cannot open imzML '{path}': pixel positions must be >= 1 (1-based), found "
                f"x min {coords[:, 0].min()}, y min {coords[:, 1].min()}"
            )
        if len(np.unique(coords[:, 2])) > 1:
            raise ImzMLReadError(
                f"cannot open imzML '{path}': 3-D data (several 'position z' values) are not "
                "supported"
            )
        mz_len = np.asarray(parser.mzLengths, dtype=np.int64)
        int_len = np.asarray(parser.intensityLengths, dtype=np.int64)
        bad = np.flatnonzero(mz_len != int_len)
        if bad.size:
            i = int(bad[0])
            raise ImzMLReadError(
                f"cannot open imzML '{path}': spectrum {i} has {mz_len[i]} m/z values but "
                f"{int_len[i]} intensities"
            )
        ends = np.concatenate(
            [
                np.asarray(parser.mzOffsets, dtype=np.int64)
                + mz_len * parser.sizeDict[parser.mzPrecision],
                np.asarray(parser.intensityOffsets, dtype=np.int64)
                + int_len * parser.sizeDict[parser.intensityPrecision],
            ]
        )
        needed = int(ends.max())
        if needed > ibd_size:
            raise ImzMLReadError(
                f"cannot open imzML '{path}': its binary file '{ibd_path}' is truncated "
                f"({ibd_size} bytes, the spectra need {needed})"
            )
        uuid = parser.metadata.file_description.param_by_name.get("universally unique identifier")
        if uuid and ibd_size >= 16:
            with open(ibd_path, "rb") as fh:
                ibd_uuid = fh.read(16).hex()
            if _normalise_uuid(str(uuid)) != ibd_uuid:
                warnings.warn(
                    f"imzML '{path}' and '{ibd_path}' carry different UUIDs ({uuid} vs "
                    f"{ibd_uuid}): the .ibd may belong to another dataset",
                    stacklevel=3,
                )

    def close(self) -> None:
        """Close the ``.ibd`` file (idempotent)."""
        parser, self._parser = self._parser, None
        if parser is not None and parser.m is not None:
            parser.m.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]  # re-open the file on unpickling

    def __repr__(self) -> str:
        return (
            f"ImzMLReader('{self._path}', mode={self.mode.value}, pixels={self.n_pixels}, "
            f"shape={self.shape})"
        )

    @property
    def _handle(self) -> Any:
        if self._parser is None:
            raise ImzMLReadError(f"imzML '{self._path}' is closed")
        return self._parser

    # ------------------------------------------------------------------ metadata
    @property
    def path(self) -> Path:
        """The ``.imzML`` file."""
        return self._path

    @property
    def ibd_path(self) -> Path:
        """The ``.ibd`` file."""
        return self._ibd_path

    @property
    def mode(self) -> ImzMLMode:
        """``continuous`` or ``processed``, as the file states it (inferred if it does not)."""
        return self._mode

    @property
    def n_pixels(self) -> int:
        """Number of spectra (= acquired pixels)."""
        return len(self._rows)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W) = (max y, max x)``: the shape of images built from this file."""
        return self._shape

    @property
    def rows(self) -> np.ndarray:
        """int64 ``(n_pixels,)``: 0-based row of each spectrum (file order)."""
        return self._rows.copy()

    @property
    def cols(self) -> np.ndarray:
        """int64 ``(n_pixels,)``: 0-based column of each spectrum (file order)."""
        return self._cols.copy()

    @property
    def n_points(self) -> np.ndarray:
        """int64 ``(n_pixels,)``: number of m/z points of each spectrum."""
        return self._lengths.copy()

    @property
    def pixel_size_um(self) -> tuple[float, float] | None:
        """``(x, y)`` pixel size in µm from the scan settings, ``None`` if not stated."""
        meta = self._handle.imzmldict
        x, y = meta.get("pixel size x"), meta.get("pixel size y")
        if x is None and y is None:
            return None
        if x is None or y is None:  # only one stated: square pixels
            x = y if x is None else x
            y = x
        try:
            size = (float(x), float(y))
        except (TypeError, ValueError):
            return None
        return size if size[0] > 0 and size[1] > 0 else None

    @property
    def spectrum_type(self) -> str | None:
        """``'profile'``, ``'centroid'`` or ``None`` if the file does not say."""
        return self._handle.spectrum_mode

    @property
    def polarity(self) -> str | None:
        """``'positive'``, ``'negative'``, ``'mixed'`` or ``None`` if the file does not say."""
        return self._handle.polarity

    @property
    def mz_range(self) -> tuple[float, float]:
        """``(min, max)`` m/z in Da over all pixels.

        Continuous files: from the shared m/z array. Processed files: from the per-spectrum
        ``lowest/highest observed m/z`` metadata when every spectrum has it, otherwise by
        streaming the m/z arrays once (intensities are not read). Cached.
        """
        if self._mz_range is None:
            self._mz_range = self._compute_mz_range()
        return self._mz_range

    def _compute_mz_range(self) -> tuple[float, float]:
        parser = self._handle
        nonempty = self._lengths > 0
        if not nonempty.any():
            raise ImzMLReadError(f"imzML '{self._path}': every spectrum is empty (no m/z range)")
        if self.mode is ImzMLMode.CONTINUOUS:
            mz = self._shared_mz()
            return float(mz.min()), float(mz.max())
        fields = getattr(parser, "spectrum_metadata_fields", {})
        lows = fields.get(_MZ_MIN_ACCESSION, [])
        highs = fields.get(_MZ_MAX_ACCESSION, [])
        if (
            len(lows) == self.n_pixels
            and len(highs) == self.n_pixels
            and all(v is not None for v in lows)
            and all(v is not None for v in highs)
        ):
            stated_lo = np.asarray(lows, dtype=np.float64)[nonempty]
            stated_hi = np.asarray(highs, dtype=np.float64)[nonempty]
            return float(stated_lo.min()), float(stated_hi.max())
        lo, hi = np.inf, -np.inf
        for i in np.flatnonzero(nonempty):
            mz = self._read_mz(int(i))
            lo, hi = min(lo, float(mz.min())), max(hi, float(mz.max()))
        return lo, hi

    def acquired_mask(self) -> np.ndarray:
        """bool ``(H, W)``: True where the file has a spectrum."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self._rows, self._cols] = True
        return mask

    # ------------------------------------------------------------------ spectra
    def _read_mz(self, index: int) -> np.ndarray:
        parser = self._handle
        size = parser.sizeDict[parser.mzPrecision]
        length = parser.mzLengths[index]
        parser.m.seek(parser.mzOffsets[index])
        raw = parser.m.read(length * size)
        if len(raw) != length * size:
            raise ImzMLReadError(
                f"cannot read spectrum {index} of imzML '{self._path}': '{self._ibd_path}' is "
                "truncated"
            )
        return np.frombuffer(raw, dtype=parser.mzPrecision).astype(np.float64)

    def _shared_mz(self) -> np.ndarray:
        if self._mz_cache is None:
            self._mz_cache = self._read_mz(0)
            self._mz_cache.setflags(write=False)
        return self._mz_cache

    def spectrum(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read spectrum ``index`` (file order, 0-based) from the ``.ibd``.

        Returns:
            ``(mz, intensity)``: float64 arrays ``(n,)``; ``mz`` in Da. In continuous mode the
            ``mz`` array is shared between calls and read-only.
        """
        parser = self._handle
        if not 0 <= index < self.n_pixels:
            raise IndexError(
                f"spectrum index {index} out of range for imzML '{self._path}' "
                f"({self.n_pixels} spectra)"
            )
        mz = self._shared_mz() if self.mode is ImzMLMode.CONTINUOUS else self._read_mz(index)
        size = parser.sizeDict[parser.intensityPrecision]
        length = parser.intensityLengths[index]
        parser.m.seek(parser.intensityOffsets[index])
        raw = parser.m.read(length * size)
        if len(raw) != length * size:
            raise ImzMLReadError(
                f"cannot read spectrum {index} of imzML '{self._path}': '{self._ibd_path}' is "
                "truncated"
            )
        intensity = np.frombuffer(raw, dtype=parser.intensityPrecision).astype(np.float64)
        if mz.shape != intensity.shape:
            raise ImzMLReadError(
                f"spectrum {index} of imzML '{self._path}' has {mz.size} m/z values but "
                f"{intensity.size} intensities"
            )
        return mz, intensity

    def iter_spectra(self) -> Iterator[Spectrum]:
        """Yield every pixel's :class:`Spectrum` in file order, one at a time (bounded memory)."""
        for i in range(self.n_pixels):
            mz, intensity = self.spectrum(i)
            yield Spectrum(i, int(self._rows[i]), int(self._cols[i]), mz, intensity)

    def __iter__(self) -> Iterator[Spectrum]:
        return self.iter_spectra()

    def __len__(self) -> int:
        return self.n_pixels


def open_imzml(path: str | os.PathLike[str]) -> ImzMLReader:
    """Open an imzML dataset lazily (only the XML is parsed).

    Args:
        path: the ``.imzML`` file; its ``.ibd`` must be beside it with the same name.

    Returns:
        An :class:`ImzMLReader`; close it when done (or use ``with``).

    Raises:
        ImzMLReadError: the file is missing, empty, not imzML, its XML is truncated or corrupt,
            its ``.ibd`` is missing or truncated, or its arrays are compressed; the message names
            the file and the problem.
    """
    return ImzMLReader(path)
