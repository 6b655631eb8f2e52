"""An imzML/ibd pair as bytes, and its durable writing (no Kedro).

What a generator (the MSI demo, :mod:`mrihisto_kedro.demo.msi_inputs`) hands to
:class:`~mrihisto_kedro.datasets.imzml_dataset.ImzMLDataset` to store: the two files of one
mass-spectrometry image, written so that a reader never sees one of them updated without the
other being complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mrihisto_kedro.durability.atomic import atomic_path

__all__ = ["ImzMLFiles", "write_imzml_pair"]


@dataclass(frozen=True)
class ImzMLFiles:
    """The bytes of an imzML/ibd pair, as written by a generator (e.g. the demo), to be stored.

    Attributes:
        imzml: the XML file's bytes.
        ibd: the binary file's bytes.
    """

    imzml: bytes
    ibd: bytes

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ImzMLFiles:
        """The files ``path`` (``.imzML``) and its ``.ibd``."""
        p = Path(path)
        return cls(imzml=p.read_bytes(), ibd=p.with_suffix(".ibd").read_bytes())

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Store them at ``path`` (see :func:`write_imzml_pair`)."""
        return write_imzml_pair(self.imzml, self.ibd, path)


def write_imzml_pair(imzml: bytes, ibd: bytes, path: str | os.PathLike[str]) -> Path:
    """Write an imzML/ibd pair: ``path`` and ``path`` with suffix ``.ibd``.

    Both files are written to staging names first
    (:func:`~mrihisto_kedro.durability.atomic.atomic_path`), then renamed: the ``.ibd`` first,
    the ``.imzML`` last, so a reader that finds the new ``.imzML`` finds its complete ``.ibd``.
    A failure before the renames leaves both previous files as they were.

    Returns:
        The ``.imzML`` path.
    """
    dest = Path(path)
    # atomic_path renames on exit and the inner context exits first: the .ibd is in place first
    with atomic_path(dest) as imzml_tmp, atomic_path(dest.with_suffix(".ibd")) as ibd_tmp:
        ibd_tmp.write_bytes(ibd)
        imzml_tmp.write_bytes(imzml)
    return dest
