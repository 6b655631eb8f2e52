"""Tests for ``mrihisto_kedro.nn.style_transfer``: Gram/style/content losses by hand, the VGG
trunk against torchvision (random and real weights), and the refinement's objective."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from torch import nn

from mrihisto_kedro.metrics.weights import (
    WeightsUnavailable,
    load_state_dict,
    locate_weights,
    torchvision_features_skeleton,
)
from mrihisto_kedro.nn.style_transfer import (
    VGG_CONFIGS,
    OptimizerKind,
    PoolingKind,
    StyleTransferParams,
    VGGFeatures,
    content_loss,
    gram_matrix,
    refine,
    style_loss,
    vgg_features,
    vgg_layer_names,
    vgg_trunk,
)
from mrihisto_kedro.params import ParameterError, parse_params

VGG16_FOUND = locate_weights("vgg16")
needs_vgg16 = pytest.mark.skipif(
    not VGG16_FOUND.found,
    reason=f"VGG16 ImageNet weights not available offline: {VGG16_FOUND.reason}",
)

#: VGG16's shape with 1/16 of its channels: same layer names, ~10k parameters.
TINY_CFG = tuple(c if c == "M" else int(c) // 16 for c in VGG_CONFIGS["vgg16"])
LAYERS = ("relu1_1", "relu1_2", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


def _tiny(pooling: str = "avg", seed: int = 0) -> VGGFeatures:
    return vgg_trunk(TINY_CFG, pooling, generator=torch.Generator().manual_seed(seed))


def _images(n: int, channels: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")


@pytest.fixture(scope="module")
def torchvision_vgg16() -> nn.Sequential:
    """torchvision's ``vgg16(weights=None).features`` (random init, no download; the classifier
    is built on the meta device only, see ``torchvision_features_skeleton``)."""
    torch.manual_seed(0)
    return torchvision_features_skeleton("vgg16").eval()


# ----------------------------------------------------------------------------------------------
# losses against hand computations


def test_gram_matrix_by_hand() -> None:
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = gram_matrix(f)
    assert g.shape == (2, 3, 3)
    n, c, h, w = f.shape
    for b, i, j in itertools.product(range(n), range(c), range(c)):
        total = sum(float(f[b, i, y, x] * f[b, j, y, x]) for y in range(h) for x in range(w))
        assert float(g[b, i, j]) == pytest.approx(total / (c * h * w), rel=1e-12)
    assert torch.allclose(g, torch.einsum("nchw,ndhw->ncd", f, f) / (c * h * w))
    # size-independent: tiling the map 2x2 leaves the normalised Gram unchanged
    assert torch.allclose(gram_matrix(f.repeat(1, 1, 2, 2)), g)


def test_style_and_content_losses_by_hand() -> None:
    gen = torch.Generator().manual_seed(2)
    feats = {
        "a": torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=gen),
        "b": torch.randn(2, 5, 2, 3, dtype=torch.float64, generator=gen),
    }
    style_feats = {
        "a": torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=gen),  # any spatial size
        "b": torch.randn(2, 5, 2, 2, dtype=torch.float64, generator=gen),
    }
    content = {
        k: torch.randn(v.shape, dtype=torch.float64, generator=gen) for k, v in feats.items()
    }

    def gram_by_hand(t: torch.Tensor, b: int) -> list[list[float]]:
        c, h, w = t.shape[1:]
        return [
            [
                sum(float(t[b, i, y, x] * t[b, j, y, x]) for y in range(h) for x in range(w))
                / (c * h * w)
                for j in range(c)
            ]
            for i in range(c)
        ]

    def style_by_hand(name: str) -> float:
        per_image = []
        for b in range(2):
            g, a = gram_by_hand(feats[name], b), gram_by_hand(style_feats[name], b)
            per_image.append(
                sum(
                    (gi - ai) ** 2
                    for rg, ra in zip(g, a, strict=True)
                    for gi, ai in zip(rg, ra, strict=True)
                )
            )
        return sum(per_image) / 2

    grams = {k: gram_matrix(v) for k, v in style_feats.items()}
    expected = 0.25 * style_by_hand("a") + 0.75 * style_by_hand("b")
    got = style_loss(feats, grams, ["a", "b"], [0.25, 0.75])
    assert float(got) == pytest.approx(expected, rel=1e-10)
    equal = style_loss(feats, grams, ["a", "b"])
    assert float(equal) == pytest.approx(0.5 * style_by_hand("a") + 0.5 * style_by_hand("b"))
    # one image: the per-layer term is ||G - A||_F^2 with G = F F^T / (C H W)
    f, s = feats["a"][0], style_feats["a"][0]
    g_raw = f.reshape(3, -1) @ f.reshape(3, -1).T
    a_raw = s.reshape(3, -1) @ s.reshape(3, -1).T
    one = style_loss({"a": feats["a"][:1]}, {"a": grams["a"][:1]}, ["a"])
    assert float(one) == pytest.approx(float(((g_raw / 48 - a_raw / 108) ** 2).sum()))
    # with maps of one size it is 4 E_l of Gatys et al.: sum (G_raw - A_raw)^2 / (4 C^2 M^2)
    f2 = style_feats["a"][1, :, :4, :4]
    a2_raw = f2.reshape(3, -1) @ f2.reshape(3, -1).T
    e_gatys = ((g_raw - a2_raw) ** 2).sum() / (4 * 3**2 * 16**2)
    same = style_loss({"a": feats["a"][:1]}, {"a": gram_matrix(f2[None])}, ["a"])
    assert float(same) == pytest.approx(4 * float(e_gatys))

    c_expected = 0.0
    for name, w in (("a", 0.5), ("b", 0.5)):
        diff = feats[name] - content[name]
        c_expected += w * sum(float(d) ** 2 for d in diff.reshape(-1)) / diff.numel()
    assert float(content_loss(feats, content, ["a", "b"])) == pytest.approx(c_expected)


# ----------------------------------------------------------------------------------------------
# the trunk


def test_layer_names_map_vgg16(torchvision_vgg16: nn.Sequential) -> None:
    names = vgg_layer_names("vgg16")
    assert len(names) == len(torchvision_vgg16) == 31
    assert names["relu1_1"] == 1 and names["relu2_1"] == 6 and names["relu3_1"] == 11
    assert names["relu4_1"] == 18 and names["relu4_2"] == 20 and names["relu5_1"] == 25
    assert names["pool5"] == 30
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, index in names.items():
        assert isinstance(torchvision_vgg16[index], kinds[name[:4]]), name
    vgg19 = vgg_layer_names("vgg19")
    assert vgg19["relu4_2"] == 22 and vgg19["relu5_1"] == 29 and vgg19["pool5"] == 36


def _same_trunk_outputs(ours: VGGFeatures, reference: nn.Sequential, x: torch.Tensor) -> None:
    """Every named activation of ``ours`` equals the reference's prefix on the same input."""
    names = list(ours.layer_names)
    with torch.no_grad():
        got = ours(x, names)
        h = ours.normalize(x)
        for index, module in enumerate(reference):
            h = module(h)
            for name in (n for n in names if ours.layer_names[n] == index):
                torch.testing.assert_close(got[name], h, rtol=0, atol=0, msg=name)


