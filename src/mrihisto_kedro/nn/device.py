"""Device selection, mixed precision and memory format for training and inference.

- :func:`select_device`: ``auto`` picks CUDA, then Apple MPS, then CPU; an explicit device
  (``cpu``, ``cuda``, ``cuda:1``, ``mps``) is used as given and fails clearly when unavailable.
- :func:`autocast_context`: ``fp32`` (no autocast), ``bf16``, ``fp16`` or ``auto``. ``auto`` is
  bf16 on CUDA devices with native bf16 (Ampere and later), fp16 on older CUDA devices (trained
  with a gradient scaler), bf16 on
  CPU (measured on this project's CPU: 0.96 s -> 0.67 s per 256x256 pix2pix step, see
  ``STACK.md``; on CPUs without native bf16 it can be slower, so force ``fp32`` there) and fp32 on
  MPS. Use :func:`resolve_precision` to log the precision actually used, and
  :func:`needs_grad_scaler` to know when ``torch.amp.GradScaler`` is required (fp16 on CUDA).
- :func:`use_channels_last`: converts a module or a 4-D tensor to ``channels_last`` on CUDA and
  CPU (0.67 s -> 0.60 s per step with bf16 here); a no-op on MPS or when disabled.
- :func:`use_fused_adam`: whether ``torch.optim.Adam(fused=True)`` runs on a device (CPU and
  CUDA in torch >= 2.4; automatic: fused there, ``foreach`` elsewhere).
- :func:`configure_cudnn`: ``torch.backends.cudnn.benchmark = True`` on CUDA when every batch
  has the same input size (cuDNN then times its convolution algorithms once and keeps the
  fastest).
- :func:`loader_options`: ``DataLoader`` keyword arguments for a device: pinned memory on CUDA
  (asynchronous host-to-device copies), persistent workers when workers are used and the
  dataset does not change per epoch.
- :func:`numerics_report` / :func:`describe_numerics`: what decides a training's numbers on this
  machine (device, resolved precision, memory format, torch version, the CPU's SIMD level and
  native bf16, threads), logged to MLflow and printed under the tables: ``auto`` trains in bf16
  on CPUs with native bf16 and in fp32 elsewhere, so results of ``auto`` differ by machine; pin
  ``precision: fp32`` for numbers comparable across machines.

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import TypedDict, TypeVar, overload

import torch
from torch import nn

from mrihisto_kedro.nn.layers import parse_option

__all__ = [
    "Precision",
    "autocast_context",
    "configure_cudnn",
    "cpu_has_fast_bf16",
    "describe_numerics",
    "LoaderOptions",
    "loader_options",
    "needs_grad_scaler",
    "numerics_report",
    "resolve_precision",
    "select_device",
    "use_channels_last",
    "use_fused_adam",
]

_CHANNELS_LAST_DEVICES = frozenset({"cuda", "cpu"})
# devices where this project uses torch's fused Adam kernel (torch >= 2.4 has it on CPU and
# CUDA; measured on CPU by benchmarks/bench_optimizer.py)
_FUSED_ADAM_DEVICES = frozenset({"cuda", "cpu"})

M = TypeVar("M", bound=nn.Module)


class Precision(StrEnum):
    """Numeric precision of the forward pass."""

    FP32 = "fp32"  # no autocast
    BF16 = "bf16"  # autocast to bfloat16
    FP16 = "fp16"  # autocast to float16 (needs a GradScaler on CUDA)
    AUTO = "auto"  # bf16 on CUDA with native bf16 (else fp16) and on CPU, fp32 on MPS


def _mps_available() -> bool:
    """Whether Apple's Metal backend can be used."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(preference: str = "auto") -> torch.device:
    """The device to train or infer on.

    Args:
        preference: ``auto`` (CUDA, then MPS, then CPU), or a device string: ``cpu``, ``cuda``,
            ``cuda:<index>``, ``mps``.

    Returns:
        The device.

    Raises:
        ValueError: ``preference`` is not a device string of a supported type.
        RuntimeError: the requested device is not available on this machine.
    """
    text = preference.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise ValueError(
            f"device={preference!r} is not valid; expected 'auto', 'cpu', 'cuda', 'cuda:<index>' "
            "or 'mps'"
        ) from error
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={preference!r} requested but CUDA is not available (torch "
                f"{torch.__version__}, built for CUDA {torch.version.cuda}); use 'auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RuntimeError(
                f"device={preference!r} requested but only {count} CUDA device(s) are visible"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise RuntimeError(
                f"device={preference!r} requested but Apple MPS is not available; use 'auto' or "
                "'cpu'"
            )
        return torch.device("mps")
    raise ValueError(
        f"device={preference!r} is not supported; expected 'auto', 'cpu', 'cuda', 'cuda:<index>' "
        "or 'mps'"
    )


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (oneDNN bf16 support: AVX512/AMX).

    Without it (e.g. AVX2-only CPUs such as the project's AMD EPYC CI box) PyTorch emulates
    bf16 and a convolution is 100-200x slower than in float32 (measured here).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(
    device: torch.device, precision: Precision | str = Precision.AUTO
) -> Precision:
    """The precision actually used on ``device``: ``auto`` resolved, others validated.

    Args:
        device: the device the model runs on.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``.

    Returns:
        ``Precision.FP32``, ``BF16`` or ``FP16`` (never ``AUTO``).

    Raises:
        ValueError: bf16 requested on a CUDA device without bf16 support, or an unknown value.
    """
    precision = parse_option(Precision, precision, name="precision")
    device = torch.device(device)
    if precision is Precision.AUTO:
        if device.type == "cuda":  # Ampere+: native bf16; older GPUs: fp16 + GradScaler
            native = torch.cuda.is_bf16_supported(including_emulation=False)
            return Precision.BF16 if native else Precision.FP16
        if device.type == "cpu":
            return Precision.BF16 if cpu_has_fast_bf16() else Precision.FP32
        return Precision.FP32
    if precision is Precision.BF16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision='bf16' is not supported on {device}; use 'fp16' or 'fp32'")
    return precision


def autocast_context(
    device: torch.device, precision: Precision | str = Precision.AUTO
) -> contextlib.AbstractContextManager[object]:
    """A context manager running the forward pass (and loss) in the requested precision.

    Args:
        device: the device the model runs on.
        precision: ``fp32`` (a null context), ``bf16``, ``fp16`` or ``auto``
            (see :func:`resolve_precision`).

    Returns:
        ``torch.autocast(device.type, dtype)`` or ``contextlib.nullcontext()`` for fp32.
    """
    device = torch.device(device)
    resolved = resolve_precision(device, precision)
    if resolved is Precision.FP32:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if resolved is Precision.BF16 else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(device: torch.device, precision: Precision | str = Precision.AUTO) -> bool:
    """Whether training needs ``torch.amp.GradScaler``: fp16 on CUDA (bf16 and fp32 do not)."""
    device = torch.device(device)
    return device.type == "cuda" and resolve_precision(device, precision) is Precision.FP16


@overload
def use_channels_last(obj: M, device: torch.device, enabled: bool = True) -> M: ...


@overload
def use_channels_last(
    obj: torch.Tensor, device: torch.device, enabled: bool = True
) -> torch.Tensor: ...


def use_channels_last(
    obj: nn.Module | torch.Tensor, device: torch.device, enabled: bool = True
) -> nn.Module | torch.Tensor:
    """Convert a module or an image batch to the ``channels_last`` memory format where it helps.

    Converted only when ``enabled`` and ``device`` is CUDA or CPU; MPS and disabled calls return
    ``obj`` unchanged. Tensors that are not 4-D (N, C, H, W) are returned unchanged. The values
    and shapes never change, only the strides. Modules are converted in place (and returned).

    Args:
        obj: an ``nn.Module`` or a tensor (N, C, H, W).
        device: the device the model runs on.
        enabled: the user's switch.

    Returns:
        ``obj`` converted (a module in place; a new view or copy of a tensor), or unchanged.
    """
    if not enabled or torch.device(device).type not in _CHANNELS_LAST_DEVICES:
        return obj
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=torch.channels_last)
    if obj.dim() != 4:
        return obj
    return obj.contiguous(memory_format=torch.channels_last)


def use_fused_adam(device: torch.device, requested: bool | None = None) -> bool:
    """Whether Adam on ``device`` uses ``fused=True`` (one kernel over all parameters).

    Args:
        device: the device the parameters live on.
        requested: ``True`` (fused; an error where torch has no fused kernel), ``False``
            (``foreach``, the multi-tensor path, bit-identical to the reference implementation's
            default Adam) or ``None`` (automatic: fused on CPU and CUDA, ``foreach`` elsewhere).

    Returns:
        The decision.

    Raises:
        ValueError: ``requested`` is ``True`` on a device without a fused Adam kernel.
    """
    supported = torch.device(device).type in _FUSED_ADAM_DEVICES
    if requested is None:
        return supported
    if requested and not supported:
        raise ValueError(
            f"fused_optimizer=True but torch {torch.__version__} has no fused Adam on "
            f"{torch.device(device).type}; use null (automatic) or false"
        )
    return bool(requested)


def configure_cudnn(device: torch.device, fixed_input_size: bool) -> bool:
    """Switch ``torch.backends.cudnn.benchmark`` on for CUDA training on fixed-size inputs.

    With a fixed input size cuDNN times its convolution algorithms on the first batch and keeps
    the fastest; with varying sizes it would re-time for each new size, so it is left as is.
    Other devices are not touched (the flag only concerns cuDNN).

    Args:
        device: the device the model runs on.
        fixed_input_size: whether every batch has the same (N, C, H, W) (training crops do).

    Returns:
        Whether the flag was set by this call.
    """
    if torch.device(device).type != "cuda" or not fixed_input_size:
        return False
    torch.backends.cudnn.benchmark = True
    return True


class LoaderOptions(TypedDict):
    """Keyword arguments of ``torch.utils.data.DataLoader`` (:func:`loader_options`)."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool


def loader_options(
    device: torch.device, num_workers: int, *, per_epoch_draws: bool = False
) -> LoaderOptions:
    """``DataLoader`` keyword arguments that feed ``device`` fast.

    Args:
        device: the device the batches go to.
        num_workers: worker processes (0: load in the main process).
        per_epoch_draws: the dataset changes per epoch through a ``set_epoch`` that writes
            the training process's own memory: persistent workers keep their own copy of the
            dataset, so that ``set_epoch`` would not reach them and every epoch would repeat
            the first epoch's draws; such datasets get non-persistent workers. Not needed for
            :class:`~mrihisto_kedro.nn.data.TileSetTorchDataset`, whose epoch lives in shared
            memory (``epoch_shared``): its workers are persistent.

    Returns:
        ``{"num_workers", "pin_memory", "persistent_workers"}``: pinned (page-locked) host memory
        on CUDA only (asynchronous copies to the GPU; pinning buys nothing elsewhere), persistent
        workers whenever ``num_workers > 0`` (unless ``per_epoch_draws``): the worker processes
        start once, not at every epoch.

    Raises:
        ValueError: ``num_workers`` is negative.
    """
    if isinstance(num_workers, bool) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    return LoaderOptions(
        num_workers=int(num_workers),
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0 and not per_epoch_draws,
    )


def numerics_report(
    device: torch.device, precision: Precision | str, channels_last: bool
) -> dict[str, str]:
    """What decides a model's numbers here, as strings (for MLflow parameters and tables).

    Args:
        device: the device the model runs on.
        precision: the precision it runs in (``auto`` is resolved for ``device``).
        channels_last: whether networks and inputs use ``channels_last``.

    Returns:
        ``device`` (with the CUDA device name), ``precision`` (resolved), ``channels_last``,
        ``torch`` (version), ``cpu_capability`` (ATen's SIMD level: ``DEFAULT``, ``AVX2``,
        ``AVX512``, ...), ``cpu_bf16_native`` (oneDNN bf16 support: what ``auto`` decides on)
        and ``threads`` (intra-op threads: they change float summation order).
    """
    device = torch.device(device)
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {
        "device": name,
        "precision": resolve_precision(device, precision).value,
        "channels_last": str(bool(channels_last)).lower(),
        "torch": torch.__version__,
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "cpu_bf16_native": str(cpu_has_fast_bf16()).lower(),
        "threads": str(torch.get_num_threads()),
    }


def describe_numerics(report: dict[str, str]) -> str:
    """One line of a :func:`numerics_report`, e.g. ``cpu, fp32, torch 2.14.1, CPU AVX2 without
    native bf16, 2 threads``."""
    bf16 = "with" if report.get("cpu_bf16_native") == "true" else "without"
    return (
        f"{report['device']}, {report['precision']}, torch {report['torch']}, CPU "
        f"{report['cpu_capability']} {bf16} native bf16, {report['threads']} thread"
        + ("" if report["threads"] == "1" else "s")
    )
