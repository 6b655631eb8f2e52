"""Tests for ``mrihisto_kedro.nn.training``: loop, SSIM, checkpoints, exact resume, export."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import structural_similarity
from torch.utils.data import DataLoader

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn import training as training_module
from mrihisto_kedro.nn.data import TileSetTorchDataset
from mrihisto_kedro.nn.models import (
    CycleGAN,
    CycleGANConfig,
    Pix2Pix,
    Pix2PixConfig,
    TranslationModel,
    UNetRegression,
    UNetRegressionConfig,
)
from mrihisto_kedro.nn.training import (
    CHECKPOINT_NAME,
    EpochReport,
    checkpoint_bytes,
    evaluate,
    export_generator,
    gaussian_ssim,
    input_foreground,
    load_checkpoint,
    load_generator,
    save_checkpoint,
    train,
)

SMALL = {"generator": "unet", "num_downs": 5, "ngf": 8, "device": "cpu", "precision": "fp32"}
SMALL_D = {**SMALL, "ndf": 8}


def _tileset(n: int = 8, size: int = 32, seed: int = 0) -> TileSet:
    """uint16 MRI-like A (1 channel) and uint8 RGB B = a fixed colour mapping of A."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, size // 8, size // 8))
    a01 = np.kron(coarse, np.ones((8, 8)))  # blocky smooth images in [0, 1]
    a = np.round(a01 * 65535).astype(np.uint16)[..., None]
    b = np.stack([a01, 1 - a01, 0.5 * a01 + 0.25], axis=-1)
    b = np.round(b * 255).astype(np.uint8)
    manifest = pd.DataFrame(
        {
            "tile_id": [f"t{i}" for i in range(n)],
            "pair_id": "p",
            "specimen_id": "s",
            "split": "train",
            "x": np.arange(n) * size,
            "y": 0,
            "size": size,
            "scale": 1.0,
        }
    )
    return TileSet(manifest=manifest, a=a, b=b)


def _loaders(
    seed: int = 0, generator: torch.Generator | None = None
) -> tuple[DataLoader, DataLoader]:
    ts = _tileset(seed=seed)
    train_ds = TileSetTorchDataset(ts, train=True, load_size=36, crop_size=32, flip=True, seed=3)
    val_ds = TileSetTorchDataset(_tileset(n=4, seed=seed + 1), train=False)
    train_loader = DataLoader(
        train_ds, batch_size=4, shuffle=True, num_workers=0, generator=generator
    )
    return train_loader, DataLoader(val_ds, batch_size=2, shuffle=False)


def _assert_same_state(a: TranslationModel, b: TranslationModel) -> None:
    for name, net in a.nets.items():
        theirs = b.nets[name].state_dict()
        for key, value in net.state_dict().items():
            assert torch.equal(value, theirs[key]), f"{name}.{key} differs"
    for name, opt in a.optimizers.items():
        mine, theirs = opt.state_dict()["state"], b.optimizers[name].state_dict()["state"]
        assert mine.keys() == theirs.keys()
        for idx, slot in mine.items():
            for key, value in slot.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(theirs[idx][key]))
    assert a.learning_rates() == b.learning_rates()


