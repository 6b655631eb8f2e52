"""Every method's T2 slices for one split (:class:`Synthesis`), and their storage as a tile set.

Each :class:`~mrihisto_kedro.sequences.methods.Method` gives one T2 slice per test slice:
exported pix2pix and CycleGAN generators run on the T1 slices; the DCGAN draws as many samples
as test slices (seeded, *not* paired with a slice); the trivial baselines copy or invert T1
(:func:`baseline_outputs`); the ``+style`` variants refine pix2pix, CycleGAN and DCGAN
(:mod:`mrihisto_kedro.sequences.refinement`). All slices ``(N, H, W)`` float32 in [0, 1].
No Kedro imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mrihisto_kedro.evaluation.tiles import generate
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.dcgan import DCGAN
from mrihisto_kedro.nn.device import select_device
from mrihisto_kedro.nn.style_transfer import VGGFeatures
from mrihisto_kedro.sequences.dcgan_training import dcgan_outputs
from mrihisto_kedro.sequences.methods import (
    STYLE_SUFFIX,
    Method,
    base_method,
    is_paired,
    method_order,
)
from mrihisto_kedro.sequences.params import InversionKind, SynthesisParams
from mrihisto_kedro.sequences.refinement import (
    HISTORY_COLUMNS,
    prepare_refinement,
    refine_outputs,
)
from mrihisto_kedro.sequences.slices import SequenceSlices, head_mask, split_slices

__all__ = [
    "Synthesis",
    "baseline_outputs",
    "synthesis_from_tileset",
    "synthesis_to_tileset",
    "synthesise",
    "synthesise_split",
]


def baseline_outputs(
    t1: np.ndarray,
    method: Method,
    inversion: InversionKind = InversionKind.HEAD,
    level: float = 0.1,
) -> np.ndarray:
    """The trivial T2 guesses from T1 ``(N, H, W)`` in [0, 1]: itself, or inverted.

    ``inverted_t1`` with :attr:`InversionKind.HEAD` is ``(1 - T1)`` inside
    :func:`~mrihisto_kedro.sequences.slices.head_mask` and 0 outside (T2's background is dark
    too), the stronger of the two inversions.
    """
    t1 = np.asarray(t1, dtype=np.float32)
    if method is Method.IDENTITY_T1:
        return t1.copy()
    if method is not Method.INVERTED_T1:
        raise ValueError(f"{method} is not a baseline")
    inverted = 1.0 - t1
    if inversion is InversionKind.HEAD:
        inverted = np.where(head_mask(t1, level), inverted, 0.0)
    return inverted.astype(np.float32)


@dataclass
class Synthesis:
    """Every method's slices for one split.

    Attributes:
        slices: the split's real slices.
        outputs: ``{method: (N, H, W) float32 in [0, 1]}`` in
            :func:`~mrihisto_kedro.sequences.methods.method_order` order; ``dcgan`` rows are
            samples, not paired with the slice of the same index.
        history: refinement objective per method and step:
            :data:`~mrihisto_kedro.sequences.refinement.HISTORY_COLUMNS` (``status`` ``missing``
            rows have no step values).
    """

    slices: SequenceSlices
    outputs: dict[str, np.ndarray]
    history: pd.DataFrame

    @property
    def missing(self) -> dict[str, str]:
        """``{method: reason}`` of the refined methods that could not be produced."""
        rows = self.history[self.history["status"] == "missing"]
        return dict(zip(rows["method"], rows["reason"], strict=True))


def _unrefined(
    slices: SequenceSlices,
    generators: Mapping[Method, Mapping[str, Any]],
    dcgan: DCGAN,
    params: SynthesisParams,
) -> dict[str, np.ndarray]:
    """The slices of every method without refinement, by method name."""
    t1, size, n = slices.t1, slices.t1.shape[1], len(slices)
    raw: dict[str, np.ndarray] = {}
    for method in (Method.PIX2PIX, Method.CYCLEGAN):
        generated = generate(
            generators[method], t1[..., None], batch_size=params.batch_size, device=params.device
        )
        if generated.shape[-1] != 1:
            raise ValueError(f"the {method} generator makes {generated.shape[-1]} channels, not 1")
        raw[method.value] = generated[..., 0]
    raw[Method.DCGAN.value] = dcgan_outputs(dcgan, n, params.dcgan_seed, size)
    for method in (Method.IDENTITY_T1, Method.INVERTED_T1):
        raw[method.value] = baseline_outputs(t1, method, params.inversion, params.head_level)
    return raw


def synthesise(
    slices: SequenceSlices,
    generators: Mapping[Method, Mapping[str, Any]],
    dcgan: DCGAN,
    params: SynthesisParams,
    *,
    style: np.ndarray | None = None,
    features: VGGFeatures | None = None,
    missing_reason: str | None = None,
) -> Synthesis:
    """Every method's slices for ``slices`` (see the module docstring).

    Args:
        slices: the evaluated split (square slices).
        generators: ``{Method.PIX2PIX: payload, Method.CYCLEGAN: payload}`` exported generators
            (:func:`~mrihisto_kedro.nn.training.export_generator`).
        dcgan: the trained DCGAN.
        params: options.
        style: the style slice ``(H', W')``; features: the VGG trunk. Both needed to refine.
        missing_reason: why refinement is impossible (missing weights, disabled); then the
            ``+style`` methods are recorded as missing with it.

    Returns:
        :class:`Synthesis`.
    """
    if slices.t1.shape[1] != slices.t1.shape[2]:
        raise ValueError(f"expected square slices, got {slices.t1.shape[1:]}")
    raw = _unrefined(slices, generators, dcgan, params)
    histories: list[pd.DataFrame] = []
    outputs: dict[str, np.ndarray] = {}
    for name in method_order():
        if not name.endswith(STYLE_SUFFIX):
            outputs[name] = raw[name]
            continue
        if features is None or style is None or missing_reason is not None:
            reason = missing_reason or "no VGG trunk or style slice given"
            histories.append(
                pd.DataFrame([{"method": name, "status": "missing", "reason": reason}])
            )
            continue
        base = base_method(name)
        content = raw[base.value] if base is Method.DCGAN else slices.t1
        refined, history = refine_outputs(
            raw[base.value], content, style, params.refinement.transfer, features
        )
        outputs[name] = refined
        histories.append(history.assign(method=name, status="ok", reason=""))
    history = pd.concat(histories, ignore_index=True).reindex(columns=list(HISTORY_COLUMNS))
    return Synthesis(slices=slices, outputs=outputs, history=history)


def synthesise_split(
    tileset: TileSet,
    generators: Mapping[Method, Mapping[str, Any]],
    dcgan_state: Mapping[str, Any],
    params: SynthesisParams,
) -> Synthesis:
    """:func:`synthesise` on ``params.split`` of a ``t1_to_t2`` tile set, from saved models.

    Loads the DCGAN state on ``params.device`` and the VGG trunk and style slice of
    ``params.refinement`` (:func:`~mrihisto_kedro.sequences.refinement.prepare_refinement`:
    without VGG weights, or disabled, the ``+style`` methods are recorded as missing).
    """
    slices = split_slices(tileset, params.split)
    device = select_device(params.device)
    dcgan = DCGAN.from_state_dict(dcgan_state, device=str(device))
    setup = prepare_refinement(tileset, params.refinement, device)
    return synthesise(
        slices,
        generators,
        dcgan,
        params,
        style=setup.style,
        features=setup.features,
        missing_reason=setup.missing_reason,
    )


def synthesis_to_tileset(synthesis: Synthesis) -> TileSet:
    """Store the synthetic slices as a tile set (one row per method and slice).

    ``a`` holds the method's input (the T1 slice; zeros for the unconditional DCGAN), ``b`` the
    synthetic T2; the manifest has the real slice's columns plus ``method`` and
    ``source_tile_id``; ``specimen_id`` = method, ``tile_id`` = ``<method>_<tile_id>`` with
    ``+`` written as ``-``.
    """
    rows, a_list, b_list = [], [], []
    m = synthesis.slices.manifest
    for method, images in synthesis.outputs.items():
        frame = m.copy()
        frame["source_tile_id"] = m["tile_id"].astype(str)
        frame["tile_id"] = method.replace("+", "-") + "_" + m["tile_id"].astype(str)
        frame["specimen_id"] = method
        frame["method"] = method
        rows.append(frame)
        a = synthesis.slices.t1 if is_paired(method) else np.zeros_like(synthesis.slices.t1)
        a_list.append(a)
        b_list.append(images)
    return TileSet(
        manifest=pd.concat(rows, ignore_index=True),
        a=np.concatenate(a_list)[..., None].astype(np.float32),
        b=np.concatenate(b_list)[..., None].astype(np.float32),
    )


def synthesis_from_tileset(
    stored: TileSet, slices: SequenceSlices, history: pd.DataFrame
) -> Synthesis:
    """Rebuild a :class:`Synthesis` from :func:`synthesis_to_tileset`'s tile set.

    Raises:
        ValueError: the stored slices are not those of ``slices`` (other tile ids or order).
    """
    if stored.b is None:
        raise ValueError("the synthetic tile set has no B slices")
    outputs: dict[str, np.ndarray] = {}
    methods = stored.manifest["method"].to_numpy()
    expected = slices.manifest["tile_id"].astype(str).to_list()
    for method in dict.fromkeys(methods):
        rows = np.flatnonzero(methods == method)
        ids = stored.manifest["source_tile_id"].iloc[rows].astype(str).to_list()
        if ids != expected:
            raise ValueError(
                f"synthetic slices of {method} do not match the evaluated split's slices"
            )
        outputs[str(method)] = np.asarray(stored.b[rows], dtype=np.float32)[..., 0]
    return Synthesis(slices=slices, outputs=outputs, history=history)
