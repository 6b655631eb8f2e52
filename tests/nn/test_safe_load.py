"""A .pt file that would run code is refused by name, never unpickled (issue 15)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError

from mrihisto_kedro.datasets.torch_model_dataset import TorchGeneratorDataset
from mrihisto_kedro.nn.safe_load import UnsafeFileError, load_weights_only
from mrihisto_kedro.nn.training import load_checkpoint, load_generator


class _Payload:
    """Unpickling this runs ``os.system``: what a hostile 'generator.pt' would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "generator.pt"
    torch.save({"architecture": {}, "state_dict": _Payload(marker)}, path)
    return path, marker


def test_every_reader_refuses_it_with_the_projects_sentence(hostile: tuple[Path, Path]) -> None:
    path, marker = hostile
    readers = [
        lambda: load_weights_only(path, "generator file"),
        lambda: load_generator(path),
        lambda: load_checkpoint(path),
        lambda: TorchGeneratorDataset(filepath=str(path)).load(),
    ]
    for read in readers:
        with pytest.raises((UnsafeFileError, DatasetError)) as refused:
            read()
        message = str(refused.value)
        assert str(path) in message and "will not unpickle it" in message
        assert "weights_only=False" not in message  # torch's advice is not repeated
    assert not marker.exists()  # no code ran


def test_plain_payloads_still_load(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(2), "meta": {"a": [1, 2.0, "x"]}}, tmp_path / "ok.pt")
    loaded = load_weights_only(tmp_path / "ok.pt")
    assert torch.equal(loaded["w"], torch.ones(2)) and loaded["meta"]["a"] == [1, 2.0, "x"]


def test_a_forged_architecture_is_refused_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15: ``ngf=4096`` in a small file tried to allocate 68 GB before any check."""
    from mrihisto_kedro.nn import training
    from mrihisto_kedro.nn.experiment import ModelType, model_config
    from mrihisto_kedro.nn.models import build_model

    config = model_config(ModelType.PIX2PIX, {"generator": "unet", "num_downs": 5, "ngf": 4})
    payload = training.export_generator(build_model(config))
    built_on: list[str] = []
    real_build = training.build_generator

    def recording(**kwargs: object) -> torch.nn.Module:
        built_on.append(str(torch.get_default_device()))
        return real_build(**kwargs)

    monkeypatch.setattr(training, "build_generator", recording)
    assert load_generator(payload) is not None
    assert built_on == ["meta", "cpu"]  # sized on the meta device first, then built
    built_on.clear()
    forged = {**payload, "architecture": {**payload["architecture"], "ngf": 4096}}
    with pytest.raises(ValueError, match=r"\d+ M parameters, above the 1000 M"):
        load_generator(forged)
    assert built_on == ["meta"]  # never built with memory
    mismatched = {**payload, "architecture": {**payload["architecture"], "ngf": 8}}
    with pytest.raises(ValueError, match="architecture and weights do not belong together"):
        load_generator(mismatched)
