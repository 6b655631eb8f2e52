"""Generators, discriminators, norms and init: parity with the reference pix2pix/CycleGAN sizes."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from mrihisto_kedro.nn.discriminators import (
    DiscriminatorKind,
    NLayerDiscriminator,
    PixelDiscriminator,
    build_discriminator,
)
from mrihisto_kedro.nn.generators import (
    GeneratorKind,
    ResnetGenerator,
    UnetGenerator,
    build_generator,
    crop_padding,
    pad_to_multiple,
)
from mrihisto_kedro.nn.layers import InitKind, NormKind, init_weights, norm_layer, parse_option


def n_params(module: nn.Module) -> int:
    """Total number of parameters."""
    return sum(p.numel() for p in module.parameters())


def conv_params(c_in: int, c_out: int, kernel: int, bias: bool) -> int:
    """Parameters of a 2-D (transposed) convolution, counted from its shape."""
    return c_in * c_out * kernel * kernel + (c_out if bias else 0)


@pytest.fixture(scope="module")
def unet256() -> nn.Module:
    """The paper's generator: unet_256, 3->3, ngf 64, batch norm (built once per module)."""
    torch.manual_seed(0)
    return build_generator(GeneratorKind.UNET_256, 3, 3)


# --- parity: the acceptance numbers -------------------------------------------------------------


def test_unet256_parameter_count_matches_reference(unet256: nn.Module) -> None:
    assert n_params(unet256) == 54_413_955


def test_unet256_one_channel_input_parameter_count() -> None:
    assert n_params(build_generator("unet_256", 1, 3)) == 54_411_907


@pytest.mark.parametrize(("in_channels", "expected"), [(6, 2_768_705), (4, 2_766_657)])
def test_basic_patchgan_parameter_count(in_channels: int, expected: int) -> None:
    assert n_params(build_discriminator("basic", in_channels)) == expected


def resnet_reference_count(in_c: int, out_c: int, ngf: int, n_blocks: int, batch_norm: bool) -> int:
    """Reference ResnetGenerator size, counted independently from its layer list.

    Batch norm: convs before a norm have no bias, each norm has 2C parameters. Instance norm
    (affine=False): no norm parameters, those convs have a bias of C.
    """
    bias = not batch_norm

    def normed(c_in: int, c_out: int, kernel: int) -> int:
        return conv_params(c_in, c_out, kernel, bias) + (2 * c_out if batch_norm else 0)

    total = normed(in_c, ngf, 7) + normed(ngf, 2 * ngf, 3) + normed(2 * ngf, 4 * ngf, 3)
    total += n_blocks * 2 * normed(4 * ngf, 4 * ngf, 3)
    total += normed(4 * ngf, 2 * ngf, 3) + normed(2 * ngf, ngf, 3)
    return total + conv_params(ngf, out_c, 7, bias=True)


@pytest.mark.parametrize(
    ("kind", "norm", "expected"),
    [
        # 11,378,179 is the count usually quoted for resnet_9blocks: it is the CycleGAN default
        # with *instance* norm; with batch norm the 2C norm parameters replace the C conv biases.
        (GeneratorKind.RESNET_9BLOCKS, NormKind.INSTANCE, 11_378_179),
        (GeneratorKind.RESNET_9BLOCKS, NormKind.BATCH, 11_383_427),
        (GeneratorKind.RESNET_6BLOCKS, NormKind.INSTANCE, 7_837_699),
    ],
)
def test_resnet_parameter_count_matches_reference(
    kind: GeneratorKind, norm: NormKind, expected: int
) -> None:
    n_blocks = 9 if kind is GeneratorKind.RESNET_9BLOCKS else 6
    independent = resnet_reference_count(3, 3, 64, n_blocks, norm is NormKind.BATCH)
    assert independent == expected
    assert n_params(build_generator(kind, 3, 3, norm=norm, use_dropout=False)) == expected


