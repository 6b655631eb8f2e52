"""The walkthrough notebook as a user meets it (issue 19): committed without outputs, opened by
``kedro jupyter lab`` on the project's kernel. Its execution on the demo's outputs is in
``tests/test_pipelines_run.py`` (it needs the end-to-end run)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from project_copy import REPO_ROOT, copy_project

NOTEBOOK = REPO_ROOT / "notebooks" / "walkthrough.ipynb"


def test_the_walkthrough_is_committed_clean_and_loads_the_project() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert code[0].source.splitlines()[1] == "%load_ext kedro.ipython"
    for cell in code:  # every cell is Python apart from the extension's line magic
        compile(cell.source.replace("%load_ext kedro.ipython", ""), "<cell>", "exec")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kedro_jupyter_lab_opens_on_the_project_kernel(tmp_path: Path) -> None:
    """``kedro jupyter lab`` (README) serves JupyterLab whose default kernel loads the
    project (``--ext kedro.ipython``: ``catalog``, ``context`` and ``session`` defined)."""
    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    (project / "notebooks").mkdir()
    port, token = _free_port(), "mrihisto-test"
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"),  # the kernel spec kedro installs
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
    }
    command = [sys.executable, "-m", "kedro", "jupyter", "lab", "--no-browser", f"--port={port}"]
    command += ["--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses root without it
    server = subprocess.Popen(  # its own process group: kedro starts jupyter-lab as a child
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/kernelspecs?token={token}"
        deadline, specs = time.monotonic() + 120, None
        while specs is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    specs = json.load(response)
            except OSError:
                time.sleep(0.5)
        if specs is None:
            os.killpg(server.pid, signal.SIGKILL)
            pytest.fail(f"JupyterLab did not answer:\n{server.communicate()[0][-3000:]}")
        assert specs["default"] == "kedro_mrihisto_kedro"
        argv = specs["kernelspecs"]["kedro_mrihisto_kedro"]["spec"]["argv"]
        assert argv[-2:] == ["--ext", "kedro.ipython"]
    finally:  # the whole group: an orphaned jupyter-lab would outlive the test
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
