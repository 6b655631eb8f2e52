"""Neural style refinement (Gatys et al. 2016) on VGG features, for seed 002's generated slices.

Seed 002 refines each generated MRI slice by style transfer: the optimised image starts from the
generated slice, a content loss keeps it close to the input MRI in deep VGG features, and a style
loss matches the Gram matrices of its features to those of a style reference; max pooling is
replaced by average pooling ("slightly more appealing" results, Gatys et al.).

One concept per module, every public name re-exported here:

- :mod:`.vgg`: the trunk (:func:`vgg_features` with ImageNet weights found offline,
  :func:`vgg_trunk` with random weights, :class:`VGGFeatures`, layer names);
- :mod:`.losses`: :func:`gram_matrix`, :func:`content_loss`, :func:`style_loss`;
- :mod:`.optimisation`: :class:`StyleTransferParams` and :func:`refine`.

Pure PyTorch (no Kedro).
"""

from mrihisto_kedro.nn.style_transfer.losses import content_loss, gram_matrix, style_loss
from mrihisto_kedro.nn.style_transfer.optimisation import OptimizerKind, StyleTransferParams, refine
from mrihisto_kedro.nn.style_transfer.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_HUB_FILENAME,
    VGG_CONFIGS,
    PoolingKind,
    VGGArch,
    VGGFeatures,
    WeightsUnavailable,
    vgg_features,
    vgg_layer_names,
    vgg_trunk,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG19_HUB_FILENAME",
    "VGG_CONFIGS",
    "OptimizerKind",
    "PoolingKind",
    "StyleTransferParams",
    "VGGArch",
    "VGGFeatures",
    "WeightsUnavailable",
    "content_loss",
    "gram_matrix",
    "refine",
    "style_loss",
    "vgg_features",
    "vgg_layer_names",
    "vgg_trunk",
]
