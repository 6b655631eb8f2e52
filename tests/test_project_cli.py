"""The project as a user drives it from the shell: the registry and kedro-viz see the pipelines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}


def _kedro(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_registry_lists_every_pipeline() -> None:
    result = _kedro("registry", "list", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    for name in ("__default__", "demo", "data_engineering"):
        assert f"- {name}" in result.stdout


def test_viz_build_writes_the_pipeline_graph(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, project / name)
    shutil.copytree(REPO_ROOT / "conf" / "base", project / "conf" / "base")
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()
    result = _kedro("viz", "build", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    main = (project / "build" / "api" / "main").read_text()
    for node in ("make_demo", "validate_manifest", "downsample_slides", "qc_figures"):
        assert node in main
    assert "make_msi_demo" in main
    graph = json.loads(main)  # one namespace per experiment; the MSI group is a tag
    assert {"msi_to_he_black", "msi_unet", "tiles_256"} <= set(graph["modular_pipelines"])
    assert "msi_to_he" not in graph["modular_pipelines"]
    assert {"id": "msi_to_he", "name": "msi_to_he"} in graph["tags"]
