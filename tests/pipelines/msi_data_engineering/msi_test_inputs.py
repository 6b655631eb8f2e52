"""Small inputs of the msi_data_engineering pipeline's tests: a 3-specimen simulated demo.

The demo pipeline's MSI node makes them (3 H&E crops of 384 px at 0.499 µm, 16 x 16 MSI
pixels of 10 µm, a known MSI -> H&E affine each); its imzML files and landmark tables are
written to a temporary folder and handed to the other nodes as loaders, as the pipeline's folder
datasets hand them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from PIL import Image

from mrihisto_kedro.datasets.control_points_dataset import ControlPointsFile
from mrihisto_kedro.msi.imzml import ImzMLReader, open_imzml
from mrihisto_kedro.msi.imzml_files import ImzMLFiles
from mrihisto_kedro.pipelines.demo.nodes import make_msi_demo
from mrihisto_kedro.pipelines.msi_data_engineering.nodes import (
    assign_msi_splits,
    build_peak_stacks,
    reduce_peak_stacks,
)

#: ``demo_msi`` (the demo pipeline's ``make_msi_demo``): 3 specimens, a short m/z range
#: (seconds, not minutes)
DEMO = {
    "simulation": {
        "n_regions": 3,
        "region_size_px": 384,
        "mz_range": [100.0, 500.0],
        "mz_step": 0.5,
    },
    "control_points": {"n_points": 8, "click_noise_um": 3.0, "seed": 0},
}
SPLITS = {"train": 0.7, "val": 0.1, "test": 0.2, "seed": 42}
SPECTRA = {"n_peaks": 12}
REDUCTION = {"method": "pca", "percentiles": [1.0, 99.0]}
TILING = {"tile_size": 16, "stride": 8, "min_msi_fraction": 0.5}
#: µm per level-0 H&E pixel of the demo's source slide (CMU-1-Small-Region)
MPP = 0.499
#: MSI pixel size of the demo (µm)
MSI_PIXEL_UM = 10.0


def loaders(values: dict[str, object]) -> dict[str, Callable[[], object]]:
    """``{name: zero-argument callable returning the value}``, as a folder dataset loads."""
    return {name: (lambda v=value: v) for name, value in values.items()}


@dataclass(frozen=True)
class MsiInputs:
    """The demo node's outputs, the files written from them and the upstream nodes' outputs.

    Attributes:
        imzml, histology, ground_truth, peaks, control_points: what ``make_msi_demo`` returned.
        folder: where the imzML/ibd pairs and the landmark CSVs were written
            (``<pair_id>.imzML``, ``<pair_id>.csv``).
        pairs: the ground truth with splits (``assign_msi_splits``).
        peak_stacks: ``build_peak_stacks``' vector images.
        reduced: ``reduce_peak_stacks``' 3-channel images.
    """

    imzml: dict[str, ImzMLFiles]
    histology: dict[str, Image.Image]
    ground_truth: pd.DataFrame
    peaks: pd.DataFrame
    control_points: dict[str, pd.DataFrame]
    folder: Path
    pairs: pd.DataFrame
    peak_stacks: dict[str, sitk.Image]
    reduced: dict[str, sitk.Image]

    @property
    def pair_ids(self) -> list[str]:
        """The manifest's pair ids, in order."""
        return list(self.pairs["pair_id"])

    def imzml_loaders(self) -> dict[str, Callable[[], ImzMLReader]]:
        """``{pair_id: opens its imzML file}``."""
        return {p: (lambda p=p: open_imzml(self.folder / f"{p}.imzML")) for p in self.imzml}

    def control_point_loaders(self) -> dict[str, Callable[[], ControlPointsFile]]:
        """``{pair_id: its landmark file}``."""
        return {
            p: (lambda p=p: ControlPointsFile(str(self.folder / f"{p}.csv")))
            for p in self.control_points
        }

    def truth(self, pair_id: str) -> np.ndarray:
        """The known ``(2, 3)`` MSI mm -> H&E mm affine of a pair."""
        row = self.ground_truth.set_index("pair_id").loc[pair_id]
        return np.array([[row.a11, row.a12, row.tx], [row.a21, row.a22, row.ty]], dtype=float)


def make_msi_inputs(folder: Path) -> MsiInputs:
    """Run the demo, splits, peak and reduction nodes; write the demo's files into ``folder``."""
    imzml, histology, ground_truth, peaks, control_points = make_msi_demo(DEMO)
    for pair_id, files in imzml.items():
        files.write(folder / f"{pair_id}.imzML")
    for pair_id, table in control_points.items():
        table.to_csv(folder / f"{pair_id}.csv", index=False)
    pairs = assign_msi_splits(ground_truth, SPLITS)
    opened = {p: (lambda p=p: open_imzml(folder / f"{p}.imzML")) for p in imzml}
    stacks, _ = build_peak_stacks(pairs, opened, SPECTRA)
    reduced = reduce_peak_stacks(loaders(stacks), REDUCTION)
    return MsiInputs(
        imzml, histology, ground_truth, peaks, control_points, folder, pairs, stacks, reduced
    )
