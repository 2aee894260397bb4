"""CIFAR ResNets in the author's block style: ``Cifar/architectures/gResnet56.prototxt``
(``c100Resnet56.prototxt`` for CIFAR-100) of ``lnsmith54/hyperParam1``, the ResNet-56 of
Smith 2018 (runs ``gResnet56_*``, ``c100Resnet56_*``; He et al. 2016, "Deep residual
learning", Sec. 4.2).

Block (``BasicBlock``): conv3x3(stride s) -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut,
and **no ReLU after the addition**. When a block changes the resolution the shortcut is a
2x2 stride-2 convolution + BN (``groupK_block8_proj`` in the prototxt), not He et al.'s
zero-padded identity ("option A"). Network: conv3x3 16 -> BN -> ReLU -> blocks -> global
average pool -> fc (no BN/ReLU before the pool, as in the prototxt).

Block counts. The prototxt groups its 26 blocks as 9/9/8 with the stride-2 block *last* in
groups 0 and 1 (``group0_block8``: 16 -> 32 channels, ``group1_block8``: 32 -> 64). The
computation does not depend on that grouping, so this module groups blocks by the width
they *output* (stride-2 block first in a stage, He et al.'s layout): the author's ResNet-56 is
``blocks=(8, 9, 9)`` at widths 16/32/64 -- the same 26 blocks in the same order (one block
fewer at width 16 than He et al.'s 9/9/9; 1 + 52 + 1 convs/fc plus the two projections =
56 weighted layers). ``resnet20`` and ``resnet110`` use He et al.'s (n, n, n) counts with
n = 3 and 18 in this same block style. `wide_resnet` builds the author's WRN-32 with the
same class.

Initialisation (prototxt): Caffe ``msra`` for every conv and the fc -- Gaussian, variance
2 / fan_in, untruncated (He et al. 2015) -- zero fc bias; BN scale 1, bias 0.
BN (``moving_average_fraction: 0.9``, Caffe's default eps): ``bn_momentum=0.9``,
``bn_epsilon=1e-5``; the conv biases of the prototxt are omitted (cancelled by the BN, see
`layers`). Optimiser metadata: the fc bias has ``lr_mult: 2, decay_mult: 0``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hparams_jax import _validate
from hparams_jax.models.layers import (PLAIN, BatchNormSpec, ConvBN, Layers, ZooModel,
                                        global_avg_pool, msra, validate_num_classes, zeros)


class BasicBlock(nnx.Module):
    """Two 3x3 ConvBN units plus shortcut, no ReLU after the sum (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, *, strides: int,
                 bn: BatchNormSpec, dtype=None, layers: Layers = PLAIN, rngs: nnx.Rngs):
        kw = dict(bn=bn, dtype=dtype, layers=layers, rngs=rngs)
        self.conv0 = ConvBN(in_features, out_features, 3, strides=strides, pad=1, relu=True,
                            **kw)
        self.conv1 = ConvBN(out_features, out_features, 3, pad=1, relu=False, **kw)
        if strides != 1 or in_features != out_features:
            # Caffe `proj`: kernel = stride (2x2/2), no padding, then BN.
            self.proj = ConvBN(in_features, out_features, strides, strides=strides,
                               relu=False, **kw)
        else:
            self.proj = None

    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = x if self.proj is None else self.proj(x)
        return self.conv1(self.conv0(x)) + shortcut


class CifarResNet(ZooModel):
    """ResNet for 32x32 images in the author's block style (see the module docstring).

    Args:
      num_classes: number of logits.
      blocks: residual blocks at each width; every stage after the first starts with a
        stride-2 block.
      widths: channels of the stages (the stem has ``widths[0]``).
      bn_momentum, bn_epsilon: batch-norm settings (Flax momentum = Caffe
        ``moving_average_fraction``).
      in_channels: channels of the input images (3; 1 runs the network on MNIST-type data).
      dtype: computation dtype (parameters stay float32; logits are returned as float32).
      layers: the layer implementations (`layers.Layers`).
      rngs: ``nnx.Rngs`` with a ``params`` (or default) stream.
    """

    WEIGHT_DECAY_MULTIPLIERS = {"fc/bias": 0.0}
    LR_MULTIPLIERS = {"fc/bias": 2.0}

    def __init__(self, *, num_classes: int = 10, blocks: Sequence[int] = (8, 9, 9),
                 widths: Sequence[int] = (16, 32, 64), bn_momentum: float = 0.9,
                 bn_epsilon: float = 1e-5, in_channels: int = 3, dtype=None,
                 layers: Layers = PLAIN, rngs: nnx.Rngs):
        num_classes = validate_num_classes(num_classes)
        self.INPUT_CHANNELS = _validate.positive_int("in_channels", in_channels)
        blocks, widths = tuple(blocks), tuple(widths)
        _validate.check("blocks", blocks, len(blocks) == len(widths) and len(blocks) > 0,
                        f"one block count per width (widths={widths})")
        for n in blocks:
            _validate.positive_int("blocks[i]", n)
        for w in widths:
            _validate.positive_int("widths[i]", w)
        bn = BatchNormSpec(bn_momentum, bn_epsilon)
        self.stem = ConvBN(in_channels, widths[0], 3, pad=1, relu=True, bn=bn, dtype=dtype,
                           layers=layers, rngs=rngs)
        stages = []
        cin = widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(n):
                strides = 2 if (i > 0 and j == 0) else 1
                stage.append(BasicBlock(cin, width, strides=strides, bn=bn, dtype=dtype,
                                        layers=layers, rngs=rngs))
                cin = width
            stages.append(nnx.List(stage))
        self.stages = nnx.List(stages)
        self.fc = nnx.Linear(cin, num_classes, kernel_init=msra, bias_init=zeros,
                             dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(x)
        x = self.stem(x)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.fc(global_avg_pool(x)).astype(jnp.float32)


def resnet20(*, num_classes: int, rngs: nnx.Rngs, **kwargs) -> CifarResNet:
    """He et al.'s ResNet-20 depth (3/3/3 blocks) in the author's block style."""
    kwargs.setdefault("blocks", (3, 3, 3))
    return CifarResNet(num_classes=num_classes, rngs=rngs, **kwargs)


def resnet56(*, num_classes: int, rngs: nnx.Rngs, **kwargs) -> CifarResNet:
    """The author's ResNet-56 (``gResnet56.prototxt``: 26 blocks, 9/9/8 in its grouping)."""
    kwargs.setdefault("blocks", (8, 9, 9))
    return CifarResNet(num_classes=num_classes, rngs=rngs, **kwargs)


def resnet110(*, num_classes: int, rngs: nnx.Rngs, **kwargs) -> CifarResNet:
    """He et al.'s ResNet-110 depth (18/18/18 blocks) in the author's block style."""
    kwargs.setdefault("blocks", (18, 18, 18))
    return CifarResNet(num_classes=num_classes, rngs=rngs, **kwargs)
