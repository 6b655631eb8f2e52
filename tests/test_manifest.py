"""The pairs manifest: validation errors name the row and field; splits are by specimen."""

from __future__ import annotations

import pandas as pd
import pytest

from mrihisto_kedro.manifest import (
    ManifestError,
    SplitFractions,
    assign_splits,
    validate_pairs,
)

SLIDES = {"s1.svs", "s2.svs", "s3.svs"}
MRIS = {"vol.nii.gz"}


def counts(name: str, plane: str) -> int:
    return {"sagittal": 193, "coronal": 229, "axial": 193}[plane]


def manifest(**overrides: list) -> pd.DataFrame:
    data = {
        "pair_id": ["p1", "p2", "p3"],
        "specimen_id": ["a", "a", "b"],
        "slide": ["s1.svs", "s2.svs", "s3.svs"],
        "mri": ["vol.nii.gz"] * 3,
        "plane": ["sagittal", "Sagittal", "coronal"],
        "slice_index": [10, 20, 30],
        "split": ["", "", ""],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_valid_manifest_is_cleaned() -> None:
    out = validate_pairs(manifest(), SLIDES, counts, MRIS)
    assert list(out["plane"]) == ["sagittal", "sagittal", "coronal"]
    assert out["slice_index"].dtype.kind == "i"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"slide": ["s1.svs", "nope.svs", "s3.svs"]}, "row 3 (pair_id='p2'): field 'slide'"),
        ({"mri": ["vol.nii.gz", "vol.nii.gz", "x.nii"]}, "row 4 (pair_id='p3'): field 'mri'"),
        ({"plane": ["sagittal", "oblique", "axial"]}, "field 'plane' = 'oblique'"),
        ({"slice_index": [10, 500, 30]}, "'slice_index' = 500 is out of range 0..192"),
        ({"slice_index": [10, "ten", 30]}, "'slice_index' = 'ten' is not an integer"),
        ({"pair_id": ["p1", "p1", "p3"]}, "field 'pair_id' duplicates row 2"),
        ({"split": ["train", "test", ""]}, "specimen(s) a appear in more than one split"),
        ({"split": ["train", "train", "holdout"]}, "field 'split' = 'holdout'"),
    ],
)
def test_manifest_errors_name_row_and_field(overrides: dict, expected: str) -> None:
    with pytest.raises(ManifestError) as err:
        validate_pairs(manifest(**overrides), SLIDES, counts, MRIS, source="pairs.csv")
    assert expected in str(err.value)
    assert str(err.value).startswith("pairs.csv")


def test_missing_column_is_named() -> None:
    with pytest.raises(ManifestError, match="missing column\\(s\\) plane"):
        validate_pairs(manifest().drop(columns="plane"), SLIDES, counts, MRIS)


def test_all_problems_reported_together() -> None:
    bad = manifest(slide=["x.svs", "s2.svs", "s3.svs"], plane=["sagittal", "bad", "axial"])
    with pytest.raises(ManifestError) as err:
        validate_pairs(bad, SLIDES, counts, MRIS)
    assert "'slide'" in str(err.value) and "'plane'" in str(err.value)


def _many(n_specimens: int, per: int = 3) -> pd.DataFrame:
    rows = [
        {
            "pair_id": f"p{s}_{k}",
            "specimen_id": f"spec{s}",
            "slide": "s1.svs",
            "mri": "vol.nii.gz",
            "plane": "sagittal",
            "slice_index": k,
            "split": "",
        }
        for s in range(n_specimens)
        for k in range(per)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n", [2, 3, 8, 20])
def test_no_specimen_in_two_splits(n: int) -> None:
    out = assign_splits(_many(n), SplitFractions(train=0.6, val=0.1, test=0.3, seed=1))
    assert (out["split"] != "").all()
    assert (out.groupby("specimen_id")["split"].nunique() == 1).all()
    assert {"train", "test"} <= set(out["split"])


def test_paper_split_five_train_three_test() -> None:
    out = assign_splits(_many(8, per=1), SplitFractions())
    assert out["split"].value_counts().to_dict() == {"train": 5, "test": 3}


def test_given_splits_are_kept_and_counted() -> None:
    pairs = _many(4, per=1)
    pairs.loc[0, "split"] = "test"
    out = assign_splits(pairs, SplitFractions(train=0.5, val=0.0, test=0.5, seed=0))
    assert out.loc[0, "split"] == "test"
    assert out["split"].value_counts().to_dict() == {"train": 2, "test": 2}


def test_split_fractions_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        SplitFractions(train=0.5, val=0.1, test=0.1)
