"""Folder outputs are replaced whole, only when complete; incomplete folders are refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from kedro.io import DatasetError

from mrihisto_kedro.datasets.staged_partitioned_dataset import (
    RECORD_NAME,
    StagedPartitionedDataset,
)
from mrihisto_kedro.durability.temporaries import stale_temporaries

IMAGES = {"type": "mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset"}


def _dataset(folder: Path, parallel_saves: int = 1) -> StagedPartitionedDataset:
    return StagedPartitionedDataset(
        path=str(folder),
        dataset=IMAGES,
        filename_suffix=".mha",
        overwrite=True,
        parallel_saves=parallel_saves,
    )


def _image(value: float) -> sitk.Image:
    image = sitk.GetImageFromArray(np.full((16, 20), value, np.float32))
    image.SetSpacing((0.5, 0.5))
    return image


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_load_and_a_missing_pair_named(tmp_path: Path) -> None:
    folder = tmp_path / "03_primary" / "aligned_mri"
    _dataset(folder).save({"pair_01": _image(1.0), "pair_02": lambda: _image(2.0)})
    assert sorted(p.name for p in folder.iterdir()) == [RECORD_NAME, "pair_01.mha", "pair_02.mha"]
    loaded = _dataset(folder).load()
    assert sorted(loaded) == ["pair_01", "pair_02"]
    assert sitk.GetArrayFromImage(loaded["pair_02"]()).mean() == 2.0
    with pytest.raises(KeyError, match=r"aligned_mri has no partition 'pair_07' \(it holds 2"):
        loaded["pair_07"]
    assert _dataset(folder).exists()
    assert [p for p in tmp_path.rglob(".*")] == []  # no staging folder left


def test_a_failed_save_keeps_the_previous_complete_folder(tmp_path: Path) -> None:
    folder = tmp_path / "aligned_mri"
    _dataset(folder).save({"pair_01": _image(1.0), "pair_02": _image(2.0)})
    before = _snapshot(folder)

    def bad_slide() -> sitk.Image:
        raise ValueError("slide pair_02 is damaged")

    with pytest.raises(DatasetError, match="pair_02 is damaged") as failed:
        _dataset(folder).save({"pair_01": _image(5.0), "pair_02": bad_slide})
    assert f"path={folder}" in str(failed.value) or str(folder) in str(failed.value)
    assert ".tmp-" not in str(failed.value)
    assert _snapshot(folder) == before  # kedro-datasets' overwrite=True had emptied it
    assert stale_temporaries(tmp_path) == []


def test_incomplete_or_changed_folders_are_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "slide_masks"
    _dataset(folder).save({"a": _image(1.0), "b": _image(2.0)})
    (folder / "b.mha").write_bytes((folder / "b.mha").read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"partition 'b' \(b.mha\) has .* bytes, the record"):
        _dataset(folder).load()
    (folder / "b.mha").unlink()
    with pytest.raises(DatasetError, match=r"partition 'b' \(b.mha\) is missing"):
        _dataset(folder).load()
    (folder / RECORD_NAME).unlink()
    with pytest.raises(DatasetError, match=f"{folder} is incomplete: it has no {RECORD_NAME}"):
        _dataset(folder).load()
    assert not _dataset(folder).exists()  # so --only-missing-outputs reruns its node
    with pytest.raises(DatasetError, match="does not exist: run the pipeline"):
        _dataset(tmp_path / "never_written").load()


KILLED_SAVE = r"""
import os, signal, sys
import numpy as np, SimpleITK as sitk
from mrihisto_kedro.datasets.staged_partitioned_dataset import StagedPartitionedDataset
def image(v):
    return sitk.GetImageFromArray(np.full((16, 20), v, np.float32))
def die():
    os.kill(os.getpid(), signal.SIGKILL)  # half-way: pair_01 written, pair_02 not
