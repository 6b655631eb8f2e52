"""``TorchGeneratorDataset``: a trained generator as state dict + architecture (no pickled code)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from mrihisto_kedro.nn.safe_load import UnsafeFileError, load_weights_only
from mrihisto_kedro.nn.training import save_checkpoint


class TorchGeneratorDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """The payload of :func:`mrihisto_kedro.nn.training.export_generator` in one ``.pt`` file.

    ``load`` uses ``torch.load(weights_only=True)`` (no arbitrary code is unpickled) and returns
    the dict; rebuild the network with ``mrihisto_kedro.nn.training.load_generator(payload)``.
    ``save`` is atomic.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def load(self) -> dict[str, Any]:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"generator file {path} does not exist")
        try:
            payload = load_weights_only(path, "generator file")
        except UnsafeFileError as exc:
            raise DatasetError(str(exc)) from None
        except Exception as exc:
            raise DatasetError(f"generator file {path} cannot be read: {exc}") from exc
        if not isinstance(payload, dict) or "architecture" not in payload:
            raise DatasetError(f"generator file {path} holds no exported generator")
        return payload

    def save(self, data: dict[str, Any]) -> None:
        if "architecture" not in data or "state_dict" not in data:
            raise DatasetError(f"{self._filepath}: expected export_generator()'s payload")
        save_checkpoint(data, Path(self._filepath))
