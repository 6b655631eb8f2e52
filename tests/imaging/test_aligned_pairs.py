"""The MRI normalisation the aligned MRI files record, read from their headers alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from mrihisto_kedro.imaging.aligned_pairs import image_metadata, recorded_pair_normalisation
from mrihisto_kedro.imaging.mri import (
    MriNormalisation,
    NormalisationRecordError,
    record_normalisation,
)
from mrihisto_kedro.imaging.sitk_io import ImageReadError, read_image, write_image

RECORDED = MriNormalisation(lower_percentile=3.0, upper_percentile=97.0)


def _write_aligned(path: Path, normalisation: MriNormalisation | None = RECORDED) -> Path:
    image = sitk.GetImageFromArray(np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(64, 80))
    if normalisation is not None:
        record_normalisation(image, normalisation)
    write_image(image, path, compress=True)
    return path


def test_the_metadata_is_read_from_the_header_without_the_pixels(tmp_path: Path) -> None:
    """A file cut just after its header: the pixels cannot be read, the record can."""
    whole = _write_aligned(tmp_path / "whole.mha").read_bytes()
    end_of_header = whole.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    cut = tmp_path / "cut.mha"
    cut.write_bytes(whole[: end_of_header + 10])
    with pytest.raises(ImageReadError):
        read_image(cut)
    header = image_metadata(cut)
    pairs = pd.DataFrame({"pair_id": ["p1"]})
    assert recorded_pair_normalisation(pairs, {"p1": lambda: header}) == RECORDED


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"absent\.mha: unreadable image header"):
        image_metadata(tmp_path / "absent.mha")


def test_the_pairs_headers_agree_or_the_error_names_the_pairs_and_the_re_run(
    tmp_path: Path,
) -> None:
    other = MriNormalisation(lower_percentile=1.0, upper_percentile=99.5)
    paths = {
        "p1": _write_aligned(tmp_path / "p1.mha"),
        "p2": _write_aligned(tmp_path / "p2.mha"),
        "p3": _write_aligned(tmp_path / "p3.mha", other),
        "old": _write_aligned(tmp_path / "old.mha", None),
    }
    headers = {k: (lambda p=p: image_metadata(p)) for k, p in paths.items()}

    def recorded(*ids: str) -> MriNormalisation:
        return recorded_pair_normalisation(pd.DataFrame({"pair_id": list(ids)}), headers)

    assert recorded("p1", "p2") == RECORDED
    with pytest.raises(
        NormalisationRecordError,
        match=r"differ between pairs: \(3, 97\) in p1, p2; \(1, 99.5\) in p3; re-run "
        r"`kedro run --pipeline=data_engineering` and then `kedro run --pipeline=registration`",
    ):
        recorded("p1", "p2", "p3")
    with pytest.raises(NormalisationRecordError, match=r"pair old: records no MRI.*re-run"):
        recorded("p1", "old")
    with pytest.raises(NormalisationRecordError, match=r"no pairs to read them from"):
        recorded()
