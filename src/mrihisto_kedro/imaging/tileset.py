"""Paired (or unpaired) tile sets: contiguous arrays plus a manifest table (no Kedro).

A :class:`TileSet` holds ``N`` tiles of an input domain ``a`` (e.g. MRI, any dtype, any channel
count) and, for paired data, the matching tiles of a target domain ``b`` (e.g. histology RGB),
with one manifest row per tile saying where it came from.

On disk a tile set is a folder::

    <folder>/manifest.parquet   one row per tile, in array order
    <folder>/a.npy              (N, H, W, Ca)
    <folder>/b.npy              (N, H, W, Cb)   absent for unpaired sets
    <folder>/meta.json          format version, shapes, dtypes, row count, columns

:func:`save_tileset` writes a sibling temporary folder and renames it over the old one, which is
kept until the new one is complete; :func:`load_tileset` memory-maps the arrays
(``np.load(mmap_mode="r")``) so a training loop reads tiles from the page cache without loading
everything. :func:`export_ab_folders` writes pix2pix-style ``<split>/<tile_id>.png`` images
with A on the left and B on the right.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from mrihisto_kedro.durability.atomic import replace_folder, staging_path
from mrihisto_kedro.durability.disk_space import require_free_space

__all__ = [
    "FORMAT_VERSION",
    "REQUIRED_COLUMNS",
    "TileSet",
    "TileSetError",
    "dtype_range",
    "export_ab_folders",
    "hold_out_specimens",
    "load_tileset",
    "save_tileset",
    "to_rgb8",
]

FORMAT_VERSION = 1
"""Version of the on-disk layout written by :func:`save_tileset`."""

REQUIRED_COLUMNS: tuple[str, ...] = (
    "tile_id",
    "pair_id",
    "specimen_id",
    "split",
    "x",
    "y",
    "size",
    "scale",
)
"""Manifest columns every tile set has (more columns are kept as they are).

