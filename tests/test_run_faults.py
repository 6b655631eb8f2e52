"""``kill -9`` of a real ``kedro run`` mid-write, and two runs at once (issue 15).

A copy of the project runs the demo, ``data_engineering`` and ``inference`` as a user runs them
(``python -m kedro run``). Then each run is repeated by a driver that pauses inside a write and
is killed there with SIGKILL:

* during ``downsample_slides``, after its second downsampled slide was written into the
  folder's staging copy (two are written at once, so more may be there); while it is paused a
  second ``kedro run`` into the same ``data/`` is refused, naming the first one's pid;
* during the synthesis of ``inference``, after the first strip of the synthetic slide.

A read-only (immutable) QC folder stops ``data_engineering`` before its first node.

Each time the previous complete outputs are byte-identical afterwards, the same command then
completes, its outputs are byte-identical to the first run's, and no temporary is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from demo_as_your_data import use_demo_as_your_data

from mrihisto_kedro.durability.lock import LOCK_NAME
from mrihisto_kedro.durability.temporaries import stale_temporaries

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
#: COLUMNS: rich does not wrap the log lines this test reads
ENV = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="2", COLUMNS="1000")

#: runs ``kedro`` with one write patched to announce itself and wait (to be killed there)
DRIVER = r"""
import sys, time
where = sys.argv[1]

def pause():
    print("PAUSED", flush=True)
    time.sleep(300)

if where == "downsample":  # after the second slide saved into the staging folder
    from mrihisto_kedro.datasets import slide_dataset
    saved = slide_dataset.OpenSlideDataset.save
    count = [0]
    def save(self, data):
        saved(self, data)
        count[0] += 1
        if count[0] == 2:
            pause()
    slide_dataset.OpenSlideDataset.save = save
elif where == "stitch":  # after the first strip of the synthetic slide
    from mrihisto_kedro.imaging import stitching
    rows = stitching.iter_stitched_rows
    def iter_rows(*args, **kwargs):
        for i, strip in enumerate(rows(*args, **kwargs)):
            yield strip
            if i == 0:
                pause()
    stitching.iter_stitched_rows = iter_rows
from kedro.framework.cli import main
sys.argv = ["kedro", *sys.argv[2:]]
main()
"""


def _kedro(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout + out.stderr


def _snapshot(data: Path, folders: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every visible file of ``folders``; completion records by their partitions."""
    digests = {}
    for folder in folders:
        for path in sorted((data / folder).rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(data).parts)
            if hidden or not path.is_file():  # staging copies and spools: checked apart
                continue
            if path.name == "_partitions.json":  # its "written" time differs between runs
                digest = json.dumps(json.loads(path.read_text())["partitions"], sort_keys=True)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            digests[str(path.relative_to(data))] = digest
    return digests


