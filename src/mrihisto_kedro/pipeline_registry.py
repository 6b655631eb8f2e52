"""Project pipelines.

Every package under ``pipelines/`` with a ``create_pipeline`` is registered under its own name
by Kedro's ``find_pipelines``: ``demo``, ``data_engineering``, ``registration``, ``modelling``,
``evaluation``, ``inference``, ``missing_sequences``, ``msi_data_engineering`` and
``msi_whole_specimen``. Each reads its inputs from the catalog, so on your own data you point
the raw inputs (``slides``, ``mri_volumes``, ``pairs``; for seed 003 ``msi_pairs``,
``msi_imzml``, ``msi_histology``, ``msi_control_points``, ``msi_ground_truth``) at your files in
``conf/local/catalog.yml`` and run ``kedro run --pipeline=data_engineering`` or
``--pipeline=msi_data_engineering`` (the demo never writes there; docs/your_data.md).

Composed here:

- ``__default__`` (``kedro run``): ``demo``, then the pipelines of :data:`IN_DEFAULT_RUN` on its
  outputs (:data:`DEMO_INPUTS` maps the raw inputs onto them);
- ``registration_control_points``: registration from landmark clicks (the same outputs as
  ``registration``);
- ``inference_volume``: an MRI -> MRI model (``t1_to_t2``) on a whole new volume;
- ``msi``: seed 003 alone: the MSI demo, ``msi_data_engineering`` on it, the three trainings
  of the ``msi_to_he`` experiments and their evaluation;
- ``full_scale``: the slide path at paper size (:func:`full_scale_pipeline`).

Left out of the default run: ``inference`` and ``inference_volume`` (for a user's own new MRI),
``missing_sequences`` (seed 002: DCGAN, style refinement, about 5 min; after ``modelling``),
``msi_whole_specimen`` (paper 003's own whole-specimen design, about 90 s; after ``msi``), and
``registration_control_points``, ``msi`` and ``full_scale`` (variants or parts of it).
"""

from __future__ import annotations

import warnings

from kedro.framework import project
from kedro.pipeline import Pipeline

from mrihisto_kedro.experiments import Task, experiments
from mrihisto_kedro.pipelines import demo, evaluation, inference, modelling, registration

#: demo outputs -> the raw inputs that the analysis pipelines read
DEMO_INPUTS = {
    "slides": "demo_slides",
    "mri_volumes": "demo_mri_volumes",
    "pairs": "demo_pairs",
    "registration_ground_truth": "demo_ground_truth",
    "icbm152_t1": "demo_icbm152_t1",
    "icbm152_t2": "demo_icbm152_t2",
    "msi_pairs": "demo_msi_ground_truth",  # the MSI demo's ground truth is also its manifest
    "msi_imzml": "demo_msi_imzml",
    "msi_histology": "demo_msi_histology",
    "msi_control_points": "demo_msi_control_points",
    "msi_ground_truth": "demo_msi_ground_truth",
}
#: the packages ``kedro run`` runs after ``demo``, on its outputs
IN_DEFAULT_RUN = (
    "data_engineering",
    "registration",
    "modelling",
    "evaluation",
    "msi_data_engineering",
)


#: Kedro's warning for a node reading or writing a dotted name outside its own namespace
DOTTED_NAME_WARNING = r"One or more dataset names contain '\.' characters"


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Every dotted dataset name is a Kedro namespace's (``<experiment>.tileset``,
    ``missing_sequences.table``: the ``{experiment}.*`` factories of the catalog), so Kedro's
    warning about dotted names, which it raises when a node reads another namespace's dataset
    (``unet_baseline`` trains on ``tiles_256.tileset``, ``combine_tables`` joins every
    ``<experiment>.evaluation_metrics``), is silenced here and only here; the registry's tests
    check that every dot is a namespace of these pipelines instead
    (``tests/test_pipeline_registry.py``, docs/kedro_viz.md).

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=DOTTED_NAME_WARNING, category=UserWarning)
        return _composed()


def _composed() -> dict[str, Pipeline]:
    """The found pipelines and the ones composed from them (see the module docstring)."""
    pipelines = found_pipelines()
    msi = (
        pipelines["msi_data_engineering"]
        + modelling.create_pipeline(task=Task.MSI_TO_HE)
        + evaluation.measurement_pipeline(task=Task.MSI_TO_HE)
    )
    pipelines |= {
        "registration_control_points": registration.create_control_point_pipeline(),
        "inference_volume": inference.create_volume_pipeline(),
        "msi": on_demo(demo.create_msi_pipeline(), msi),
        "full_scale": full_scale_pipeline(pipelines),
    }
    analysis = sum((pipelines[name] for name in IN_DEFAULT_RUN), start=Pipeline([]))
    pipelines["__default__"] = pipelines["demo"] + Pipeline(analysis, inputs=DEMO_INPUTS)
    return pipelines


def found_pipelines() -> dict[str, Pipeline]:
    """``{package name: its create_pipeline()}`` of every package under ``pipelines/``.

    A package that fails to import, or has no ``create_pipeline``, is an error here, not a
    warning with the package left out (``raise_errors=True``). Kedro (1.7) narrows
    ``find_pipelines`` to the packages named by ``kedro run --pipeline=...``; the pipelines
    composed above need them all, so that narrowing is lifted first. Called outside a Kedro
    session (a test, a notebook), the project is configured first, as ``kedro`` would.
    """
    if project.PACKAGE_NAME is None:
        project.configure_project(__package__ or "mrihisto_kedro", preserve_logging=True)
    project.pipelines.set_requested(None)
    found = project.find_pipelines(raise_errors=True)
    found.pop("__default__", None)  # find_pipelines' empty placeholder; composed above
    return found


def on_demo(demo_part: Pipeline, analysis: Pipeline) -> Pipeline:
    """``demo_part``, then ``analysis`` reading the demo's outputs in place of the raw inputs
    (:data:`DEMO_INPUTS`) that it reads."""
    inputs = {k: v for k, v in DEMO_INPUTS.items() if k in analysis.inputs()}
    return demo_part + Pipeline(analysis, inputs=inputs)


def full_scale_pipeline(pipelines: dict[str, Pipeline]) -> Pipeline:
    """The slide data path end to end: the MRI/histology demo, data_engineering, registration,
    then tiling, training, evaluation and whole-slide synthesis of the experiments registered
    with ``full_scale=True`` (:mod:`mrihisto_kedro.experiments`: the two tiled ones).

    With ``--env=full_scale`` (``conf/full_scale``) the demo slides are 60,000 x 45,000 px and
    every output goes under ``data/full_scale``; in the base environment it is the same path at
    demo size.
    """
    names = [e.name for e in experiments(full_scale=True)]
    models = pipelines["modelling"].only_nodes_with_namespaces(names)
    measured = pipelines["evaluation"].only_nodes_with_namespaces(names)
    analysis = pipelines["data_engineering"] + pipelines["registration"] + models + measured
    return on_demo(demo.create_mri_pipeline(), analysis)
