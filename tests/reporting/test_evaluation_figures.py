"""Evaluation figures drawn from returned data: ``input | real | generated`` rows per tile."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.tiles import EvaluatedSplit
from mrihisto_kedro.reporting.evaluation_figures import tile_panels, whole_slide_panels


def _split(name: str, n: int, channels_a: int) -> EvaluatedSplit:
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({"tile_id": [f"{name}-t{i}" for i in range(n)]})
    a = rng.random((n, 8, 8, channels_a), dtype=np.float32)
    b = rng.random((n, 8, 8, 3), dtype=np.float32)
    return EvaluatedSplit(split=name, manifest=manifest, a=a, b=b, generated=b[::-1].copy())


def test_tile_panels_rows_columns_and_labels() -> None:
    fig = tile_panels([_split("train", 4, 1), _split("test", 1, 3)], n=2, title="tiles_256")
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 3 * 3  # 2 train tiles + 1 test tile (fewer than n), 3 columns
    assert [ax.get_title() for ax in axes[:3]] == ["input", "real", "generated"]
    assert axes[3].get_ylabel() == "train train-t1"
    assert axes[6].get_ylabel() == "test test-t0"
    # a grey input is shown as RGB: the same value in the three channels
    shown = axes[0].get_images()[0].get_array()
    assert shown.shape == (8, 8, 3)
    np.testing.assert_allclose(shown[..., 0], shown[..., 2])
    assert fig.get_suptitle() == "tiles_256"


def test_whole_slide_panels_hides_a_missing_real_slide() -> None:
    img = np.full((6, 5, 3), 0.5, dtype=np.float32)
    fig = whole_slide_panels([("p1", img[..., :1], None, img, img)], "seams")
    axes = fig.get_axes()
    assert len(axes) == 4
    assert not axes[1].axison and axes[0].axison
    assert axes[0].get_ylabel() == "p1"
    titles = [ax.get_title() for ax in axes]
    assert titles == ["MRI", "", "stitched, no blending", "stitched, blended"]
    assert fig.get_suptitle() == "seams"
