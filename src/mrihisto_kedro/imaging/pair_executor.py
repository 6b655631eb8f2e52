"""Run one function over every pair of a study, one after another or on a standard executor.

Kedro's ``ParallelRunner`` and ``ThreadRunner`` run independent *nodes* at once; the pairs inside
one node (tissue masks, registration) run in that node's loop. :func:`map_pairs` runs such a
loop's per-pair function through ``concurrent.futures``:

``sequential``
    a plain loop (the default; what the studies always did).
``threads``
    a ``ThreadPoolExecutor``: pays where the per-pair work releases the GIL (SimpleITK's
    registration and filters, libvips and OpenSlide decoding, most of NumPy/scikit-image);
    ``benchmarks/bench_preprocessing.py`` measures it.
``processes``
    a ``ProcessPoolExecutor`` (``spawn``): the function, its arguments and its result must
    pickle (a :class:`~mrihisto_kedro.imaging.slides.Slide` pickles by path).

Results come back in the order of the items whatever the executor, so a study's outputs are the
sequential ones. The first exception a pair raises is raised (the others are not started when
possible).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, TypeVar

from mrihisto_kedro.params import Params, Range

__all__ = ["ExecutorKind", "PairExecutorParams", "map_pairs"]

T = TypeVar("T")
R = TypeVar("R")


class ExecutorKind(StrEnum):
    """How a study's pairs are run: ``sequential``, ``threads`` or ``processes``."""

    SEQUENTIAL = "sequential"
    THREADS = "threads"
    PROCESSES = "processes"


@dataclass(frozen=True)
class PairExecutorParams(Params):
    """The executor a study's per-pair loop runs on (``<pipeline>.executor`` parameters).

    Attributes:
        kind: ``sequential`` (default), ``threads`` or ``processes``.
        max_workers: pairs run at once (``None``: the executor's default, from the CPU count);
            ignored by ``sequential``.
    """

    kind: ExecutorKind = ExecutorKind.SEQUENTIAL
    max_workers: Annotated[int, Range(ge=1)] | None = None


def _executor(params: PairExecutorParams, n_items: int) -> Executor:
    workers = min(params.max_workers or n_items, n_items)
    if params.kind is ExecutorKind.THREADS:
        return ThreadPoolExecutor(workers, thread_name_prefix="pair")
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def map_pairs(
    fn: Callable[[T], R], items: Iterable[T], params: PairExecutorParams | None = None
) -> list[R]:
    """``[fn(item) for item in items]`` on the executor ``params`` chooses, in item order.

    Args:
        fn: the per-pair function (module level for ``processes``).
        items: one argument per pair.
        params: the executor; ``None``: sequential.

    Returns:
        The results, in the order of ``items``.
    """
    work = list(items)
    if params is None or params.kind is ExecutorKind.SEQUENTIAL or len(work) < 2:
        return [fn(item) for item in work]
    with _executor(params, len(work)) as pool:
        futures = [pool.submit(fn, item) for item in work]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
