"""Every parameter of the nodes about to run, checked before the first node (issue 15).

Each node parses its parameters itself, so a typo used to surface only when that node ran:
``slide_mask.method=foo`` after downsampling, ``search.metric=val_L2`` as a bare ``KeyError``
after a trial had trained. :func:`check_pipeline_parameters` parses them all up front, the
way the nodes will (the same dataclasses, plus what only training used to find out: the
model's configuration, every search choice, the search metric), and reports every problem
with its full dotted key (``tiles_256.training.model.lamda_L1``) in one error.
``hooks.RunSafetyHooks`` calls it from ``before_pipeline_run``.

A value given on the command line (``--params``) for a model key that the experiment's search
also searches would be replaced by the search's best choice without a word (issue 16: a
``gan_mode=lsgan`` override trained whatever the trials chose); :func:`search_conflicts`
reports each such key with the two ways out (fix it for the search with a one-choice space,
or train without a search), and the run stops before any work.

:data:`NODE_PARAMETERS` maps each node function to its parameter arguments and the check of
each; a new node that takes parameters adds a line here (``test_parameter_checks`` fails for
a registered pipeline's node whose ``params:`` inputs have no check).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kedro.pipeline import Pipeline

from mrihisto_kedro.demo.generate import DemoParams
from mrihisto_kedro.evaluation.experiment import EvaluationParams
from mrihisto_kedro.evaluation.synthesis import SynthesisParams
from mrihisto_kedro.imaging.tiling_params import PairTilingParams, VolumeTilingParams
from mrihisto_kedro.manifest import SplitFractions
from mrihisto_kedro.msi.params import (
    MsiRegistrationParams,
    MsiTilingParams,
    ReductionParams,
    SpectraParams,
)
from mrihisto_kedro.msi.whole_views import MsiWholeViewParams
from mrihisto_kedro.params import ParameterError, parse_params
from mrihisto_kedro.tracking.training_params import TrainingParams

from .data_engineering import nodes as de
from .demo import nodes as demo
from .evaluation import nodes as ev
from .inference import nodes as inf
from .missing_sequences import nodes as ms
from .modelling import nodes as mo
from .msi_data_engineering import nodes as msi
from .registration import nodes as reg

__all__ = [
    "NODE_PARAMETERS",
    "ParsedAs",
    "check_pipeline_parameters",
    "search_conflicts",
]


@dataclass(frozen=True)
class ParsedAs:
    """A check that parses the value as ``params_class`` (errors name the dotted key).

    Attributes:
        params_class: the parameter dataclass the node parses the value as.
        searched: the value is an experiment's ``training``: also report command-line model
            values that its search would replace (:func:`search_conflicts`).
    """

    params_class: type
    searched: bool = False

    def __call__(self, values: Any, key: str) -> None:
        parse_params(self.params_class, values, key)


_DE = ParsedAs(de.DataEngineeringParams)
_REG = ParsedAs(reg.RegistrationStudyParams)

NODE_PARAMETERS: dict[Callable[..., Any], dict[str, ParsedAs]] = {
    demo.make_demo: {"parameters": ParsedAs(DemoParams)},
    demo.make_msi_demo: {"parameters": ParsedAs(demo.MsiDemoNodeParams)},
    de.validate_manifest: {"parameters": _DE},
    de.split_by_specimen: {"parameters": _DE},
    de.downsample_slides: {"parameters": _DE},
    de.extract_mri_slices: {"parameters": _DE},
    de.tissue_masks: {"parameters": _DE},
    de.qc_figures: {"parameters": _DE},
    reg.register_pairs: {"parameters": _REG},
    reg.register_pairs_from_control_points: {"parameters": _REG},
    mo.build_pair_tiles: {"tiling": ParsedAs(PairTilingParams)},
    mo.build_volume_tiles: {"tiling": ParsedAs(VolumeTilingParams)},
    # the dataclass checks the model's config and every choice of the search
    mo.train_experiment: {"training": ParsedAs(TrainingParams, searched=True)},
    ev.evaluate_experiment: {"evaluation": ParsedAs(EvaluationParams)},
    ev.synthesise_slides: {"synthesis": ParsedAs(SynthesisParams)},
    inf.synthesise_new_slide: {"inference": ParsedAs(inf.InferenceParams)},
    inf.translate_new_volume: {"inference_volume": ParsedAs(inf.VolumeInferenceParams)},
    ms.train_sequence_dcgan_node: {"dcgan": ParsedAs(ms.DCGANTrainingParams)},
    ms.synthesise_sequences: {"synthesis": ParsedAs(ms.SynthesisParams)},
    ms.sequence_table_node: {
        "table": ParsedAs(ms.SequenceTableParams),
        "synthesis": ParsedAs(ms.SynthesisParams),
    },
    msi.assign_msi_splits: {"parameters": ParsedAs(SplitFractions)},
    msi.build_peak_stacks: {"parameters": ParsedAs(SpectraParams)},
    msi.reduce_peak_stacks: {"parameters": ParsedAs(ReductionParams)},
    msi.register_msi_pairs: {"parameters": ParsedAs(MsiRegistrationParams)},
    msi.build_msi_tiles: {"parameters": ParsedAs(MsiTilingParams)},
    msi.build_msi_whole_views: {"parameters": ParsedAs(MsiWholeViewParams)},
}


def _unwrapped(func: Callable[..., Any]) -> Callable[..., Any]:
    """The function behind ``functools.partial`` / ``update_wrapper`` layers."""
    while hasattr(func, "func"):
        func = func.func
    return func


def parameter_inputs(pipeline: Pipeline) -> Iterable[tuple[str, str, str, ParsedAs | None]]:
    """``(node name, argument, params dataset, check)`` of every ``params:`` input."""
    for node in pipeline.nodes:
        func = _unwrapped(node.func)
        arguments = list(inspect.signature(func).parameters)
        checks = NODE_PARAMETERS.get(func, {})
        for argument, dataset in zip(arguments, node.inputs, strict=False):
            if dataset.startswith("params:"):
                yield node.name, argument, dataset, checks.get(argument)


def subtree(tree: Any, dotted: str) -> Any:
    """The value at ``dotted`` in nested mappings (``None`` where a key is missing)."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def search_conflicts(key: str, training: Any, runtime_params: dict[str, Any] | None) -> list[str]:
    """Model keys of ``<key>.model`` set on the command line that ``<key>.search`` searches.

    Args:
        key: dotted key of the training parameters, e.g. ``"tiles_256.training"``.
        training: their values (as the node receives them).
        runtime_params: Kedro's ``--params``, nested (``{"tiles_256": {"training": ...}}``).

    Returns:
        One message per conflict, naming both keys, the value and how to resolve it.
    """
    given = subtree(runtime_params, f"{key}.model")
    search = training.get("search") if isinstance(training, dict) else None
    if not isinstance(given, dict) or not isinstance(search, dict):
        return []
    if not search.get("n_trials") or not isinstance(search.get("space"), dict):
        return []
    messages = []
    for name, choices in search["space"].items():
        if name in given and list(choices or []) != [given[name]]:
            value = given[name]
            messages.append(
                f"{key}.model.{name}={value!r} is given on the command line, but "
                f"{key}.search.space.{name} searches {list(choices)} and the search's best "
                f"choice would replace it: keep it fixed during the search with "
                f'--params="{key}.search.space.{name}=[{value}]", or train without a search '
                f'with --params="{key}.search.n_trials=0"'
            )
    return messages


