"""Data-parallel training with ``torch.distributed`` (DDP): process group, samplers, rank 0.

A training runs in ``W`` processes (ranks ``0 .. W-1``), launched by ``torchrun`` (one node or
several: it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or
by ``torch.multiprocessing`` (tests, benchmarks). Every rank builds the same model from the same
seed, reads its own share of every epoch's tiles (:func:`distributed_sampler`, a
``DistributedSampler`` whose ``set_epoch`` the training loop calls) and wraps each network in
``DistributedDataParallel`` while it trains (:class:`DistributedNets`): gradients are averaged
over the ranks after every backward, so every rank applies the same optimiser step.

* **Global batch** = ``data.batch_size`` (the per-process batch) x ``W``. With a loss that is a
  mean over the batch (all of this project's losses are) and a per-sample normalisation
  (instance norm, or none), ``W`` processes x batch ``b`` make the same updates as one process x
  batch ``W b`` on the same tiles (to rounding; measured in ``tests/nn/test_distributed.py``).
  Dropout masks and CycleGAN's image pools are drawn per rank, so with them the runs are
  statistically, not numerically, equivalent.
* **Batch norm** normalises with the statistics of the per-process batch. On CUDA the networks'
  ``BatchNorm`` layers become ``SyncBatchNorm`` (statistics of the global batch;
  :func:`sync_batch_norm`). PyTorch's ``SyncBatchNorm`` refuses CPU tensors ("SyncBatchNorm
  expected input tensor to be on GPU", torch 2.14), so on CPU (gloo) batch norm stays
  per-process and a warning says so.
* **Rank 0** alone writes checkpoints, MLflow and outputs; the others train and wait
  (:func:`is_main`, :func:`from_main`).
* **Local processes** without ``torchrun``: :func:`local_processes` makes the calling process
  rank 0 and starts ranks ``1 .. W-1`` on this machine (``spawn``), each running the same
  function (e.g. the training study of the Kedro node, which stays the only Kedro process).

Pure PyTorch (no Kedro, no MLflow).
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

__all__ = [
    "DistributedNets",
    "World",
    "all_reduce_mean",
    "backend_for",
    "barrier",
    "distributed_sampler",
    "env_world",
    "from_main",
    "gather_to_main",
    "is_main",
    "local_processes",
    "process_group",
    "sync_batch_norm",
    "world",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = timedelta(minutes=60)
"""How long a rank waits for the others in a collective (rank 0 validates and writes
checkpoints while the others wait at the next step)."""


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes.

    Attributes:
        rank: global rank, ``0 .. size - 1`` (0 writes outputs).
        size: number of processes (``WORLD_SIZE``).
        local_rank: rank on this node (``LOCAL_RANK``): the CUDA device index.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints, outputs and MLflow."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


def env_world() -> World:
    """The world ``torchrun`` describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (default:
    one process, rank 0).

    Raises:
        ValueError: a variable that is not an integer, or a rank outside ``0 .. WORLD_SIZE-1``.
    """
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ValueError(f"RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local} are inconsistent")
    return World(rank, size, local)


def world() -> World:
    """The current world: the initialised process group's, else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), env_world().local_rank)
    return World()


def is_main() -> bool:
    """Whether this process is rank 0 (always true without a process group)."""
    return world().main


def backend_for(device_type: str) -> str:
    """``nccl`` for CUDA, ``gloo`` otherwise (CPU)."""
    return "nccl" if device_type == "cuda" else "gloo"


def _device_type(device: str) -> str:
    text = device.strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(text).type


