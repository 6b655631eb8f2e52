"""The pairs manifest: validation errors name the row and field; splits are by specimen."""

from __future__ import annotations

import pandas as pd
import pytest

from mrihisto_kedro.manifest import (
    ManifestError,
    SlideHeader,
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


# ------------------------------------------------------------------ slide pixel size (issue 14)
FILE_MPP = {"s1.svs": (0.2527, 0.2527), "s2.svs": None, "s3.svs": None}


def header(name: str) -> SlideHeader:
    return SlideHeader(path=f"/data/slides/{name}", mpp=FILE_MPP[name])


def test_slide_without_mpp_stops_validation_naming_the_file_and_the_fix() -> None:
    with pytest.raises(ManifestError) as err:
        validate_pairs(manifest(), SLIDES, counts, MRIS, source="pairs.csv", slide_header=header)
    message = str(err.value)
    for name, pid in (("s2.svs", "p2"), ("s3.svs", "p3")):
        assert f"pair_id='{pid}'): slide /data/slides/{name} records no pixel size" in message
    assert "s1.svs" not in message  # its file has an mpp
    assert "column 'slide_mpp'" in message and "data_engineering.slide_mpp=" in message


def test_slide_mpp_from_file_manifest_or_parameter() -> None:
    out = validate_pairs(
        manifest(slide_mpp=["", "0.5", ""], slide_mpp_y=["", "0.52", ""]),
        SLIDES,
        counts,
        MRIS,
        slide_header=header,
        default_slide_mpp=0.25,
    )
    assert list(out["slide_mpp_source"]) == ["file", "manifest", "parameter"]
    assert list(out["slide_mpp_x_um"]) == [0.2527, 0.5, 0.25]
    assert list(out["slide_mpp_y_um"]) == [0.2527, 0.52, 0.25]


def test_manifest_mpp_overrides_a_file_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    out = validate_pairs(
        manifest(slide_mpp=["0.5", "0.5", "0.5"]),
        SLIDES,
        counts,
        MRIS,
        slide_header=header,
    )
    assert list(out["slide_mpp_x_um"]) == [0.5] * 3
    assert "/data/slides/s1.svs records 0.2527" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "default", "expected"),
    [
        ({"slide_mpp": ["", "abc", "0.5"]}, None, "field 'slide_mpp' = 'abc' is not a positive"),
        ({"slide_mpp": ["", "-1", "0.5"]}, None, "field 'slide_mpp' = '-1' is not a positive"),
        ({"slide_mpp": ["", "1000", "0.5"]}, None, "implausible pixel size 1000 x 1000"),
        ({"slide_mpp_y": ["", "0.5", "0.5"]}, 0.25, "'slide_mpp_y' is given without"),
        ({}, 1000.0, "s2.svs has an implausible pixel size 1000 x 1000 µm (parameter)"),
    ],
)
def test_bad_mpp_is_refused(overrides: dict, default: float | None, expected: str) -> None:
    with pytest.raises(ManifestError) as err:
        validate_pairs(
            manifest(**overrides),
            SLIDES,
            counts,
            MRIS,
            slide_header=header,
            default_slide_mpp=default,
        )
    assert expected in str(err.value)
