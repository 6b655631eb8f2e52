import math

import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrihisto_kedro.metrics.image_metrics import l1, masked_l1, masked_ssim, psnr, ssim


def _reference_ssim(a, b, data_range, channel_axis=None):
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        channel_axis=channel_axis,
    )


@pytest.fixture(scope="module")
def camera_pair():
    rng = np.random.default_rng(0)
    cam = data.camera()[128:384, 128:384].astype(np.float64)
    noisy = np.clip(cam + rng.normal(0, 20, cam.shape), 0, 255)
    blurred = ndimage.gaussian_filter(cam, 2.0)
    return cam, noisy, blurred


def test_ssim_matches_skimage_on_camera(camera_pair):
    cam, noisy, blurred = camera_pair
    for other in (noisy, blurred, cam):
        ours = ssim(cam, other, data_range=255)
        ref = _reference_ssim(cam, other, 255)
        assert abs(ours - ref) < 1e-6
    assert ssim(cam, cam, data_range=255) == pytest.approx(1.0, abs=1e-12)
    assert ssim(cam, noisy, data_range=255) < 0.9


def test_ssim_matches_skimage_on_uint8_and_unit_range(camera_pair):
    cam, noisy, _ = camera_pair
    a8 = cam.astype(np.uint8)
    b8 = noisy.astype(np.uint8)
    assert abs(ssim(a8, b8, data_range=255) - _reference_ssim(a8, b8, 255)) < 1e-6
    a1, b1 = cam / 255.0, noisy / 255.0
    assert abs(ssim(a1, b1, data_range=1.0) - _reference_ssim(a1, b1, 1.0)) < 1e-6


def test_ssim_matches_skimage_rgb_channel_axis():
    rng = np.random.default_rng(1)
    img = data.astronaut()[100:260, 150:330].astype(np.float64)
    other = np.clip(
        ndimage.gaussian_filter(img, (1.2, 1.2, 0)) + rng.normal(0, 8, img.shape), 0, 255
    )
    ours = ssim(img, other, data_range=255, channel_axis=-1)
    ref = _reference_ssim(img, other, 255, channel_axis=-1)
    assert abs(ours - ref) < 1e-6
    chw = np.moveaxis(img, -1, 0)
    chw_other = np.moveaxis(other, -1, 0)
    assert abs(ssim(chw, chw_other, data_range=255, channel_axis=0) - ref) < 1e-6


def test_ssim_matches_skimage_uint16():
    rng = np.random.default_rng(2)
    base = (data.camera()[:200, :240].astype(np.float64) * 257).astype(np.uint16)
    other = np.clip(base + rng.normal(0, 3000, base.shape), 0, 65535).astype(np.uint16)
    ours = ssim(base, other, data_range=65535)
    ref = _reference_ssim(base, other, 65535)
    assert abs(ours - ref) < 1e-6


def test_wrong_data_range_is_an_error(camera_pair):
    cam, noisy, _ = camera_pair
    for fn in (ssim, psnr, l1):
        with pytest.raises(ValueError, match=r"data_range=1 is too small.*observed values span"):
            fn(cam, noisy, data_range=1)
    with pytest.raises(ValueError, match="positive"):
        ssim(cam, noisy, data_range=0)
    with pytest.raises(TypeError):
        ssim(cam, noisy)  # data_range is required


def test_shape_errors(camera_pair):
    cam, _, _ = camera_pair
    with pytest.raises(ValueError, match="same shape"):
        ssim(cam, cam[:-1], data_range=255)
    with pytest.raises(ValueError, match="same shape"):
        psnr(cam, cam[:, :-1], data_range=255)
    with pytest.raises(ValueError, match="2-D"):
        ssim(np.stack([cam, cam], -1), np.stack([cam, cam], -1), data_range=255)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(cam[:8, :8], cam[:8, :8], data_range=255)


def test_psnr_matches_skimage(camera_pair):
    cam, noisy, blurred = camera_pair
    for other in (noisy, blurred):
        ref = peak_signal_noise_ratio(cam, other, data_range=255)
        assert psnr(cam, other, data_range=255) == pytest.approx(ref, rel=1e-12)
    u16 = (cam * 257).astype(np.uint16)
    n16 = (noisy * 257).astype(np.uint16)
    ref16 = peak_signal_noise_ratio(u16, n16, data_range=65535)
    assert psnr(u16, n16, data_range=65535) == pytest.approx(ref16, rel=1e-12)
    assert psnr(cam, cam, data_range=255) == math.inf


def test_l1_hand_computation():
    a = np.array([[0.0, 10.0], [20.0, 30.0]])
    b = np.array([[5.0, 10.0], [0.0, 40.0]])
    # |diff| = 5, 0, 20, 10 -> mean 8.75 -> / 40
    assert l1(a, b, data_range=40) == pytest.approx(8.75 / 40)
    a8 = np.array([[0, 255]], dtype=np.uint8)
    b8 = np.array([[255, 0]], dtype=np.uint8)  # no uint8 wrap-around
    assert l1(a8, b8, data_range=255) == pytest.approx(1.0)


def test_masked_ssim_and_l1_match_skimage_map_inside_the_mask(camera_pair):
    cam, noisy, blurred = camera_pair
    mask = cam > 100  # the bright half of the camera scene
    for other in (noisy, blurred):
        _, full_map = structural_similarity(
            cam,
            other,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            full=True,
        )
        expected = full_map[5:-5, 5:-5][mask[5:-5, 5:-5]].mean()
        assert masked_ssim(cam, other, mask, data_range=255) == pytest.approx(expected, abs=1e-6)
        assert masked_l1(cam, other, mask, data_range=255) == pytest.approx(
            np.abs(cam - other)[mask].mean() / 255
        )
    everywhere = np.ones_like(mask)
    assert masked_ssim(cam, noisy, everywhere, data_range=255) == pytest.approx(
        ssim(cam, noisy, data_range=255), abs=1e-12
    )
    # a mask only on the 5-px border has no full window: nan, not a number from padding
    border = np.zeros_like(mask)
    border[:5] = True
    assert math.isnan(masked_ssim(cam, noisy, border, data_range=255))
    assert math.isnan(masked_l1(cam, noisy, np.zeros_like(mask), data_range=255))
    with pytest.raises(ValueError, match="mask must have"):
        masked_l1(cam, noisy, mask[:10], data_range=255)
