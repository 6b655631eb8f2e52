"""Project hooks: a run is safe to leave alone on a shared machine (issue 15).

``RunSafetyHooks`` runs before any node (``tryfirst``, so before kedro-mlflow opens its run):

0. checks every parameter of the nodes about to run, naming each bad one by its full
   dotted key (:mod:`mrihisto_kedro.pipelines.parameter_checks`);
1. takes the output root's lock (``data/`` or the environment's ``data_root``): a second
   ``kedro run`` into the same root is refused with the holder's pid, host and pipelines;
2. removes stale temporaries of this project's own naming under the root, left by killed
   runs (:mod:`mrihisto_kedro.durability.temporaries`), logging what and how much;
3. marks MLflow runs of this output root that are still RUNNING as KILLED: with the lock
   held, no live process owns them (:mod:`mrihisto_kedro.tracking.stale_runs`);
4. writes and removes a probe file in every folder the pipeline's outputs go to, and stops
   the run naming each folder that refuses (:mod:`mrihisto_kedro.durability.writable`):
   a read-only ``08_reporting`` was found only after every training had run.

The lock is released when the pipeline ends or fails (and by the OS if the process dies).
``RunTagHooks`` (``trylast``: after kedro-mlflow opened its run) tags that run with the
output root, host and the whole ``kedro run`` command (kedro-mlflow's ``kedro_command`` drops
``--namespaces``, ``--params`` and ``--env``: :mod:`mrihisto_kedro.tracking.kedro_command`);
training runs nested under it inherit the tags, which is how step 3 knows which runs belong
to this root.

``RunSummaryHooks`` ends a finished run with where its reporting outputs are, the flags the
evaluation raised and the commands that open kedro-viz and MLflow
(:mod:`mrihisto_kedro.reporting.run_summary`), and shows Kedro's per-dataset "Loading data
from" / "Saving data to" lines only at DEBUG (:class:`CatalogIOAtDebug`, installed with
:class:`KnownWarnings` by ``settings.py``).

``StaleTableHooks`` (after a run, finished or failed, before the lock is released) marks the
metric tables whose columns measured a generator that has been retrained since
(:mod:`mrihisto_kedro.evaluation.staleness`): retraining one experiment does not re-run the
evaluation, and its old numbers must not read as the new model's.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from mrihisto_kedro.durability.lock import OutputRootLock
from mrihisto_kedro.durability.temporaries import remove_stale_temporaries
from mrihisto_kedro.durability.writable import (
    local_dataset_path,
    output_folders,
    require_writable,
)
from mrihisto_kedro.experiments import by_name
from mrihisto_kedro.raw_inputs import require_raw_inputs

logger = logging.getLogger(__name__)

ROOT_TAG = "mrihisto.output_root"
HOST_TAG = "mrihisto.host"
COMMAND_TAG = "mrihisto.kedro_command"


class RunSafetyHooks:
    """Lock, clean and mark stale runs before a pipeline runs (see the module docstring)."""

    def __init__(self) -> None:
        """No root is known until the context is created."""
        self._root: Path | None = None
        self._experiment: str | None = None
        self._lock: OutputRootLock | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Read the output root (``globals.data_root``) and the MLflow experiment name."""
        config = context.config_loader
        try:
            data_root = config["globals"].get("data_root", "data")
        except (KeyError, ValueError):
            data_root = "data"
        self._root = (Path(context.project_path) / data_root).resolve()
        try:
            self._experiment = config["mlflow"]["tracking"]["experiment"]["name"]
        except (KeyError, TypeError, ValueError):
            self._experiment = None

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Check parameters and the user's raw inputs, take the lock (or refuse), clean up after
        kills, probe outputs."""
        from mrihisto_kedro.pipelines.parameter_checks import check_pipeline_parameters

        self._release()  # a previous run in this process that failed before its first node
        check_pipeline_parameters(pipeline, catalog.load, run_params.get("runtime_params"))
        require_raw_inputs(pipeline.inputs(), catalog)
        if self._root is None:
            return
        pipelines = run_params.get("pipeline_names") or ["__default__"]
        lock = OutputRootLock(self._root, f"kedro run --pipeline={','.join(pipelines)}")
        lock.acquire()
        self._lock = lock
        removed, freed = remove_stale_temporaries(self._root)
        if removed:
            logger.warning(
                "removed %d stale temporaries (%.1f MB) left under %s by an interrupted run: %s",
                len(removed),
                freed / 1e6,
                self._root,
                ", ".join(str(p.relative_to(self._root)) for p in removed[:5])
                + (" ..." if len(removed) > 5 else ""),
            )
        self._mark_stale_runs()
        try:
            require_writable(output_folders(pipeline.all_outputs(), catalog))
        except OSError:
            self._release()  # Kedro calls no error hook for a failing before_pipeline_run
            raise

    def _mark_stale_runs(self) -> None:
        if self._experiment is None:
            return
        from mrihisto_kedro.tracking.stale_runs import mark_stale_runs

        marked = mark_stale_runs([self._experiment], tags={ROOT_TAG: str(self._root)})
        if marked:
            logger.warning(
                "marked %d MLflow run(s) of %s KILLED: they were RUNNING, but their process "
                "had died (%s)",
                len(marked),
                self._root,
                ", ".join(marked),
            )

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Release the lock."""
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        """Release the lock."""
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class RunTagHooks:
    """Tag kedro-mlflow's pipeline run with the output root, host and command, name it by the
    command, and prepare its experiment for the MLflow UI (``trylast``)."""

    def __init__(self, safety: RunSafetyHooks) -> None:
        """Share the root found by ``safety``."""
        self._safety = safety

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """Tag the active MLflow run, if kedro-mlflow opened one."""
        root = self._safety._root
        if root is None:
            return
        import mlflow

        from mrihisto_kedro.tracking.experiment_view import prepare_experiment
        from mrihisto_kedro.tracking.kedro_command import kedro_command

        active = mlflow.active_run()
        if active is not None:
            command = kedro_command(run_params)
            mlflow.set_tags(
                {
                    ROOT_TAG: str(root),
                    HOST_TAG: f"{socket.gethostname()}:{os.getpid()}",
                    COMMAND_TAG: command,
                    "kedro_command": command,
                    "mlflow.runName": command,  # the runs table names each run by its command
                }
            )
            prepare_experiment(active.info.experiment_id)  # also when the run trains nothing


