"""``<experiment>.training``: what an experiment trains and how (parameter types; no Kedro).

The experiment's name is not a parameter: it is the Kedro namespace, bound to the training
node (:mod:`mrihisto_kedro.experiments`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from mrihisto_kedro.nn.checkpoint_store import ResumePolicy
from mrihisto_kedro.nn.experiment import DataParams, ModelType, model_config
from mrihisto_kedro.params import ParameterError, Params, Range
from mrihisto_kedro.tracking.search import SearchParams, apply_choices

__all__ = ["TrainingParams"]


@dataclass(frozen=True)
class TrainingParams(Params):
    """``<experiment>.training``: model type and options, data feeding, search, logging.

    Attributes:
        model_type: ``pix2pix``, ``cyclegan`` or ``unet_regression``.
        model: the model's config values, checked here against the config of ``model_type``
            (:func:`~mrihisto_kedro.nn.experiment.model_config`), as is every choice of the
            search, so a bad value stops the run at its start with its dotted key.
        data: how tiles are fed (:class:`~mrihisto_kedro.nn.experiment.DataParams`).
        search: an optional hyper-parameter search before the final training.
        sample_every: log a sample grid every this many epochs (0: never).
        resume: ``auto`` resumes a training (or search) from its checkpoint of the same
            parameters after a crash; ``never`` trains from epoch 0 (see
            :mod:`mrihisto_kedro.nn.checkpoint_store`).
        processes: train data-parallel in this many processes on this machine (the Kedro
            process is rank 0 and starts the others; :mod:`mrihisto_kedro.nn.distributed`):
            the global batch is ``data.batch_size * processes``; on CUDA one GPU per process.
            Ignored under ``torchrun``, which sets the number of processes itself
            (``docs/cluster.md``).
    """

    model_type: ModelType = ModelType.PIX2PIX
    model: dict[str, Any] = field(default_factory=dict)
    data: DataParams = field(default_factory=DataParams)
    search: SearchParams = field(default_factory=SearchParams)
    sample_every: Annotated[int, Range(ge=0)] = 1
    resume: ResumePolicy = ResumePolicy.AUTO
    processes: Annotated[int, Range(ge=1)] = 1

    def validate(self) -> None:
        """The model's config, and the config of every choice the search would train."""
        model_config(self.model_type, self.model, "model")
        if not self.search.n_trials:
            return
        for name, choices in self.search.space.items():
            for choice in choices:
                trial = apply_choices(self.model, {name: choice}, self.search.trial_overrides)
                try:
                    model_config(self.model_type, trial)
                except ParameterError as exc:
                    reason = f"choice {choice!r}: {exc.key or 'model'} {exc.reason}"
                    raise ParameterError(reason, f"search.space.{name}") from None
