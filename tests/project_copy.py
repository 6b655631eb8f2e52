"""A copy of the project to run Kedro in: configuration, empty data layers, no code.

The package itself is imported from the installed project, so ``src/`` stays empty; each copy
has its own ``data/`` and MLflow store. (Importable: ``tests/`` is on ``sys.path``.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def copy_project(dest: Path) -> Path:
    """``pyproject.toml``, ``.telemetry``, ``conf/base``, an empty ``conf/local`` and the empty
    ``data/<layer>`` folders of the project in ``dest``; returns ``dest``."""
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, dest / name)
    (dest / "src").mkdir()
    shutil.copytree(REPO_ROOT / "conf" / "base", dest / "conf" / "base")
    (dest / "conf" / "local").mkdir(parents=True)
    for layer in (REPO_ROOT / "data").iterdir():
        if layer.is_dir():
            (dest / "data" / layer.name).mkdir(parents=True)
    return dest