def _paused(project: Path, where: str, *args: str) -> subprocess.Popen[str]:
    """A ``kedro`` run stopped inside ``where``'s write (its log in ``<where>.log``)."""
    log = (project / f"{where}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, where, *args],
        cwd=project,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "PAUSED":
            return process
    process.wait()
    pytest.fail(f"the run ended before pausing: {(project / f'{where}.log').read_text()[-3000:]}")


def _kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project after the demo, ``data_engineering`` and one ``inference`` run."""
    dest = tmp_path_factory.mktemp("faults")
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, dest / name)
    (dest / "src").mkdir()
    shutil.copytree(REPO_ROOT / "conf" / "base", dest / "conf" / "base")
    use_demo_as_your_data(dest)  # the user's pipelines read conf/local's data: the demo's
    _ok(_kedro(dest, "run", "--pipeline=demo"))
    _ok(_kedro(dest, "run", "--pipeline=data_engineering"))
    # a small untrained generator that records its input (100 um per model pixel)
    from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
    from mrihisto_kedro.nn.models import Pix2Pix, Pix2PixConfig
    from mrihisto_kedro.nn.training import export_generator

    torch.manual_seed(0)
    config = Pix2PixConfig(
        generator="unet", num_downs=5, ngf=4, ndf=4, device="cpu", precision="fp32"
    )
    spec = InputSpec(InputKind.SLICE_TO_SLIDE, (100.0, 100.0)).to_dict()
    (dest / "data" / "06_models" / "tiles_256").mkdir(parents=True)
    torch.save(
        export_generator(Pix2Pix(config), spec),
        dest / "data" / "06_models" / "tiles_256" / "generator.pt",
    )
    _ok(_kedro(dest, "run", "--pipeline=inference"))
    return dest


DATA_ENGINEERING = ("02_intermediate", "03_primary", "08_reporting")


@pytest.mark.timeout(1200)
def test_kill_during_downsampling_keeps_outputs_and_a_second_run_is_refused(
    project: Path,
) -> None:
    data = project / "data"
    before = _snapshot(data, DATA_ENGINEERING)
    assert sum(k.startswith("02_intermediate/downsampled_slides/pair_") for k in before) == 8

    first = _paused(project, "downsample", "run", "--pipeline=data_engineering")
    try:
        second = _kedro(project, "run", "--pipeline=data_engineering")
        said = second.stdout + second.stderr
        assert second.returncode != 0
        assert f"another kedro run is writing into {data.resolve()} (pid {first.pid}" in said
        staging = [p for p in stale_temporaries(data) if ".downsampled_slides.tmp-" in p.name]
        # downsampled_slides writes 2 slides at once (parallel_saves): the other thread may
        # have written the rest while this one paused
        assert len(staging) == 1 and len(list(staging[0].glob("pair_*.tiff"))) >= 2
    finally:
        _kill(first)
    assert _snapshot(data, DATA_ENGINEERING) == before  # the kill left the old folder whole

    said = _ok(_kedro(project, "run", "--pipeline=data_engineering"))
    assert "removed 1 stale temporaries" in said
    assert _snapshot(data, DATA_ENGINEERING) == before  # rerun byte-identical
    assert stale_temporaries(data) == []
    assert {p.name for p in data.iterdir() if p.name.startswith(".")} == {LOCK_NAME}


@pytest.mark.timeout(1200)
def test_kill_during_synthesis_keeps_the_previous_slide(project: Path) -> None:
    data = project / "data"
    before = _snapshot(data, ("07_model_output",))
    assert list(before) == ["07_model_output/inference/synthetic.svs"]

    _kill(_paused(project, "stitch", "run", "--pipeline=inference"))
    spools = [p.name for p in stale_temporaries(data) if p.name.endswith(".stitch.tif")]
    assert spools and all(name.startswith(".synthetic.svs.") for name in spools)
    assert _snapshot(data, ("07_model_output",)) == before
    with sqlite3.connect(project / "mlflow.db") as db:
        statuses = [s for (s,) in db.execute("select status from runs")]
    assert statuses.count("RUNNING") == 1  # what the kill left

    said = _ok(_kedro(project, "run", "--pipeline=inference"))
    assert "stale temporaries" in said and "KILLED" in said
    assert _snapshot(data, ("07_model_output",)) == before  # rerun byte-identical
    assert stale_temporaries(data) == []
    with sqlite3.connect(project / "mlflow.db") as db:
        statuses = [s for (s,) in db.execute("select status from runs")]
    assert "RUNNING" not in statuses and statuses.count("KILLED") == 1


@pytest.mark.timeout(600)
def test_a_read_only_reporting_folder_stops_the_run_before_its_first_node(
    project: Path, refuse_writes: Callable[[Path], None]
) -> None:
    data = project / "data"
    before = _snapshot(data, DATA_ENGINEERING)
    reporting = data / "08_reporting" / "qc" / "data_engineering"
    refuse_writes(reporting)

    out = _kedro(project, "run", "--pipeline=data_engineering")
    said = out.stdout + out.stderr
    assert out.returncode != 0
    assert "refuse writes, so the run was stopped before its first node" in said
    assert f"{reporting.resolve()}: Operation not permitted (outputs: data_engineering_qc" in said
    assert "Running node" not in said and "Completed" not in said
    assert _snapshot(data, DATA_ENGINEERING) == before
    assert stale_temporaries(data) == []
