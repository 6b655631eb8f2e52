"""The user's raw inputs: a run that reads one that is not there stops before any work.

The catalog's "your data" entries (``slides``, ``mri_volumes``, ``pairs``, ``control_points``,
``msi_pairs``, ``msi_imzml``, ``msi_histology``, ``msi_control_points``) point at folders of
``data/01_raw`` that only the user fills (the built-in demo writes ``data/01_raw/demo*`` and the
default ``kedro run`` reads those instead). Each such entry carries, in its catalog
``metadata``, what it should hold::

    slides:
      ...
      metadata:
        mrihisto: {your_data: "whole-slide images (.svs, .tiff, .ndpi, ...) named in pairs.csv"}

:func:`missing_raw_inputs` lists the entries a pipeline reads whose file or folder does not
exist; :func:`require_raw_inputs` raises one error naming each, its path, what it should hold
and the two ways out (fill the folder, or point the entry at the data in
``conf/local/catalog.yml``). A run on the demo never meets it: its raw inputs are the demo's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mrihisto_kedro.durability.writable import local_dataset_path

__all__ = ["MissingRawInputError", "missing_raw_inputs", "require_raw_inputs", "your_data_hint"]


class MissingRawInputError(FileNotFoundError):
    """A pipeline reads a raw input of the user's that is not there."""


def your_data_hint(dataset: Any) -> str | None:
    """What a user's raw-input entry should hold (``metadata.mrihisto.your_data``), or
    ``None`` for any other dataset."""
    metadata = getattr(dataset, "metadata", None)
    if not isinstance(metadata, dict):
        return None
    ours = metadata.get("mrihisto")
    hint = ours.get("your_data") if isinstance(ours, dict) else None
    return str(hint) if hint else None


def missing_raw_inputs(inputs: Iterable[str], catalog: Any) -> dict[str, tuple[Path, str]]:
    """``name -> (path, what it should hold)`` for each raw input of the user's among
    ``inputs`` whose local file or folder does not exist (an empty folder counts as missing).

    ``catalog`` is a Kedro ``DataCatalog`` (``get(name)``); names it does not know, memory
    datasets and datasets without a local path are left out.
    """
    missing: dict[str, tuple[Path, str]] = {}
    for name in sorted(set(inputs)):
        dataset = catalog.get(name) if not name.startswith("params:") else None
        hint = your_data_hint(dataset)
        path = local_dataset_path(dataset) if hint else None
        if hint is None or path is None:
            continue
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            missing[name] = (path, hint)
    return missing


def require_raw_inputs(inputs: Iterable[str], catalog: Any) -> None:
    """Raise :class:`MissingRawInputError` naming every missing raw input of ``inputs``.

    Raises:
        MissingRawInputError: one line per missing entry, then how to give the data.
    """
    missing = missing_raw_inputs(inputs, catalog)
    if not missing:
        return
    lines = "\n".join(
        f"  - {name}: {path} does not exist or is empty; it should hold {hint}"
        for name, (path, hint) in missing.items()
    )
    raise MissingRawInputError(
        f"this run reads {len(missing)} input(s) of your own data that are not there; nothing "
        f"was run:\n{lines}\nPut your files there, or point each entry at them in "
        "conf/local/catalog.yml (docs/your_data.md). The built-in demo needs none of them: "
        "`kedro run`."
    )