def test_trunk_matches_torchvision_with_random_weights(torchvision_vgg16: nn.Sequential) -> None:
    """Our VGG16 (max pooling) is torchvision's ``features``: same keys, shapes and outputs."""
    ours = vgg_trunk("vgg16", "max")
    reference_state = torchvision_vgg16.state_dict()
    assert {k: v.shape for k, v in ours.layers.state_dict().items()} == {
        k: v.shape for k, v in reference_state.items()
    }
    ours.layers.load_state_dict(reference_state, strict=True)
    _same_trunk_outputs(ours, torchvision_vgg16, _images(1, 3, 32))


@needs_vgg16
def test_vgg16_from_converted_weights_matches_torchvision(torchvision_vgg16) -> None:
    """The trunk built from our converted weights = torchvision's VGG16 given the same state dict;
    average pooling differs from it only at the pooling layers."""
    state, location = load_state_dict("vgg16")
    reference = torchvision_features_skeleton("vgg16").eval()
    reference.load_state_dict(state, strict=True)
    ours = vgg_features("vgg16", "max")
    assert ours.source == str(location.path)
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training
    x = _images(2, 1, 32)
    _same_trunk_outputs(ours, reference, x)

    avg = vgg_features("vgg16", "avg")
    for index, (a, m) in enumerate(zip(avg.layers, ours.layers, strict=True)):
        if index in {avg.layer_names[f"pool{k}"] for k in range(1, 6)}:
            assert isinstance(a, nn.AvgPool2d) and isinstance(m, nn.MaxPool2d)
            assert (a.kernel_size, a.stride) == (2, 2)
        else:
            assert type(a) is type(m)
    for key, value in avg.layers.state_dict().items():
        assert torch.equal(value, state[key])
    names = ["relu1_2", "pool1", "relu2_1"]
    with torch.no_grad():
        fa, fm = avg(x, names), ours(x, names)
    assert torch.equal(fa["relu1_2"], fm["relu1_2"])  # before the first pooling: identical
    assert not torch.allclose(fa["pool1"], fm["pool1"])
    torch.testing.assert_close(
        fa["pool1"], nn.functional.avg_pool2d(fm["relu1_2"], 2), rtol=0, atol=0
    )
    # ImageNet weights, not random ones: the first filters are far from the default init scale
    assert float(state["0.weight"].abs().max()) > 0.3


