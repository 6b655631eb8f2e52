"""Benchmark: milliseconds per pix2pix training step, and the data-loading share of a step.

The reference pix2pix at full size: U-Net-256 generator (1 -> 3 channels, ngf 64, 54,411,907
parameters) and the basic 70x70 PatchGAN (4 input channels, ndf 64, 2,766,657 parameters),
256 x 256 tiles, vanilla GAN + 100 L1, Adam. For each batch size (1 and 4) and each variant
(fp32 with torch's default Adam, fp32 with fused Adam, fp32 + channels_last, bf16 autocast,
bf16 autocast + channels_last; the last three with the automatic optimiser choice, fused on CPU
and CUDA), one :meth:`Pix2Pix.train_step` (forward G, D update, G update; one autocast context
per step) is timed ``--steps`` times after ``--warmup`` untimed steps; the median is reported,
in ms per step and ms per image.

Reference implementation: ``--reference PATH`` names a checkout of the reference pix2pix
(junyanz/pytorch-CycleGAN-and-pix2pix, the folder holding ``models/pix2pix_model.py``) that the
user already has; nothing is downloaded or copied. Its ``models.pix2pix_model.Pix2PixModel`` is
imported from that folder (as its ``train.py`` imports it) and built from the options its
``train.py --model pix2pix`` gives (:func:`reference_options`); the project's initial weights are
copied into its networks, and its own ``optimize_parameters`` (forward G; D on fake and real
pairs; G with GAN + 100 L1; torch's default Adam) is timed in the same run, first for each batch
size. The ``ratio`` column is each variant's median over the reference's (over the project's
``fp32`` variant without ``--reference``).

Data loading: a tile set of ``--tiles`` 256 x 256 tiles (A uint16 one channel, B uint8 RGB) is
written with :func:`save_tileset` to a temporary folder and opened memory-mapped with
:func:`load_tileset`; a ``TileSetTorchDataset`` with the pix2pix augmentation (resize to 286,
random crop 256, flip) feeds a ``DataLoader`` (``num_workers=0``, shuffled). The median time to
fetch one batch is compared with the median compute time of the step (share = fetch / (fetch +
compute)). The arrays were just written, so they are read from the page cache (warm), which is
the steady state of a training run whose tile set fits in memory.

Usage::

    python benchmarks/bench_training_step.py [--reference PATH] [--steps 5] [--warmup 2]
        [--batches 1 4] [--tiles 64] [--threads N] [--json out.json]

Prints a table; ``--json`` also writes the numbers. ``--device cuda`` times a GPU. On a CPU
without native bf16 (AVX2 only: oneDNN emulates bf16, one convolution ~200x slower than fp32)
the bf16 variants are skipped unless ``--force-bf16`` (a batch-1 bf16 step took ~52 s there).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from mrihisto_kedro.imaging.tileset import TileSet, load_tileset, save_tileset
from mrihisto_kedro.nn.data import TileSetTorchDataset
from mrihisto_kedro.nn.device import Precision
from mrihisto_kedro.nn.discriminators import DiscriminatorKind
from mrihisto_kedro.nn.generators import GeneratorKind
from mrihisto_kedro.nn.models import Pix2Pix, Pix2PixConfig, cpu_has_fast_bf16

SIZE = 256
VARIANTS: dict[str, dict[str, object]] = {
    "fp32": {"precision": "fp32", "channels_last": False, "fused_optimizer": False},
    "fp32+fused_adam": {"precision": "fp32", "channels_last": False, "fused_optimizer": True},
    "fp32+channels_last": {"precision": "fp32", "channels_last": True},
    "bf16": {"precision": "bf16", "channels_last": False},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
}


def conv_probe() -> tuple[float, float]:
    """ms of one 4x4/2 convolution (4 x 64 x 128 x 128 -> 128 channels) in fp32 and in bf16."""
    x = torch.randn(4, 64, 128, 128)
    w = torch.randn(128, 64, 4, 4)
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        xx, ww = x.to(dtype), w.to(dtype)
        torch.nn.functional.conv2d(xx, ww, stride=2, padding=1)
        start = time.perf_counter()
        torch.nn.functional.conv2d(xx, ww, stride=2, padding=1)
        out.append((time.perf_counter() - start) * 1000.0)
    return out[0], out[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    variant: str, batch_size: int, steps: int, warmup: int, device: str
) -> dict[str, float]:
    """Median ms of ``Pix2Pix.train_step`` for one variant and batch size (fresh model)."""
    cfg = Pix2PixConfig(
        in_channels=1,
        out_channels=3,
        generator=GeneratorKind.UNET_256,
        discriminator=DiscriminatorKind.BASIC,
        device=device,
        **VARIANTS[variant],  # type: ignore[arg-type]
    )
    model = Pix2Pix(cfg)
    counts = model.parameter_counts()
    gen = torch.Generator().manual_seed(0)
    batch = {
        "A": torch.rand(batch_size, 1, SIZE, SIZE, generator=gen) * 2 - 1,
        "B": torch.rand(batch_size, 3, SIZE, SIZE, generator=gen) * 2 - 1,
    }
    times = []
    for i in range(warmup + steps):
        _sync(model.device)
        start = time.perf_counter()
        model.train_step(batch)
        _sync(model.device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    del model
    gc.collect()
    median = statistics.median(times)
    return {
        "ms_per_step": median,
        "ms_per_image": median / batch_size,
        "min_ms": min(times),
        "max_ms": max(times),
        "params_G": counts["G"],
        "params_D": counts["D"],
    }


def load_reference(path: Path) -> ModuleType:
    """The reference's ``models.pix2pix_model`` module, imported from the checkout at ``path``.

    The checkout's folder goes first on ``sys.path`` so that its own packages (``models``,
    ``util``) are the ones imported, as its ``train.py`` imports them; nothing is copied.
    """
    source = path / "models" / "pix2pix_model.py"
    if not source.is_file():
        raise SystemExit(
            f"--reference {path}: no models/pix2pix_model.py there (a checkout of "
            "junyanz/pytorch-CycleGAN-and-pix2pix is expected)"
        )
    root = path.resolve()
    for name in ("models", "util"):
        loaded = sys.modules.get(name)
        where = Path(getattr(loaded, "__file__", None) or "/").resolve()
        if loaded is not None and root not in where.parents:
            raise SystemExit(f"--reference {path}: another '{name}' package is already imported")
    sys.path.insert(0, str(root))
    module = importlib.import_module("models.pix2pix_model")
    if root not in Path(str(module.__file__)).resolve().parents:
        raise SystemExit(f"--reference {path}: imported {module.__file__} instead")
    return module


def _copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy parameters and buffers in order (same architecture, possibly other names)."""
    theirs = list(target.state_dict().values())
    ours = list(source.state_dict().values())
    if [t.shape for t in theirs] != [t.shape for t in ours]:
        raise SystemExit("the reference networks differ from the project's: cannot compare")
    with torch.no_grad():
        for dst, src in zip(theirs, ours, strict=True):
            dst.copy_(src)


