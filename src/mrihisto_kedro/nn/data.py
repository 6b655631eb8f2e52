"""Torch view of a tile set (`TileSet`): intensity scaling and pix2pix augmentation.

:class:`TileSetTorchDataset` turns tiles stored as ``(N, H, W, C)`` arrays of any numeric dtype
(memory-mapped uint8 histology, uint16 MRI, float32 in [0, 1], multi-channel MSI...) into
``float32`` tensors ``(C, H, W)`` in ``[-1, 1]``, the convention of the pix2pix/CycleGAN
generators (tanh output):

* **Scaling.** Each domain has a *value range* ``(lo, hi)`` that maps linearly to ``[-1, 1]``
  (values outside are clipped): ``"uint8"`` = 0..255, ``"uint16"`` = 0..65535, ``"float"`` =
  0..1, an explicit ``(lo, hi)`` pair, or ``None`` for the default of the array's dtype
  (:func:`~mrihisto_kedro.imaging.tileset.dtype_range`). The arithmetic is done in float32 for
  dtypes of at most 16 bits (exact for uint16) and in float64 otherwise, channel by channel
  identically, so 16-bit and multi-channel data are safe. :func:`to_image` is the inverse.
* **Augmentation** (``train=True``), as in pix2pix/CycleGAN (``--preprocess resize_and_crop``):
  random jitter = resize to ``load_size x load_size`` (bicubic, antialiased; the result is
  clipped back to ``[-1, 1]``) then a random ``crop_size x crop_size`` crop, and a random
  horizontal flip with probability 0.5. In *paired* mode A and B get the **same** crop and flip
  (they stay aligned pixel for pixel); in *unpaired* mode (CycleGAN) the B tile index is drawn
  at random and A and B get **independent** crops and flips.
* **Evaluation** (``train=False``): no resize, no crop, no flip; tiles come back at their
  stored size, and in unpaired mode B is tile ``index % len(B)`` (no random draw).

Determinism: the random draws of item ``i`` in epoch ``e`` come from a fresh
``torch.Generator`` seeded from ``(seed, e, i)`` (through :class:`numpy.random.SeedSequence`),
so they do not depend on the number of workers, on the order items are fetched in, or on
the global RNGs. Call :meth:`TileSetTorchDataset.set_epoch` at the start of every epoch (the
training loop does) to get new draws per epoch. The seed and the epoch live in a tensor in
shared memory that ``__getitem__`` reads, so ``set_epoch`` in the training process reaches the
DataLoader's worker processes, also persistent ones (``persistent_workers=True``, which keep
their copy of the dataset between epochs), whether they were forked or spawned.

Pure PyTorch + numpy (no Kedro).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mrihisto_kedro.imaging.tileset import TileSet, dtype_range

__all__ = [
    "RangeName",
    "TileSetTorchDataset",
    "ValueRangeSpec",
    "resolve_range",
    "scale_to_unit",
    "to_image",
]


class RangeName(StrEnum):
    """Named intensity ranges of stored tiles."""

    UINT8 = "uint8"  # 0..255
    UINT16 = "uint16"  # 0..65535
    FLOAT = "float"  # 0..1


_NAMED_RANGES: dict[RangeName, tuple[float, float]] = {
    RangeName.UINT8: (0.0, 255.0),
    RangeName.UINT16: (0.0, 65535.0),
    RangeName.FLOAT: (0.0, 1.0),
}

ValueRangeSpec = RangeName | str | Sequence[float] | None
"""A value range: a :class:`RangeName` (or its string), an explicit ``(lo, hi)``, or ``None``."""


def resolve_range(
    spec: ValueRangeSpec, dtype: np.dtype | type | None = None
) -> tuple[float, float]:
    """Turn a value range specification into ``(lo, hi)`` floats.

    Args:
        spec: ``"uint8"`` (0..255), ``"uint16"`` (0..65535), ``"float"`` (0..1), an explicit
            ``(lo, hi)`` pair with ``hi > lo``, or ``None`` for the default of ``dtype``
            (full range of an integer dtype, 0..1 for floats).
        dtype: the stored dtype, needed when ``spec`` is ``None``.

    Returns:
        ``(lo, hi)``.

    Raises:
        ValueError: unknown name, not a pair, non-finite values or ``hi <= lo``, or ``None``
            without a dtype.
    """
    if spec is None:
        if dtype is None:
            raise ValueError("value range is None and no dtype was given to take it from")
        lo, hi = dtype_range(dtype)
    elif isinstance(spec, str):
        try:
            lo, hi = _NAMED_RANGES[RangeName(spec.lower())]
        except ValueError:
            allowed = ", ".join(repr(r.value) for r in RangeName)
            raise ValueError(
                f"value range {spec!r} is not valid; expected one of {allowed} or (lo, hi)"
            ) from None
    else:
        values = list(spec)
        if len(values) != 2:
            raise ValueError(f"value range must be a name or a (lo, hi) pair, got {spec!r}")
        lo, hi = float(values[0]), float(values[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"value range must have finite lo < hi, got ({lo}, {hi})")
    return float(lo), float(hi)


def scale_to_unit(tile: np.ndarray, value_range: tuple[float, float]) -> torch.Tensor:
    """Scale one stored tile to a float32 tensor in ``[-1, 1]``, channels first.

    Args:
        tile: ``(H, W, C)`` array of any numeric dtype (a memory-mapped slice is fine).
        value_range: ``(lo, hi)`` mapped to ``(-1, 1)``; values outside are clipped, NaN
            becomes -1.

    Returns:
        Tensor ``(C, H, W)``, float32, in ``[-1, 1]``.
    """
    arr = np.asarray(tile)
    if arr.ndim != 3:
        raise ValueError(f"expected a tile (H, W, C), got shape {arr.shape}")
    lo, hi = value_range
    # float32 is exact for every integer of at most 16 bits; wider types go through float64.
    work: type[np.floating[Any]] = (
        np.float32 if arr.dtype.itemsize <= 2 or arr.dtype == np.float32 else np.float64
    )
    scaled = (arr.astype(work) - work(lo)) * work(2.0 / (hi - lo)) - work(1.0)
    scaled = np.clip(np.nan_to_num(scaled, nan=-1.0), -1.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32))


def to_image(
    tensor: torch.Tensor,
    value_range: ValueRangeSpec = RangeName.FLOAT,
    dtype: np.dtype | type | None = None,
) -> np.ndarray:
    """Inverse of the dataset scaling: ``[-1, 1]`` tensors back to channels-last images.

    Args:
        tensor: ``(C, H, W)`` or ``(N, C, H, W)`` in ``[-1, 1]`` (values outside are clipped),
            any float dtype and device.
        value_range: the stored range to map back to (``"uint8"``, ``"uint16"``, ``"float"``,
            or an explicit ``(lo, hi)``); ``None`` is taken as ``"float"``.
        dtype: output dtype; default uint8 for ``"uint8"``, uint16 for ``"uint16"``, float32
            otherwise. Integer outputs are rounded to nearest and clipped to the dtype.

    Returns:
        ``(H, W, C)`` or ``(N, H, W, C)`` numpy array.
    """
    if tensor.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (N, C, H, W), got shape {tuple(tensor.shape)}")
    spec = RangeName.FLOAT if value_range is None else value_range
    lo, hi = resolve_range(spec)
    if dtype is None:
        name = spec.lower() if isinstance(spec, str) else None
        dtype = {"uint8": np.uint8, "uint16": np.uint16}.get(name or "", np.float32)
    out_dtype = np.dtype(dtype)
    x = tensor.detach().to("cpu", torch.float64).clamp(-1.0, 1.0).numpy()
    x = np.moveaxis(x, -3, -1)
    values = (x + 1.0) * ((hi - lo) / 2.0) + lo
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.ascontiguousarray(values.astype(out_dtype))


def _item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch generator private to one (seed, epoch, item) triple."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, epoch, index])
    generator = torch.Generator()
    generator.manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] >> 1))
    return generator


class TileSetTorchDataset(Dataset[dict[str, Any]]):
    """Map-style dataset of a tile set for pix2pix (paired) or CycleGAN (unpaired) training.

    Items are dicts ``{"A": (Ca, h, w) float32, "B": (Cb, h, w) float32, "index": int}`` with
    A and B in ``[-1, 1]``; unpaired items also carry ``"b_index": int`` (the B tile used).
    In training mode ``h, w`` is ``crop_size`` when cropping, else ``load_size`` when resizing,
    else the stored tile size; in evaluation mode it is always the stored tile size.

    Args:
        tileset: the tiles (usually one split, ``tileset.split("train")``); ``a`` is
            ``(N, H, W, Ca)``, ``b`` ``(N, H, W, Cb)``.
        paired: A and B tiles of the same index belong together (pix2pix). ``False``: domains
            are drawn independently (CycleGAN).
        train: apply the random jitter and flip; ``False`` for evaluation (no augmentation).
        b_tiles: unpaired mode only: an ``(M, H', W', Cb)`` array of domain-B tiles to draw
            from (e.g. ``other_set.a``); default ``tileset.b``.
        a_range: value range of A (see :func:`resolve_range`); default from A's dtype.
        b_range: value range of B; default from B's dtype.
        load_size: training mode only: resize tiles to ``load_size x load_size`` before cropping
            (pix2pix uses 286 for 256 crops); ``None``: no resize.
        crop_size: training mode: random crop side; ``None``: no crop. Must not exceed the
            (resized) tile.
        flip: training mode: random horizontal flips.
        seed: base seed of the augmentation draws.

    Length: ``N`` in paired mode; ``max(N, M)`` in unpaired mode (A tile ``index % N``), as the
    reference unaligned dataset.
    """

    def __init__(
        self,
        tileset: TileSet,
        *,
        paired: bool = True,
        train: bool = True,
        b_tiles: np.ndarray | None = None,
        a_range: ValueRangeSpec = None,
        b_range: ValueRangeSpec = None,
        load_size: int | None = None,
        crop_size: int | None = None,
        flip: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(tileset, TileSet):
            raise TypeError(f"expected a TileSet, got {type(tileset).__name__}")
        if len(tileset) == 0:
            raise ValueError("the tile set is empty")
        b: np.ndarray | None
        if paired:
            if b_tiles is not None:
                raise ValueError("b_tiles is for unpaired mode; a paired set uses tileset.b")
            if tileset.b is None:
                raise ValueError("paired=True needs a paired tile set (tileset.b is None)")
            b = tileset.b
        else:
            b = tileset.b if b_tiles is None else b_tiles
            if b is None:
                raise ValueError("unpaired mode needs domain-B tiles: tileset.b or b_tiles")
            if not isinstance(b, np.ndarray) or b.ndim != 4 or b.shape[0] == 0:
                shape = getattr(b, "shape", None)
                raise ValueError(f"b_tiles must be a non-empty (M, H, W, C) array, got {shape}")
        for name, size in (("load_size", load_size), ("crop_size", crop_size)):
            if size is not None and (isinstance(size, bool) or int(size) != size or size < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {size!r}")
        if train and crop_size is not None:
            for domain, arr in (("A", tileset.a), ("B", b)):
                side = load_size if load_size is not None else min(arr.shape[1:3])
                if crop_size > side:
                    raise ValueError(
                        f"crop_size {crop_size} exceeds the {domain} tile side {side} "
                        f"(load_size={load_size}, tiles {tuple(arr.shape[1:3])})"
                    )
        self.tileset = tileset
        self.paired = bool(paired)
        self.train = bool(train)
        self.a = tileset.a
        self.b = b
        self.a_range = resolve_range(a_range, self.a.dtype)
        self.b_range = resolve_range(b_range, self.b.dtype)
        self.load_size = None if load_size is None else int(load_size)
        self.crop_size = None if crop_size is None else int(crop_size)
        self.flip = bool(flip)
        # (seed, epoch) in shared memory: read by every DataLoader worker at each item, so
        # set_epoch in the training process reaches persistent workers
        self._draws = torch.zeros(2, dtype=torch.int64).share_memory_()
        self.seed = seed
        self.epoch = 0

    # ------------------------------------------------------------------------------------------
    # epoch / state

    epoch_shared: ClassVar[bool] = True
    """:meth:`set_epoch` reaches DataLoader workers, persistent ones too (shared memory)."""

    @property
    def seed(self) -> int:
        """Base seed of the augmentation draws."""
        return int(self._draws[0])

    @seed.setter
    def seed(self, seed: int) -> None:
        if isinstance(seed, bool) or int(seed) != seed or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        self._draws[0] = int(seed)

    @property
    def epoch(self) -> int:
        """The 0-based epoch whose draws :meth:`__getitem__` makes."""
        return int(self._draws[1])

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or int(epoch) != epoch or not 0 <= epoch < 2**63:
            raise ValueError(f"epoch must be an integer in [0, 2**63), got {epoch!r}")
        self._draws[1] = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (0-based); call before each epoch.

        Written to shared memory: workers of a DataLoader over this dataset (persistent or
        not) draw the new epoch's augmentations from their next item on.
        """
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "epoch"}``: everything that determines the random draws."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore :meth:`state_dict`."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])

    @property
    def in_channels(self) -> int:
        """Channels of A (``Ca``)."""
        return int(self.a.shape[3])

    @property
    def out_channels(self) -> int:
        """Channels of B (``Cb``)."""
        return int(self.b.shape[3])

    def __len__(self) -> int:
        """``N`` (paired) or ``max(N, M)`` (unpaired)."""
        if self.paired:
            return int(self.a.shape[0])
        return int(max(self.a.shape[0], self.b.shape[0]))

    # ------------------------------------------------------------------------------------------
    # augmentation

    def _draw(self, generator: torch.Generator, height: int, width: int) -> tuple[int, int, bool]:
        """Draw a crop corner (top, left) and a flip for a tile of ``height x width``."""
        h = self.load_size if self.load_size is not None else height
        w = self.load_size if self.load_size is not None else width
        top = left = 0
        if self.crop_size is not None:
            top = int(torch.randint(0, h - self.crop_size + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - self.crop_size + 1, (1,), generator=generator))
        flipped = bool(torch.rand(1, generator=generator).item() < 0.5) if self.flip else False
        return top, left, flipped

    def _augment(self, x: torch.Tensor, top: int, left: int, flipped: bool) -> torch.Tensor:
        """Resize ``(C, H, W)`` to ``load_size``, crop at (top, left), flip; result in [-1, 1]."""
        if self.load_size is not None and tuple(x.shape[1:]) != (self.load_size, self.load_size):
            x = F.interpolate(
                x[None],
                size=(self.load_size, self.load_size),
                mode="bicubic",
                align_corners=False,
                antialias=True,
            )[0].clamp_(-1.0, 1.0)
        if self.crop_size is not None:
            x = x[:, top : top + self.crop_size, left : left + self.crop_size]
        if flipped:
            x = torch.flip(x, dims=(2,))
        return x.contiguous()

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``: ``{"A": (Ca, h, w), "B": (Cb, h, w), "index": int}`` in [-1, 1]."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        index = int(index) % n
        a_index = index % self.a.shape[0]
        a = scale_to_unit(self.a[a_index], self.a_range)
        generator = _item_generator(self.seed, self.epoch, index) if self.train else None
        if self.paired:
            b = scale_to_unit(self.b[a_index], self.b_range)
            if generator is not None:
                draw = self._draw(generator, a.shape[1], a.shape[2])
                a, b = self._augment(a, *draw), self._augment(b, *draw)
            return {"A": a, "B": b, "index": a_index}
        if generator is not None:
            b_index = int(torch.randint(0, self.b.shape[0], (1,), generator=generator))
        else:
            b_index = index % self.b.shape[0]
        b = scale_to_unit(self.b[b_index], self.b_range)
        if generator is not None:
            a = self._augment(a, *self._draw(generator, a.shape[1], a.shape[2]))
            b = self._augment(b, *self._draw(generator, b.shape[1], b.shape[2]))
        return {"A": a, "B": b, "index": a_index, "b_index": b_index}
