"""Layers and conventions shared by the model zoo (Flax NNX, NHWC, float32 by default).

Every network takes ``layers=`` (a `Layers`), the implementations of its convolutions, batch
norms and poolings: `PLAIN` (plain Flax, the default, for every backend) or
``models.xla_cpu.LAYERS`` (the same functions in forms XLA:CPU runs faster), as Flax's examples
pass ``conv=`` / ``norm=`` module factories. ``dtype`` is the computation dtype (e.g.
``jnp.bfloat16``); parameters and batch-norm statistics stay float32 and the logits are
returned as float32.

Caffe semantics, because the paper's networks are the author's Caffe prototxts
(``lnsmith54/hyperParam1``, ``*/architectures/*.prototxt``):

* **Initialisers.** Caffe's ``msra`` filler is a plain (untruncated) Gaussian with variance
  ``2 / fan_in`` (``variance_norm`` defaults to ``FAN_IN``; He et al. 2015, eq. 10): `msra`.
  Caffe's ``xavier`` filler is a uniform distribution with variance ``1 / fan_in``: `xavier`.
  For a conv kernel of shape ``(kh, kw, c_in, c_out)`` the fan-in is ``kh * kw * c_in``.
* **Padding.** A Caffe ``pad: p`` is symmetric, so convolutions use explicit
  ``((p, p), (p, p))`` padding (never ``'SAME'``, whose stride-2 padding is asymmetric and
  shifts the sampling grid relative to Caffe).
* **Pooling.** Caffe rounds a pooling layer's output size *up*
  (``ceil((H + 2p - k) / s) + 1``); `Layers.max_pool` and `Layers.avg_pool` reproduce that,
  and ``avg_pool`` divides by the number of window elements that lie inside the zero-padded
  input (Caffe counts the explicit ``pad`` but not the ceil-mode overhang).
* **Batch norm.** A Caffe ``BatchNorm`` + ``Scale(bias_term: true)`` pair is one
  ``nnx.BatchNorm`` (scale initialised to 1, bias to 0). Caffe's ``moving_average_fraction``
  is Flax's ``momentum``; Caffe normalises its running sums by ``sum_t maf^t`` (a
  bias-corrected average) whereas Flax keeps a plain exponential moving average started at
  mean 0 / variance 1, so with momentum 0.999 the running statistics need a few thousand
  training steps before eval-mode outputs are meaningful (pass a smaller ``bn_momentum`` for
  short runs). Flax stores the biased batch variance, Caffe the unbiased one (a factor
  ``m / (m - 1)``, negligible at CIFAR/ImageNet batch sizes). Convolutions that feed a batch
  norm carry no bias: it would be cancelled by the mean subtraction (its gradient is exactly
  zero in train mode), so the Caffe conv biases of the author's ResNet/WRN prototxts are
  omitted.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import numbers
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hparams_jax import _validate
from hparams_jax.errors import ConfigError

Dtype = Any

# --- Caffe fillers (see the module docstring) -------------------------------------------------
#
# Drawing a kernel with `jax.random.normal(key, shape)` compiles one threefry program per
# distinct shape, about a second each on a small CPU (DenseNet-40 has ~40 kernel shapes). The
# fillers below draw a flat vector whose length is rounded up to a power of two and take the
# first `prod(shape)` entries: the same distribution, one compiled RNG program per size bucket.

_normal_flat = jax.jit(jax.random.normal, static_argnums=1)
_uniform_flat = jax.jit(jax.random.uniform, static_argnums=1)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _finish(flat: jax.Array, shape: tuple, scale: float, shift: float, dtype) -> jax.Array:
    return (scale * flat[: math.prod(shape)].reshape(shape) + shift).astype(dtype)


def _draw(sampler, key, shape, scale: float, shift: float, dtype) -> jax.Array:
    """``scale * sample + shift`` of ``shape``, cut from a bucket-sized flat sample."""
    shape = tuple(int(d) for d in shape)
    bucket = max(1 << max(math.prod(shape) - 1, 0).bit_length(), 1024)
    return _finish(sampler(key, (bucket,)), shape, float(scale), float(shift),
                   jnp.dtype(dtype))


def _fan_in(shape: Sequence[int]) -> int:
    # (kh, kw, c_in, c_out) conv kernel or (in, out) dense kernel.
    return max(math.prod(shape[:-1]), 1)


def gaussian(std: float):
    """Caffe ``gaussian`` filler: N(0, std^2)."""
    def init(key, shape, dtype=jnp.float32):
        return _draw(_normal_flat, key, shape, std, 0.0, dtype)
    return init


def msra(key, shape, dtype=jnp.float32):
    """Caffe ``msra`` filler (He et al. 2015): N(0, 2 / fan_in), untruncated."""
    return _draw(_normal_flat, key, shape, math.sqrt(2.0 / _fan_in(shape)), 0.0, dtype)


def xavier(key, shape, dtype=jnp.float32):
    """Caffe ``xavier`` filler: U(-a, a) with a = sqrt(3 / fan_in) (variance 1 / fan_in)."""
    a = math.sqrt(3.0 / _fan_in(shape))
    return _draw(_uniform_flat, key, shape, 2.0 * a, -a, dtype)


zeros = nnx.initializers.zeros_init()


def pad2d(pad: int | tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Caffe's symmetric ``pad`` (or ``(pad_h, pad_w)``) as explicit NHWC conv padding."""
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    return ((ph, ph), (pw, pw))


