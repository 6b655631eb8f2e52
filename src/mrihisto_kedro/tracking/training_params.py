"""``<experiment>.training``: what an experiment trains and how (parameter types; no Kedro).

The experiment's name is not a parameter: it is the Kedro namespace, bound to the training
node (:mod:`mrihisto_kedro.experiments`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mrihisto_kedro.nn.checkpoint_store import ResumePolicy
from mrihisto_kedro.nn.experiment import DataParams, ModelType
from mrihisto_kedro.tracking.search import SearchParams

__all__ = ["TrainingParams"]


@dataclass(frozen=True)
class TrainingParams:
    """``<experiment>.training``: model type and options, data feeding, search, logging.

    Attributes:
        model_type: ``pix2pix``, ``cyclegan`` or ``unet_regression``.
        model: the model's config values (validated by
            :func:`~mrihisto_kedro.nn.experiment.model_config`).
        data: how tiles are fed (:class:`~mrihisto_kedro.nn.experiment.DataParams`).
        search: an optional hyper-parameter search before the final training.
        sample_every: log a sample grid every this many epochs (0: never).
        resume: ``auto`` resumes a training (or search) from its checkpoint of the same
            parameters after a crash; ``never`` trains from epoch 0 (see
            :mod:`mrihisto_kedro.nn.checkpoint_store`).
    """

    model_type: ModelType = ModelType.PIX2PIX
    model: dict[str, Any] = field(default_factory=dict)
    data: DataParams = field(default_factory=DataParams)
    search: SearchParams = field(default_factory=SearchParams)
    sample_every: int = 1
    resume: ResumePolicy = ResumePolicy.AUTO
