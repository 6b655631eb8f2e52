"""Point the catalog's "your data" entries at the built-in demo's files, as a user would.

The raw inputs (``slides``, ``mri_volumes``, ``pairs``, ``control_points``,
``registration_ground_truth``) are empty folders until a user fills them; the tests that run
the user's pipelines (``data_engineering``, ``registration_control_points``) on the demo
write this ``conf/local/catalog.yml`` first, the way ``docs/your_data.md`` tells a user to.
(Importable: ``tests/`` is on ``sys.path``, it holds the root ``conftest.py``.)
"""

from __future__ import annotations

from pathlib import Path

CATALOG = """\
slides:
  type: partitions.PartitionedDataset
  path: ${globals:data_root}/01_raw/demo/slides
  dataset: mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset
mri_volumes:
  type: mrihisto_kedro.datasets.mri_folder_dataset.MriFolderDataset
  path: ${globals:data_root}/01_raw/demo/mri
pairs:
  type: mrihisto_kedro.datasets.manifest_dataset.PairsManifestDataset
  filepath: ${globals:data_root}/01_raw/demo/pairs.csv
control_points:
  type: partitions.PartitionedDataset
  path: ${globals:data_root}/01_raw/demo/control_points
  dataset: mrihisto_kedro.datasets.control_points_dataset.ControlPointsDataset
  filename_suffix: .csv
registration_ground_truth:
  type: mrihisto_kedro.datasets.optional_csv_dataset.OptionalCSVDataset
  filepath: ${globals:data_root}/01_raw/demo/ground_truth.csv
  columns: [pair_id, a11, a12, a21, a22, tx, ty]
"""


def use_demo_as_your_data(project: Path) -> Path:
    """Write ``project/conf/local/catalog.yml`` with the demo as the user's data; return it."""
    path = project / "conf" / "local" / "catalog.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CATALOG, encoding="utf-8")
    return path
