"""The MLflow UI in headless Chromium (issue 19): an ``mlflow server`` over a store, and the
checks a user's first look makes. Used by ``test_mlflow_ui.py`` (a small store of the project's
own tracking code) and by ``tests/test_pipelines_run.py`` (the demo's store).

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``), driven by Playwright;
nothing is downloaded. Screenshots go to ``MRIHISTO_SCREENSHOTS`` (default: a ``screenshots``
folder the caller gives) so a person can look at what was checked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS

from mrihisto_kedro.tracking.experiment_view import runs_url

#: generous: the UI's first load compiles a large bundle on a busy 2-core machine
TIMEOUT_MS = 60_000
ML = "workflowType=machine_learning"


def require_chromium() -> None:
    """Skip the calling test, saying why, without Debian's Chromium."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mlflow_server(store_uri: str, log: Path) -> Iterator[str]:
    """``mlflow server`` (one worker, no job runner) on a free 127.0.0.1 port over
    ``store_uri``; yields its base URL once ``/health`` answers; stopped (its whole process
    group) after."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server", "--workers", "1"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", store_uri]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError as error:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start: {tail}") from error
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)


@dataclass(frozen=True)
class Seen:
    """What the browser showed (the tests assert on it; the screenshots are for people)."""

    plain_url: str  # where the experiment's bare address landed
    runs_url: str  # where :func:`runs_url` landed
    run_rows: list[str]  # run names in the runs table, parents expanded
    columns: list[str]  # the runs table's column ids (``params.`lr```)
    run_params: dict[str, str]  # the run page's Parameters table
    chart_titles: list[str]  # the run's Model metrics charts
    diff_params: dict[str, list[str]]  # compare view, "Show diff only": key -> values
    all_params: dict[str, list[str]]  # compare view: every parameter
    screenshots: list[Path]


def _table(text: str) -> dict[str, list[str]]:
    """``key\\tvalue\\tvalue`` lines of an element's text."""
    rows = {}
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) >= 2:
            rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
    return rows


def _pairs(text: str) -> dict[str, str]:
    """A run page's two-column table as text (``Parameter``, ``Value``, then one line per
    cell) -> ``{key: value}``."""
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index("Value") + 1 if "Value" in lines else 0
    cells = [line for line in lines[start:] if line]
    return dict(zip(cells[::2], cells[1::2], strict=False))


def look(
    base: str,
    experiment_id: str,
    run_id: str,
    compare: Sequence[str],
    parent_name: str,
    shots: Path,
    prefix: str,
) -> Seen:
    """Open the experiment, a run, and the comparison of runs ``compare`` as a user would
    (a fresh browser profile), taking screenshots ``shots/<prefix>-*.png``."""
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    def shot(page: object, name: str) -> None:
        path = shots / f"{prefix}-{name}.png"
        page.screenshot(path=str(path))  # type: ignore[attr-defined]
        taken.append(path)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        # the bare address: MLflow 3.17 decides by the browser's workflow toggle (GenAI first)
        page.goto(f"{base}/#/experiments/{experiment_id}")
        page.wait_for_url("**workflowType=**")
        plain = page.url
        shot(page, "1-bare-address")

        page.goto(runs_url(base, experiment_id))
        page.get_by_role("gridcell", name=parent_name).first.wait_for()
        landed = page.url
        close = page.get_by_role("button", name="Close")  # the Assistant side panel
        if close.count():
            close.first.click()
        expanders = page.locator('button[data-component-id*="runnamecellrenderer"]')
        clicked = 0  # each parent run's "+", nested parents (a search) after their parent
        while clicked < expanders.count():
            expanders.nth(clicked).click()
            clicked += 1
            page.wait_for_timeout(400)
        rows = [
            cell.inner_text().strip().splitlines()[-1]  # after the run's colour
            for cell in page.locator('[role="gridcell"][col-id="attributes.`Run Name`"]').all()
        ]
        columns = [
            str(h.get_attribute("col-id"))
            for h in page.locator('[role="columnheader"][col-id]').all()
        ]
        shot(page, "2-runs-table")

        page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{ML}")
        heading = page.get_by_role("heading", name="Parameters (")
        box = heading.locator("xpath=ancestor::*[.//input[@placeholder='Search parameters']][1]")
        box.scroll_into_view_if_needed()
        run_params = _pairs(box.inner_text())
        shot(page, "3-run-parameters")

        page.get_by_role("tab", name="Model metrics").click()
        page.locator(".js-plotly-plot, canvas, svg.main-svg").first.wait_for()
        page.wait_for_timeout(1000)
        cards = page.locator('[data-testid="experiment-view-compare-runs-card"]')
        titles = [text.strip().splitlines()[0] for text in cards.all_inner_texts() if text.strip()]
        shot(page, "4-run-metric-charts")

        ids = json.dumps(list(compare))
        page.goto(f'{base}/#/compare-runs?runs={ids}&experiments=["{experiment_id}"]&{ML}')
        page.get_by_text("Run details").wait_for()
        switch = page.get_by_role("switch").first  # the Parameters section's "Show diff only"
        section = switch.locator("xpath=ancestor::*[.//table][1]")
        every = _table(section.inner_text())
        switch.click()
        page.wait_for_timeout(500)
        diff = _table(section.inner_text())
        section.scroll_into_view_if_needed()
        shot(page, "5-compare-diff-only")
        browser.close()
    return Seen(plain, landed, rows, columns, run_params, titles, diff, every, taken)


def differing_params(run_ids: Sequence[str]) -> set[str]:
    """The parameter keys whose values differ between the runs (in the current store)."""
    params = [mlflow.get_run(r).data.params for r in run_ids]
    keys = set().union(*params)
    return {k for k in keys if len({p.get(k) for p in params}) > 1}