def test_missing_weights_are_reported(tmp_path) -> None:
    with pytest.raises(WeightsUnavailable, match="vgg19"):
        vgg_features("vgg19", cache_dir=tmp_path)
    with pytest.raises(WeightsUnavailable, match="vgg16"):
        vgg_features("vgg16", cache_dir=tmp_path)
    with pytest.raises(WeightsUnavailable, match="not a file"):
        vgg_features("vgg16", weights_path=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="weights"):
        vgg_features("resnet50")


def test_vgg19_from_an_explicit_state_dict() -> None:
    """VGG19 from weights in memory: a torchvision state dict (``features.``) loads strictly."""
    with torch.device("meta"):
        features = torchvision.models.vgg19(weights=None).features
    state = {f"features.{k}": torch.zeros(v.shape) for k, v in features.state_dict().items()}
    trunk = vgg_features("vgg19", "avg", state_dict=state)
    assert trunk.arch == "vgg19" and len(trunk.layers) == 37
    assert isinstance(trunk.layers[trunk.layer_names["pool1"]], nn.AvgPool2d)


# ----------------------------------------------------------------------------------------------
# refinement


def _refinement(
    optimizer: str, seed: int = 0
) -> tuple[torch.Tensor, list[dict[str, float]], torch.Tensor]:
    """8 refinement steps on a tiny random VGG: ``(refined, history, image)``."""
    features = _tiny(seed=seed)
    image = _images(2, seed=1 + 3 * seed)
    content, style = _images(2, seed=2 + 3 * seed), _images(1, seed=3 + 3 * seed)
    params = StyleTransferParams(steps=8, optimizer=optimizer, style_weight=10.0)
    refined, history = refine(image, content, style, params, features)
    return refined, history, image


def refinement_trajectory(seed: int = 0) -> dict[str, float]:
    """The refinement objective after 8 steps over before, for L-BFGS and Adam (< 1: lowered)."""
    out = {}
    for optimizer in ("lbfgs", "adam"):
        history = _refinement(optimizer, seed)[1]
        out[f"{optimizer}_total_last_over_first"] = history[-1]["total"] / history[0]["total"]
    return out


# threshold with margin over CPUs, threads and seeds: benchmarks/trajectory_margins.py
REFINE_RATIO = 0.9


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_refine_lowers_its_objective_tiny_vgg(optimizer: str) -> None:
    refined, history, image = _refinement(optimizer)
    assert refined.shape == image.shape  # grey stays grey
    assert float(refined.min()) >= 0.0 and float(refined.max()) <= 1.0
    assert len(history) == 9 and history[0]["step"] == 0 and history[-1]["step"] == 8
    ratio = history[-1]["total"] / history[0]["total"]
    assert ratio < REFINE_RATIO, ratio
    for row in history:
        assert row["total"] == pytest.approx(row["content"] + 10.0 * row["style"], rel=1e-5)
    assert not torch.equal(refined, image)


