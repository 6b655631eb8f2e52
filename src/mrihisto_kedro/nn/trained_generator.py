"""What a trained generator is exported with: its input spec and an example input (no MLflow).

The tile set records the input its tiles are (``attrs["input_spec"]``: pixel size, MRI
normalisation, plane, padding); the training maps A from ``data.a_range`` to [-1, 1], which
the exported spec records too, so inference needs only the generator file and the MRI.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from mrihisto_kedro.imaging.input_spec import InputSpec
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.data import ValueRangeSpec, resolve_range
from mrihisto_kedro.nn.models import TranslationModel
from mrihisto_kedro.nn.training import export_generator

__all__ = ["example_input", "export_trained_generator", "trained_input_spec"]

logger = logging.getLogger(__name__)


def trained_input_spec(
    tileset: TileSet, a_range: ValueRangeSpec, name: str
) -> dict[str, Any] | None:
    """The tile set's input spec with the range ``(lo, hi)`` the training mapped to [-1, 1].

    ``a_range`` is ``data.a_range`` (``None``: the range of the A tiles' dtype). ``None`` (and
    a warning naming experiment ``name``) when the tile set records no input spec.
    """
    stored = tileset.attrs.get("input_spec")
    if stored is None:
        logger.warning("%s: the tile set records no input spec; generator.pt will not", name)
        return None
    lo, hi = resolve_range(a_range, tileset.a.dtype)
    return InputSpec.from_dict(stored, name).with_input_range((lo, hi)).to_dict()


def example_input(tileset: TileSet, a_range: ValueRangeSpec) -> torch.Tensor:
    """The first A tile as the generator sees it: float32 ``(1, C, H, W)`` in [-1, 1]."""
    lo, hi = resolve_range(a_range, tileset.a.dtype)
    a = torch.from_numpy(np.array(tileset.a[:1], dtype=np.float32)).permute(0, 3, 1, 2)
    return (a - lo) / (hi - lo) * 2.0 - 1.0


def export_trained_generator(
    model: TranslationModel, tileset: TileSet, a_range: ValueRangeSpec, name: str
) -> dict[str, Any]:
    """:func:`~mrihisto_kedro.nn.training.export_generator` of ``model`` with the input spec of
    the tiles it was trained on (:func:`trained_input_spec`)."""
    return export_generator(model, trained_input_spec(tileset, a_range, name))
