"""``TorchStateDataset``: a dict of tensors and plain values in one ``.pt`` file (no pickled code).

For model states such as :meth:`mrihisto_kedro.nn.dcgan.DCGAN.state_dict` (config, networks,
optimisers, RNG state), which ``torch.load(weights_only=True)`` reads back without unpickling
arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from mrihisto_kedro.nn.safe_load import UnsafeFileError, load_weights_only
from mrihisto_kedro.nn.training import save_checkpoint


class TorchStateDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A state dict saved atomically with ``torch.save`` and loaded with ``weights_only=True``.

    Example (``catalog.yml``)::

        missing_sequences.dcgan:
          type: mrihisto_kedro.datasets.torch_state_dataset.TorchStateDataset
          filepath: data/06_models/missing_sequences/dcgan.pt
          format: mrihisto-dcgan

    Args:
        filepath: the ``.pt`` file (local).
        format: when given, the value the dict's ``"format"`` key must have, on save and on
            load (e.g. ``mrihisto-dcgan``), so a wrong file fails naming both.
        metadata: free-form metadata for plugins (not used by the dataset).
    """

    def __init__(
        self,
        *,
        filepath: str,
        format: str | None = None,  # noqa: A002 - the catalog key users write
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = PurePosixPath(filepath)
        self._format = format
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "format": self._format}

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _check(self, data: object, what: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise DatasetError(f"{self._filepath}: {what} a dict, got {type(data).__name__}")
        if self._format is not None and data.get("format") != self._format:
            raise DatasetError(
                f"{self._filepath}: {what} a state of format {self._format!r}, got "
                f"{data.get('format')!r}"
            )
        return data

    def load(self) -> dict[str, Any]:
        """Read the state (``weights_only=True``, tensors on the CPU)."""
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"state file {path} does not exist")
        try:
            state = load_weights_only(path, "state file")
        except UnsafeFileError as exc:
            raise DatasetError(str(exc)) from None
        except Exception as exc:
            raise DatasetError(f"state file {path} cannot be read: {exc}") from exc
        return self._check(state, "expected")

    def save(self, data: dict[str, Any]) -> None:
        """Write the state atomically (temporary file, fsync, rename)."""
        save_checkpoint(self._check(data, "can only save"), Path(self._filepath))
