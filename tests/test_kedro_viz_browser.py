"""kedro-viz in a real browser: the project's graph renders with its pipelines, layers and tags.

``kedro viz build`` writes the static site (``build/``, the same page and API answers as
``kedro viz run``) in a copy of the project; a local HTTP server serves it on 127.0.0.1 and
headless Chromium (Playwright driving the Debian ``/usr/bin/chromium``; never a downloaded
browser) reads the DOM. Every request that is not to 127.0.0.1 is refused (the page asks for
Google fonts), so nothing leaves the machine. Screenshots: ``/tmp/kedro_viz_default.png`` (the
whole ``__default__`` graph) and ``/tmp/kedro_viz_data_engineering.png`` (one stage,
``?pid=data_engineering``), for a reader to look at (docs/kedro_viz.md).

About 15 s on 2 cores (the build 6 s, the two pages 3-4 s each).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from project_copy import copy_project

#: Kedro's data layers, in the order of the data folders 01_raw .. 08_reporting
LAYERS = [
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
]
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get)"
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """No request log on stderr."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``kedro viz build`` of a copy of the project, served on a free port of 127.0.0.1."""
    project = copy_project(tmp_path_factory.mktemp("viz_project"))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    output = built.stdout + built.stderr
    assert "circular dependency detected among layers" not in output  # layers would be off
    assert "contain '.'" not in output  # Kedro's dotted-name warning (pipeline_registry)
    root = project / "build"
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser: object, url: str):  # noqa: ANN202
    """A 1400 x 900 page at ``url`` once the graph is drawn; the first-visit tour is off (the
    user's own setting, "Show feature hints") so it does not cover the graph."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith("http://127.0.0.1") else route.abort()
        ),
    )
    page.add_init_script(
        "localStorage.setItem('KedroViz', JSON.stringify({showFeatureHints: false}))"
    )
    page.goto(url)
    page.wait_for_selector("svg .pipeline-node", timeout=30_000)
    page.wait_for_selector(".pipeline-minimap-toolbar__scale")
    page.wait_for_timeout(800)  # the zoom-to-fit transition
    return page


def _texts(page, selector: str) -> list[str]:  # noqa: ANN001
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent.trim())")


def test_the_default_graph_shows_pipelines_layers_tags_and_namespaces(
    site: tuple[str, Path], browser: object
) -> None:
    url, root = site
    main = json.loads((root / "api" / "main").read_text())
    registered = {p["id"] for p in main["pipelines"]}
    assert {"__default__", "data_engineering", "modelling", "evaluation", "msi"} <= registered
    page = _open(browser, url)
    try:
        page.screenshot(path="/tmp/kedro_viz_default.png")
        assert page.locator("svg .pipeline-node").count() > 100  # nodes and datasets drawn
        # the pipeline menu: the selected one and every other registered pipeline
        assert page.get_by_role("button", name="__default__", exact=True).count() == 1
        options = set(_texts(page, ".menu-option__content"))
        assert registered <= options
        # the layer bands, in the order of the data folders
        layers = _texts(page, ".pipeline-layer-name")
        assert {"raw", "intermediate", "primary", "model_input", "reporting"} <= set(layers)
        assert layers == [name for name in LAYERS if name in layers]
        # one tag per task (kedro-viz prints tags with "Pretty name")
        assert {"Mri To Histology", "Mri To Mri", "Msi To He"} <= set(
            _texts(page, ".row-text__label--kind-filter")
        )
        # one collapsed modular pipeline per experiment in the tree
        tree = set(_texts(page, ".row-text__label"))
        assert {"tiles_256", "t1_to_t2", "msi_to_he_black", "unet_baseline"} <= tree
    finally:
        page.close()


def test_one_stage_opens_at_a_readable_zoom(site: tuple[str, Path], browser: object) -> None:
    """``?pid=<pipeline>`` (or ``kedro viz run --pipeline=<pipeline>``) opens one stage; the
    whole ``__default__`` graph fits at about 10 %, a stage at about 50 %."""
    url, _ = site
    page = _open(browser, f"{url}?pid=data_engineering")
    try:
        page.screenshot(path="/tmp/kedro_viz_data_engineering.png")
        scale = int(page.inner_text(".pipeline-minimap-toolbar__scale").rstrip("%"))
        assert scale >= 40
        labels = set(_texts(page, ".pipeline-node__text"))
        assert {"validate_manifest", "downsample_slides", "data_engineering_report"} <= labels
        assert _texts(page, ".pipeline-layer-name") == [
            "raw",
            "intermediate",
            "primary",
            "reporting",
        ]
    finally:
        page.close()