def reference_options(device: str, checkpoints: Path) -> argparse.Namespace:
    """The options the reference's ``train.py --model pix2pix`` gives its model, for our sizes.

    Its defaults (``options/base_options.py``, ``train_options.py`` and
    ``Pix2PixModel.modify_commandline_options``): U-Net-256, basic PatchGAN, batch norm,
    dropout, normal init (gain 0.02), vanilla GAN, no image pool, Adam lr 2e-4 beta1 0.5,
    lambda_L1 100; only the channels (1 -> 3) and the device are ours.
    """
    return argparse.Namespace(
        gpu_ids=[0] if device.startswith("cuda") else [],
        isTrain=True,
        checkpoints_dir=str(checkpoints),
        name="bench",
        preprocess="resize_and_crop",
        input_nc=1,
        output_nc=3,
        ngf=64,
        ndf=64,
        netG="unet_256",
        netD="basic",
        n_layers_D=3,
        norm="batch",
        no_dropout=False,
        init_type="normal",
        init_gain=0.02,
        pool_size=0,
        gan_mode="vanilla",
        lr=2e-4,
        beta1=0.5,
        direction="AtoB",
        lambda_L1=100.0,
    )


def time_reference(
    pix2pix: ModuleType, batch_size: int, steps: int, warmup: int, device: str
) -> dict[str, float]:
    """Median ms of the reference ``Pix2PixModel.optimize_parameters`` (fp32), our weights.

    The reference model is built by its own class from its own options; the project's initial
    weights are copied into its ``netG``/``netD`` so both start from the same point. One
    ``set_input`` (the batch), then ``optimize_parameters`` is timed: forward G, D update (fake
    through its image pool, real, 0.5 (fake + real)), G update (GAN + lambda_L1 L1).
    """
    ours = Pix2Pix(Pix2PixConfig(device=device, precision=Precision.FP32, channels_last=False))
    dev = ours.device
    with tempfile.TemporaryDirectory() as checkpoints:
        try:
            model = pix2pix.Pix2PixModel(reference_options(str(dev), Path(checkpoints)))
        except AttributeError as exc:  # another version of the reference's options
            raise SystemExit(
                f"the reference's Pix2PixModel reads an option reference_options() does not "
                f"set ({exc}); add it there"
            ) from exc
    _copy_weights(ours.nets["G"], model.netG)
    _copy_weights(ours.nets["D"], model.netD)
    del ours
    model.netG.train()
    model.netD.train()
    gen = torch.Generator().manual_seed(0)
    model.set_input(
        {
            "A": torch.rand(batch_size, 1, SIZE, SIZE, generator=gen) * 2 - 1,
            "B": torch.rand(batch_size, 3, SIZE, SIZE, generator=gen) * 2 - 1,
            "A_paths": [f"a{i}" for i in range(batch_size)],
            "B_paths": [f"b{i}" for i in range(batch_size)],
        }
    )
    times = []
    for i in range(warmup + steps):
        _sync(dev)
        start = time.perf_counter()
        model.optimize_parameters()
        _sync(dev)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    del model
    gc.collect()
    median = statistics.median(times)
    return {"ms_per_step": median, "ms_per_image": median / batch_size}