@contextmanager
def process_group(device: str = "auto", timeout: timedelta = DEFAULT_TIMEOUT) -> Iterator[World]:
    """Join the process group ``torchrun`` describes for the duration of the block.

    With ``WORLD_SIZE`` > 1 and no group yet, initialises one from the environment
    (``init_method="env://"``: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``),
    backend :func:`backend_for` the training device (``device`` as in the model config), selects
    CUDA device ``LOCAL_RANK``, and destroys the group on leaving. A group that already exists
    (a caller's) is used and left alone; without ``WORLD_SIZE`` > 1 this is one process.

    Yields:
        The :class:`World`.
    """
    env = env_world()
    if not env.distributed or (dist.is_available() and dist.is_initialized()):
        yield world()
        return
    device_type = _device_type(device)
    if device_type == "cuda":
        torch.cuda.set_device(env.local_rank)
    backend = backend_for(device_type)
    dist.init_process_group(backend, init_method="env://", timeout=timeout)
    log.info("rank %d of %d joined the %s process group", env.rank, env.size, backend)
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if world().distributed:
        dist.barrier()


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result sent to every rank (pickled; keep it small).

    For decisions only rank 0 may take because they write (checkpoint folders, MLflow run ids):
    the other ranks wait and receive the same answer. Without a group, just ``compute()``.
    """
    if not world().distributed:
        return compute()
    box: list[Any] = [compute() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(value: T) -> list[T] | None:
    """Every rank's ``value`` (pickled), as a list in rank order on rank 0; ``None`` elsewhere.

    Without a group: ``[value]``.
    """
    w = world()
    if not w.distributed:
        return [value]
    out: list[Any] | None = [None] * w.size if w.main else None
    dist.gather_object(value, out, dst=0)
    return out


def all_reduce_mean(values: Mapping[str, float]) -> dict[str, float]:
    """The mean over the ranks of each value (same keys on every rank; no-op in one process)."""
    if not world().distributed or not values:
        return dict(values)
    names = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    size = dist.get_world_size()
    return {k: float(v) / size for k, v in zip(names, tensor.tolist(), strict=True)}


def distributed_sampler(
    dataset: Dataset[Any], seed: int, *, shuffle: bool = True, drop_last: bool = False
) -> DistributedSampler[Any]:
    """This rank's share of ``dataset``: a permutation seeded by ``seed + epoch`` (the training
    loop calls ``set_epoch``) cut into ``size`` interleaved parts, rank ``r`` taking positions
    ``r, r + size, ...``. ``drop_last=False`` pads the last part by repeating tiles so every
    rank takes as many steps as the others (DDP needs equal step counts).
    """
    w = world()
    return DistributedSampler(
        dataset, num_replicas=w.size, rank=w.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )


def sync_batch_norm(nets: dict[str, nn.Module], device: torch.device) -> list[str]:
    """Replace the ``BatchNorm`` layers of ``nets`` by ``SyncBatchNorm`` on CUDA, in place.

    The layers' parameters and buffers are kept (the optimisers still hold them) and the
    state-dict keys do not change, so checkpoints and exported generators stay those of one
    process. On other devices PyTorch's ``SyncBatchNorm`` raises in training, so the layers are
    kept and a warning says that batch statistics are per process.

    Returns:
        The names of the networks that hold batch norm.
    """
    with_bn = [
        name
        for name, net in nets.items()
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    ]
    if not with_bn or not world().distributed:
        return with_bn
    if device.type != "cuda":
        warnings.warn(
            f"networks {', '.join(with_bn)} use batch norm; torch's SyncBatchNorm runs on CUDA "
            f"only, so on {device.type} each process normalises with its own batch (the "
            "per-process batch size, not the global batch) and the results depend on the "
            "number of processes (translation models: use norm=instance to avoid it)",
            stacklevel=2,
        )
        return with_bn
    for name in with_bn:
        nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(nets[name])
    return with_bn


class DistributedNets:
    """``DistributedDataParallel`` wrappers of a model's networks, swapped in while training.

    The model (:class:`~mrihisto_kedro.nn.models.TranslationModel`) keeps its plain networks
    in ``model.nets``: state dicts, checkpoints, ``generate`` and the exported generator are
    those of one process. :meth:`training` puts the wrappers in ``model.nets`` for the
    training steps (each ``train_step`` looks its networks up there), so every backward
    averages the gradients over the ranks before the optimisers step.

    On construction rank 0's parameters and buffers are broadcast to every rank (a rank that
    resumed from a checkpoint holds the same values anyway). Buffers (batch-norm running
    statistics) are broadcast from rank 0 at every forward, as DDP does by default, and once
    more when a :meth:`training` block ends normally: the last forward of a block updated each
    rank's statistics with its own batch, so without it the ranks would leave the block with
    different running statistics (and export different generators in evaluation mode).

    Works for any model that keeps its networks in a ``nets`` dict and its device in
    ``device``: the translation models and the DCGAN
    (:class:`~mrihisto_kedro.nn.dcgan.model.DCGAN`, whose ``G`` and ``D`` read ``nets``).

    Args:
        model: the model, built on this rank's device.
    """

    def __init__(self, model: Any) -> None:
        """Wrap every network of ``model`` (after :func:`sync_batch_norm`)."""
        self.model = model
        self.enabled = world().distributed
        self.wrapped: dict[str, DistributedDataParallel] = {}
        if not self.enabled:
            return
        sync_batch_norm(model.nets, model.device)
        device_ids = None
        if model.device.type == "cuda":
            index = model.device.index
            device_ids = [torch.cuda.current_device() if index is None else index]
        for name, net in model.nets.items():
            self.wrapped[name] = DistributedDataParallel(net, device_ids=device_ids)

    @contextmanager
    def training(self) -> Iterator[None]:
        """``model.nets`` holds the DDP wrappers inside the block, the plain networks after."""
        if not self.enabled:
            yield
            return
        plain = dict(self.model.nets)
        self.model.nets.update(self.wrapped)
        try:
            yield
        finally:
            self.model.nets.update(plain)
        self.sync_buffers()  # not after an error: the other ranks may not get here

    def sync_buffers(self) -> None:
        """Broadcast rank 0's buffers (batch-norm running statistics) to every rank."""
        if not self.enabled:
            return
        for wrapper in self.wrapped.values():
            for buffer in wrapper.module.buffers():
                dist.broadcast(buffer, src=0)


