"""Device selection, autocast and channels_last helpers (run on CPU)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from mrihisto_kedro.nn.device import (
    Precision,
    autocast_context,
    cpu_has_fast_bf16,
    describe_numerics,
    needs_grad_scaler,
    numerics_report,
    resolve_precision,
    select_device,
    use_channels_last,
)

CPU = torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == CPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert select_device(" AUTO ") == torch.device("cuda", 0)


def test_cpu_is_always_available() -> None:
    assert select_device("cpu") == CPU


def test_unavailable_devices_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        select_device("cuda:1")
    with pytest.raises(RuntimeError, match="MPS is not available"):
        select_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match="only 1 CUDA device"):
        select_device("cuda:1")
    assert select_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("bad", ["gpu", "tpu:0", "cuda:x", ""])
def test_unknown_device_strings_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="device="):
        select_device(bad)


def test_resolve_precision_on_cpu_and_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    import mrihisto_kedro.nn.device as device_module

    # auto is bf16 only on CPUs with native bf16; emulated bf16 is ~50x slower (measured here)
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision(CPU, "auto") is Precision.BF16
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision(CPU, "auto") is Precision.FP32
    assert resolve_precision(CPU, "fp32") is Precision.FP32
    assert resolve_precision(torch.device("mps"), Precision.AUTO) is Precision.FP32
    with pytest.raises(ValueError, match="'precision' = 'int8' is not one of: fp32, bf16"):
        resolve_precision(CPU, "int8")


def test_resolve_precision_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision(cuda, "auto") is Precision.BF16
    assert not needs_grad_scaler(cuda, "auto")
    # before Ampere: auto is fp16 trained with a gradient scaler (issue 18)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision(cuda, "auto") is Precision.FP16
    assert needs_grad_scaler(cuda, "auto")
    with pytest.raises(ValueError, match="bf16"):
        resolve_precision(cuda, "bf16")
    assert needs_grad_scaler(cuda, "fp16")
    assert not needs_grad_scaler(CPU, "fp16")


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("auto", torch.bfloat16), ("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", None)],
)
def test_autocast_context_on_cpu(
    precision: str, dtype: torch.dtype | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrihisto_kedro.nn.device as device_module

    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: True)  # auto -> bf16
    conv = nn.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 8, 8)
    context = autocast_context(CPU, precision)
    assert isinstance(context, contextlib.AbstractContextManager)
    with context:
        y = conv(x)
    assert y.dtype == (dtype or torch.float32)
    if dtype is None:
        assert isinstance(context, contextlib.nullcontext)


def test_channels_last_module_and_tensor() -> None:
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 9, 7)
    assert use_channels_last(conv, CPU, True) is conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    y = use_channels_last(x, CPU, True)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, x)
    torch.testing.assert_close(conv(y), conv(x.contiguous()))


def test_channels_last_disabled_on_mps_or_off_and_for_non_images() -> None:
    x = torch.randn(2, 3, 9, 7)
    assert use_channels_last(x, CPU, False) is x
    assert use_channels_last(x, torch.device("mps"), True) is x
    vector = torch.randn(5)
    assert use_channels_last(vector, CPU, True) is vector
    conv = nn.Conv2d(3, 4, 3)
    use_channels_last(conv, CPU, False)
    assert conv.weight.is_contiguous()


def test_numerics_report_names_what_decides_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    import mrihisto_kedro.nn.device as device_module

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        report = numerics_report(CPU, "auto", False)
    finally:
        torch.set_num_threads(threads)
    assert report["device"] == "cpu" and report["threads"] == "1"
    assert describe_numerics(report).endswith(", 1 thread")
    assert report["torch"] == torch.__version__
    assert report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # auto is resolved: bf16 exactly where this CPU has native bf16
    assert report["precision"] == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert report["cpu_bf16_native"] == str(cpu_has_fast_bf16()).lower()
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda native=native: native)
        report = numerics_report(CPU, "auto", True)
        assert report["precision"] == expected and report["channels_last"] == "true"
        line = describe_numerics(report)
        assert line.startswith(f"cpu, {expected}, torch {torch.__version__}, CPU ")
        assert ("with native bf16" in line) is native
        assert line.endswith(
            f", {report['threads']} thread" + ("s" if report["threads"] != "1" else "")
        )
    assert numerics_report(CPU, "fp32", False)["precision"] == "fp32"  # pinned: any CPU
