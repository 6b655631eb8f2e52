"""The one value that every pair's files record, or an error naming the pairs that differ.

Steps after data_engineering read facts from the files they are given, not from today's
parameters: the MRI normalisation that the aligned MRI slices record
(:func:`~mrihisto_kedro.imaging.aligned_pairs.recorded_pair_normalisation`), and the MSI
reduction that the registered MSI images record
(:meth:`~mrihisto_kedro.msi.joint_reduction.ReductionRecord.agreed`). A study's pairs must all
record the same value; :func:`agreed` returns it, or says which pairs hold which value and how
to fix it. No Kedro.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

__all__ = ["agreed"]

R = TypeVar("R", bound=Hashable)


def agreed(
    records: Mapping[str, R],
    what: str,
    remedy: str,
    *,
    describe: Callable[[R], str] = str,
    error: type[ValueError] = ValueError,
) -> R:
    """The one record that every pair holds.

    Args:
        records: ``{pair_id: record}``; records are compared with ``==`` (hashable values).
        what: the recorded field and where it is recorded, as the errors name it, e.g.
            ``"the MRI normalisation percentiles that the aligned MRI slices record"``.
        remedy: what the user does when the records differ (the re-run that rewrites them).
        describe: a record's text in the error (default ``str``).
        error: the exception raised (the caller's ``ValueError`` subclass).

    Raises:
        error: no records (``"<what>: no pairs to read them from"``), or records that differ
            (``"<what> differ between pairs: A in p1, p2; B in p3; <remedy>"``).
    """
    by_record: dict[R, list[str]] = {}
    for pair_id, record in records.items():
        by_record.setdefault(record, []).append(pair_id)
    if not by_record:
        raise error(f"{what}: no pairs to read them from")
    if len(by_record) > 1:
        listed = "; ".join(f"{describe(r)} in {', '.join(ids)}" for r, ids in by_record.items())
        raise error(f"{what} differ between pairs: {listed}; {remedy}")
    return next(iter(by_record))
