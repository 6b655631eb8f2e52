"""How the project's MLflow experiment opens in the MLflow UI: its kind, its description, and a
saved runs-table view of the trainings (MLflow 3.17).

What MLflow 3.17's UI reads (its JavaScript bundle, ``mlflow/server/js/build``):

- ``mlflow.experimentKind`` (experiment tag): ``custom_model_development`` marks a classic
  model-training experiment (``genai_development`` the GenAI one). The 3.17 UI reads it only
  where its workflow switch is off; with the switch on (the 3.17 default) the *workflow type*
  decides what an experiment opens on: the URL parameter ``workflowType=machine_learning`` (or
  ``genai``), else the sidebar's "GenAI / Machine learning" toggle remembered by the browser
  (``localStorage``), else GenAI. Hence :func:`runs_url`, which states it.
- ``mlflow.note.content`` (experiment tag): the description shown on the experiment page
  (Markdown).
- ``mlflow.sharedViewState.<key>`` (experiment tag): a saved view of the runs table (its
  "Views" menu; ``?viewStateShareKey=<key>`` opens it): the search filter, the sort, the
  visible columns. The project's view :data:`TRAININGS_VIEW` shows the columns that compare
  trainings. (No view can expand a parent run's row: the UI leaves a ``kedro run`` row
  collapsed over its trainings until its ``+`` or "Expand rows" is clicked, and a search
  filter matching only the trainings still shows them under their parents.)

:func:`prepare_experiment` sets all three once (a value already there is kept: a description
edited in the UI stays). ``conf/base/mlflow.yml`` gives the kind and the description to
kedro-mlflow for an experiment it creates (``create_experiment_kwargs.tags``, the same
:data:`EXPERIMENT_TAGS`); the training runs call :func:`prepare_experiment` for one created
before (:func:`~mrihisto_kedro.tracking.mlflow_tracking.training_run`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import mlflow

__all__ = [
    "EXPERIMENT_TAGS",
    "KIND_TAG",
    "NOTE_TAG",
    "TRAININGS_COLUMNS",
    "TRAININGS_VIEW",
    "VIEW_TAG_PREFIX",
    "prepare_experiment",
    "runs_url",
    "trainings_view",
]

KIND_TAG = "mlflow.experimentKind"
NOTE_TAG = "mlflow.note.content"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."

#: the saved view's key (its tag is ``mlflow.sharedViewState.trainings``)
TRAININGS_VIEW = "trainings"

#: the runs table's columns of the view, in order: ``(kind, key)`` with kind ``params``,
#: ``metrics``, ``tags`` or ``attributes``
TRAININGS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tags", "experiment"),
    ("params", "model_type"),
    ("params", "total_epochs"),
    ("params", "tiles"),
    ("params", "gan_mode"),
    ("params", "lr"),
    ("params", "lambda_L1"),
    ("params", "data.batch_size"),
    ("metrics", "val_L1"),
    ("metrics", "val_SSIM"),
    ("metrics", "mean_colour_val_L1"),
    ("metrics", "seconds"),
)

DESCRIPTION = """\
**mrihisto_kedro**: image-to-image translation models (pix2pix, CycleGAN, U-Net) from MRI to
histology, MRI to MRI (T1 to T2) and MSI to H&E.

- Every `kedro run` is one run, named `kedro run` (its whole command is its tag
  `kedro_command`); every training it runs is a run nested under it, named by its experiment
  (`tiles_256`); a hyper-parameter search is `<name>-search` with one run per trial,
  `<name>-trial-<n>`. Expand a `kedro run` row (its `+`, or **Expand rows**) to see them.
- The runs table's **Views** menu holds *Trainings*: the parameters and metrics that compare
  trainings (`total_epochs` = `model.n_epochs` + `model.n_epochs_decay`; `val_L1` on the
  validation split, lower is better; `mean_colour_val_L1` is that of a trivial baseline
  painting every pixel the mean colour).
- A run's page: its parameters (the model's as `model.*`, the data feeding as `data.*`, the
  machine as `runtime.*`); **Model metrics**: its per-epoch charts; **Artifacts**: sample grids
  (input | target | generated) and the exported generator.

Compare runs: tick them, then **Compare**. See `docs/mlflow.md` in the project.
"""

#: what the experiment is tagged with (and ``conf/base/mlflow.yml`` creates it with)
EXPERIMENT_TAGS: dict[str, str] = {
    KIND_TAG: "custom_model_development",
    NOTE_TAG: DESCRIPTION,
}


def _column(kind: str, key: str) -> str:
    """The runs table's column id: ``params.`lr```, as the UI names it."""
    return f"{kind}.`{key}`"


def trainings_view(created_ms: int | None = None) -> str:
    """The tag value of :data:`TRAININGS_VIEW`: ``{name, createdAt, updatedAt, state}`` where
    ``state`` is the runs page's state as JSON text (filter, visible columns)."""
    created = int(time.time() * 1000) if created_ms is None else created_ms
    state = {  # the keys left out take the UI's defaults
        "selectedColumns": [_column(kind, key) for kind, key in TRAININGS_COLUMNS],
        "runsHiddenMode": "SHOW_ALL",  # every training in the charts, not the first 10
    }
    envelope = {
        "name": "Trainings",
        "createdAt": created,
        "updatedAt": created,
        "state": json.dumps(state),
    }
    return json.dumps(envelope)


def prepare_experiment(
    experiment_id: str, client: mlflow.tracking.MlflowClient | None = None
) -> list[str]:
    """Tag experiment ``experiment_id`` with :data:`EXPERIMENT_TAGS` and the saved view
    :data:`TRAININGS_VIEW`, each only if the experiment has no value for it yet.

    Returns:
        the tag keys set (empty when the experiment had them all).
    """
    client = client or mlflow.tracking.MlflowClient()
    present = client.get_experiment(experiment_id).tags
    wanted: Mapping[str, str] = {**EXPERIMENT_TAGS, VIEW_TAG_PREFIX + TRAININGS_VIEW: ""}
    missing = [key for key in wanted if key not in present]
    for key in missing:
        value = wanted[key] or trainings_view()
        client.set_experiment_tag(experiment_id, key, value)
    return missing


def runs_url(base_url: str, experiment_id: str, view: str | None = TRAININGS_VIEW) -> str:
    """The address that opens the experiment's runs table in MLflow's classic mode (in any
    browser, whatever its remembered workflow toggle), with saved view ``view`` (``None``:
    the table as the browser last left it).

    ``runs_url("http://127.0.0.1:5000", "1")`` ->
    ``http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=trainings``
    """
    query: dict[str, Any] = {"workflowType": "machine_learning"}
    if view is not None:
        query["viewStateShareKey"] = view
    args = "&".join(f"{key}={value}" for key, value in query.items())
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{args}"
