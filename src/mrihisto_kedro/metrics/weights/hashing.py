"""SHA-256 of bytes and files, and verification against a pinned hash before anything is loaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["HashMismatch", "cached_sha256_file", "sha256_bytes", "sha256_file", "verify_sha256"]


class HashMismatch(ValueError):
    """A file's SHA-256 differs from the pinned value; its content was not deserialised."""


def sha256_bytes(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_FILE_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def cached_sha256_file(path: Path) -> str:
    """:func:`sha256_file`, memoised on (resolved path, size in bytes, mtime in ns) in-process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASH_CACHE:
        _FILE_HASH_CACHE[key] = sha256_file(path)
    return _FILE_HASH_CACHE[key]


def verify_sha256(data: bytes, expected: str, what: str) -> None:
    """Raise :class:`HashMismatch` unless ``sha256(data)`` is (or starts with) ``expected``.

    Args:
        data: the raw bytes, not yet deserialised.
        expected: full 64-hex SHA-256, or a hex prefix (torch-hub file-name convention) of at
            least 8 hex digits.
        what: name of the data, for the message.

    Raises:
        HashMismatch: the hash differs.
        ValueError: ``expected`` is shorter than 8 hex digits.
    """
    if len(expected) < 8:
        raise ValueError(f"{what}: refusing to verify against a hash prefix shorter than 8")
    actual = sha256_bytes(data)
    if not actual.startswith(expected.lower()):
        raise HashMismatch(
            f"{what}: SHA-256 {actual} does not match the pinned {expected}; refusing to load it"
        )