#: (long table, its markdown) pairs of the evaluation pipeline, each row naming its model
#: (table, its markdown, the registered pipeline that rebuilds it)
METRIC_TABLES = (
    ("metrics_table", "metrics_table_md", "evaluation"),
    ("baseline_table", "baseline_table_md", "evaluation"),
    ("msi_table", "msi_table_md", "evaluation"),
    ("msi_whole_table", "msi_whole_table_md", "msi_whole_specimen"),
)


class StaleTableHooks:
    """Mark tables measured on a model retrained since (``tryfirst``: under the run's lock)."""

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, catalog: Any) -> None:
        """After a finished run: mark (or unmark) every metric table."""
        mark_stale_tables(catalog)

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, catalog: Any) -> None:
        """After a failed run: a training may have finished before the failure."""
        mark_stale_tables(catalog)


def _current_digests(catalog: Any, experiments: set[str]) -> dict[str, str]:
    """``experiment -> generator digest`` from each training summary that records one (an
    evaluation entry of another experiment's model, ``msi_unet_whole``, reads that one's)."""
    out = {}
    for experiment in sorted(experiments):
        try:
            name = f"{by_name(experiment).model}.training_summary"
        except KeyError:  # a row of an experiment no longer registered: nothing to compare
            continue
        if catalog.get(name) is None or not catalog.exists(name):
            continue
        summary = catalog.load(name)
        if (
            "generator" in summary.columns
            and len(summary)
            and isinstance(summary["generator"].iloc[0], str)
        ):
            out[experiment] = summary["generator"].iloc[0]
    return out


def mark_stale_tables(catalog: Any) -> dict[str, dict[str, str]]:
    """Rewrite each metric table's markdown with (or without) its stale notice.

    Returns:
        ``markdown dataset -> {experiment: reason}`` for the tables found stale.
    """
    from mrihisto_kedro.datasets.atomic import write_text_atomically
    from mrihisto_kedro.evaluation.staleness import mark_stale, rebuild_command, stale_experiments

    found = {}
    for table_name, md_name, pipeline in METRIC_TABLES:
        if catalog.get(table_name) is None or not catalog.exists(table_name):
            continue
        path = local_dataset_path(catalog.get(md_name))
        if path is None or not path.is_file():
            continue
        table = catalog.load(table_name)
        stale = stale_experiments(table, _current_digests(catalog, set(table["experiment"])))
        nodes = {e: by_name(e).evaluate_node for e in stale}
        text = path.read_text(encoding="utf-8")
        marked = mark_stale(text, stale, nodes, pipeline)
        if marked != text:
            write_text_atomically(marked, path)
        if stale:
            found[md_name] = stale
            logger.warning(
                "%s describes retrained model(s) %s (marked STALE); rebuild with: %s",
                path,
                ", ".join(sorted(stale)),
                rebuild_command(sorted(stale), nodes, pipeline),
            )
    return found