``x``, ``y``: level-0 pixel coordinates of the tile's top-left corner in the slide; ``size``:
the tile's side at level 0 in pixels; ``scale``: factor from level-0 pixels to stored pixels
(stored side = ``size * scale``, e.g. 1/15 for a 15x downsampled slide).
"""

_MANIFEST = "manifest.parquet"
_META = "meta.json"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class TileSetError(ValueError):
    """A tile set is inconsistent (manifest vs arrays) or its folder is incomplete."""


def _check_array(name: str, arr: np.ndarray) -> None:
    if not isinstance(arr, np.ndarray):
        raise TileSetError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.ndim != 4:
        raise TileSetError(f"{name} must have shape (N, H, W, C), got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TileSetError(f"{name} must be a bool, integer or float array, got {arr.dtype}")


@dataclass
class TileSet:
    """Tiles of domain A (input) and optionally B (target) with one manifest row per tile.

    Attributes:
        manifest: one row per tile, in array order; at least :data:`REQUIRED_COLUMNS`.
            ``tile_id`` is unique and filename-safe (letters, digits, ``._-``), ``split`` is a
            non-empty string (``train``/``val``/``test``...), ``x``/``y``/``size`` are integer
            level-0 pixels, ``scale`` > 0.
        a: input-domain tiles ``(N, H, W, Ca)``, any numeric dtype (float32 in [0, 1], uint16
            MRI, ...).
        b: target-domain tiles ``(N, H, W, Cb)`` with the same ``N, H, W`` (e.g. uint8 RGB
            histology), or ``None`` for an unpaired set.
        attrs: JSON-serialisable facts about the whole set, kept in ``meta.json`` (e.g.
            ``input_spec``: the pixel size, normalisation and plane of ``a``, see
            :mod:`mrihisto_kedro.imaging.input_spec`).

    Raises:
        TileSetError: missing columns, row count different from the number of tiles, shape
            mismatch between ``a`` and ``b``, duplicate or unsafe tile ids, bad values.
    """

    manifest: pd.DataFrame
    a: np.ndarray
    b: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.manifest, pd.DataFrame):
            raise TileSetError(
                f"manifest must be a pandas DataFrame, got {type(self.manifest).__name__}"
            )
        missing = [c for c in REQUIRED_COLUMNS if c not in self.manifest.columns]
        if missing:
            raise TileSetError(
                f"manifest lacks required column(s) {missing}; has {list(self.manifest.columns)}"
            )
        _check_array("a", self.a)
        n = self.a.shape[0]
        if len(self.manifest) != n:
            raise TileSetError(
                f"manifest has {len(self.manifest)} rows but a holds {n} tiles {self.a.shape}"
            )
        if self.b is not None:
            _check_array("b", self.b)
            if self.b.shape[:3] != self.a.shape[:3]:
                raise TileSetError(
                    f"a {self.a.shape} and b {self.b.shape} differ in (N, H, W); paired tiles "
                    "must match"
                )
        self.manifest = self.manifest.reset_index(drop=True)
        self._check_manifest_values()

    def _check_manifest_values(self) -> None:
        m = self.manifest
        if n_null := int(m[list(REQUIRED_COLUMNS)].isna().sum().sum()):
            raise TileSetError(f"manifest has {n_null} missing value(s) in required columns")
        ids = m["tile_id"].astype(str)
        if ids.duplicated().any():
            dupes = sorted(set(ids[ids.duplicated()]))[:5]
            raise TileSetError(f"tile_id must be unique; duplicated: {dupes}")
        unsafe = [t for t in ids if not _SAFE_ID.match(t)][:5]
        if unsafe:
            raise TileSetError(
                f"tile_id must be filename-safe (letters, digits, '._-'); bad: {unsafe}"
            )
        splits = m["split"]
        if not all(isinstance(s, str) and s for s in splits):
            raise TileSetError("split must be a non-empty string on every row")
        for col in ("x", "y", "size"):
            values = pd.to_numeric(m[col], errors="coerce")
            if values.isna().any() or not np.all(np.mod(values.to_numpy(float), 1) == 0):
                raise TileSetError(f"manifest column {col!r} must hold integer pixel values")
        if (pd.to_numeric(m["size"]) <= 0).any():
            raise TileSetError("manifest column 'size' must be > 0")
        scale = pd.to_numeric(m["scale"], errors="coerce")
        if scale.isna().any() or (scale <= 0).any():
            raise TileSetError("manifest column 'scale' must hold numbers > 0")

    def __len__(self) -> int:
        """Number of tiles ``N``."""
        return int(self.a.shape[0])

    @property
    def paired(self) -> bool:
        """True when the set has target tiles ``b``."""
        return self.b is not None

    @property
    def splits(self) -> list[str]:
        """Split names present, in order of first appearance."""
        return list(dict.fromkeys(self.manifest["split"]))

    def split(self, name: str) -> TileSet:
        """The tiles of one split, in their original order.

        When the split's rows are contiguous the arrays are views (memory maps stay memory
        maps); otherwise they are copies of the selected tiles.

        Raises:
            KeyError: no tile has that split (the message lists the splits present).
        """
        rows = np.flatnonzero(self.manifest["split"].to_numpy() == name)
        if rows.size == 0:
            raise KeyError(f"no tiles in split {name!r}; splits present: {self.splits}")
        if rows[-1] - rows[0] + 1 == rows.size:
            index: slice | np.ndarray = slice(int(rows[0]), int(rows[-1]) + 1)
        else:
            index = rows
        manifest = self.manifest.iloc[index].reset_index(drop=True)
        b = None if self.b is None else self.b[index]
        return TileSet(manifest=manifest, a=self.a[index], b=b, attrs=dict(self.attrs))


def hold_out_specimens(
    tileset: TileSet, n_specimens: int, *, seed: int = 0, name: str = "val"
) -> tuple[TileSet, list[str]]:
    """Relabel all tiles of ``n_specimens`` training specimens as split ``name``.

    For model selection when a study has no validation specimens (the paper's 5 training and
    3 test slides): a search must not choose on the test split, so it validates on training
    specimens held out of its trials. Specimens are drawn with ``seed`` from the sorted
    training specimens; whole specimens move, never single tiles (no leakage between them).

    Returns:
        ``(tileset, held_out)``: a new tile set sharing the arrays (only the manifest differs)
        and the sorted ids of the held-out specimens.

    Raises:
        TileSetError: ``name`` already has tiles, or fewer than ``n_specimens + 1`` training
            specimens (at least one must stay for training).
    """
    m = tileset.manifest
    if (m["split"] == name).any():
        raise TileSetError(f"split {name!r} already has tiles; nothing to hold out")
    train_ids = sorted(set(m.loc[m["split"] == "train", "specimen_id"].astype(str)))
    if n_specimens < 1 or len(train_ids) < n_specimens + 1:
        raise TileSetError(
            f"cannot hold out {n_specimens} of {len(train_ids)} training specimen(s) "
            f"{train_ids}: at least one must remain for training"
        )
    rng = np.random.default_rng(seed)
    held = sorted(str(s) for s in rng.choice(train_ids, size=n_specimens, replace=False))
    manifest = m.copy()
    rows = (manifest["split"] == "train") & manifest["specimen_id"].astype(str).isin(held)
    manifest.loc[rows, "split"] = name
    return TileSet(manifest=manifest, a=tileset.a, b=tileset.b, attrs=dict(tileset.attrs)), held


# ----------------------------------------------------------------------------------------------
# storage


def _array_meta(arr: np.ndarray | None) -> dict[str, Any] | None:
    if arr is None:
        return None
    return {"shape": list(arr.shape), "dtype": np.dtype(arr.dtype).str}


def _write_meta(
    folder: Path,
    manifest: pd.DataFrame,
    a: dict[str, Any] | None,
    b: dict[str, Any] | None,
    attrs: dict[str, Any],
) -> None:
    meta = {
        "format": "mrihisto-tileset",
        "format_version": FORMAT_VERSION,
        "n_tiles": len(manifest),
        "columns": [str(c) for c in manifest.columns],
        "a": a,
        "b": b,
        "splits": {str(k): int(v) for k, v in manifest["split"].value_counts().items()},
        "attrs": attrs,
    }
    (folder / _META).write_text(json.dumps(meta, indent=2))


def _staging_folder(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    dest = Path(folder)
    if dest.exists() and not dest.is_dir():
        raise TileSetError(f"{dest}: exists and is not a folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(dest)
    tmp.mkdir()
    return dest, tmp


def save_tileset(tileset: TileSet, folder: str | os.PathLike[str]) -> Path:
    """Write ``tileset`` to ``folder`` (``manifest.parquet``, ``a.npy``, ``b.npy``, ``meta.json``).

    Everything is written to a hidden sibling folder first; only when it is complete does it
    replace ``folder`` (the old folder is renamed aside, the new one renamed in, then the old
    one deleted). If writing fails, the old folder is untouched. Saving a set that was loaded
    (memory-mapped) from the same folder is safe.

    Returns:
        The folder written.
    """
    if not isinstance(tileset, TileSet):
        raise TypeError(f"expected a TileSet, got {type(tileset).__name__}")
    dest, tmp = _staging_folder(folder)
    try:
        tileset.manifest.to_parquet(tmp / _MANIFEST, index=False)
        np.save(tmp / "a.npy", tileset.a, allow_pickle=False)
        if tileset.b is not None:
            np.save(tmp / "b.npy", tileset.b, allow_pickle=False)
        _write_meta(
            tmp,
            tileset.manifest,
            _array_meta(tileset.a),
            _array_meta(tileset.b),
            tileset.attrs,
        )
        replace_folder(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class TileSetWriter:
    """Write a tile set of known size tile by tile, straight into memory-mapped ``.npy`` files.

    For tile sets larger than memory: ``a`` and ``b`` are ``numpy.lib.format.open_memmap``
    arrays in a hidden staging folder beside ``folder``; fill them (``writer.a[i] = tile``),
    then :meth:`commit` validates the manifest against them (as :class:`TileSet` does), writes
    ``manifest.parquet`` and ``meta.json`` and swaps the staging folder in, so a failure leaves
    the previous folder untouched. Use it as a context manager: leaving the block without a
    commit (an exception) removes the staging folder. Memory: the pages being written.

    Args:
        folder: destination tile-set folder.
        n: number of tiles.
        a: ``(shape, dtype)`` of one ``a`` tile, e.g. ``((256, 256, 1), np.float32)``.
        b: the same for ``b``, or ``None`` for an unpaired set.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        n: int,
        a: tuple[tuple[int, ...], Any],
        b: tuple[tuple[int, ...], Any] | None = None,
    ) -> None:
        if n < 1:
            raise TileSetError(f"{folder}: a tile set needs at least one tile, got {n}")
        self._dest, self._tmp = _staging_folder(folder)
        needed = sum(
            n * int(np.prod(shape)) * np.dtype(dtype).itemsize
            for shape, dtype in ([a] if b is None else [a, b])
        )
        try:  # the memmaps are sparse: a full disk would kill the run later with SIGBUS
            require_free_space(self._dest.parent, needed, self._dest, f"its {n} tiles")
        except OSError:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        self.a = np.lib.format.open_memmap(
            self._tmp / "a.npy", mode="w+", dtype=np.dtype(a[1]), shape=(n, *a[0])
        )
        self.b = (
            None
            if b is None
            else np.lib.format.open_memmap(
                self._tmp / "b.npy", mode="w+", dtype=np.dtype(b[1]), shape=(n, *b[0])
            )
        )
        self._done = False

    def commit(self, manifest: pd.DataFrame, attrs: dict[str, Any] | None = None) -> Path:
        """Validate, write the manifest and meta.json, and replace the destination folder."""
        tiles = TileSet(manifest=manifest, a=self.a, b=self.b, attrs=dict(attrs or {}))
        self.a.flush()
        if self.b is not None:
            self.b.flush()
        manifest.to_parquet(self._tmp / _MANIFEST, index=False)
        _write_meta(self._tmp, manifest, _array_meta(self.a), _array_meta(self.b), tiles.attrs)
        del tiles
        self.a = self.b = None  # type: ignore[assignment]  # close the maps before the rename
        replace_folder(self._tmp, self._dest)
        self._done = True
        return self._dest

    def __enter__(self) -> TileSetWriter:
        """Return the writer."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Remove the staging folder (already renamed away after a commit)."""
        self.a = self.b = None  # type: ignore[assignment]  # close the maps before removing
        shutil.rmtree(self._tmp, ignore_errors=True)


