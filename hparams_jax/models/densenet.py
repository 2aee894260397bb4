"""DenseNet-40 (k = 12, not BC) for CIFAR: ``Cifar/architectures/genDensenet40.prototxt`` of
``lnsmith54/hyperParam1`` (Smith 2018's DenseNet runs ``genDensenet40_*``; Huang et al. 2017,
"Densely connected convolutional networks", Table 2: 1.0M parameters).

conv3x3 16 (no BN after it) -> 3 dense blocks of 12 layers, each layer
BN -> ReLU -> conv3x3 12 -> dropout 0.2, its output concatenated *in front of* its input
(prototxt ``Concat(bottom: dropout, bottom: previous)``) -> between blocks a transition
BN -> ReLU -> conv1x1 (same width: 160, 304) -> dropout 0.2 -> avg-pool 2x2/2 ->
after the last block BN -> ReLU -> global average pool -> fc. Channels: 16 + 36*12 = 448.

Initialisation (prototxt): Caffe ``msra`` convs (Gaussian, variance 2 / fan_in), Caffe
``xavier`` fc (uniform, variance 1 / fan_in), zero fc bias, BN scale 1 / bias 0. No conv has
a bias (``bias_term: false``). BN: ``moving_average_fraction: 0.999`` -> ``bn_momentum=0.999``
(Flax's uncorrected running average then needs thousands of steps; see `layers`), Caffe's
default ``bn_epsilon=1e-5``. Optimiser metadata: the fc bias has ``lr_mult: 2``.

Dropout needs a ``dropout`` stream: create the model with
``nnx.Rngs(params=..., dropout=...)`` (a plain ``nnx.Rngs(seed)`` also works, the dropout
masks then come from its default stream). ``model.train()`` turns dropout and batch
statistics on, ``model.eval()`` off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hparams_jax import _validate
from hparams_jax.models.layers import (PLAIN, BatchNormSpec, Layers, ZooModel,
                                        global_avg_pool, validate_num_classes, xavier, zeros)


class BNReLUConv(nnx.Module):
    """BN -> ReLU -> conv (no bias) -> dropout: a dense layer or a transition's first part."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
                 dropout_rate: float, bn: BatchNormSpec, dtype=None, layers: Layers = PLAIN,
                 rngs: nnx.Rngs):
        self.bn = layers.batch_norm(in_features, bn, dtype=dtype, rngs=rngs)
        self.conv = layers.conv(in_features, out_features, kernel_size, pad=kernel_size // 2,
                                dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(self.conv(jax.nn.relu(self.bn(x))))


class DenseNet(ZooModel):
    """DenseNet for 32x32 images (see the module docstring).

    Args:
      num_classes: number of logits.
      depth: 3 * layers_per_block + 4 (40 -> 12 layers per block).
      growth_rate: channels each dense layer adds (k).
      init_features: channels of the first conv.
      dropout_rate: after every conv (train mode only).
      bn_momentum, bn_epsilon: batch-norm settings.
      dtype: computation dtype.
      layers: the layer implementations (`layers.Layers`).
      rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams (or one default stream).
    """

    LR_MULTIPLIERS = {"fc/bias": 2.0}

    def __init__(self, *, num_classes: int = 10, depth: int = 40, growth_rate: int = 12,
                 init_features: int = 16, dropout_rate: float = 0.2,
                 bn_momentum: float = 0.999, bn_epsilon: float = 1e-5, dtype=None,
                 layers: Layers = PLAIN, rngs: nnx.Rngs):
        num_classes = validate_num_classes(num_classes)
        _validate.check("depth", depth, isinstance(depth, int) and depth > 4
                        and (depth - 4) % 3 == 0, "an integer 3*n + 4 with n >= 1")
        growth_rate = _validate.positive_int("growth_rate", growth_rate)
        init_features = _validate.positive_int("init_features", init_features)
        _validate.check("dropout_rate", dropout_rate, 0.0 <= dropout_rate < 1.0, "in [0, 1)")
        bn = BatchNormSpec(bn_momentum, bn_epsilon)
        n = (depth - 4) // 3
        kw = dict(dropout_rate=dropout_rate, bn=bn, dtype=dtype, layers=layers, rngs=rngs)
        self.layers = layers
        self.stem = layers.conv(3, init_features, 3, pad=1, dtype=dtype, rngs=rngs)
        blocks, transitions = [], []
        c = init_features
        for b in range(3):
            block = []
            for _ in range(n):
                block.append(BNReLUConv(c, growth_rate, 3, **kw))
                c += growth_rate
            blocks.append(nnx.List(block))
            if b < 2:
                transitions.append(BNReLUConv(c, c, 1, **kw))
        self.blocks = nnx.List(blocks)
        self.transitions = nnx.List(transitions)
        self.final_bn = layers.batch_norm(c, bn, dtype=dtype, rngs=rngs)
        self.fc = nnx.Linear(c, num_classes, kernel_init=xavier, bias_init=zeros, dtype=dtype,
                             rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(x)
        x = self.stem(x)
        for b, block in enumerate(self.blocks):
            for layer in block:
                x = jnp.concatenate([layer(x), x], axis=-1)
            if b < len(self.transitions):
                x = self.layers.avg_pool(self.transitions[b](x), 2, 2)
        x = jax.nn.relu(self.final_bn(x))
        return self.fc(global_avg_pool(x)).astype(jnp.float32)


def densenet40(*, num_classes: int, rngs: nnx.Rngs, **kwargs) -> DenseNet:
    """The author's DenseNet-40 (k = 12, dropout 0.2)."""
    return DenseNet(num_classes=num_classes, rngs=rngs, **kwargs)