def torchrun_rank() -> int:
    """This process's rank under ``torchrun`` (``RANK``; 0 outside torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


class WorkerRankHooks:
    """The one hook of a ``torchrun`` worker (rank > 0) in ``torchrun ... kedro run``.

    Every rank runs a whole Kedro session; rank 0's writes the outputs, holds the output
    root's lock and owns the MLflow run (docs/cluster.md). A worker's session replaces every
    output of the pipeline by an in-memory dataset, so it saves nothing: it reads its inputs
    (the tile set rank 0 or an earlier run wrote) and joins rank 0's training. ``settings.py``
    installs this hook instead of the run-safety hooks and disables kedro-mlflow's on ranks > 0.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        """Outputs of ``pipeline`` -> ``MemoryDataset`` (nothing is written by this rank)."""
        from kedro.io import MemoryDataset

        outputs = sorted(pipeline.all_outputs())
        for name in outputs:
            catalog[name] = MemoryDataset(copy_mode="assign")
        logger.info(
            "torchrun rank %d: %d outputs kept in memory (rank 0 writes them)",
            torchrun_rank(),
            len(outputs),
        )


#: Kedro's per-dataset lines (``kedro.io.data_catalog``), 276 of a demo run's 1,402 log lines
CATALOG_IO_MESSAGES = ("Loading data from %s (%s)...", "Saving data to %s (%s)...")


class CatalogIOAtDebug(logging.Filter):
    """Re-level Kedro's "Loading data from" / "Saving data to" records to DEBUG.

    Kedro logs them at INFO. The filter (on the ``kedro.io.data_catalog`` logger) makes them
    DEBUG records, shown only where that logger is set to DEBUG (``conf/logging.yml``, see
    README), so the console keeps the pipeline's own progress.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass other records untouched; demote the catalog's load/save lines."""
        if record.msg not in CATALOG_IO_MESSAGES:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


#: third-party warnings a user can do nothing about, raised at every run (the tests filter
#: the same ones in pyproject's filterwarnings): OmegaConf's register_new_resolver deprecation
#: (Kedro 1.7, kedro-mlflow 2.0.3) and MLflow's type-hint advice for kedro-mlflow's PythonModel
#: (MLflow raises it under its own ``simplefilter("once")``, so a ``warnings`` filter cannot
#: silence it; Kedro logs warnings through the ``py.warnings`` logger, where this one can)
KNOWN_WARNINGS = ("register_new_resolver() is deprecated", "Add type hints to the `predict`")


class KnownWarnings(logging.Filter):
    """Drop the ``py.warnings`` records of :data:`KNOWN_WARNINGS`; pass every other one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a known third-party warning."""
        text = record.getMessage()
        return not any(known in text for known in KNOWN_WARNINGS)


def install_log_filters() -> None:
    """:class:`CatalogIOAtDebug` on ``kedro.io.data_catalog`` and :class:`KnownWarnings` on
    ``py.warnings`` (idempotent)."""
    for name, kind in (("kedro.io.data_catalog", CatalogIOAtDebug), ("py.warnings", KnownWarnings)):
        target = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in target.filters):
            target.addFilter(kind())


def _reporting_outputs(pipeline: Any, catalog: Any) -> dict[str, Path]:
    """``{dataset: local path}`` of the pipeline's outputs under an ``08_reporting`` folder."""
    found = {}
    for name in sorted(pipeline.all_outputs()):
        path = local_dataset_path(catalog.get(name)) if catalog.get(name) is not None else None
        if path is not None and "08_reporting" in path.parts and path.exists():
            found[name] = path
    return found


class RunSummaryHooks:
    """After a finished run: log its results' paths, flags, and how to browse them."""

    def __init__(self) -> None:
        self._project: Path = Path.cwd()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Remember the project folder."""
        self._project = Path(context.project_path)

    @hook_impl(trylast=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Log the summary (:func:`~mrihisto_kedro.reporting.run_summary.summary_lines`)."""
        import mlflow

        from mrihisto_kedro.reporting.run_summary import run_summary, summary_lines

        outputs = _reporting_outputs(pipeline, catalog)
        tables = {n: catalog.load(n) for n, p in outputs.items() if p.suffix == ".csv"}
        last = mlflow.last_active_run()  # kedro-mlflow's run of this pipeline, ended by now
        summary = run_summary(
            outputs,
            tables,
            self._project,
            tracking_uri=mlflow.get_tracking_uri(),
            pipeline=", ".join(run_params.get("pipeline_names") or ["__default__"]),
            experiment_id=None if last is None else last.info.experiment_id,
        )
        for line in summary_lines(summary):
            logger.info(line)
