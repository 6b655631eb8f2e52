"""What a trained generator expects as input, stored inside ``generator.pt`` (no Kedro, no torch).

A generator file that knows its input lets a user apply it to a new MRI with nothing but the
model and the MRI: the ``inference`` pipelines read the pixel size, the intensity normalisation,
the plane, the channel count and the padding from here instead of asking for them.

Stored as plain data (``InputSpec.to_dict()``) under the payload key ``input_spec``, so
``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

__all__ = ["InputKind", "InputSpec", "InputSpecError", "generator_input_spec"]


class InputSpecError(ValueError):
    """A stored input specification is missing a field or holds an impossible value."""


class InputKind(StrEnum):
    """What the generator translates."""

    SLICE_TO_SLIDE = "slice_to_slide"
    """An MRI slice resampled onto the histology grid -> synthetic histology (RGB)."""
    VOLUME_TO_VOLUME = "volume_to_volume"
    """Slices of an MRI volume -> slices of another MRI contrast (T1 -> T2)."""
    MSI_TO_SLIDE = "msi_to_slide"
    """An MSI peak stack reduced to 3 channels (an embedding fitted jointly on the training
    specimens), registered onto the H&E grid -> synthetic H&E (RGB)."""


def _float_pair(values: Any) -> tuple[float, float]:
    """``(lo, hi)`` of a two-item sequence as floats; ValueError for another length."""
    lo, hi = (float(v) for v in values)
    return lo, hi


@dataclass(frozen=True)
class InputSpec:
    """The input a generator was trained on.

    Attributes:
        kind: see :class:`InputKind`.
        pixel_size_um: ``(x, y)`` microns per model pixel of the training inputs (isotropic
            in practice: inputs are resampled to it).
        channels: input channels.
        lower_percentile, upper_percentile: robust percentiles mapped to 0 and 1.
        normalisation_scope: ``slice`` (each slice's own percentiles, as data_engineering),
            ``volume`` (one pair of percentiles over the whole volume, as the T1/T2 slabs) or
            ``dataset`` (one pair per channel over every specimen's pixels, as the MSI
            embeddings).
        input_range: the ``[lo, hi]`` of the normalised values mapped to the network's [-1, 1].
        plane: anatomical plane of the training slices (``None`` when slices came from
            registered sections of any plane).
        pad_to: side in pixels the training slices were zero-padded (centred) to, or ``None``.
        embedding: how MSI inputs were reduced to their channels (``pca``, ``tsne``,
            ``umap``), ``None`` for MRI inputs.
    """

    kind: InputKind
    pixel_size_um: tuple[float, float]
    channels: int = 1
    lower_percentile: float = 1.0
    upper_percentile: float = 99.5
    normalisation_scope: str = "slice"
    input_range: tuple[float, float] = (0.0, 1.0)
    plane: str | None = None
    pad_to: int | None = None
    embedding: str | None = None

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) and v > 0 for v in self.pixel_size_um):
            raise InputSpecError(f"pixel_size_um must be positive, got {self.pixel_size_um}")
        if self.normalisation_scope not in ("slice", "volume", "dataset"):
            raise InputSpecError(
                "normalisation_scope must be 'slice', 'volume' or 'dataset', got "
                f"{self.normalisation_scope!r}"
            )
        if not 0 <= self.lower_percentile < self.upper_percentile <= 100:
            raise InputSpecError(
                f"bad percentiles {self.lower_percentile}, {self.upper_percentile}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str, float, int, list, None) for ``torch.save`` / JSON."""
        out = asdict(self)
        out["kind"] = self.kind.value
        out["pixel_size_um"] = [float(v) for v in self.pixel_size_um]
        out["input_range"] = [float(v) for v in self.input_range]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "generator") -> InputSpec:
        """Read :meth:`to_dict`'s output back.

        Raises:
            InputSpecError: naming ``source`` and the field.
        """
        try:
            return cls(
                kind=InputKind(data["kind"]),
                pixel_size_um=(float(data["pixel_size_um"][0]), float(data["pixel_size_um"][1])),
                channels=int(data.get("channels", 1)),
                lower_percentile=float(data.get("lower_percentile", 1.0)),
                upper_percentile=float(data.get("upper_percentile", 99.5)),
                normalisation_scope=str(data.get("normalisation_scope", "slice")),
                input_range=_float_pair(data.get("input_range", (0.0, 1.0))),
                plane=data.get("plane"),
                pad_to=None if data.get("pad_to") is None else int(data["pad_to"]),
                embedding=None if data.get("embedding") is None else str(data["embedding"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputSpecError(f"{source}: input_spec is incomplete or invalid: {exc}") from exc

    def with_input_range(self, input_range: tuple[float, float]) -> InputSpec:
        """A copy with the range mapped to [-1, 1] (known only when training starts)."""
        return InputSpec(**{**asdict(self), "input_range": tuple(input_range)})


def generator_input_spec(payload: Mapping[str, Any], source: str) -> InputSpec | None:
    """The ``input_spec`` of an exported generator, ``None`` for files written before it."""
    stored = payload.get("input_spec")
    return None if stored is None else InputSpec.from_dict(stored, source)