def _problem(
    dataset: str, check: ParsedAs, values: Any, runtime_params: dict[str, Any] | None
) -> str | None:
    """What is wrong with one ``params:`` dataset (``None``: nothing)."""
    key = dataset.removeprefix("params:")
    try:
        check(values, key)
    except (ParameterError, ValueError, TypeError) as exc:
        return str(exc)
    if check.searched and (conflicts := search_conflicts(key, values, runtime_params)):
        return "\n  - ".join(conflicts)
    return None


def check_pipeline_parameters(
    pipeline: Pipeline,
    load: Callable[[str], Any],
    runtime_params: dict[str, Any] | None = None,
) -> None:
    """Check every parameter input of ``pipeline``'s nodes; raise one error listing all.

    Args:
        pipeline: the (filtered) pipeline about to run.
        load: reads a ``params:...`` dataset (``catalog.load``).
        runtime_params: the run's ``--params`` (nested), for :func:`search_conflicts`.

    Raises:
        ParameterError: one line per bad parameter, each naming its full dotted key.
    """
    problems: dict[str, str] = {}
    for _, _, dataset, check in parameter_inputs(pipeline):
        if check is not None and dataset not in problems:
            problem = _problem(dataset, check, load(dataset), runtime_params)
            if problem:
                problems[dataset] = problem
    if problems:
        lines = "\n".join(f"  - {message}" for message in dict.fromkeys(problems.values()))
        raise ParameterError(
            f"{len(problems)} parameter group(s) are invalid; nothing was run:\n{lines}"
        )
