"""Debian's Chromium for the browser checks (kedro-viz, the MLflow UI), driven by Playwright.

``.ci/run`` installs the ``chromium`` package when it is absent; the tests skip, saying so,
without it. The flags are those a root process on a machine without a network needs: no
sandbox, no GPU, and none of Chromium's background connections (refused here, many at once).
(Importable: ``tests/`` is on ``sys.path``.)
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