data = {"pair_01": image(7.0), "pair_02": die}
StagedPartitionedDataset(
    path=sys.argv[1], filename_suffix=".mha",
    dataset={"type": "mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset"},
).save(data)
"""


def test_kill_9_during_a_save_keeps_the_previous_folder(tmp_path: Path) -> None:
    folder = tmp_path / "downsampled"
    _dataset(folder).save({"pair_01": _image(1.0), "pair_02": _image(2.0)})
    before = _snapshot(folder)
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(folder)], check=False)
    assert done.returncode == -signal.SIGKILL
    assert _snapshot(folder) == before
    (staging,) = stale_temporaries(tmp_path)  # the next run's hook removes it
    assert staging.name.startswith(".downsampled.tmp-") and (staging / "pair_01.mha").is_file()
    again = _dataset(folder).load()
    assert sitk.GetArrayFromImage(again["pair_01"]()).mean() == 1.0


def test_only_missing_outputs_reruns_the_node_of_an_incomplete_folder(tmp_path: Path) -> None:
    """After a kill left a folder without its record, ``kedro run --only-missing-outputs``
    reran nothing before (the folder existed); now the node runs again."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline
    from kedro.runner import SequentialRunner

    calls: list[int] = []

    def make_masks(n: int) -> dict[str, sitk.Image]:
        calls.append(n)
        return {f"pair_{i:02d}": _image(float(i)) for i in range(n)}

    folder = tmp_path / "slide_masks"
    pipeline = Pipeline([Node(make_masks, "n", "masks", name="make_masks")])

    def run() -> None:
        catalog = DataCatalog({"n": MemoryDataset(3), "masks": _dataset(folder)})
        SequentialRunner().run(pipeline, catalog, only_missing_outputs=True)

    run()
    run()
    assert calls == [3]  # complete: skipped the second time
    (folder / RECORD_NAME).unlink()  # what a kill between the partitions and the record leaves
    run()
    assert calls == [3, 3] and (folder / RECORD_NAME).is_file()


# ------------------------------------------------------------------ parallel_saves: N at once
class _InFlight:
    """Lazy partitions that record how many of them run at once; two must meet to go on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.called: list[str] = []
        self.barrier = threading.Barrier(2, timeout=30)

    def partition(self, pid: str, value: float) -> sitk.Image:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.called.append(pid)
        self.barrier.wait()  # returns only when two partitions are in flight together
        image = _image(value)
        with self.lock:
            self.now -= 1
        return image

    def partitions(self, n: int) -> dict[str, Callable[[], sitk.Image]]:
        return {f"pair_{i:02d}": partial(self.partition, f"pair_{i:02d}", i) for i in range(n)}


def test_parallel_saves_write_the_sequential_files_with_a_bounded_window(tmp_path: Path) -> None:
    sequential = tmp_path / "one"
    _dataset(sequential).save({f"pair_{i:02d}": partial(_image, i) for i in range(8)})
    flight = _InFlight()
    parallel = tmp_path / "two"
    _dataset(parallel, parallel_saves=2).save(flight.partitions(8))
    assert flight.most == 2  # two at once (the barrier proves it), never more
    assert sorted(flight.called) == [f"pair_{i:02d}" for i in range(8)]
    one, two = _snapshot(sequential), _snapshot(parallel)
    assert one.pop(RECORD_NAME) and two.pop(RECORD_NAME)  # both complete (the record has a time)
    assert one == two and len(one) == 8
    assert sorted(_dataset(parallel).load()) == [f"pair_{i:02d}" for i in range(8)]
    assert stale_temporaries(tmp_path) == []


def test_a_failed_parallel_save_keeps_the_previous_folder_and_stops(tmp_path: Path) -> None:
    folder = tmp_path / "downsampled"
    _dataset(folder).save({"pair_00": _image(1.0), "pair_01": _image(2.0)})
    before = _snapshot(folder)
    called: list[str] = []
    release = threading.Event()

    def damaged() -> sitk.Image:
        called.append("pair_00")
        raise ValueError("slide pair_00 is damaged")

    def slow(pid: str) -> sitk.Image:
        called.append(pid)
        release.wait(timeout=1)  # still running when pair_00 fails
        return _image(3.0)

    data: dict[str, Callable[[], sitk.Image]] = {"pair_00": damaged}
    data |= {f"pair_{i:02d}": partial(slow, f"pair_{i:02d}") for i in range(1, 8)}
    with pytest.raises(DatasetError, match="pair_00 is damaged") as failed:
        _dataset(folder, parallel_saves=2).save(data)
    assert ".tmp-" not in str(failed.value)
    assert sorted(called) == ["pair_00", "pair_01"]  # the others were not started
    assert _snapshot(folder) == before
    assert stale_temporaries(tmp_path) == []


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_parallel_saves_must_be_a_positive_integer(tmp_path: Path, bad: object) -> None:
    with pytest.raises(DatasetError, match="parallel_saves must be an integer >= 1"):
        _dataset(tmp_path / "x", parallel_saves=bad)  # type: ignore[arg-type]