_WORLD_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_env(rank: int, size: int, port: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(size),
        "LOCAL_WORLD_SIZE": str(size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _run_rank(
    rank: int, size: int, port: int, threads: int, target: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    """Body of a spawned rank: the environment ``torchrun`` would set, then ``target(*args)``.

    The rank leaves with ``os._exit`` (0 after ``target`` returned, 1 after it raised, with the
    traceback printed): a normal interpreter exit ran C++ destructors while a library thread
    was still joinable and aborted the finished rank ("terminate called without an active
    exception", exit -6): seen in 1 of 2 runs of tests/nn/test_distributed.py here.
    """
    import sys
    import traceback

    os.environ.update(_world_env(rank, size, port))
    torch.set_num_threads(threads)
    code = 0
    try:
        target(*args)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


@contextmanager
def local_processes(
    processes: int, target: Callable[..., Any], args: tuple[Any, ...]
) -> Iterator[World]:
    """Ranks ``1 .. processes-1`` on this machine running ``target(*args)``; this process rank 0.

    Inside the block this process has the environment of rank 0 of ``processes`` (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``), so
    :func:`process_group` joins the group the other ranks join; ``target`` must make the same
    collective calls as the block (the training study with the same arguments does). Each rank
    gets ``torch.get_num_threads() // processes`` threads (at least one). On leaving, the
    environment is restored and the other ranks are joined.

    Args:
        processes: number of ranks ``W`` (1: nothing is started).
        target: a picklable (module-level) function the other ranks run.
        args: its arguments (pickled to every rank: each holds its own copy).

    Raises:
        RuntimeError: a rank exited with an error (its exit code is named).
    """
    if processes <= 1:
        yield World()
        return
    if dist.is_available() and dist.is_initialized() or env_world().distributed:
        raise RuntimeError("local_processes: this process is already a rank of a process group")
    port = _free_port()
    threads = max(1, torch.get_num_threads() // processes)
    ctx = mp.get_context("spawn")
    workers = [
        ctx.Process(target=_run_rank, args=(rank, processes, port, threads, target, args))
        for rank in range(1, processes)
    ]
    for worker in workers:
        worker.start()
    saved = {k: os.environ.get(k) for k in _WORLD_VARIABLES}
    saved_threads = torch.get_num_threads()
    os.environ.update(_world_env(0, processes, port))
    torch.set_num_threads(threads)
    try:
        yield World(0, processes, 0)
    except BaseException:
        for worker in workers:  # they would wait for rank 0 until the collective timeout
            worker.terminate()
        raise
    finally:
        torch.set_num_threads(saved_threads)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for worker in workers:
            worker.join()
    failed = [(i + 1, w.exitcode) for i, w in enumerate(workers) if w.exitcode != 0]
    if failed:
        raise RuntimeError(
            "ranks exited with errors: " + ", ".join(f"rank {r} (exit {c})" for r, c in failed)
        )