def test_unet_parameter_count_formula_for_any_depth() -> None:
    """Each extra 8 ngf level adds down conv + BN + up conv (16 ngf -> 8 ngf) + BN."""
    ngf = 8
    base = n_params(build_generator("unet", 1, 3, ngf=ngf, num_downs=5))
    per_level = conv_params(8 * ngf, 8 * ngf, 4, False) + conv_params(16 * ngf, 8 * ngf, 4, False)
    per_level += 2 * 2 * 8 * ngf
    for depth in (6, 7, 9):
        net = build_generator("unet", 1, 3, ngf=ngf, num_downs=depth)
        assert n_params(net) == base + (depth - 5) * per_level


def test_state_dict_keys_follow_reference_nesting(unet256: nn.Module) -> None:
    keys = list(unet256.state_dict())
    assert keys[0] == "model.model.0.weight"  # outermost down conv
    assert "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.1.weight" in keys
    d_keys = list(build_discriminator("basic", 6).state_dict())
    assert d_keys[:2] == ["model.0.weight", "model.0.bias"]
    assert "model.11.weight" in d_keys  # last conv of the 3-layer PatchGAN
    p_keys = list(build_discriminator("pixel", 6).state_dict())
    assert p_keys[0] == "net.0.weight"


# --- architecture details ------------------------------------------------------------------------


def test_dropout_in_three_innermost_blocks_of_unet256(unet256: nn.Module) -> None:
    dropouts = [m for m in unet256.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3
    assert all(m.p == 0.5 for m in dropouts)


def test_dropout_count_other_depths_and_switch() -> None:
    def count(net: nn.Module) -> int:
        return sum(isinstance(m, nn.Dropout) for m in net.modules())

    assert count(build_generator("unet_128", 3, 3, ngf=4)) == 2
    assert count(build_generator("unet", 3, 3, ngf=4, num_downs=5)) == 0
    assert count(build_generator("unet_256", 3, 3, ngf=4, use_dropout=False)) == 0
    assert count(build_generator("resnet_6blocks", 3, 3, ngf=4, use_dropout=True)) == 6


@pytest.mark.parametrize(
    ("norm", "norm_type", "bias"),
    [
        (NormKind.BATCH, nn.BatchNorm2d, False),
        (NormKind.INSTANCE, nn.InstanceNorm2d, True),
        (NormKind.NONE, nn.Identity, True),
    ],
)
def test_norm_kind_sets_layers_and_conv_bias(
    norm: NormKind, norm_type: type[nn.Module], bias: bool
) -> None:
    net = build_generator("unet", 3, 3, ngf=4, num_downs=5, norm=norm)
    down_convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all((m.bias is not None) == bias for m in down_convs)
    assert not any(
        isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))
        for m in net.modules()
        if not isinstance(m, norm_type)
    )
    d = build_discriminator("basic", 6, ndf=4, norm=norm)
    inner = [m for m in d.modules() if isinstance(m, nn.Conv2d)][1:-1]
    assert all((m.bias is not None) == bias for m in inner)


def test_norm_layer_configuration() -> None:
    batch = norm_layer("batch", 8)
    assert isinstance(batch, nn.BatchNorm2d)
    assert batch.affine and batch.track_running_stats
    inst = norm_layer(NormKind.INSTANCE, 8)
    assert isinstance(inst, nn.InstanceNorm2d)
    assert not inst.affine and not inst.track_running_stats
    assert isinstance(norm_layer("none", 8), nn.Identity)
    with pytest.raises(ValueError, match="'norm' = 'group' is not one of: batch, instance, none"):
        norm_layer("group", 8)


def test_unet256_forward_at_256(unet256: nn.Module) -> None:
    unet256.eval()
    with torch.no_grad():
        y = unet256(torch.randn(1, 3, 256, 256))
    assert y.shape == (1, 3, 256, 256)
    assert y.abs().max() <= 1.0  # tanh


def test_unet_any_size_input_gives_same_size_output() -> None:
    net = build_generator("unet", 1, 3, ngf=8, num_downs=5)
    y = net(torch.randn(1, 1, 100, 70))
    assert y.shape == (1, 3, 100, 70)
    y.mean().backward()  # gradients flow through pad and crop
    assert net.model.model[0].weight.grad is not None


