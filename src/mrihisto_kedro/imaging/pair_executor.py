"""Run one function over every pair of a study: one after another, on a standard executor or on
a Dask cluster.

Kedro's ``ParallelRunner`` and ``ThreadRunner`` run independent *nodes* at once; the pairs inside
one node (tissue masks, registration) run in that node's loop. :func:`map_pairs` runs such a
loop's per-pair function through ``concurrent.futures`` or ``dask.distributed``:

``sequential``
    a plain loop (the default; what the studies always did).
``threads``
    a ``ThreadPoolExecutor``: pays where the per-pair work releases the GIL (SimpleITK's
    registration and filters, libvips and OpenSlide decoding, most of NumPy/scikit-image);
    ``benchmarks/bench_preprocessing.py`` measures it.
``processes``
    a ``ProcessPoolExecutor`` (``spawn``): the function, its arguments and its result must
    pickle (a :class:`~mrihisto_kedro.imaging.slides.Slide` pickles by path).
``dask``
    ``dask.distributed`` (the optional extra: ``pip install "mrihisto_kedro[dask]"``): with
    ``scheduler_address`` (``tcp://host:8786``), the pairs go to a running cluster's workers, on
    as many machines as it has (each worker needs this package installed and the data paths
    readable at the same paths); without it, a ``LocalCluster`` of ``max_workers`` worker
    processes (one thread each, on 127.0.0.1, no dashboard) is started for the call and closed
    after it. Function and arguments are pickled as for ``processes`` (cloudpickle).

Results come back in the order of the items whatever the executor, so a study's outputs are the
sequential ones. The first exception a pair raises is raised (the others are not started when
possible).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, TypeVar

from mrihisto_kedro.params import Params, Range, fail

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ExecutorKind", "PairExecutorParams", "map_pairs"]

T = TypeVar("T")
R = TypeVar("R")


class ExecutorKind(StrEnum):
    """How a study's pairs are run: ``sequential``, ``threads``, ``processes`` or ``dask``."""

    SEQUENTIAL = "sequential"
    THREADS = "threads"
    PROCESSES = "processes"
    DASK = "dask"


DASK_INSTALL = 'pip install "mrihisto_kedro[dask]"'


@dataclass(frozen=True)
class PairExecutorParams(Params):
    """The executor a study's per-pair loop runs on (``<pipeline>.executor`` parameters).

    Attributes:
        kind: ``sequential`` (default), ``threads``, ``processes`` or ``dask``.
        max_workers: pairs run at once (``None``: the executor's default, from the CPU count);
            for ``dask`` without ``scheduler_address``, the ``LocalCluster``'s worker processes;
            ignored by ``sequential`` and by a running Dask cluster (its workers are its own).
        scheduler_address: ``kind: dask`` only: the address of a running Dask scheduler
            (``tcp://host:8786``, from ``dask scheduler``); ``None``: a ``LocalCluster`` on this
            machine.
    """

    kind: ExecutorKind = ExecutorKind.SEQUENTIAL
    max_workers: Annotated[int, Range(ge=1)] | None = None
    scheduler_address: str | None = None

    def validate(self) -> None:
        """``scheduler_address`` only with ``kind: dask``; ``dask`` only with Dask installed."""
        if self.scheduler_address is not None and self.kind is not ExecutorKind.DASK:
            fail(
                "scheduler_address",
                f"is for kind 'dask' only, got kind {self.kind.value!r}: remove it or set "
                "kind: dask",
            )
        if self.scheduler_address is not None and not self.scheduler_address.strip():
            fail("scheduler_address", "must be a scheduler address like tcp://host:8786")
        if self.kind is ExecutorKind.DASK and importlib.util.find_spec("distributed") is None:
            fail(
                "kind",
                f"= 'dask' needs dask.distributed, which is not installed: {DASK_INSTALL}",
            )


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
        fn: the per-pair function (module level for ``processes`` and ``dask``).
        items: one argument per pair.
        params: the executor; ``None``: sequential.

    Returns:
        The results, in the order of ``items``.
    """
    work = list(items)
    if params is None or params.kind is ExecutorKind.SEQUENTIAL or len(work) < 2:
        return [fn(item) for item in work]
    if params.kind is ExecutorKind.DASK:
        return _map_dask(fn, work, params)
    with _executor(params, len(work)) as pool:
        futures = [pool.submit(fn, item) for item in work]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _map_dask(fn: Callable[[T], R], work: list[T], params: PairExecutorParams) -> list[R]:
    """:func:`map_pairs` on a Dask cluster: the running one at ``scheduler_address``, else a
    ``LocalCluster`` of worker processes started and closed here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # validate() checks this at parse time; code may skip it
        raise ImportError(f"executor kind 'dask' needs dask.distributed: {DASK_INSTALL}") from exc
    if params.scheduler_address is not None:
        with Client(params.scheduler_address, set_as_default=False) as client:
            return _gather(client, fn, work)
    workers = min(params.max_workers or os.cpu_count() or 1, len(work))
    with (
        _environment_kept(),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        return _gather(client, fn, work)


@contextmanager
def _environment_kept() -> Iterator[None]:
    """Restore ``os.environ`` on leaving: Dask's nanny writes its pre-spawn variables
    (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``, ...) into the
    process that starts a ``LocalCluster`` and leaves them there ("poisoning the process running
    the Nanny", its docstring says). Measured: every process started afterwards by the same
    ``kedro run`` or test session ran torch on one thread (``MKL_NUM_THREADS`` overrides
    ``OMP_NUM_THREADS`` in torch's default), and the demo's ``kedro run`` took about twice as
    long."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _gather(client: Client, fn: Callable[[T], R], work: list[T]) -> list[R]:
    """Submit one task per item (``pure=False``: never deduplicated) and gather them in item
    order; the first error is raised and the remaining tasks are cancelled."""
    futures = [client.submit(fn, item, pure=False) for item in work]
    try:
        return list(client.gather(futures, errors="raise"))
    except BaseException:
        client.cancel(futures)
        raise
