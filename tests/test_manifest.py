"""The pairs manifest: validation errors name the row and field; splits are by specimen."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrihisto_kedro.manifest import (
    ManifestError,
    SlideHeader,
    SlideLimits,
    SplitFractions,
    assign_splits,
    validate_pairs,
)
from mrihisto_kedro.params import ParameterError, parse_params

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


@pytest.mark.parametrize("bad", ["../p2", "/abs/p2", "a/b", "a\\b", "p..2", ".p2", "p 2"])
def test_pair_ids_that_are_not_one_safe_file_name_are_refused(bad: str) -> None:
    """Issue 15: a traversal or absolute id passed validation, then kedro-datasets refused
    the save after the folder was wiped (or re-rooted it into nested folders)."""
    with pytest.raises(ManifestError) as err:
        validate_pairs(manifest(pair_id=["p1", bad, "p3"]), SLIDES, counts, MRIS)
    assert f"row 3 (pair_id={bad!r}): field 'pair_id' = {bad!r} is not a safe file name" in (
        str(err.value)
    )


@given(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
    )
)
@settings(max_examples=200, deadline=None)
def test_any_pair_id_is_accepted_as_a_file_name_or_refused_by_name(pid: str) -> None:
    """Fuzz: an accepted id is one path component that stays inside its folder."""
    try:
        out = validate_pairs(manifest(pair_id=["p1", pid, "p3"]), SLIDES, counts, MRIS)
    except ManifestError as exc:
        assert "row 3" in str(exc) or "pair_id" in str(exc)
        return
    accepted = str(out["pair_id"].iloc[1])
    folder = Path("/data/03_primary/aligned_mri")
    assert (folder / f"{accepted}.mha").resolve().parent == folder
    assert accepted == Path(accepted).name and ".." not in accepted


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
    with pytest.raises(ParameterError, match=r"must sum to 1, got \(0\.5, 0\.1, 0\.1\)"):
        SplitFractions(train=0.5, val=0.1, test=0.1)
    with pytest.raises(
        ParameterError, match=r"^parameter 'data_engineering\.splits' fractions .*sum to 1"
    ):
        parse_params(SplitFractions, {"val": 0.5}, "data_engineering.splits")
    assert SplitFractions(train=0.6, val=0.3, test=0.1 + 1e-7).test == 0.1 + 1e-7  # within 1e-6


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": -0.25, "test": 1.25}, r"'splits\.train' must be >= 0, got -0\.25"),
        ({"val": float("nan")}, r"'splits\.val' must be >= 0, got nan"),
        ({"test": "0.375"}, r"'splits\.test' must be a number"),
        ({"seed": 4.2}, r"'splits\.seed' must be an integer"),
    ],
)
def test_split_fractions_name_the_bad_key(values: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params(SplitFractions, values, "splits")


def test_slide_limits_are_parameters() -> None:
    limits = parse_params(
        SlideLimits, {"max_level0_px": 1_000_000}, "data_engineering.slide_limits"
    )
    assert limits.max_level0_px == 1e6 and type(limits.max_level0_px) is float
    assert parse_params(SlideLimits, {"max_level0_px": float("inf")}).max_level0_px == math.inf
    with pytest.raises(ParameterError, match=r"'data_engineering\.slide_limits\.min_bytes_per"):
        parse_params(SlideLimits, {"min_bytes_per_px": "small"}, "data_engineering.slide_limits")


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


def test_implausible_slide_headers_are_refused_before_any_pixel(shared_data: Path) -> None:
    """Issue 15: a 68 KB TIFF claiming 200,000 x 200,000 px was streamed for 131 s at 5 GB."""
    from mrihisto_kedro.imaging.slides import open_slide
    from mrihisto_kedro.manifest import InputHeaders

    real = shared_data / "histology" / "CMU-1-Small-Region.svs"
    headers = InputHeaders({"s1.svs": lambda: open_slide(real)}, {})
    genuine = headers.slide("s1.svs")
    assert genuine.dimensions == (2220, 2967) and genuine.file_bytes == real.stat().st_size
    limits = SlideLimits()
    assert limits.problems(genuine, "row 2") == []  # 0.29 bytes per pixel

    forged = {
        "s1.svs": genuine,
        "s2.svs": SlideHeader("/in/forged.svs", (0.25, 0.25), (200_000, 200_000), 68_000),
        "s3.svs": SlideHeader("/in/huge.mrxs", (0.25, 0.25), (400_000, 300_000), 1_000),
    }
    with pytest.raises(ManifestError) as err:
        validate_pairs(
            manifest(),
            SLIDES,
            counts,
            MRIS,
            slide_header=forged.__getitem__,
            slide_limits=limits,
        )
    message = str(err.value)
    assert (
        "row 3 (pair_id='p2'): slide /in/forged.svs claims 200000 x 200000 px (40.00 Gpx) in a "
        "file of 68 KB (1.7e-06 bytes per pixel" in message
    )
    assert "slide_limits.min_bytes_per_px" in message
    assert "row 4 (pair_id='p3'): slide /in/huge.mrxs claims 400000 x 300000 px" in message
    assert "above max_level0_px" in message and "s1.svs" not in message
    # a multi-file format keeps its pixels elsewhere: its index file's size is not judged
    small_index = SlideHeader("/in/a.mrxs", (0.25, 0.25), (100_000, 80_000), 2_000)
    assert limits.problems(small_index, "row 2") == []


def test_blank_and_thin_mri_volumes_are_refused_naming_the_file(shared_data: Path) -> None:
    """Issue 15: a constant volume failed after downsampling naming neither file nor pair; a
    2-voxel-thin one failed inside ITK's smoothing in registration."""
    import SimpleITK as sitk

    from mrihisto_kedro.manifest import InputHeaders

    t1 = sitk.ReadImage(
        str(shared_data / "mri" / "icbm152_2009c_2mm" / "icbm152_2009c_sym_t1_2mm.nii.gz")
    )
    volumes = {
        "t1.nii.gz": t1,
        "blank.nii.gz": t1 * 0,
        "thin.nii.gz": t1[:, :, 40:42],  # 2 voxels along z: axial fine, sagittal 2 px tall
    }
    headers = InputHeaders({}, {k: (lambda v=v: v) for k, v in volumes.items()})
    assert headers.mri("t1.nii.gz").slice_shapes["sagittal"] == (t1.GetSize()[2], t1.GetSize()[1])
    rows = manifest(
        mri=["t1.nii.gz", "blank.nii.gz", "thin.nii.gz"],
        plane=["sagittal", "sagittal", "sagittal"],
        slice_index=[40, 40, 40],
    )
    with pytest.raises(ManifestError) as err:
        validate_pairs(
            rows,
            SLIDES,
            headers.slice_count,
            set(volumes),
            mri_header=headers.mri,
        )
    message = str(err.value)
    assert "row 3 (pair_id='p2'): MRI blank.nii.gz has one intensity everywhere (0)" in message
    assert "row 4 (pair_id='p3'): MRI thin.nii.gz gives sagittal slices of 2 x " in message
    assert "need at least 16 px" in message and "row 2" not in message
    axial = manifest(
        mri=["t1.nii.gz"] * 2 + ["thin.nii.gz"], plane=["axial"] * 3, slice_index=[40, 41, 1]
    )
    validate_pairs(axial, SLIDES, headers.slice_count, set(volumes), mri_header=headers.mri)