@pytest.mark.parametrize("padding", ["reflect", "replicate", "zero"])
def test_deep_unet_pads_images_smaller_than_its_multiple(padding: str) -> None:
    net = build_generator("unet_256", 2, 1, ngf=2, input_padding=padding).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 2, 37, 5)).shape == (2, 1, 37, 5)
        assert net(torch.randn(1, 2, 1, 1)).shape == (1, 1, 1, 1)


def test_exact_multiple_sizes_are_not_padded() -> None:
    x = torch.randn(1, 3, 64, 32)
    padded, pads = pad_to_multiple(x, 32)
    assert padded is x and pads == (0, 0, 0, 0)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "zero"])
def test_pad_then_crop_round_trip(mode: str) -> None:
    x = torch.randn(2, 3, 10, 7)
    padded, pads = pad_to_multiple(x, 32, mode)
    assert padded.shape == (2, 3, 32, 32)
    assert pads == (12, 13, 11, 11)
    torch.testing.assert_close(crop_padding(padded, pads), x, rtol=0, atol=0)


def test_reflect_padding_mirrors_the_image() -> None:
    x = torch.arange(3.0).view(1, 1, 1, 3)  # width 3 -> 8: 2 left, 3 right
    padded, _ = pad_to_multiple(x, 8, "reflect")
    assert padded[0, 0, 0].tolist() == [2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 1.0]


def test_resnet_generator_any_size_and_reference_sizes() -> None:
    net = ResnetGenerator(1, 3, ngf=4, n_blocks=2)
    assert net(torch.randn(2, 1, 33, 17)).shape == (2, 3, 33, 17)
    assert net(torch.randn(1, 1, 32, 16)).shape == (1, 3, 32, 16)


def test_resize_conv_upsampling_removes_the_transposed_checkerboard() -> None:
    """Untrained, on a smooth input: the reference's 3x3/2 transposed convolutions put a third
    or more of the output's power at the Nyquist frequency (measured 0.35-0.54 over 3 seeds),
    nearest 2x + 3x3 conv about 0.02; same parameter count, same state_dict keys."""
    import numpy as np
    from scipy import ndimage

    from mrihisto_kedro.metrics.spectral import nyquist_fraction

    rng = np.random.default_rng(0)
    smooth = [ndimage.gaussian_filter(rng.random((64, 64)), 4, mode="wrap") for _ in range(4)]
    x = torch.from_numpy(np.stack(smooth)[:, None]).float()
    x = (x - x.mean()) / x.std() * 0.5
    nets = {}
    for up in ("transpose", "resize_conv"):
        for seed in range(3):
            nets[up, seed] = build_generator(
                "resnet_6blocks",
                1,
                1,
                ngf=8,
                use_dropout=False,
                norm="instance",
                upsampling=up,
                generator=torch.Generator().manual_seed(seed),
            ).eval()
    with torch.no_grad():
        power = {k: nyquist_fraction(net(x)[:, 0].numpy()).mean() for k, net in nets.items()}
    for seed in range(3):
        assert power["transpose", seed] > 0.2 and power["resize_conv", seed] < 0.05, power
    transpose, resize = nets["transpose", 0], nets["resize_conv", 0]
    assert n_params(transpose) == n_params(resize)
    # the resize-conv is one Sequential at the transposed convolution's index: its conv is ".2"
    renamed = [re.sub(r"^(model\.\d+)\.2\.", r"\1.", k) for k in resize.state_dict()]
    assert renamed == list(transpose.state_dict())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resize.modules())
    with pytest.raises(ValueError, match="ResNet generators only"):
        build_generator("unet", 1, 1, ngf=4, num_downs=5, upsampling="resize_conv")


def test_final_activation_options() -> None:
    x = torch.randn(1, 1, 32, 32) * 10
    sig = build_generator("unet", 1, 1, ngf=4, num_downs=5, final_activation="sigmoid", init_gain=1)
    y = sig.eval()(x)
    assert y.min() >= 0.0 and y.max() <= 1.0
    raw = build_generator("unet", 1, 1, ngf=4, num_downs=5, final_activation="none", init_gain=1)
    assert raw.eval()(x).abs().max() > 1.0
    assert isinstance(raw.model.model[-1], nn.Identity)