def test_refine_history_starts_at_the_objective_of_the_start_image() -> None:
    features = _tiny()
    image, content, style = _images(1, seed=1), _images(1, seed=2), _images(1, 3, 48, seed=3)
    params = StyleTransferParams(steps=2, style_weight=5.0)
    _, history = refine(image, content, style, params, features)
    names = list(params.content_layers) + list(params.style_layers)
    with torch.no_grad():
        f = features(image, names)
        c = content_loss(f, features(content, ["relu4_2"]), ["relu4_2"])
        grams = {k: gram_matrix(v) for k, v in features(style, params.style_layers).items()}
        s = style_loss(f, grams, params.style_layers)
    assert history[0]["content"] == pytest.approx(float(c), rel=1e-5)
    assert history[0]["style"] == pytest.approx(float(s), rel=1e-5)


def test_refine_images_independently_by_default() -> None:
    features = _tiny()
    image, content, style = _images(3, seed=1), _images(3, seed=2), _images(3, seed=3)
    params = StyleTransferParams(steps=3, optimizer="adam")
    together, history = refine(image, content, style, params, features)
    alone, history_1 = refine(image[1:2], content[1:2], style[1:2], params, features)
    torch.testing.assert_close(together[1:2], alone)
    assert history[0]["total"] != history_1[0]["total"]  # the history is the mean over images


def test_refine_rgb_and_validation() -> None:
    features = _tiny()
    rgb = _images(1, 3, seed=1)
    refined, _ = refine(rgb, rgb, _images(1, seed=4), StyleTransferParams(steps=1), features)
    assert refined.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="content_layers"):
        refine(rgb, rgb, rgb, StyleTransferParams(content_layers=["relu9_9"], steps=1), features)
    with pytest.raises(ValueError, match="content must have"):
        refine(rgb, _images(1, 3, 16), rgb, StyleTransferParams(steps=1), features)
    assert StyleTransferParams(optimizer="adam").step_size == 0.003
    assert StyleTransferParams().step_size == 1.0
    assert StyleTransferParams(style_layers=["relu1_1"]).style_layers == ("relu1_1",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"optimizer": "sgd"}, "parameter 'optimizer' = 'sgd' is not one of: lbfgs, adam"),
        (
            {"style_layer_weights": (1.0, 2.0)},
            "parameter 'style_layer_weights' must have one weight per layer of style_layers (5), "
            "got 2",
        ),
        ({"steps": -1}, "parameter 'steps' must be >= 0, got -1"),
        ({"content_layers": [], "style_layers": []}, "'content_layers' and style_layers are both"),
        ({"content_layers": "relu4_2"}, "parameter 'content_layers' must be a list"),
        ({"content_layer_weights": [-1.0]}, "'content_layer_weights[0]' must be >= 0, got -1.0"),
        ({"style_weight": -0.5}, "parameter 'style_weight' must be >= 0, got -0.5"),
        ({"init_noise": True}, "parameter 'init_noise' must be a number, got True"),
        ({"lr": 0.0}, "parameter 'lr' must be > 0, got 0.0"),
        ({"batch_size": 0}, "parameter 'batch_size' must be >= 1, got 0"),
        ({"seed": 1.5}, "parameter 'seed' must be an integer, got 1.5"),
    ],
)
def test_style_transfer_params_name_the_bad_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError) as error:
        StyleTransferParams(**values)
    assert message in str(error.value)


def test_style_transfer_params_from_yaml_values() -> None:
    params = parse_params(
        StyleTransferParams,
        {"optimizer": "ADAM", "content_layer_weights": [2], "lr": None, "steps": 0},
        "refinement.transfer",
    )
    assert params.optimizer is OptimizerKind.ADAM and params.step_size == 0.003
    assert params.content_layer_weights == (2.0,) and params.steps == 0
    with pytest.raises(ParameterError, match=r"'refinement\.transfer\.lr' must be > 0"):
        parse_params(StyleTransferParams, {"lr": -1}, "refinement.transfer")


@needs_vgg16
def test_refine_lowers_its_objective_real_vgg16() -> None:
    features = vgg_features("vgg16", PoolingKind.AVG)
    image, content, style = _images(1, seed=1), _images(1, seed=2), _images(1, seed=3)
    refined, history = refine(image, content, style, StyleTransferParams(steps=3), features)
    assert refined.shape == (1, 1, 32, 32)
    assert history[-1]["total"] < history[0]["total"]
    assert history[-1]["style"] < history[0]["style"]
