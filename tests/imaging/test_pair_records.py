"""The one value every pair records; pairs that differ, or none, are an error naming them."""

from __future__ import annotations

import re

import pytest

from mrihisto_kedro.imaging.pair_records import agreed


class _RecordError(ValueError):
    pass


def test_the_value_every_pair_records_is_returned() -> None:
    assert agreed({"p1": (2.0, 98.0), "p2": (2.0, 98.0)}, "percentiles", "re-run it") == (2.0, 98.0)


def test_differing_records_name_each_value_its_pairs_the_field_and_the_remedy() -> None:
    records = {"p1": (2, 98), "p2": (1, 99), "p3": (2, 98)}
    with pytest.raises(_RecordError) as raised:
        agreed(
            records,
            "the percentiles the slices record",
            "re-run step A",
            describe=lambda r: f"({r[0]}-{r[1]})",
            error=_RecordError,
        )
    assert str(raised.value) == (
        "the percentiles the slices record differ between pairs: (2-98) in p1, p3; "
        "(1-99) in p2; re-run step A"
    )


def test_no_records_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=re.escape("the percentiles: no pairs to read them from")):
        agreed({}, "the percentiles", "re-run it")