def _load_array(folder: Path, name: str, expected: dict[str, Any], mmap: bool) -> np.ndarray:
    path = folder / f"{name}.npy"
    if not path.is_file():
        raise TileSetError(f"{folder}: meta.json lists {name}.npy but the file is missing")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise TileSetError(f"{folder}: cannot read {name}.npy: {exc}") from exc
    if list(arr.shape) != list(expected["shape"]) or arr.dtype != np.dtype(expected["dtype"]):
        raise TileSetError(
            f"{folder}: {name}.npy holds {arr.dtype} {arr.shape} but meta.json says "
            f"{np.dtype(expected['dtype'])} {tuple(expected['shape'])}"
        )
    return arr


def load_tileset(folder: str | os.PathLike[str], *, mmap: bool = True) -> TileSet:
    """Open a tile set folder written by :func:`save_tileset`.

    Args:
        folder: the tile set folder.
        mmap: memory-map ``a.npy``/``b.npy`` read-only (default) instead of reading them.

    Raises:
        TileSetError: missing folder or files, unknown format version, arrays that disagree
            with ``meta.json`` or with the manifest. Messages name the folder.
    """
    src = Path(folder)
    if not src.is_dir():
        raise TileSetError(f"{src}: tile set folder does not exist")
    meta_path = src / _META
    if not meta_path.is_file():
        raise TileSetError(f"{src}: not a tile set (no {_META})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise TileSetError(f"{src}: {_META} is not valid JSON: {exc}") from exc
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise TileSetError(
            f"{src}: tile set format version {version!r} is not supported (expected "
            f"{FORMAT_VERSION})"
        )
    if not (src / _MANIFEST).is_file():
        raise TileSetError(f"{src}: {_MANIFEST} is missing")
    manifest = pd.read_parquet(src / _MANIFEST)
    a = _load_array(src, "a", meta["a"], mmap)
    b = None if meta.get("b") is None else _load_array(src, "b", meta["b"], mmap)
    try:
        return TileSet(manifest=manifest, a=a, b=b, attrs=dict(meta.get("attrs") or {}))
    except TileSetError as exc:
        raise TileSetError(f"{src}: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# pix2pix export


def dtype_range(dtype: np.dtype | type) -> tuple[float, float]:
    """Default intensity range of a dtype: its full range for integers, ``(0, 1)`` otherwise."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return 0.0, 1.0
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def to_rgb8(
    tile: np.ndarray,
    value_range: tuple[float, float] | None = None,
    channels: Sequence[int] | None = None,
) -> np.ndarray:
    """Convert one tile ``(H, W, C)`` to 8-bit RGB ``(H, W, 3)`` for viewing/export.

    Args:
        tile: ``(H, W, C)`` array of any numeric dtype.
        value_range: ``(low, high)`` mapped linearly to 0..255 (values outside are clipped);
            default :func:`dtype_range` of the tile's dtype (uint8 0..255, uint16 0..65535,
            float 0..1; pass ``(-1, 1)`` for tanh-scaled tiles).
        channels: channel indices to show; default all. One channel is shown as grey, three
            as RGB; other counts need ``channels`` to pick 1 or 3.

    Raises:
        ValueError: bad range or a channel count that is neither 1 nor 3.
    """
    arr = np.asarray(tile)
    if arr.ndim != 3:
        raise ValueError(f"expected a tile (H, W, C), got shape {arr.shape}")
    if channels is not None:
        arr = arr[..., list(channels)]
    if arr.shape[2] not in (1, 3):
        raise ValueError(
            f"a tile with {arr.shape[2]} channels cannot be shown as RGB; pick 1 or 3 channels"
        )
    low, high = value_range if value_range is not None else dtype_range(arr.dtype)
    if not high > low:
        raise ValueError(f"value range must have high > low, got ({low}, {high})")
    if arr.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        out = np.asarray(arr)
    else:
        scaled = (arr.astype(np.float64) - low) * (255.0 / (high - low))
        out = np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 255.0)).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def export_ab_folders(
    tileset: TileSet,
    out_dir: str | os.PathLike[str],
    *,
    a_range: tuple[float, float] | None = None,
    b_range: tuple[float, float] | None = None,
    a_channels: Sequence[int] | None = None,
    b_channels: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Write pix2pix-style aligned images ``out_dir/<split>/<tile_id>.png`` (A left, B right).

    Each PNG is 8-bit RGB of shape ``(H, 2W, 3)``: the A tile in columns ``0..W-1`` and the B
    tile in ``W..2W-1``. Both are converted with :func:`to_rgb8` for the export only (the tile
    set is unchanged): scaled linearly from ``a_range``/``b_range`` (default: the dtype's range,
    i.e. uint8 0..255, uint16 0..65535, float 0..1) to 0..255 and clipped, one channel shown as
    grey. Tiles are read one at a time, so memory-mapped sets export in bounded memory.

    Args:
        tileset: a paired tile set.
        out_dir: output root; one subfolder per split is created.
        a_range: intensity range of A mapped to 0..255.
        b_range: intensity range of B mapped to 0..255.
        a_channels: channels of A to show (needed when A has neither 1 nor 3 channels).
        b_channels: channels of B to show.

    Returns:
        Table with ``tile_id``, ``split`` and ``path`` of every image written.

    Raises:
        TileSetError: the tile set is unpaired.
        ValueError: ranges or channel counts that cannot be shown.
    """
    if tileset.b is None:
        raise TileSetError("export_ab_folders needs a paired tile set (b is None)")
    root = Path(out_dir)
    rows: list[dict[str, str]] = []
    ids = tileset.manifest["tile_id"].astype(str).to_numpy()
    splits = tileset.manifest["split"].to_numpy()
    for split in dict.fromkeys(splits):
        (root / str(split)).mkdir(parents=True, exist_ok=True)
    for i in range(len(tileset)):
        a8 = to_rgb8(tileset.a[i], a_range, a_channels)
        b8 = to_rgb8(tileset.b[i], b_range, b_channels)
        path = root / str(splits[i]) / f"{ids[i]}.png"
        Image.fromarray(np.concatenate([a8, b8], axis=1)).save(path)
        rows.append({"tile_id": ids[i], "split": str(splits[i]), "path": str(path)})
    return pd.DataFrame(rows, columns=["tile_id", "split", "path"])