def test_wrong_channels_fail_clearly() -> None:
    net = UnetGenerator(1, 3, num_downs=5, ngf=4)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        net(torch.randn(1, 3, 32, 32))


def test_build_generator_option_errors() -> None:
    with pytest.raises(ValueError, match="needs num_downs"):
        build_generator("unet", 1, 3)
    with pytest.raises(ValueError, match=">= 5"):
        build_generator("unet", 1, 3, num_downs=4)
    with pytest.raises(ValueError, match="use kind 'unet'"):
        build_generator("unet_256", 1, 3, ngf=4, num_downs=6)
    with pytest.raises(ValueError, match="U-Net generators only"):
        build_generator("resnet_6blocks", 1, 3, num_downs=8)
    with pytest.raises(ValueError, match="'generator kind' = 'unet_512' is not one of"):
        build_generator("unet_512", 1, 3)
    assert n_params(build_generator("unet_256", 1, 3, ngf=4, num_downs=8)) > 0


def test_patchgan_output_shapes() -> None:
    d = build_discriminator(DiscriminatorKind.BASIC, 4, ndf=8)
    assert d(torch.randn(2, 4, 256, 256)).shape == (2, 1, 30, 30)
    d5 = build_discriminator("n_layers", 4, ndf=4, n_layers=5)
    assert isinstance(d5, NLayerDiscriminator)
    assert d5(torch.randn(1, 4, 128, 128)).shape == (1, 1, 2, 2)
    assert n_params(build_discriminator("basic", 4, ndf=8, n_layers=5)) == n_params(
        NLayerDiscriminator(4, ndf=8, n_layers=3)
    )  # basic ignores n_layers, as in the reference


def test_pixel_discriminator() -> None:
    d = build_discriminator("pixel", 6)
    assert isinstance(d, PixelDiscriminator)
    # conv 6->64 (+bias), conv 64->128 (no bias), BN 128, conv 128->1 (no bias)
    assert n_params(d) == 6 * 64 + 64 + 64 * 128 + 2 * 128 + 128
    assert d(torch.randn(2, 6, 9, 7)).shape == (2, 1, 9, 7)


# --- initialisation ------------------------------------------------------------------------------


def test_normal_init_statistics(unet256: nn.Module) -> None:
    weights = torch.cat([m.weight.flatten() for m in unet256.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    for m in unet256.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    bn_w = torch.cat([m.weight for m in unet256.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn_w.mean().item() == pytest.approx(1.0, abs=0.005)
    assert bn_w.std().item() == pytest.approx(0.02, rel=0.1)
    bn_b = torch.cat([m.bias for m in unet256.modules() if isinstance(m, nn.BatchNorm2d)])
    assert torch.count_nonzero(bn_b) == 0


@pytest.mark.parametrize("kind", list(InitKind))
def test_init_kinds_and_reproducibility(kind: InitKind) -> None:
    def build(seed: int) -> nn.Module:
        return build_discriminator(
            "basic", 3, ndf=4, init=kind, generator=torch.Generator().manual_seed(seed)
        )

    a, b, c = build(1), build(1), build(2)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        if pa.dim() == 4:
            assert not torch.equal(pa, pc)
    if kind is InitKind.ORTHOGONAL:
        w = a.model[0].weight.flatten(1)  # (4, 48): rows orthogonal with norm = gain
        torch.testing.assert_close(w @ w.T, torch.eye(4) * 0.02**2, atol=1e-6, rtol=1e-4)


def test_init_weights_returns_net_and_validates() -> None:
    lin = nn.Linear(3, 2)
    assert init_weights(lin, "xavier") is lin
    assert torch.count_nonzero(lin.bias) == 0
    with pytest.raises(ValueError, match="'init' = 'uniform' is not one of"):
        init_weights(lin, "uniform")
    with pytest.raises(ValueError, match="gain"):
        init_weights(lin, "normal", gain=0)


def test_parse_option_accepts_members_and_strings() -> None:
    assert parse_option(NormKind, NormKind.BATCH, name="norm") is NormKind.BATCH
    assert parse_option(NormKind, "Instance", name="norm") is NormKind.INSTANCE
