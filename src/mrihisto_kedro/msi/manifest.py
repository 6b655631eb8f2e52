"""The MSI pairs manifest: its columns, its validation and the splits by specimen (no Kedro).

One row per specimen's MSI/H&E pair (:data:`MSI_PAIRS_COLUMNS`); :func:`validate_msi_pairs`
checks and normalises it, :func:`assign_specimen_splits` fills empty splits by specimen and
:func:`require_pairs` checks that every pair has its file in a folder of inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import pandas as pd

from mrihisto_kedro.manifest import SplitFractions, assign_splits

__all__ = [
    "MSI_PAIRS_COLUMNS",
    "PairRow",
    "assign_specimen_splits",
    "pair_rows",
    "require_pairs",
    "validate_msi_pairs",
]

MSI_PAIRS_COLUMNS: tuple[str, ...] = ("pair_id", "specimen_id", "mpp_x", "mpp_y")
"""Required columns of an MSI pairs manifest (one row per specimen's MSI/H&E pair).

``pair_id`` names the files (``<pair_id>.imzML`` + ``.ibd`` in the MSI folder, the histology image
``<pair_id>.png``/``.tif``... in the histology folder); ``mpp_x``/``mpp_y`` are the histology's µm
per pixel. Optional: ``split`` (empty = assigned by specimen), ``msi_pixel_size_um`` (used when the
imzML file does not state its pixel size). The demo's ``ground_truth.csv`` is such a manifest.
"""


def validate_msi_pairs(pairs: pd.DataFrame, source: str = "MSI pairs manifest") -> pd.DataFrame:
    """Check an MSI pairs manifest (:data:`MSI_PAIRS_COLUMNS`) and normalise its types.

    Returns:
        A copy with string ids, float mpp and a string ``split`` column ('' when empty).

    Raises:
        ValueError: a missing column, a duplicated ``pair_id``, a non-positive mpp, or a specimen
            in several splits; the message names ``source``.
    """
    source = str(pairs.attrs.get("source", source))
    missing = [c for c in MSI_PAIRS_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}")
    out = pairs.copy()
    out["pair_id"] = out["pair_id"].astype(str).str.strip()
    out["specimen_id"] = out["specimen_id"].astype(str).str.strip()
    if out["pair_id"].duplicated().any():
        dupes = sorted(set(out.loc[out["pair_id"].duplicated(), "pair_id"]))
        raise ValueError(f"{source}: duplicated pair_id {dupes}")
    for col in ("mpp_x", "mpp_y"):
        values = pd.to_numeric(out[col], errors="coerce")
        if values.isna().any() or (values <= 0).any():
            raise ValueError(f"{source}: column {col!r} must hold numbers > 0 (µm per pixel)")
        out[col] = values.astype(float)
    if "split" not in out.columns:
        out["split"] = ""
    out["split"] = out["split"].fillna("").astype(str).str.strip()
    given = out[out["split"] != ""]
    mixed = given.groupby("specimen_id")["split"].nunique()
    if (mixed > 1).any():
        raise ValueError(
            f"{source}: specimen(s) {', '.join(mixed[mixed > 1].index)} are in several splits"
        )
    return out


class PairRow(NamedTuple):
    """One row of a validated MSI pairs manifest, typed.

    Attributes:
        pair_id, specimen_id, split: the ids and the split (``''`` when not assigned).
        mpp_x, mpp_y: µm per level-0 pixel of the pair's H&E.
    """

    pair_id: str
    specimen_id: str
    split: str
    mpp_x: float
    mpp_y: float


def pair_rows(pairs: pd.DataFrame) -> list[PairRow]:
    """The rows of a manifest that :func:`validate_msi_pairs` returned, in order."""
    return [
        PairRow(str(pair_id), str(specimen_id), str(split), float(mpp_x), float(mpp_y))
        for pair_id, specimen_id, split, mpp_x, mpp_y in zip(
            pairs["pair_id"],
            pairs["specimen_id"],
            pairs["split"],
            pairs["mpp_x"].to_numpy(dtype=float),
            pairs["mpp_y"].to_numpy(dtype=float),
            strict=True,
        )
    ]


def assign_specimen_splits(pairs: pd.DataFrame, fractions: SplitFractions) -> pd.DataFrame:
    """Assign train/val/test to whole specimens (see :func:`mrihisto_kedro.manifest.assign_splits`).

    The counts are the largest-remainder rounding of ``fraction * n_specimens``: with 6
    specimens and 70/10/20, ``(4.2, 0.6, 1.2)`` floors to ``(4, 0, 1)`` and the sixth specimen
    goes to the largest remainder (val, 0.6): 4 train, 1 val, 1 test; the conf/base demo's 10
    give 7 train, 1 val, 2 test.
    """
    return assign_splits(validate_msi_pairs(pairs), fractions)


def require_pairs(kind: str, pairs: pd.DataFrame, available: Iterable[str]) -> None:
    """Check that every ``pair_id`` of ``pairs`` has an entry in ``available``.

    Args:
        kind: what the entries are, for the message (e.g. ``"imzML file"``).
        pairs: the manifest (its ``pair_id`` column).
        available: the ids found (e.g. the partition ids of a folder, the file stems).

    Raises:
        ValueError: naming the missing pairs and the first ten ids found.
    """
    found = sorted(available)
    missing = sorted(set(pairs["pair_id"]) - set(found))
    if missing:
        raise ValueError(
            f"no {kind} for pair(s) {', '.join(missing)} (expected files named after the "
            f"pair_id; found {found[:10]})"
        )
