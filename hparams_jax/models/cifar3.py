"""The author's shallow 3-layer CIFAR network: ``Cifar/architectures/cifar3.prototxt`` (and
``cifar100.prototxt``, identical but for 100 outputs) of ``lnsmith54/hyperParam1`` -- Caffe's
``cifar10_full`` model, the shallow net of Smith 2018's CIFAR experiments (the
"3-layer net (CIFAR-100)" run ``cifar100_C100CycLR...`` in ``shared/reference/smith2018_runs.md``).

Layers, in the prototxt's order (all convs 5x5, pad 2, stride 1; all pools 3x3, stride 2,
Caffe ceil-mode, so 32 -> 16 -> 8 -> 4):

    conv1 32 -> max-pool -> ReLU -> LRN
    conv2 32 -> ReLU -> avg-pool -> LRN
    conv3 64 -> ReLU -> avg-pool -> fc ``num_classes`` (input 4*4*64 = 1024)

LRN is Caffe's ``norm_region: WITHIN_CHANNEL`` with ``local_size: 3, alpha: 5e-5,
beta: 0.75``: ``x / (1 + alpha * mean_{3x3}(x^2)) ** beta``, the 3x3 mean over a zero-padded
window of each channel (`lrn_within_channel`). No batch norm, no dropout.

Initialisation as in the prototxt: Gaussian weights with std 1e-4 (conv1) and 0.01 (conv2,
conv3, fc), zero biases.

Optimiser metadata (class attributes, see `layers.ZooModel`):

* ``WEIGHT_DECAY_MULTIPLIERS``: the prototxt gives the final layer's weights
  ``decay_mult: 250`` and its bias ``decay_mult: 0`` (conv weights and biases keep Caffe's
  default 1), i.e. the effective weight decay on ``fc/kernel`` is 250x the solver's;
  ``model.weight_decay_multipliers()`` returns these as a parameter-shaped tree.
* ``LR_MULTIPLIERS``: ``lr_mult: 2`` on the conv1, conv2 and fc biases.

``input_size`` and ``in_channels`` (32 and 3 by default) size the net for other images, e.g.
28x28x1 MNIST-type data (the pools then give 28 -> 14 -> 7 -> 4).

Deviation: the flatten before ``fc`` is NHWC (H, W, C) order rather than Caffe's (C, H, W):
the same function with permuted ``fc`` rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hparams_jax import _validate
from hparams_jax.models.layers import (PLAIN, Layers, ZooModel, gaussian, pooled_size,
                                        validate_num_classes, zeros)


def lrn_within_channel(x: jax.Array, local_size: int = 3, alpha: float = 5e-5,
                       beta: float = 0.75, *, layers: Layers = PLAIN) -> jax.Array:
    """Caffe ``LRN { norm_region: WITHIN_CHANNEL }`` on NHWC ``x``."""
    pad = (local_size - 1) // 2
    mean_sq = layers.avg_pool(jnp.square(x), local_size, 1, pad)
    return x * (1.0 + alpha * mean_sq) ** (-beta)


class Cifar3(ZooModel):
    """The author's 3-layer CIFAR net (see the module docstring)."""

    WEIGHT_DECAY_MULTIPLIERS = {"fc/kernel": 250.0, "fc/bias": 0.0}
    LR_MULTIPLIERS = {"conv1/bias": 2.0, "conv2/bias": 2.0, "fc/bias": 2.0}

    def __init__(self, *, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
                 dtype=None, layers: Layers = PLAIN, rngs: nnx.Rngs):
        num_classes = validate_num_classes(num_classes)
        self.INPUT_CHANNELS = _validate.positive_int("in_channels", in_channels)
        self.input_size = _validate.positive_int("input_size", input_size)
        _validate.check("input_size", input_size, input_size >= 3, "at least 3")
        side = input_size
        for _ in range(3):
            side = pooled_size(side, 3, 2)
        self.layers = layers

        def conv(cin, cout, std):
            return layers.conv(cin, cout, 5, pad=2, use_bias=True,
                               kernel_init=gaussian(std), dtype=dtype, rngs=rngs)

        self.conv1 = conv(in_channels, 32, 1e-4)
        self.conv2 = conv(32, 32, 0.01)
        self.conv3 = conv(32, 64, 0.01)
        self.fc = nnx.Linear(side * side * 64, num_classes,
                             kernel_init=gaussian(0.01), bias_init=zeros,
                             dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(x)
        ops = self.layers
        x = lrn_within_channel(jax.nn.relu(ops.max_pool(self.conv1(x), 3, 2)), layers=ops)
        x = lrn_within_channel(ops.avg_pool(jax.nn.relu(self.conv2(x)), 3, 2), layers=ops)
        x = ops.avg_pool(jax.nn.relu(self.conv3(x)), 3, 2)
        return self.fc(x.reshape(x.shape[0], -1)).astype(jnp.float32)
