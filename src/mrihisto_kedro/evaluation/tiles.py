"""Run a trained generator over a tile set and measure every tile and every set of tiles.

Three comparisons per split, named after the experiment's domains (``target`` = histology for
MRI -> histology, T2 for T1 -> T2; ``input`` = MRI):

- ``generated_vs_<target>``: the synthetic image against the real target (the model's quality);
- ``generated_vs_<input>``: the synthetic image against the input MRI (paper 000's second row:
  a useful model is closer to histology than to the MRI it came from);
- ``<target>_vs_<input>``: the real pair itself, the reference level of the second comparison.

Per-tile metrics (:data:`TILE_METRICS`): ``L1`` (mean absolute difference in [0, 1] image
units), ``PSNR`` (dB, data range 1), ``SSIM`` (Wang et al., data range 1, mean over channels),
``MI`` (mutual information of the grey levels, ``bins`` and ``base`` from the parameters), and
``LPIPS`` (AlexNet, v0.1 heads) when its weights are available. L1/PSNR/SSIM need the same
number of channels and are computed only for ``generated_vs_<target>``. Set metrics
(:data:`SET_METRICS`): ``FID`` (Inception pool3 features, pytorch-fid compatible) and ``KID``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.metrics.image_metrics import l1, psnr, ssim
from mrihisto_kedro.metrics.mutual_information import mutual_information
from mrihisto_kedro.nn.data import resolve_range
from mrihisto_kedro.nn.device import select_device
from mrihisto_kedro.nn.training import load_generator
from mrihisto_kedro.params import Params, Range, fail

__all__ = [
    "SET_METRICS",
    "TILE_METRICS",
    "EvaluatedSplit",
    "FeatureBackends",
    "TileEvaluationParams",
    "comparison_names",
    "evaluate_split",
    "generate",
    "select_tiles",
    "set_features",
    "tile_metrics",
    "to_grey",
    "to_rgb",
]

TILE_METRICS: tuple[str, ...] = ("L1", "PSNR", "SSIM", "MI", "LPIPS")
SET_METRICS: tuple[str, ...] = ("FID", "KID")

#: ``images (N, H, W, 3) float32 in [0, 1] -> features (N, D) float64``
FeatureFn = Callable[[np.ndarray], np.ndarray]
#: ``x, y (N, H, W, 3) float32 in [0, 1] -> distances (N,) float64``
PairDistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TileEvaluationParams(Params):
    """How tiles are selected and measured (``<experiment>.evaluation.tiles``).

    Attributes:
        splits: splits to evaluate (those absent from the tile set are skipped).
        max_tiles_per_slide: at most this many tiles per slide (pair), drawn with ``seed``;
            ``None``: all. Equal N per condition matters for FID.
        mi_bins: joint-histogram bins per image for MI (paper 003's values match ~20).
        mi_base: logarithm base of MI (``e``: nats, ``2``: bits).
        batch_size: tiles per generator / feature forward pass.
        device: ``auto`` (cuda, mps, cpu) or an explicit torch device.
        a_range, b_range: stored value ranges of A and B (``None``: from the dtype).
        target_name, input_name: names of the domains in the comparison labels (Python
            identifiers).
        seed: seed of the tile subsampling (and of the bootstrap over slides).
    """

    splits: tuple[str, ...] = ("train", "test")
    max_tiles_per_slide: Annotated[int, Range(ge=1)] | None = None
    mi_bins: Annotated[int, Range(ge=2)] = 20
    mi_base: Annotated[float, Range(gt=0.0)] = math.e
    batch_size: Annotated[int, Range(ge=1)] = 16
    device: str = "auto"
    a_range: tuple[float, float] | None = None
    b_range: tuple[float, float] | None = None
    target_name: str = "histology"
    input_name: str = "mri"
    seed: Annotated[int, Range(ge=0)] = 0

    def validate(self) -> None:
        """The MI logarithm base is not 1; the domain names are identifiers."""
        if self.mi_base == 1.0:
            fail("mi_base", "must not be 1 (the base of a logarithm)")
        for name in ("target_name", "input_name"):
            value = getattr(self, name)
            if not value.isidentifier():
                fail(name, f"must be a Python identifier (a domain name), got {value!r}")


@dataclass
class FeatureBackends:
    """Pretrained feature networks, or the reason each one is missing.

    Attributes:
        inception: FID/KID features (Inception pool3, 2048-d), or ``None``.
        lpips: LPIPS distance, or ``None``.
        missing: ``{"FID": reason, "KID": reason, "LPIPS": reason}`` for what is unavailable.
    """

    inception: FeatureFn | None = None
    lpips: PairDistanceFn | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluatedSplit:
    """The images of one split in [0, 1], channels last, float32.

    Attributes:
        split: split name.
        manifest: the selected tiles' manifest rows (``tile_id``, ``pair_id``, ...).
        a: inputs ``(N, H, W, Ca)``.
        b: targets ``(N, H, W, Cb)``.
        generated: generator outputs ``(N, H, W, Cb)``.
    """

    split: str
    manifest: pd.DataFrame
    a: np.ndarray
    b: np.ndarray
    generated: np.ndarray


def comparison_names(params: TileEvaluationParams) -> tuple[str, str, str]:
    """``(generated_vs_target, generated_vs_input, target_vs_input)`` labels."""
    t, i = params.target_name, params.input_name
    return f"generated_vs_{t}", f"generated_vs_{i}", f"{t}_vs_{i}"


def select_tiles(tileset: TileSet, split: str, per_slide: int | None, seed: int) -> np.ndarray:
    """Row indices of ``split``'s tiles, at most ``per_slide`` per slide (``pair_id``), sorted."""
    m = tileset.manifest
    rows = np.flatnonzero(m["split"].to_numpy() == split)
    if per_slide is None:
        return rows
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for _, group in m.iloc[rows].groupby("pair_id", sort=True):
        index = group.index.to_numpy()
        if index.size > per_slide:
            index = rng.choice(index, size=per_slide, replace=False)
        keep.extend(int(i) for i in index)
    return np.array(sorted(keep), dtype=np.int64)


def _to_unit(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    out = (np.asarray(x, dtype=np.float64) - lo) / (hi - lo)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32)


@torch.no_grad()
def generate(
    payload: Mapping[str, Any],
    a01: np.ndarray,
    *,
    batch_size: int = 16,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Run an exported generator (:func:`~mrihisto_kedro.nn.training.export_generator`).

    Args:
        payload: the exported generator dict (``state_dict`` + ``architecture`` +
            ``output_range``).
        a01: inputs ``(N, H, W, Ca)`` in [0, 1].
        batch_size: tiles per forward pass.
        device: ``auto`` or a torch device.

    Returns:
        ``(N, H, W, Cb)`` float32 in [0, 1] (the generator's ``output_range`` mapped to [0, 1]).
    """
    dev = select_device(device) if isinstance(device, str) else device
    net = load_generator(payload, device=dev)
    lo, hi = (float(v) for v in payload.get("output_range", (-1.0, 1.0)))
    outputs = []
    for start in range(0, a01.shape[0], batch_size):
        chunk = np.ascontiguousarray(a01[start : start + batch_size].transpose(0, 3, 1, 2))
        x = torch.from_numpy(chunk).to(dev, torch.float32) * 2.0 - 1.0
        y = net(x).to("cpu", torch.float32).numpy()
        outputs.append(np.clip((y - lo) / (hi - lo), 0.0, 1.0).transpose(0, 2, 3, 1))
    if not outputs:
        return np.zeros((0, *a01.shape[1:3], 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(outputs), dtype=np.float32)


def to_grey(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` -> ``(N, H, W)``: ITU-R 601 luma for RGB, the channel mean otherwise."""
    if images.shape[-1] == 3:
        return images @ np.array([0.299, 0.587, 0.114], dtype=images.dtype)
    return images.mean(axis=-1)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` -> ``(N, H, W, 3)``: grey repeated, RGB kept, other counts via grey."""
    c = images.shape[-1]
    if c == 3:
        return images
    grey = images[..., 0] if c == 1 else to_grey(images)
    return np.repeat(grey[..., None], 3, axis=-1)


def evaluate_split(
    tileset: TileSet, payload: Mapping[str, Any], split: str, params: TileEvaluationParams
) -> EvaluatedSplit | None:
    """Generate the selected tiles of one split; ``None`` when the split has no tiles."""
    if tileset.b is None:
        raise ValueError("evaluation needs a paired tile set (A and B)")
    rows = select_tiles(tileset, split, params.max_tiles_per_slide, params.seed)
    if rows.size == 0:
        return None
    a01 = _to_unit(tileset.a[rows], resolve_range(params.a_range, tileset.a.dtype))
    b01 = _to_unit(tileset.b[rows], resolve_range(params.b_range, tileset.b.dtype))
    generated = generate(payload, a01, batch_size=params.batch_size, device=params.device)
    if generated.shape[-1] != b01.shape[-1]:
        raise ValueError(
            f"the generator makes {generated.shape[-1]} channel(s) but the targets have "
            f"{b01.shape[-1]}"
        )
    manifest = tileset.manifest.iloc[rows].reset_index(drop=True)
    return EvaluatedSplit(split=split, manifest=manifest, a=a01, b=b01, generated=generated)


def _batched_distance(fn: PairDistanceFn, x: np.ndarray, y: np.ndarray, batch: int) -> np.ndarray:
    out = [fn(x[i : i + batch], y[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return np.concatenate(out).astype(np.float64)


def tile_metrics(
    data: EvaluatedSplit, params: TileEvaluationParams, backends: FeatureBackends
) -> pd.DataFrame:
    """Every per-tile metric of every comparison of one split.

    Returns:
        Long table ``tile_id, pair_id, specimen_id, split, comparison, metric, value`` (LPIPS
        rows only when its backend is available).
    """
    gen_vs_target, gen_vs_input, target_vs_input = comparison_names(params)
    grey = {"a": to_grey(data.a), "b": to_grey(data.b), "g": to_grey(data.generated)}
    values: dict[tuple[str, str], np.ndarray] = {}
    n = data.a.shape[0]
    channel_axis = -1 if data.b.shape[-1] > 1 else None
    squeeze = (lambda x: x) if channel_axis is not None else (lambda x: x[..., 0])
    values[(gen_vs_target, "L1")] = np.array(
        [l1(data.generated[i], data.b[i], data_range=1.0) for i in range(n)]
    )
    values[(gen_vs_target, "PSNR")] = np.array(
        [psnr(data.generated[i], data.b[i], data_range=1.0) for i in range(n)]
    )
    values[(gen_vs_target, "SSIM")] = np.array(
        [
            ssim(
                squeeze(data.generated[i]),
                squeeze(data.b[i]),
                data_range=1.0,
                channel_axis=channel_axis,
            )
            for i in range(n)
        ]
    )
    for label, (x, y) in (
        (gen_vs_target, ("g", "b")),
        (gen_vs_input, ("g", "a")),
        (target_vs_input, ("b", "a")),
    ):
        values[(label, "MI")] = np.array(
            [
                mutual_information(grey[x][i], grey[y][i], bins=params.mi_bins, base=params.mi_base)
                for i in range(n)
            ]
        )
    if backends.lpips is not None:
        rgb = {"a": to_rgb(data.a), "b": to_rgb(data.b), "g": to_rgb(data.generated)}
        for label, (x, y) in (
            (gen_vs_target, ("g", "b")),
            (gen_vs_input, ("g", "a")),
            (target_vs_input, ("b", "a")),
        ):
            values[(label, "LPIPS")] = _batched_distance(
                backends.lpips, rgb[x], rgb[y], params.batch_size
            )
    ids = data.manifest[["tile_id", "pair_id", "specimen_id"]].astype(str)
    frames = [
        ids.assign(split=data.split, comparison=label, metric=metric, value=vals.astype(float))
        for (label, metric), vals in values.items()
    ]
    return pd.concat(frames, ignore_index=True)


def set_features(
    data: EvaluatedSplit, backends: FeatureBackends, batch_size: int
) -> dict[str, np.ndarray] | None:
    """Inception features ``{"a", "b", "g"}`` ``(N, D)`` of inputs, targets and outputs."""
    if backends.inception is None:
        return None
    out = {}
    for key, images in (("a", data.a), ("b", data.b), ("g", data.generated)):
        rgb = to_rgb(images)
        chunks = [
            backends.inception(rgb[i : i + batch_size]) for i in range(0, len(rgb), batch_size)
        ]
        out[key] = np.concatenate(chunks).astype(np.float64)
    return out
