"""Reading ``.pt`` files that may come from elsewhere: tensors and plain data only.

Every file this project reads with ``torch.load`` goes through :func:`load_weights_only`
(``weights_only=True``: torch's restricted unpickler, which refuses to build arbitrary Python
objects, i.e. to run code). When torch refuses a file it suggests retrying with
``weights_only=False``, which would run whatever the file contains; the project replaces that
advice with its own sentence, naming the file, and never retries.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnsafeFileError", "load_versioned", "load_weights_only"]


class UnsafeFileError(ValueError):
    """A ``.pt`` file holds objects beyond tensors and plain data (refused unread)."""


def load_weights_only(path: str | os.PathLike[str], what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, refusing anything else by name.

    Args:
        path: the ``.pt`` file.
        what: what the file should be (``generator file``, ``checkpoint``), for the message.

    Raises:
        UnsafeFileError: the file needs a full unpickler (it may run code when loaded).
    """
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).split("\n", 1)[0]
        for advice in ("weights_only=False", "Weights only load failed"):
            first = first.replace(advice, "")
        raise UnsafeFileError(
            f"{what} {path} holds Python objects other than tensors and plain data, which "
            "could run code when loaded; this project reads only weights-only files and will "
            "not unpickle it. Export the model with mrihisto_kedro.nn.training.export_generator "
            "(or torch.save a state_dict) from a source you trust"
        ) from None


def load_versioned(
    path: str | os.PathLike[str], what: str, file_format: str, version: int
) -> dict[str, Any]:
    """:func:`load_weights_only` of a dict that names its ``format`` and ``format_version``.

    Args:
        path: the ``.pt`` file.
        what: what the file should be (``checkpoint``, ``DCGAN checkpoint``), for the messages.
        file_format: the ``format`` value the file must hold.
        version: the ``format_version`` value the file must hold.

    Raises:
        ValueError: the file is not a dict of that format, or of another version.
    """
    payload = load_weights_only(path, what)
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ValueError(f"{path}: not a {file_format} file")
    if payload.get("format_version") != version:
        raise ValueError(
            f"{path}: {what} format version {payload.get('format_version')!r} is not "
            f"supported (expected {version})"
        )
    return payload
