"""LeNet for MNIST as in Caffe's ``examples/mnist/lenet_train_test.prototxt`` (LeCun et al.
1998), the network of Smith 2018's MNIST experiments.

conv 20@5x5 -> max-pool 2/2 -> conv 50@5x5 -> max-pool 2/2 -> fc 500 -> ReLU -> fc
``num_classes``; no padding, no batch norm, no dropout. Input 28x28x1 (Caffe scales pixels
by 1/256; that is the data pipeline's job). 431,080 parameters for 10 classes.

Initialisation: Caffe ``xavier`` (uniform, variance 1/fan_in) for every weight, zero biases, as
in the prototxt. Caffe's ``lr_mult: 2`` on every bias is exposed as `LR_MULTIPLIERS`.
The flatten is NHWC (H, W, C) order rather than Caffe's (C, H, W): same function, permuted
``fc1`` rows.
"""

from __future__ import annotations

import jax
from flax import nnx

from hparams_jax import _validate
from hparams_jax.models.layers import (PLAIN, Layers, ZooModel, pooled_size,
                                        validate_num_classes, xavier, zeros)

_LAYERS = ("conv1", "conv2", "fc1", "fc2")


class LeNet(ZooModel):
    """Caffe LeNet (see the module docstring)."""

    INPUT_CHANNELS = 1
    LR_MULTIPLIERS = {f"{name}/bias": 2.0 for name in _LAYERS}

    def __init__(self, *, num_classes: int = 10, input_size: int = 28, dtype=None,
                 layers: Layers = PLAIN, rngs: nnx.Rngs):
        num_classes = validate_num_classes(num_classes)
        self.input_size = _validate.positive_int("input_size", input_size)
        _validate.check("input_size", input_size, input_size >= 16, "at least 16")
        side = pooled_size(pooled_size(input_size - 4, 2, 2) - 4, 2, 2)  # 28 -> 4
        kw = dict(kernel_init=xavier, bias_init=zeros, dtype=dtype, rngs=rngs)
        self.layers = layers
        self.conv1 = layers.conv(1, 20, 5, use_bias=True, **kw)
        self.conv2 = layers.conv(20, 50, 5, use_bias=True, **kw)
        self.fc1 = nnx.Linear(side * side * 50, 500, **kw)
        self.fc2 = nnx.Linear(500, num_classes, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(x)
        x = self.layers.max_pool(self.conv1(x), 2, 2)
        x = self.layers.max_pool(self.conv2(x), 2, 2)
        x = jax.nn.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc2(x).astype(jax.numpy.float32)
