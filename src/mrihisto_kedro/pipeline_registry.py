"""Project pipelines.

``kedro run`` (``__default__``) generates the built-in demo and runs every pipeline on it. Each
pipeline is also registered alone and reads its inputs from the catalog, so on your own data you
point ``slides``, ``mri_volumes`` and ``pairs`` at your files in ``conf/local/catalog.yml`` and
run ``kedro run --pipeline=data_engineering`` (the demo never writes there). The MSI study
(seed 003) the same way: ``msi_pairs``, ``msi_imzml``, ``msi_histology`` (``msi_control_points``,
``msi_ground_truth``) in ``conf/local/catalog.yml``, then ``kedro run --pipeline=msi_analysis``
(``msi_data_engineering`` simulates the demo first and analyses that).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from mrihisto_kedro.experiments import Task, experiments
from mrihisto_kedro.pipelines import (
    data_engineering,
    demo,
    evaluation,
    inference,
    missing_sequences,
    modelling,
    msi_data_engineering,
    msi_whole_specimen,
    registration,
)

#: demo outputs -> the raw inputs that the analysis pipelines read
DEMO_INPUTS = {
    "slides": "demo_slides",
    "mri_volumes": "demo_mri_volumes",
    "pairs": "demo_pairs",
    "registration_ground_truth": "demo_ground_truth",
    "icbm152_t1": "demo_icbm152_t1",
    "icbm152_t2": "demo_icbm152_t2",
}
#: registered alone, left out of the default run (the control-point mode has the same outputs
#: as ``registration``; ``inference`` (a slice -> a slide) and ``inference_volume`` (a volume ->
#: a volume, MRI -> MRI models) are for a user's own new MRI; ``missing_sequences``
#: (seed 002: DCGAN, style refinement, about 5 min) runs after ``modelling``; ``msi`` is seed
#: 003 alone: the simulated MSI -> H&E demo, its three trainings and their evaluation, which the
#: default run includes through ``msi_data_engineering``, ``modelling`` and ``evaluation``;
#: ``msi_analysis`` is ``msi_data_engineering`` without the demo, on the ``msi_*`` raw inputs;
#: ``msi_whole_specimen`` is paper 003's own whole-specimen design, after ``msi`` (about 90 s);
#: ``full_scale`` is the slide path at paper size: ``kedro run --env=full_scale
#: --pipeline=full_scale``, see :func:`full_scale_pipeline`)
ALTERNATIVES = (
    "full_scale",
    "demo",
    "registration_control_points",
    "inference",
    "inference_volume",
    "missing_sequences",
    "msi",
    "msi_analysis",
    "msi_whole_specimen",
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines: dict[str, Pipeline] = {
        "demo": demo.create_pipeline(),
        "data_engineering": data_engineering.create_pipeline(),
        "registration": registration.create_pipeline(),
        "registration_control_points": registration.create_control_point_pipeline(),
        "modelling": modelling.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "inference": inference.create_pipeline(),
        "inference_volume": inference.create_volume_pipeline(),
        "missing_sequences": missing_sequences.create_pipeline(),
        "msi_data_engineering": msi_data_engineering.create_pipeline(),
        "msi_analysis": msi_data_engineering.create_analysis_pipeline(),
        "msi_whole_specimen": msi_whole_specimen.create_pipeline(),
        "msi": msi_data_engineering.create_pipeline()
        + modelling.create_pipeline(task=Task.MSI_TO_HE)
        + evaluation.measurement_pipeline(task=Task.MSI_TO_HE),
    }
    pipelines["full_scale"] = full_scale_pipeline(pipelines)
    analysis = sum(
        (p for name, p in pipelines.items() if name not in ALTERNATIVES), start=Pipeline([])
    )
    pipelines["__default__"] = pipelines["demo"] + Pipeline(analysis, inputs=DEMO_INPUTS)
    return pipelines


def full_scale_pipeline(pipelines: dict[str, Pipeline]) -> Pipeline:
    """The slide data path end to end: demo, data_engineering, registration, then tiling,
    training, evaluation and whole-slide synthesis of the experiments registered with
    ``full_scale=True`` (:mod:`mrihisto_kedro.experiments`: the two tiled ones).

    With ``--env=full_scale`` (``conf/full_scale``) the demo slides are 60,000 x 45,000 px and
    every output goes under ``data/full_scale``; in the base environment it is the same path at
    demo size.
    """
    names = [e.name for e in experiments(full_scale=True)]
    models = pipelines["modelling"].only_nodes_with_namespaces(names)
    measured = pipelines["evaluation"].only_nodes_with_namespaces(names)
    analysis = pipelines["data_engineering"] + pipelines["registration"] + models + measured
    demo_inputs = {k: v for k, v in DEMO_INPUTS.items() if k in analysis.inputs()}
    return pipelines["demo"] + Pipeline(analysis, inputs=demo_inputs)