@dataclasses.dataclass(frozen=True)
class BatchNormSpec:
    """Batch-norm hyper-parameters: Flax ``momentum`` (= Caffe ``moving_average_fraction``)
    and ``epsilon`` (Caffe's default is 1e-5)."""

    momentum: float = 0.9
    epsilon: float = 1e-5

    def __post_init__(self):
        ok = (isinstance(self.momentum, numbers.Real) and not isinstance(self.momentum, bool)
              and 0.0 <= self.momentum < 1.0)
        _validate.check("bn_momentum", self.momentum, ok, "a number in [0, 1)")
        _validate.positive_number("bn_epsilon", self.epsilon)


def _ceil_pool_padding(size: int, window: int, stride: int, pad: int) -> tuple[int, int, int]:
    """(low, high, extra) padding that makes a floor-mode window op produce Caffe's ceil-mode
    output size; ``extra`` is the part of ``high`` beyond Caffe's own ``pad``."""
    if size + 2 * pad < window:
        raise ConfigError(f"input size {size} (+2*pad={2 * pad}) is smaller than the pooling "
                          f"window {window}: use a larger input image")
    out = math.ceil((size + 2 * pad - window) / stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:  # Caffe: the last window must start
        out -= 1                                      # inside the image (or its left pad)
    extra = max((out - 1) * stride + window - (size + 2 * pad), 0)
    return pad, pad + extra, extra


def pooled_size(size: int, window: int, stride: int, pad: int = 0) -> int:
    """Caffe's (ceil-mode) output size of a pooling layer."""
    low, high, _ = _ceil_pool_padding(size, window, stride, pad)
    return (size + low + high - window) // stride + 1


def reduce_window(x: jax.Array, window: int, stride: int, pads, op: str) -> jax.Array:
    """``op`` ("max" or "sum") over ``window`` x ``window`` windows of NHWC ``x`` padded by
    ``pads = ((low_h, high_h), (low_w, high_w))`` (with -inf for "max", zeros for "sum"):
    ``lax.reduce_window``, the standard op every backend's autodiff and kernels know."""
    init, combine = (-jnp.inf, jax.lax.max) if op == "max" else (0.0, jax.lax.add)
    return jax.lax.reduce_window(x, init, combine,
                                 (1, window, window, 1), (1, stride, stride, 1),
                                 ((0, 0), *pads, (0, 0)))


@dataclasses.dataclass(frozen=True)
class Layers:
    """The layer implementations a network is built from, with Caffe's conventions (see the
    module docstring) applied on top: the one seam between the networks and a backend.

    `PLAIN` (the default of every network) is plain Flax: ``nnx.Conv`` on
    ``lax.conv_general_dilated``, ``nnx.BatchNorm``, pooling with ``lax.reduce_window``.
    ``models.xla_cpu.LAYERS`` computes the same functions in forms XLA:CPU runs faster. Both
    build the same variables (paths, shapes, dtypes, initial values), so a parameter or
    checkpoint tree moves between them; only the computation differs.

    Fields: ``conv_general_dilated`` is given to ``nnx.Conv`` (None: its default),
    ``batch_norm_type`` is an ``nnx.BatchNorm`` (sub)class, and ``window_reduce`` has the
    signature of `reduce_window`.
    """

    name: str
    conv_general_dilated: Callable | None = None
    batch_norm_type: type[nnx.BatchNorm] = nnx.BatchNorm
    window_reduce: Callable = reduce_window

    def conv(self, in_features: int, out_features: int, kernel_size: int | Sequence[int], *,
             strides: int = 1, pad: int | tuple[int, int] = 0, use_bias: bool = False,
             kernel_init=msra, bias_init=zeros, dtype: Dtype = None,
             rngs: nnx.Rngs) -> nnx.Conv:
        """An ``nnx.Conv`` with Caffe's symmetric ``pad`` and the zoo's initialisers
        (parameters float32; computation in ``dtype``)."""
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        extra = ({} if self.conv_general_dilated is None
                 else {"conv_general_dilated": self.conv_general_dilated})
        return nnx.Conv(in_features, out_features, ks, strides=strides, padding=pad2d(pad),
                        use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                        dtype=dtype, rngs=rngs, **extra)

    def batch_norm(self, num_features: int, spec: BatchNormSpec, *, dtype: Dtype = None,
                   rngs: nnx.Rngs) -> nnx.BatchNorm:
        """Caffe's BatchNorm + Scale(bias) pair: scale 1, bias 0, statistics in float32."""
        return self.batch_norm_type(num_features, momentum=spec.momentum,
                                    epsilon=spec.epsilon, dtype=dtype, rngs=rngs)

    def max_pool(self, x: jax.Array, window: int, stride: int, pad: int = 0) -> jax.Array:
        """Caffe ``Pooling { pool: MAX }`` on NHWC ``x`` (ceil-mode output size)."""
        ph, pw = (_ceil_pool_padding(x.shape[1], window, stride, pad),
                  _ceil_pool_padding(x.shape[2], window, stride, pad))
        return self.window_reduce(x, window, stride, (ph[:2], pw[:2]), "max")

    def avg_pool(self, x: jax.Array, window: int, stride: int, pad: int = 0) -> jax.Array:
        """Caffe ``Pooling { pool: AVE }`` on NHWC ``x``: ceil-mode output size, zero padding
        counted in the divisor, the ceil-mode overhang not counted."""
        ph, pw = (_ceil_pool_padding(x.shape[1], window, stride, pad),
                  _ceil_pool_padding(x.shape[2], window, stride, pad))
        summed = self.window_reduce(x, window, stride, (ph[:2], pw[:2]), "sum")
        if ph[2] == 0 and pw[2] == 0:
            return summed * (1.0 / (window * window))
        # Divisor per output position (a compile-time constant).
        ones = np.zeros((x.shape[1] + ph[0] + ph[1], x.shape[2] + pw[0] + pw[1]), np.float32)
        ones[: x.shape[1] + 2 * pad, : x.shape[2] + 2 * pad] = 1.0
        oh, ow = summed.shape[1], summed.shape[2]
        count = np.array([[ones[i * stride:i * stride + window,
                                j * stride:j * stride + window].sum() for j in range(ow)]
                          for i in range(oh)], np.float32)
        return summed * jnp.asarray(1.0 / count, x.dtype)[None, :, :, None]


PLAIN = Layers("plain")


class ConvBN(nnx.Module):
    """Caffe's Convolution (no bias) -> BatchNorm -> Scale [-> ReLU] unit."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 *, strides: int = 1, pad: int | tuple[int, int] = 0, relu: bool = True,
                 bn: BatchNormSpec, kernel_init=msra, dtype: Dtype = None,
                 layers: Layers = PLAIN, rngs: nnx.Rngs):
        self.conv = layers.conv(in_features, out_features, kernel_size, strides=strides,
                                pad=pad, kernel_init=kernel_init, dtype=dtype, rngs=rngs)
        self.bn = layers.batch_norm(out_features, bn, dtype=dtype, rngs=rngs)
        self.relu = relu

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn(self.conv(x))
        return jax.nn.relu(y) if self.relu else y


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Caffe ``Pooling { pool: AVE global_pooling: true }``: NHWC -> NC."""
    return jnp.mean(x, axis=(1, 2))


def check_input(x: jax.Array, channels: int, name: str, min_size: int = 1,
                size: int | None = None) -> None:
    """Raise a clear ConfigError unless ``x`` is an NHWC batch with ``channels`` channels and
    spatial size ``size`` x ``size`` (when given) or at least ``min_size``."""
    shape = getattr(x, "shape", None)
    ok = shape is not None and len(shape) == 4 and shape[3] == channels
    if ok and size is not None:
        ok = shape[1] == size and shape[2] == size
    elif ok:
        ok = shape[1] >= min_size and shape[2] >= min_size
    if not ok:
        hw = f"H = W = {size}" if size is not None else f"H, W >= {min_size}"
        raise ConfigError(f"{name} expects an NHWC batch of shape (N, H, W, {channels}) with "
                          f"{hw}; got x with shape {shape}")


def validate_num_classes(num_classes: Any) -> int:
    return _validate.positive_int("num_classes", num_classes)


def _path_key(path: tuple) -> str:
    return "/".join(str(p) for p in path)


def param_multipliers(model: nnx.Module, table: Mapping[str, float]) -> nnx.State:
    """A tree with the structure of ``nnx.state(model, nnx.Param)`` whose leaves are float32
    scalars: the multiplier of each parameter in ``table`` (``'/'``-joined parameter path or
    `fnmatch` pattern -> multiplier; the first matching entry wins; unmatched parameters get
    1.0). Scalars broadcast, so ``jax.tree.map(lambda p, m: m * p, params, multipliers)``
    scales each parameter tensor."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    keys = [_path_key(path) for path, _ in flat]
    unused = [pattern for pattern in table if not fnmatch.filter(keys, pattern)]
    if unused:  # a typo in a model's table must not silently leave a multiplier unapplied
        raise ValueError(f"{type(model).__name__}: multiplier patterns {unused} match no "
                         "parameter")

    def lookup(key: str) -> float:
        return next((m for pattern, m in table.items() if fnmatch.fnmatchcase(key, pattern)),
                    1.0)

    return nnx.from_flat_state(
        [(path, var.replace(jnp.asarray(lookup(key), jnp.float32)))
         for key, (path, var) in zip(keys, flat)])


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays / ShapeDtypeStructs / nnx Variables."""
    return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(tree)))


