"""Inception-ResNet-v2 for ImageNet: ``Imagenet/architectures/inception-resnet-v2.prototxt`` of
``lnsmith54/hyperParam1`` (Smith 2018's ImageNet runs ``inception-resnet*``;
Szegedy et al. 2017, "Inception-v4, Inception-ResNet and the impact of residual
connections", Figs. 3, 16-20, in the TF-slim layout the prototxt follows).

Stem: conv3x3/2 32 (valid) -> conv3x3 32 (valid) -> conv3x3 64 (pad 1) -> max-pool 3x3/2 ->
conv1x1 80 -> conv3x3 192 (valid) -> max-pool 3x3/2 -> mixed 5b (1x1 96 | 1x1 48, 5x5 64 |
1x1 64, 3x3 96, 3x3 96 | avg-pool 3x3/1, 1x1 64) = 320 channels; then
10 x block A (35x35: 1x1 32 | 1x1 32, 3x3 32 | 1x1 32, 3x3 48, 3x3 64 -> 1x1 320), residual
scale 0.17 -> reduction A (3x3/2 384 | 1x1 256, 3x3 256, 3x3/2 384 | max-pool) = 1088 ->
20 x block B (17x17: 1x1 192 | 1x1 128, 1x7 160, 7x1 192 -> 1x1 1088), scale 0.1 ->
reduction B (1x1 256, 3x3/2 384 | 1x1 256, 3x3/2 288 | 1x1 256, 3x3 288, 3x3/2 320 |
max-pool) = 2080 -> 9 x block C (8x8: 1x1 192 | 1x1 192, 1x3 224, 3x1 256 -> 1x1 2080),
scale 0.2, + 1 block C with scale 1 and no ReLU -> conv1x1 1536 -> global average pool ->
dropout 0.2 -> fc. Every conv but the blocks' 1x1 "up" projections is conv (no bias) -> BN ->
ReLU; the up projections are linear with a bias, and a ReLU follows every residual sum but
the last. Input 299x299x3 (8x8 final maps); the smallest supported input is 75x75
(1x1 final maps). Each reduction concatenates a valid 3x3/2 conv with a ceil-mode 3x3/2
max-pool, which agree only on odd maps, so the input side must keep both reductions' inputs
odd: sides 75-76 and 101-108, 133-140, ... (every 32) up to 293-300, so 299 but not 224
(`supported_input_size`).

Parameters: 55,843,464 ``nnx.Param`` scalars for 1000 classes (conv kernels, up-projection
and fc biases, BN scale and bias) plus 60,544 BN running statistics. Keras'
``InceptionResNetV2`` reports 55,873,736 = 55,813,192 trainable + 60,544 statistics: its BNs
have no scale (``scale=False``), i.e. 30,272 fewer parameters than the prototxt's
BatchNorm + Scale(bias) pairs.

Initialisation: He et al.'s (Caffe ``msra``: Gaussian, variance 2 / fan_in) for the ReLU
convs instead of the prototxt's ``xavier``; Caffe ``xavier`` (uniform, variance 1 / fan_in)
for the linear up projections and the fc as in the prototxt; zero biases; BN scale 1, bias 0.
BN: ``moving_average_fraction: 0.9, eps: 0.001`` -> ``bn_momentum=0.9, bn_epsilon=1e-3``
(the prototxt's ``use_global_stats: true`` on the first BN alone looks like a slip -- it
would freeze that BN at its initial statistics -- and is not reproduced). Pools are Caffe's
(ceil-mode; the 3x3/1 average pool counts its zero padding). Optimiser metadata: the up
projections' and the fc's biases have ``lr_mult: 2, decay_mult: 0``.

Dropout needs a ``dropout`` stream: ``nnx.Rngs(params=..., dropout=...)``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hparams_jax import _validate
from hparams_jax.models.layers import (PLAIN, BatchNormSpec, ConvBN, Layers, ZooModel,
                                        global_avg_pool, validate_num_classes, xavier, zeros)

# A branch: a chain of (out_channels, (kh, kw), (pad_h, pad_w), stride) ConvBN-ReLU units.
BranchSpec = Sequence[tuple[int, tuple[int, int], tuple[int, int], int]]


def _unit(c, k, s=1, p=None):
    kh, kw = (k, k) if isinstance(k, int) else k
    return (c, (kh, kw), (kh // 2, kw // 2) if p is None else (p, p), s)


class Branch(nnx.Module):
    """A chain of ConvBN-ReLU units."""

    def __init__(self, in_features: int, spec: BranchSpec, *, bn: BatchNormSpec,
                 dtype=None, layers: Layers = PLAIN, rngs: nnx.Rngs):
        units = []
        for out, kernel, pad, strides in spec:
            units.append(ConvBN(in_features, out, kernel, strides=strides, pad=pad, bn=bn,
                                dtype=dtype, layers=layers, rngs=rngs))
            in_features = out
        self.units = nnx.List(units)
        self.out_features = in_features

    def __call__(self, x: jax.Array) -> jax.Array:
        for unit in self.units:
            x = unit(x)
        return x


class InceptionResBlock(nnx.Module):
    """Parallel branches -> concat -> linear 1x1 "up" conv (with bias) -> x + scale * up
    [-> ReLU] (blocks A, B, C of the paper, Figs. 16, 17, 19 in the TF-slim sizes)."""

    def __init__(self, features: int, branches: Sequence[BranchSpec], *, scale: float,
                 relu: bool, bn: BatchNormSpec, dtype=None, layers: Layers = PLAIN,
                 rngs: nnx.Rngs):
        self.branches = nnx.List([Branch(features, spec, bn=bn, dtype=dtype, layers=layers,
                                         rngs=rngs) for spec in branches])
        concat = sum(b.out_features for b in self.branches)
        self.up = layers.conv(concat, features, 1, use_bias=True, kernel_init=xavier,
                              dtype=dtype, rngs=rngs)
        self.scale = scale
        self.relu = relu

    def __call__(self, x: jax.Array) -> jax.Array:
        mixed = jnp.concatenate([branch(x) for branch in self.branches], axis=-1)
        x = x + self.scale * self.up(mixed)
        return jax.nn.relu(x) if self.relu else x


class Reduction(nnx.Module):
    """Conv branches plus a 3x3/2 max-pool branch, concatenated (mixed 6a / 7a)."""

    def __init__(self, features: int, branches: Sequence[BranchSpec], *, bn: BatchNormSpec,
                 dtype=None, layers: Layers = PLAIN, rngs: nnx.Rngs):
        self.branches = nnx.List([Branch(features, spec, bn=bn, dtype=dtype, layers=layers,
                                         rngs=rngs) for spec in branches])
        self.out_features = features + sum(b.out_features for b in self.branches)
        self.layers = layers

    def __call__(self, x: jax.Array) -> jax.Array:
        outs = [branch(x) for branch in self.branches]
        return jnp.concatenate(outs + [self.layers.max_pool(x, 3, 2)], axis=-1)


_BLOCK_A = ([_unit(32, 1)], [_unit(32, 1), _unit(32, 3)],
            [_unit(32, 1), _unit(48, 3), _unit(64, 3)])
_BLOCK_B = ([_unit(192, 1)], [_unit(128, 1), _unit(160, (1, 7)), _unit(192, (7, 1))])
_BLOCK_C = ([_unit(192, 1)], [_unit(192, 1), _unit(224, (1, 3)), _unit(256, (3, 1))])
_REDUCTION_A = ([_unit(384, 3, 2, 0)], [_unit(256, 1), _unit(256, 3), _unit(384, 3, 2, 0)])
_REDUCTION_B = ([_unit(256, 1), _unit(384, 3, 2, 0)], [_unit(256, 1), _unit(288, 3, 2, 0)],
                [_unit(256, 1), _unit(288, 3), _unit(320, 3, 2, 0)])


def supported_input_size(size: int) -> bool:
    """Whether a ``size`` x ``size`` input reaches both reductions with odd feature maps."""

    def conv(s):  # valid 3x3, stride 2
        return (s - 3) // 2 + 1

    def pool(s):  # Caffe ceil-mode 3x3/2
        return -(-(s - 3) // 2) + 1

    if size < InceptionResNetV2.MIN_INPUT_SIZE:
        return False
    s = pool(pool(conv(size) - 2) - 2)
    if s % 2 == 0:
        return False
    return ((s - 3) // 2 + 1) % 2 == 1


class InceptionResNetV2(ZooModel):
    """Inception-ResNet-v2 (see the module docstring).

    Args:
      num_classes: number of logits.
      blocks: number of A, B and C blocks (10, 20, 10).
      dropout_rate: before the fc (train mode only).
      bn_momentum, bn_epsilon: batch-norm settings.
      dtype: computation dtype.
      layers: the layer implementations (`layers.Layers`).
      rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams (or one default stream).
    """

    MIN_INPUT_SIZE = 75
    WEIGHT_DECAY_MULTIPLIERS = {"blocks_?/*/up/bias": 0.0, "fc/bias": 0.0}
    LR_MULTIPLIERS = {"blocks_?/*/up/bias": 2.0, "fc/bias": 2.0}

    def __init__(self, *, num_classes: int = 1000, blocks: Sequence[int] = (10, 20, 10),
                 dropout_rate: float = 0.2, bn_momentum: float = 0.9,
                 bn_epsilon: float = 1e-3, dtype=None, layers: Layers = PLAIN,
                 rngs: nnx.Rngs):
        num_classes = validate_num_classes(num_classes)
        blocks = tuple(blocks)
        _validate.check("blocks", blocks, len(blocks) == 3, "three block counts (A, B, C)")
        for n in blocks:
            _validate.positive_int("blocks[i]", n)
        _validate.check("dropout_rate", dropout_rate, 0.0 <= dropout_rate < 1.0, "in [0, 1)")
        bn = BatchNormSpec(bn_momentum, bn_epsilon)
        kw = dict(bn=bn, dtype=dtype, layers=layers, rngs=rngs)
        self.layers = layers
        self.stem_a = Branch(3, [_unit(32, 3, 2, 0), _unit(32, 3, 1, 0), _unit(64, 3)], **kw)
        self.stem_b = Branch(64, [_unit(80, 1), _unit(192, 3, 1, 0)], **kw)
        self.mixed_5b = nnx.List([
            Branch(192, [_unit(96, 1)], **kw),
            Branch(192, [_unit(48, 1), _unit(64, 5)], **kw),
            Branch(192, [_unit(64, 1), _unit(96, 3), _unit(96, 3)], **kw),
            Branch(192, [_unit(64, 1)], **kw),  # after a 3x3/1 average pool
        ])
        n_a, n_b, n_c = blocks
        self.blocks_a = nnx.List([InceptionResBlock(320, _BLOCK_A, scale=0.17, relu=True, **kw)
                                  for _ in range(n_a)])
        self.reduction_a = Reduction(320, _REDUCTION_A, **kw)
        self.blocks_b = nnx.List([InceptionResBlock(1088, _BLOCK_B, scale=0.1, relu=True, **kw)
                                  for _ in range(n_b)])
        self.reduction_b = Reduction(1088, _REDUCTION_B, **kw)
        self.blocks_c = nnx.List([
            InceptionResBlock(2080, _BLOCK_C, scale=0.2 if i < n_c - 1 else 1.0,
                              relu=i < n_c - 1, **kw) for i in range(n_c)])
        self.conv_final = ConvBN(2080, 1536, 1, **kw)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.fc = nnx.Linear(1536, num_classes, kernel_init=xavier, bias_init=zeros,
                             dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(x)
        for side in x.shape[1:3]:
            _validate.check("input size", x.shape, supported_input_size(side),
                            "a side that keeps both reductions' maps odd: 299 (the "
                            "author's crop), 75-76, or 101-108, 133-140, ... every 32")
        ops = self.layers
        x = ops.max_pool(self.stem_a(x), 3, 2)
        x = ops.max_pool(self.stem_b(x), 3, 2)
        b0, b1, b2, b3 = self.mixed_5b
        x = jnp.concatenate([b0(x), b1(x), b2(x), b3(ops.avg_pool(x, 3, 1, 1))], axis=-1)
        for block in self.blocks_a:
            x = block(x)
        x = self.reduction_a(x)
        for block in self.blocks_b:
            x = block(x)
        x = self.reduction_b(x)
        for block in self.blocks_c:
            x = block(x)
        x = global_avg_pool(self.conv_final(x))
        return self.fc(self.dropout(x)).astype(jnp.float32)


def inception_resnet_v2(*, num_classes: int, rngs: nnx.Rngs, **kwargs) -> InceptionResNetV2:
    """Inception-ResNet-v2 (Szegedy et al. 2017) as in the author's prototxt."""
    return InceptionResNetV2(num_classes=num_classes, rngs=rngs, **kwargs)
