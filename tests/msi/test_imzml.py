"""imzML reading: the official example files (continuous and processed) and broken files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from pyimzml.ImzMLParser import ImzMLParser
from pyimzml.ImzMLWriter import ImzMLWriter

from mrihisto_kedro.msi.imzml import ImzMLMode, ImzMLReader, ImzMLReadError, open_imzml


@pytest.fixture(params=["Continuous", "Processed"])
def example(request: pytest.FixtureRequest, shared_data: Path) -> tuple[str, Path]:
    path = shared_data / "msi" / f"Example_{request.param}.imzML"
    if not path.is_file():
        pytest.skip(f"imzML example {path} not found")
    return request.param.lower(), path


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A small continuous imzML/ibd pair written by pyimzML (3x3 pixels, 500 m/z values)."""
    path = tmp_path / "example.imzML"
    rng = np.random.default_rng(0)
    mz = np.linspace(100.0, 800.0, 500)
    with ImzMLWriter(str(path), mode="continuous", mz_dtype=np.float32) as writer:
        for y in range(1, 4):
            for x in range(1, 4):
                writer.addSpectrum(mz, rng.random(500).astype(np.float32), (x, y))
    return path


def test_examples_metadata_and_spectra(example: tuple[str, Path]) -> None:
    mode, path = example
    with open_imzml(path) as reader:
        assert reader.mode is ImzMLMode(mode)
        assert reader.n_pixels == 9 == len(reader)
        assert reader.shape == (3, 3)
        assert reader.acquired_mask().all()
        # imzML x, y are 1-based and row-major here: (1,1), (2,1), (3,1), (1,2), ...
        np.testing.assert_array_equal(reader.cols, [0, 1, 2] * 3)
        np.testing.assert_array_equal(reader.rows, [0, 0, 0, 1, 1, 1, 2, 2, 2])
        np.testing.assert_array_equal(reader.n_points, [8399] * 9)
        lo, hi = reader.mz_range
        assert 100.0 <= lo < 100.2 and 799.8 < hi <= 800.0
        assert reader.pixel_size_um == (100.0, 100.0)
        assert reader.spectrum_type == "profile"

        reference = ImzMLParser(str(path))
        mz_ref, int_ref = reference.getspectrum(4)
        mz, intensity = reader.spectrum(4)
        assert mz.dtype == np.float64 and intensity.dtype == np.float64
        np.testing.assert_array_equal(mz, mz_ref)
        np.testing.assert_array_equal(intensity, int_ref)

        seen = 0
        for spectrum in reader.iter_spectra():
            assert spectrum.row == spectrum.index // 3 and spectrum.col == spectrum.index % 3
            assert spectrum.mz.shape == spectrum.intensity.shape == (8399,)
            seen += 1
        assert seen == 9
        with pytest.raises(IndexError, match="out of range"):
            reader.spectrum(9)


def test_reader_pickles_and_closes(example_copy: Path) -> None:
    reader = open_imzml(example_copy)
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.spectrum(2)[1], reader.spectrum(2)[1])
    clone.close()
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(ImzMLReadError, match="closed"):
        reader.spectrum(0)


def test_missing_ibd_names_the_file(example_copy: Path) -> None:
    example_copy.with_suffix(".ibd").unlink()
    with pytest.raises(ImzMLReadError, match=r"example\.imzML.*example\.ibd' is missing"):
        ImzMLReader(example_copy)


def test_truncated_ibd(example_copy: Path) -> None:
    ibd = example_copy.with_suffix(".ibd")
    data = ibd.read_bytes()
    ibd.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImzMLReadError, match=r"example\.imzML.*truncated"):
        open_imzml(example_copy)


def test_truncated_xml(example_copy: Path) -> None:
    text = example_copy.read_bytes()
    example_copy.write_bytes(text[: int(len(text) * 0.6)])
    with pytest.raises(ImzMLReadError, match=r"example\.imzML.*truncated or corrupt"):
        open_imzml(example_copy)


def test_corrupt_xml(example_copy: Path) -> None:
    text = example_copy.read_text(encoding="ISO-8859-1")
    example_copy.write_text(text.replace("</spectrum>", "</spectrom>", 1), encoding="ISO-8859-1")
    with pytest.raises(ImzMLReadError, match=r"example\.imzML.*truncated or corrupt"):
        open_imzml(example_copy)


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n" + bytes(200), b'<?xml version="1.0"?><html><body/></html>', b""],
    ids=["binary", "other-xml", "empty"],
)
def test_not_imzml(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.imzML"
    path.write_bytes(content)
    (tmp_path / "fake.ibd").write_bytes(bytes(64))
    with pytest.raises(ImzMLReadError, match=r"fake\.imzML"):
        open_imzml(path)


def test_mzml_without_positions_is_rejected(example_copy: Path) -> None:
    text = example_copy.read_text(encoding="ISO-8859-1")
    text = text.replace('accession="IMS:1000050"', 'accession="IMS:0000000"')
    example_copy.write_text(text, encoding="ISO-8859-1")
    with pytest.raises(ImzMLReadError, match=r"example\.imzML.*not a valid imzML"):
        open_imzml(example_copy)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImzMLReadError, match="does not exist"):
        open_imzml(tmp_path / "nothing.imzML")


def _write(path: Path, mode: str, *, sparse_coords: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    written = []
    with ImzMLWriter(str(path), mode=mode, mz_dtype=np.float64) as writer:
        for i, (x, y) in enumerate([(1, 1), (2, 1), (4, 3)] if sparse_coords else [(1, 1)]):
            n = 50 if mode == "continuous" else 40 + i
            mz = np.linspace(200.0, 300.0, n) + (0 if mode == "continuous" else i * 0.01)
            intensity = rng.random(n).astype(np.float32)
            writer.addSpectrum(mz, intensity, (x, y))
            written.append(intensity)
    return written


def test_written_file_without_pixel_size(tmp_path: Path) -> None:
    path = tmp_path / "own.imzML"
    written = _write(path, "processed", sparse_coords=True)
    with open_imzml(path) as reader:
        assert reader.mode is ImzMLMode.PROCESSED
        assert reader.pixel_size_um is None
        assert reader.shape == (3, 4)
        assert reader.acquired_mask().sum() == 3
        assert reader.acquired_mask()[2, 3]
        lo, hi = reader.mz_range
        assert lo == pytest.approx(200.0) and hi == pytest.approx(300.02)
        np.testing.assert_allclose(reader.spectrum(2)[1], written[2])
