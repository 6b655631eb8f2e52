"""The full-scale environment end to end: ``kedro run --env=full_scale --pipeline=full_scale``.

Paper-size slides (level 0 60,000 x 45,000 px, Aperio JPEG pyramids rendered strip by strip),
data_engineering, registration, tiling at 256 and 1024 px, one short training each and the
synthesis of the whole test slide as a pyramidal TIFF, run as a user runs it (the ``kedro`` CLI
in a copy of the project), with the peak memory of the run bounded. About 9 minutes on 2 cores
and 25 GB of free disk at the peak (one 8.1 GB spool file at a time, 3 x 1.2 GB of slides).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile

from mrihisto_kedro.durability.lock import LOCK_NAME
from mrihisto_kedro.imaging.nuclei import nucleus_diameters_um
from mrihisto_kedro.imaging.tileset import load_tileset

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the run's peak RSS stays below this (measured 3514 MiB for the whole run in one process, of
#: which the models, Inception and LPIPS weights and allocator caches are about 1.5 GB)
MAX_PEAK_RSS_MIB = 4608

pytestmark = pytest.mark.slow


def _project(dest: Path) -> Path:
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, dest / name)
    (dest / "src").mkdir()
    for env in ("base", "full_scale"):
        shutil.copytree(REPO_ROOT / "conf" / env, dest / "conf" / env)
    (dest / "conf" / "local").mkdir()
    (dest / "data").mkdir()
    return dest


@pytest.fixture(scope="module")
def full_scale(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The project after the run, and the run's peak RSS in MiB."""
    project = _project(tmp_path_factory.mktemp("full_scale"))
    if shutil.disk_usage(project).free < 25 * 2**30:
        pytest.skip(f"the full-scale run needs 25 GB free in {project}")
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="2")
    kedro = [sys.executable, "-m", "kedro", "run", "--env=full_scale", "--pipeline=full_scale"]
    out = subprocess.run(kedro, cwd=project, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return project, peak_mib


def test_slides_are_paper_size_aperio_jpeg_pyramids(full_scale: tuple[Path, float]) -> None:
    project, _ = full_scale
    slides = sorted((project / "data" / "full_scale" / "01_raw" / "demo" / "slides").glob("*.svs"))
    assert len(slides) == 3
    for path in slides:
        slide = openslide.OpenSlide(path)
        assert slide.properties["openslide.vendor"] == "aperio"
        assert slide.dimensions == (60_000, 45_000)
        mpp = float(slide.properties["openslide.mpp-x"])
        assert 0.45 < mpp < 0.55  # a scanner's 20x: ~25.5 mm blocks over 60,000 px
        assert float(slide.properties["aperio.AppMag"]) == pytest.approx(10.0 / mpp, rel=1e-4)
        assert slide.level_count >= 5
        with tifffile.TiffFile(path) as tf:
            assert tf.pages[0].compression == tifffile.COMPRESSION.JPEG
        # tissue at level 0 (not only in the thumbnail): a 1024 px region near the centre
        region = np.asarray(slide.read_region((29_000, 21_500), 0, (2048, 2048)))[..., :3]
        assert region.mean() < 235 and region.std() > 5
        # physically true: the nuclei measure what nuclei measure at the slide's own mpp
        diameters = nucleus_diameters_um(region, mpp)
        assert len(diameters) > 100 and 5.0 <= float(np.median(diameters)) <= 10.0
    truth = pd.read_csv(project / "data" / "full_scale" / "01_raw" / "demo" / "ground_truth.csv")
    assert (truth["cell_magnification"] == 1.0).all()
    assert (truth["mri_spacing_x"] == 0.4).all() and (truth["mri_spacing_y"] == 0.4).all()


def test_data_engineering_and_registration_at_paper_size(full_scale: tuple[Path, float]) -> None:
    project, _ = full_scale
    data = project / "data" / "full_scale"
    pairs = pd.read_csv(data / "02_intermediate" / "pairs_with_splits.csv", dtype=str)
    assert sorted(pairs["split"]) == ["test", "train", "train"]
    for pair_id in pairs["pair_id"]:
        down = openslide.OpenSlide(
            data / "02_intermediate" / "downsampled_slides" / f"{pair_id}.tiff"
        )
        assert down.dimensions == (4000, 3000)
        grid_um = float(down.properties["openslide.mpp-x"])
        assert 6.5 < grid_um < 8.5  # paper 000: about 6.5 µm after the 15x downsampling
        assert 45 < 400.0 / grid_um < 65  # the MRI-to-histology gap (paper: about 60x)
    report = pd.read_csv(data / "08_reporting" / "registration_report.csv")
    assert len(report) == 3
    assert (report["dice_after"] >= 0.85).all(), report.to_string()
    assert not (data.parent / "01_raw" / "demo").exists()  # the demo's folders are not touched


def test_tiles_of_256_and_1024_px(full_scale: tuple[Path, float]) -> None:
    project, _ = full_scale
    models = project / "data" / "full_scale" / "05_model_input"
    for experiment, grid_px in (("tiles_256", 256), ("tiles_1024", 1024)):
        tiles = load_tileset(models / experiment / "tileset")
        assert tiles.a.shape[1:] == (256, 256, 1) and tiles.b.shape[1:] == (256, 256, 3)
        assert set(tiles.manifest["split"]) == {"train", "test"}
        assert (tiles.manifest["size"] == grid_px * 15).all()  # level-0 px of the 15x grid
    assert len(load_tileset(models / "tiles_256" / "tileset")) > 100


def test_whole_test_slide_synthesised_as_a_pyramidal_tiff(full_scale: tuple[Path, float]) -> None:
    project, _ = full_scale
    data = project / "data" / "full_scale"
    pairs = pd.read_csv(data / "02_intermediate" / "pairs_with_splits.csv", dtype=str)
    test_pair = pairs.loc[pairs["split"] == "test", "pair_id"].item()
    down = openslide.OpenSlide(
        data / "02_intermediate" / "downsampled_slides" / f"{test_pair}.tiff"
    )
    for experiment, per_grid in (("tiles_256", 1.0), ("tiles_1024", 0.25)):
        path = data / "07_model_output" / experiment / "synthetic_slides" / f"{test_pair}.svs"
        synthetic = openslide.OpenSlide(path)
        w, h = synthetic.dimensions
        assert abs(w - 4000 * per_grid) <= 1 and abs(h - 3000 * per_grid) <= 1
        grid_mpp = float(down.properties["openslide.mpp-x"])
        assert float(synthetic.properties["openslide.mpp-x"]) == pytest.approx(
            grid_mpp / per_grid, rel=1e-3
        )
        assert synthetic.level_count >= 2
    leftovers = [p for p in data.rglob(".*") if p.is_file() and p.name != LOCK_NAME]
    assert leftovers == []  # no spool, part or pyramid temporaries (the run lock stays)


def test_peak_memory_is_bounded(full_scale: tuple[Path, float]) -> None:
    """The run holds no slide in memory: 3 x 8.1 GB of level-0 RGB pass through it."""
    _, peak_mib = full_scale
    assert peak_mib < MAX_PEAK_RSS_MIB, f"peak RSS {peak_mib:.0f} MiB"