def build_tileset(folder: Path, n_tiles: int) -> TileSet:
    """Write a random paired 256 x 256 tile set and open it memory-mapped."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, size=(n_tiles, SIZE, SIZE, 1), dtype=np.uint16)
    b = rng.integers(0, 256, size=(n_tiles, SIZE, SIZE, 3), dtype=np.uint8)
    manifest = pd.DataFrame(
        {
            "tile_id": [f"t{i:05d}" for i in range(n_tiles)],
            "pair_id": "p0",
            "specimen_id": "s0",
            "split": "train",
            "x": np.arange(n_tiles) * SIZE,
            "y": 0,
            "size": SIZE,
            "scale": 1.0,
        }
    )
    save_tileset(TileSet(manifest=manifest, a=a, b=b), folder)
    return load_tileset(folder, mmap=True)


def time_loading(tileset: TileSet, batch_size: int, n_batches: int) -> dict[str, float]:
    """Median ms to fetch one augmented batch from a memory-mapped tile set."""
    dataset = TileSetTorchDataset(
        tileset, train=True, load_size=286, crop_size=SIZE, flip=True, seed=0
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    times: list[float] = []
    epoch = 0
    while len(times) < n_batches:
        dataset.set_epoch(epoch)
        iterator = iter(loader)
        while len(times) < n_batches:
            start = time.perf_counter()
            try:
                next(iterator)
            except StopIteration:
                break
            times.append((time.perf_counter() - start) * 1000.0)
        epoch += 1
    return {
        "fetch_ms": statistics.median(times),
        "fetch_ms_per_image": statistics.median(times) / batch_size,
    }


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tiles", type=int, default=64, help="tiles in the loading benchmark")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a local checkout of junyanz/pytorch-CycleGAN-and-pix2pix to time side by side",
    )
    parser.add_argument(
        "--force-bf16",
        action="store_true",
        help="time bf16 even on a CPU without native bf16 (emulated: ~50 s per step)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, device {args.device}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"pix2pix unet_256 + basic PatchGAN, {SIZE}x{SIZE}, 1->3 channels; median of "
        f"{args.steps} steps after {args.warmup} warm-up steps\n"
    )
    variants = list(args.variants)
    if args.device == "cpu" and not cpu_has_fast_bf16():
        fp32_ms, bf16_ms = conv_probe()
        print(
            f"this CPU has no native bf16 (oneDNN bf16 unsupported): one 4x4/2 conv takes "
            f"{fp32_ms:.0f} ms in fp32 and {bf16_ms:.0f} ms in bf16 ({bf16_ms / fp32_ms:.0f}x)"
        )
        if not args.force_bf16:
            skipped = [v for v in variants if v.startswith("bf16")]
            variants = [v for v in variants if not v.startswith("bf16")]
            if skipped:
                print(f"skipping {skipped} (use --force-bf16 to time them anyway)")
        print()
    reference = load_reference(args.reference) if args.reference is not None else None
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tileset = build_tileset(Path(tmp) / "tiles", args.tiles)
        loading = {
            b: time_loading(tileset, b, n_batches=max(20, 2 * args.tiles // b))
            for b in args.batches
        }
        header = (
            f"{'variant':<20} {'batch':>5} {'ms/step':>9} {'ms/image':>9} {'ratio':>7} "
            f"{'fetch ms':>9} {'data share':>10}"
        )
        print(header)
        print("-" * len(header))
        for batch_size in args.batches:
            baseline: float | None = None
            if reference is not None:
                ref = time_reference(reference, batch_size, args.steps, args.warmup, args.device)
                baseline = ref["ms_per_step"]
                results.append({"variant": "reference", "batch": batch_size, **ref})
                print(
                    f"{'reference (junyanz)':<20} {batch_size:>5} {ref['ms_per_step']:>9.1f} "
                    f"{ref['ms_per_image']:>9.1f} {1.0:>6.2f}x",
                    flush=True,
                )
            for variant in variants:
                step = time_steps(variant, batch_size, args.steps, args.warmup, args.device)
                if baseline is None:
                    baseline = step["ms_per_step"]  # the first variant (fp32) without --reference
                fetch = loading[batch_size]["fetch_ms"]
                share = fetch / (fetch + step["ms_per_step"])
                ratio = step["ms_per_step"] / baseline
                row = {
                    "variant": variant,
                    "batch": batch_size,
                    **step,
                    "ratio": ratio,
                    **loading[batch_size],
                    "data_share": share,
                }
                results.append(row)
                print(
                    f"{variant:<20} {batch_size:>5} {step['ms_per_step']:>9.1f} "
                    f"{step['ms_per_image']:>9.1f} {ratio:>6.2f}x {fetch:>9.2f} {share:>10.2%}",
                    flush=True,
                )
    ours = [r for r in results if r["variant"] != "reference"]
    against = "the reference (junyanz, fp32)" if reference is not None else "the fp32 variant"
    print(f"\nratio: median ms per step over that of {against} at the same batch size")
    print(
        f"parameters: G {ours[0]['params_G']:,}, D {ours[0]['params_D']:,}; "
        f"data: {args.tiles} memory-mapped tiles (A uint16, B uint8 RGB), resize 286 + crop "
        f"256 + flip, DataLoader num_workers=0, warm page cache; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
