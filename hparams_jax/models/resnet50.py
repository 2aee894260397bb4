"""ResNet-50 v1 for ImageNet: ``Imagenet/architectures/resnet50.prototxt`` of
``lnsmith54/hyperParam1`` (Smith 2018's ImageNet runs ``resnet*``; He et al. 2016,
"Deep residual learning", Table 1). 25,557,032 parameters for 1000 classes (counting BN
scale and bias, not the running statistics; torchvision's count).

conv7x7/2 64 -> BN -> ReLU -> max-pool 3x3/2 -> bottleneck stages of 3, 4, 6, 3 blocks
(widths 64/128/256/512, outputs 4x) -> global average pool -> fc. Bottleneck (v1, as in the
prototxt and the original Caffe release): conv1x1(**stride**) -> BN -> ReLU -> conv3x3 -> BN ->
ReLU -> conv1x1 -> BN, plus the shortcut (conv1x1(stride) + BN in each stage's first block),
then ReLU after the addition. (torchvision's "v1.5" puts the stride on the 3x3; the
parameter count is the same.)

Deviations from the prototxt, and why:

* Global average pooling instead of Caffe's ``pool5`` 7x7/1 average pool: identical for 224
  inputs, and it lets the network run on any size >= 32 (the author cropped 230x230 images,
  for which a 7x7/1 pool leaves 2x2 maps and an 8192-input fc -- an artefact we do not
  reproduce).
* No conv biases (the prototxt has them; they are cancelled by the BN, see `layers`).
* Initialisation: He et al.'s (Caffe ``msra``: Gaussian, variance 2 / fan_in) for the convs
  instead of the prototxt's ``xavier``, as in the ResNet paper; Caffe ``xavier`` (uniform,
  variance 1 / fan_in) for the fc as in the prototxt; BN scale 1, bias 0.

The max-pool is Caffe's (no padding, ceil-mode: 112 -> 56). BN: the prototxt uses Caffe's
defaults, ``moving_average_fraction`` 0.999 and eps 1e-5 -> ``bn_momentum=0.999``,
``bn_epsilon=1e-5`` (pass ``bn_momentum=0.9`` for short runs, see `layers`). Optimiser
metadata: the fc bias has ``lr_mult: 2, decay_mult: 0``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hparams_jax import _validate
from hparams_jax.models.layers import (PLAIN, BatchNormSpec, ConvBN, Layers, ZooModel,
                                        global_avg_pool, validate_num_classes, xavier, zeros)


class Bottleneck(nnx.Module):
    """ResNet v1 bottleneck block (stride on the first 1x1 conv), ReLU after the sum."""

    def __init__(self, in_features: int, width: int, *, strides: int, bn: BatchNormSpec,
                 dtype=None, layers: Layers = PLAIN, rngs: nnx.Rngs):
        out = 4 * width
        kw = dict(bn=bn, dtype=dtype, layers=layers, rngs=rngs)
        self.conv_a = ConvBN(in_features, width, 1, strides=strides, **kw)
        self.conv_b = ConvBN(width, width, 3, pad=1, **kw)
        self.conv_c = ConvBN(width, out, 1, relu=False, **kw)
        if strides != 1 or in_features != out:
            self.proj = ConvBN(in_features, out, 1, strides=strides, relu=False, **kw)
        else:
            self.proj = None

    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = x if self.proj is None else self.proj(x)
        return jax.nn.relu(self.conv_c(self.conv_b(self.conv_a(x))) + shortcut)


class ResNet50(ZooModel):
    """ResNet-50 v1 (see the module docstring); ``blocks`` gives other bottleneck depths."""

    MIN_INPUT_SIZE = 32
    WEIGHT_DECAY_MULTIPLIERS = {"fc/bias": 0.0}
    LR_MULTIPLIERS = {"fc/bias": 2.0}

    def __init__(self, *, num_classes: int = 1000, blocks: Sequence[int] = (3, 4, 6, 3),
                 bn_momentum: float = 0.999, bn_epsilon: float = 1e-5, dtype=None,
                 layers: Layers = PLAIN, rngs: nnx.Rngs):
        num_classes = validate_num_classes(num_classes)
        blocks = tuple(blocks)
        for n in blocks:
            _validate.positive_int("blocks[i]", n)
        bn = BatchNormSpec(bn_momentum, bn_epsilon)
        self.layers = layers
        self.stem = ConvBN(3, 64, 7, strides=2, pad=3, bn=bn, dtype=dtype, layers=layers,
                           rngs=rngs)
        stages, cin = [], 64
        for i, n in enumerate(blocks):
            width = 64 * 2 ** i
            stage = []
            for j in range(n):
                strides = 2 if (i > 0 and j == 0) else 1
                stage.append(Bottleneck(cin, width, strides=strides, bn=bn, dtype=dtype,
                                        layers=layers, rngs=rngs))
                cin = 4 * width
            stages.append(nnx.List(stage))
        self.stages = nnx.List(stages)
        self.fc = nnx.Linear(cin, num_classes, kernel_init=xavier, bias_init=zeros,
                             dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(x)
        x = self.layers.max_pool(self.stem(x), 3, 2)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.fc(global_avg_pool(x)).astype(jnp.float32)


def resnet50(*, num_classes: int, rngs: nnx.Rngs, **kwargs) -> ResNet50:
    """ResNet-50 v1 (He et al. 2016) as in the author's prototxt."""
    return ResNet50(num_classes=num_classes, rngs=rngs, **kwargs)