class ZooModel(nnx.Module):
    """Base of the zoo's networks: input checks and per-parameter optimiser metadata.

    ``WEIGHT_DECAY_MULTIPLIERS`` / ``LR_MULTIPLIERS`` map ``'/'``-joined parameter paths (as
    in ``nnx.to_flat_state(nnx.state(model, nnx.Param))``, e.g. ``"fc/kernel"``; `fnmatch`
    patterns allowed) to Caffe's ``decay_mult`` / ``lr_mult`` where the author's prototxt
    sets them to something other than 1; every other parameter has multiplier 1 (as in Caffe,
    where BN ``Scale`` parameters are decayed too). `weight_decay_multipliers` and
    `lr_multipliers` return them as a tree shaped like the model's parameters, for an
    optimiser to use.
    """

    WEIGHT_DECAY_MULTIPLIERS: Mapping[str, float] = {}
    LR_MULTIPLIERS: Mapping[str, float] = {}
    INPUT_CHANNELS: int = 3
    MIN_INPUT_SIZE: int = 1
    input_size: int | None = None  # set by networks whose classifier fixes the image size

    def check_input(self, x: jax.Array) -> None:
        check_input(x, self.INPUT_CHANNELS, type(self).__name__, self.MIN_INPUT_SIZE,
                    self.input_size)

    def weight_decay_multipliers(self) -> nnx.State:
        """Caffe ``decay_mult`` per parameter (see the class docstring)."""
        return param_multipliers(self, self.WEIGHT_DECAY_MULTIPLIERS)

    def lr_multipliers(self) -> nnx.State:
        """Caffe ``lr_mult`` per parameter (see the class docstring)."""
        return param_multipliers(self, self.LR_MULTIPLIERS)