# ---- SSIM ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "size"), [(1, 32), (3, 40), (3, 11)])
def test_gaussian_ssim_equals_skimage(channels: int, size: int) -> None:
    rng = np.random.default_rng(channels + size)
    x = rng.random((2, channels, size, size + 3))
    y = np.clip(x + rng.normal(0, 0.15, x.shape), 0, 1)
    y[1] = rng.random(y[1].shape)  # one unrelated pair
    ours = gaussian_ssim(torch.from_numpy(x), torch.from_numpy(y), data_range=1.0)
    for i in range(2):
        ref = structural_similarity(
            x[i],
            y[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        assert abs(float(ours[i]) - ref) < 1e-4
        assert abs(float(ours[i]) - ref) < 1e-10  # in fact equal to float64 rounding
    same = gaussian_ssim(torch.from_numpy(x), torch.from_numpy(x))
    torch.testing.assert_close(same, torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="window"):
        gaussian_ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_masked_ssim_is_the_skimage_map_averaged_over_the_mask() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((2, 1, 40, 36))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    a = torch.full((2, 1, 40, 36), -1.0)
    a[0, :, 5:30, 8:30] = 0.2  # a "head" in the first image, no signal in the second
    mask = input_foreground(a)
    assert mask.dtype == torch.bool and int(mask.sum()) == 25 * 22
    ours = gaussian_ssim(torch.from_numpy(x), torch.from_numpy(y), mask=mask)
    _, full = structural_similarity(
        x[0, 0],
        y[0, 0],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    r = 5  # skimage crops (win - 1) / 2 pixels before averaging; so do we
    valid = np.zeros_like(full, dtype=bool)
    valid[r:-r, r:-r] = True
    ref = full[valid & mask[0, 0].numpy()].mean()
    assert abs(float(ours[0]) - ref) < 1e-10
    assert torch.isnan(ours[1])  # no foreground: undefined, not a made-up value
    with pytest.raises(ValueError, match="mask must have shape"):
        gaussian_ssim(torch.from_numpy(x), torch.from_numpy(y), mask=mask[:, :, :20])


def test_evaluate_metrics_and_units() -> None:
    class Constant(UNetRegression):
        """Predicts B = 0 (0.5 in [0, 1] units) whatever the input."""

        @torch.no_grad()
        def generate(self, a: torch.Tensor) -> torch.Tensor:
            return torch.zeros(a.shape[0], 3, *a.shape[2:])

    model = Constant(UNetRegressionConfig(**SMALL))
    _, val_loader = _loaders()
    metrics, sample = evaluate(model, val_loader, n_samples=3)
    bs = torch.cat([b["B"] for b in val_loader])
    assert metrics["val_L1"] == pytest.approx(float(bs.abs().mean()), rel=1e-6)
    assert metrics["val_L1_01"] == pytest.approx(metrics["val_L1"] / 2)
    ref = [
        structural_similarity(
            np.full((32, 32, 3), 0.5),
            ((b.numpy().transpose(1, 2, 0) + 1) / 2),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=2,
        )
        for b in bs
    ]
    assert metrics["val_SSIM"] == pytest.approx(float(np.mean(ref)), abs=1e-6)
    assert sample is not None and sample.a.shape == (2, 1, 32, 32)  # first batch has 2 items
    grid = sample.grid()
    assert grid.shape == (64, 96, 3) and grid.dtype == np.float32
    assert grid.min() >= 0 and grid.max() <= 1


# ---- the loop ------------------------------------------------------------------------------


def test_a_full_disk_stops_training_before_its_first_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The estimate bounds the real checkpoint; too little space is refused before any step."""
    from collections import namedtuple

    from mrihisto_kedro.durability import disk_space

    model = Pix2Pix(Pix2PixConfig(**SMALL_D, n_epochs=1, n_epochs_decay=0))
    train_loader, _ = _loaders()
    estimate = checkpoint_bytes(model)
    train(model, train_loader, checkpoint_dir=tmp_path / "ok", sample_every=0)
    written = (tmp_path / "ok" / CHECKPOINT_NAME).stat().st_size
    assert written <= estimate <= 3 * written + 2**20

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda p: usage(2**40, 2**40, 1000))
    steps = model.steps
    with pytest.raises(OSError, match=r"cannot write .*last\.pt: a checkpoint beside the last"):
        train(model, train_loader, checkpoint_dir=tmp_path / "full", sample_every=0)
    assert model.steps == steps and not (tmp_path / "full" / CHECKPOINT_NAME).exists()


def test_train_reports_history_lr_and_samples(tmp_path: Path) -> None:
    cfg = Pix2PixConfig(**SMALL_D, n_epochs=2, n_epochs_decay=2, lr=1e-3)
    model = Pix2Pix(cfg)
    train_loader, val_loader = _loaders()
    untrained, _ = evaluate(model, val_loader)
    reports: list[EpochReport] = []
    result = train(
        model,
        train_loader,
        val_loader=val_loader,
        checkpoint_dir=tmp_path,
        callback=reports.append,
        sample_every=3,
    )
    assert result.epochs_completed == 4 and len(result.history) == 4 and len(reports) == 4
    assert result.resumed_from is None and result.checkpoint == tmp_path / CHECKPOINT_NAME
    # lr used in each epoch: constant for n_epochs, then the reference linear decay
    assert [r.learning_rates["lr_G"] for r in reports] == pytest.approx(
        [1e-3, 1e-3, 1e-3 * 2 / 3, 1e-3 / 3]
    )
    assert [h["lr_D"] for h in result.history] == pytest.approx([1e-3, 1e-3, 2e-3 / 3, 1e-3 / 3])
    assert set(reports[0].losses) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    assert set(reports[0].metrics) == {"val_L1", "val_L1_01", "val_SSIM", "val_SSIM_fg"}
    # samples every 3 epochs and at the last one
    assert [r.sample is not None for r in reports] == [False, False, True, True]
    sample = reports[2].sample
    assert sample is not None and sample.source == "val"
    assert sample.fake_b.shape == (2, 3, 32, 32)
    assert reports[-1].flat()["val_L1"] == result.final["val_L1"]
    assert result.final["val_L1"] < untrained["val_L1"]
    # only the checkpoint remains in the folder (no temporary files)
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME]
    payload = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert payload["epoch"] == 4 and payload["model"]["config"]["gan_mode"] == "vanilla"
    assert set(payload["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert payload["loaders"]["train"]["dataset"] == {"seed": 3, "epoch": 3}


def test_train_without_validation_samples_the_training_batch() -> None:
    model = UNetRegression(UNetRegressionConfig(**SMALL, n_epochs=1, n_epochs_decay=0))
    train_loader, _ = _loaders()
    reports: list[EpochReport] = []
    result = train(model, train_loader, callback=reports.append, n_samples=2)
    assert result.epochs_completed == 1 and reports[0].metrics == {}
    assert reports[0].sample is not None and reports[0].sample.source == "train"
    assert reports[0].sample.fake_b.shape == (2, 3, 32, 32)
    assert reports[0].checkpoint is None


def unet_against_baselines(seed: int = 0, epochs: int = 15) -> dict[str, float]:
    """The U-Net regression trained ``epochs`` epochs on the toy tile set: its validation L1
    over the untrained network's and over the mean-colour baseline's (< 1 when it learns)."""
    model = UNetRegression(UNetRegressionConfig(**SMALL, lr=5e-3, seed=seed))
    train_loader, val_loader = _loaders(seed=seed)
    untrained, _ = evaluate(model, val_loader)
    result = train(model, train_loader, val_loader=val_loader, epochs=epochs, sample_every=0)
    mean_b = torch.cat([b["B"] for b in train_loader]).mean(dim=(0, 2, 3))  # (3,)
    trivial = float(
        torch.cat([(b["B"] - mean_b[None, :, None, None]).abs() for b in val_loader]).mean()
    )
    return {
        "val_L1_over_untrained": result.final["val_L1"] / untrained["val_L1"],
        "val_L1_over_mean_colour": result.final["val_L1"] / trivial,
    }


# thresholds with margin over CPUs, threads and seeds: benchmarks/trajectory_margins.py
UNET_UNTRAINED_RATIO = 0.5
UNET_MEAN_COLOUR_RATIO = 1.0


def test_unet_regression_beats_untrained_and_mean_colour() -> None:
    ratios = unet_against_baselines()
    assert ratios["val_L1_over_untrained"] < UNET_UNTRAINED_RATIO, ratios
    assert ratios["val_L1_over_mean_colour"] < UNET_MEAN_COLOUR_RATIO, ratios


# ---- checkpoints and exact resume ----------------------------------------------------------


class _Stop(RuntimeError):
    pass


def _stop_after(epoch: int):
    def callback(report: EpochReport) -> None:
        if report.epoch == epoch:
            raise _Stop(f"killed after epoch {epoch}")

    return callback


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pix2Pix(
            Pix2PixConfig(**SMALL_D, gan_mode="wgangp", n_epochs=2, n_epochs_decay=1, seed=4)
        ),
        lambda: CycleGAN(
            CycleGANConfig(
                **SMALL_D, in_channels=1, out_channels=3, pool_size=3, n_epochs=2, n_epochs_decay=1
            )
        ),
    ],
    ids=["pix2pix", "cyclegan"],
)
@pytest.mark.parametrize("loader_generator", [False, True], ids=["global-rng", "own-generator"])
def test_resume_reaches_exactly_the_uninterrupted_result(
    tmp_path: Path, make, loader_generator: bool
) -> None:
    torch.use_deterministic_algorithms(True)
    try:

        def loaders() -> tuple[DataLoader, DataLoader]:
            gen = torch.Generator().manual_seed(11) if loader_generator else None
            return _loaders(generator=gen)

        # uninterrupted: 3 epochs
        full = make()
        train_loader, val_loader = loaders()
        full_result = train(
            full, train_loader, epochs=3, val_loader=val_loader, checkpoint_dir=tmp_path / "a"
        )

        # interrupted after epoch 2, then resumed in a new "process" (new model and loaders)
        first = make()
        train_loader, val_loader = loaders()
        with pytest.raises(_Stop):
            train(
                first,
                train_loader,
                epochs=3,
                val_loader=val_loader,
                checkpoint_dir=tmp_path / "b",
                callback=_stop_after(2),
            )
        assert load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["epoch"] == 2
        torch.manual_seed(12345)  # whatever happened in between must not matter
        np.random.seed(99)  # noqa: NPY002 - the global state is what resume restores
        resumed = make()
        train_loader, val_loader = loaders()
        result = train(
            resumed,
            train_loader,
            epochs=3,
            val_loader=val_loader,
            checkpoint_dir=tmp_path / "b",
            resume=True,
        )
    finally:
        torch.use_deterministic_algorithms(False)
    assert result.resumed_from == 2 and result.epochs_completed == 3
    _assert_same_state(full, resumed)
    for name in full.pools:
        mine, theirs = full.pools[name].images, resumed.pools[name].images
        assert len(mine) == len(theirs)
        assert all(torch.equal(x, y) for x, y in zip(mine, theirs, strict=True))
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full_result.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in result.history] == strip


def test_resume_without_checkpoint_starts_fresh_and_finished_run_is_a_no_op(
    tmp_path: Path,
) -> None:
    cfg = UNetRegressionConfig(**SMALL, n_epochs=1, n_epochs_decay=0)
    model = UNetRegression(cfg)
    train_loader, _ = _loaders()
    result = train(model, train_loader, checkpoint_dir=tmp_path, resume=True)
    assert result.resumed_from is None and result.epochs_completed == 1
    again = UNetRegression(cfg)
    calls: list[EpochReport] = []
    result2 = train(
        again, train_loader, checkpoint_dir=tmp_path, resume=True, callback=calls.append
    )
    assert result2.resumed_from == 1 and result2.epochs_completed == 1 and calls == []
    _assert_same_state(model, again)
    other = UNetRegression(
        UNetRegressionConfig(**{**SMALL, "ngf": 4}, n_epochs=1, n_epochs_decay=0)
    )
    with pytest.raises(ValueError, match="ngf"):
        train(other, train_loader, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(model, train_loader, resume=True)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint({"format": "x", "value": torch.ones(3)}, path)

    def broken_save(obj: object, handle) -> None:
        handle.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(training_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"format": "x", "value": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.ones(3))
    with pytest.raises(ValueError, match="not a"):
        load_checkpoint(path)


# ---- export --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pix2Pix(Pix2PixConfig(**SMALL_D)),
        lambda: UNetRegression(UNetRegressionConfig(**SMALL)),
        lambda: CycleGAN(
            CycleGANConfig(**{**SMALL_D, "generator": "resnet_6blocks", "num_downs": None})
        ),
    ],
    ids=["pix2pix", "unet-regression", "cyclegan-resnet"],
)
def test_export_and_load_generator_round_trip(tmp_path: Path, make) -> None:
    model = make()
    batch = {
        "A": torch.rand(2, model.config.in_channels, 32, 32) * 2 - 1,
        "B": torch.rand(2, model.config.out_channels, 32, 32) * 2 - 1,
    }
    model.train_step(batch)  # move BN running stats away from their defaults
    payload = export_generator(model)
    torch.save(payload, tmp_path / "g.pt")
    loaded = load_generator(tmp_path / "g.pt", device="cpu")
    assert not loaded.training
    arch = payload["architecture"]
    assert arch["kind"] == model.config.generator.value and arch["ngf"] == 8
    assert {"in_channels", "out_channels", "norm", "use_dropout", "num_downs"} <= set(arch)
    x = torch.rand(3, model.config.in_channels, 40, 24) * 2 - 1
    with torch.no_grad():
        raw = loaded(x)
    expected = model.generate(x)
    lo, hi = payload["output_range"]
    if (lo, hi) == (0.0, 1.0):
        raw = raw * 2 - 1
    torch.testing.assert_close(raw, expected, atol=0, rtol=0)
    again = load_generator(payload)
    with torch.no_grad():
        torch.testing.assert_close(again(x), loaded(x), atol=0, rtol=0)


def test_run_training_accumulates_and_keeps_persistent_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``data.accumulate_steps`` reaches every ``train_step``; ``num_workers`` > 0 gives
    persistent training workers (the dataset's epoch is shared) and no warning about them."""
    from tiny_modelling import tiny_tileset

    from mrihisto_kedro.nn.experiment import DataParams, make_loaders, run_training

    seen: list[int] = []
    original = UNetRegression.train_step

    def recording(self: UNetRegression, batch: dict, accumulate: int = 1) -> dict[str, float]:
        seen.append(accumulate)
        return original(self, batch, accumulate=accumulate)

    monkeypatch.setattr(UNetRegression, "train_step", recording)
    data = DataParams(batch_size=2, accumulate_steps=2, num_workers=2, crop_size=16)
    config = {**SMALL, "n_epochs": 2, "n_epochs_decay": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the persistent-workers warning would fail the run
        model, result, info = run_training(tiny_tileset(), "unet_regression", config, data)
    assert seen == [2] * 6  # 6 training tiles, batches of 2, 2 epochs
    loader = make_loaders(tiny_tileset(), data, paired=True, seed=0)[0]
    assert loader.num_workers == 2 and loader.persistent_workers
    assert result.epochs_completed == 2 and np.isfinite(result.final["MSE"])
    with pytest.raises(ValueError, match="accumulate"):
        train(model, [], accumulate=0)
    with pytest.warns(UserWarning, match="persistent_workers"):  # a dataset without a shared epoch
        training_module._check_loader(
            DataLoader(_EpochOwnDataset(), num_workers=1, persistent_workers=True), "loader"
        )


class _EpochOwnDataset(torch.utils.data.Dataset):
    """A dataset whose ``set_epoch`` writes its own memory only."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return index + self.epoch
