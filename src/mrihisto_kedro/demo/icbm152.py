"""The ICBM152 2009c T1/T2 template pair at 2 mm, shipped in ``demo/data`` with its notice.

A real, voxel-aligned T1/T2 pair (96 x 114 x 96 voxels): the data of the ``t1_to_t2``
experiment. Derived from the MNI ICBM152 2009c nonlinear symmetric templates (Gaussian sigma
0.85 mm, linear resampling to 2 mm); licence in ``COPYING`` beside the files.
"""

from __future__ import annotations

from importlib import resources

import SimpleITK as sitk

from mrihisto_kedro.imaging.sitk_io import read_image

_FOLDER = "data/icbm152_2009c_2mm"
T1_NAME = "icbm152_2009c_sym_t1_2mm.nii.gz"
T2_NAME = "icbm152_2009c_sym_t2_2mm.nii.gz"


def read_icbm152_pair() -> tuple[sitk.Image, sitk.Image, str]:
    """``(t1, t2, copying_text)`` read from the installed package (no network)."""
    root = resources.files("mrihisto_kedro.demo").joinpath(_FOLDER)
    with resources.as_file(root) as folder:
        t1 = read_image(folder / T1_NAME)
        t2 = read_image(folder / T2_NAME)
        copying = (folder / "COPYING").read_text()
    return t1, t2, copying
