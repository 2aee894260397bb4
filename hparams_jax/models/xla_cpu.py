"""The zoo's layers in forms XLA:CPU runs faster: `LAYERS`, a `layers.Layers` for the CPU
execution plan (`hparams_jax.train.plan`).

Each computes the same function, with the same variables, as its plain Flax counterpart in
`layers.PLAIN` (tests hold them to the same values and gradients); only the XLA:CPU program
differs. Timings are 2-core XLA:CPU, batch 128 (`experiments/bench_train.py`):

* `BatchNorm`: training-mode statistics on a lane-dense view of the NHWC tensor (1.13x faster
  ResNet-56 step on 1 device, 1.32x on 4 simulated devices).
* `conv_general_dilated`: an unpadded 1x1 convolution as a matrix product (its kernel gradient
  runs ~10x faster than XLA:CPU's 1x1 convolution's; DenseNet transitions, ResNet-50
  bottlenecks).
* `window_reduce`: pooling windows as strided slices (their gradient is 3-4x faster than
  ``lax.reduce_window``'s ``select_and_scatter_add`` / padded window sum).

`BatchNorm` updates its running statistics as ``nnx.BatchNorm`` does, reading the private
Flax attribute ``Variable._can_update``; that, like the rest of this module, stays off the
accelerator path.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec as P

from hparams_jax.models.layers import Layers


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` (same variables and values) whose training-mode pass computes on a
    lane-dense view of a channels-last input, ``(-1, lcm(C, 128))`` rows, with the per-channel
    vectors tiled to that width.

    XLA:CPU sums an NHWC tensor over N, H, W with a few channels in the minor dimension ~7x
    slower than it sums the ``(-1, 128)`` view of the same data (also ~2x slower than an
    ``(N, -1, 128)`` view), and the gradients of the per-channel shift and scale are such sums
    too: on ResNet-56's 32x32x16 stage (batch 128), batch norm + ReLU forward and backward
    take 20 ms as ``nnx.BatchNorm`` and 9-13 ms here. Statistics as in ``nnx.BatchNorm``: one
    pass, var = E[x^2] - E[x]^2 (clipped at 0), in at least float32.
    """

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        if use_running_average is None:
            use_running_average = self.use_running_average
        lanes = math.lcm(x.shape[-1], 128)
        if (use_running_average or mask is not None or self.axis_name is not None
                or self.axis not in (-1, x.ndim - 1) or self.scale is None or self.bias is None
                or x.ndim < 2 or math.prod(x.shape[1:]) % lanes
                or any(jax.typeof(x).sharding.spec[1:])):
            return super().__call__(x, use_running_average, mask=mask)
        x, scale, bias = self.promote_dtype((x, self.scale[...], self.bias[...]),
                                            dtype=self.dtype)
        sharding = jax.typeof(x).sharding
        rows = jax.lax.reshape(x, (x.size // lanes, lanes),
                               out_sharding=sharding.update(spec=P(sharding.spec[0], None)))
        mean, var = _lane_dense_stats(rows, x.shape[-1])
        self._update_running_stats(mean, var)
        mul = jax.lax.rsqrt(var + self.epsilon) * scale
        tile = lambda v: jnp.tile(v, lanes // x.shape[-1]).astype(x.dtype)
        y = (rows - tile(mean)) * tile(mul) + tile(bias)
        return jax.lax.reshape(y, x.shape, out_sharding=sharding)

    def _update_running_stats(self, mean: jax.Array, var: jax.Array) -> None:
        """``nnx.BatchNorm``'s exponential moving averages of the batch statistics."""
        stop_gradient = (jax.lax.stop_gradient if self.mean._can_update or self.var._can_update
                         else lambda v: v)
        self.mean[...] = stop_gradient(self.momentum * self.mean[...]
                                       + (1 - self.momentum) * mean)
        self.var[...] = stop_gradient(self.momentum * self.var[...]
                                      + (1 - self.momentum) * var)


def _lane_dense_stats(rows: jax.Array, channels: int) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance, in at least float32, of ``rows``: a channels-last
    tensor viewed as ``(-1, lanes)``, lane ``i`` holding channel ``i % channels``."""
    rows = rows.astype(jnp.promote_types(rows.dtype, jnp.float32))
    count = rows.shape[0] * (rows.shape[1] // channels)
    mean = rows.sum(0).reshape(-1, channels).sum(0) / count
    mean_sq = (rows * rows).sum(0).reshape(-1, channels).sum(0) / count
    return mean, jnp.maximum(0.0, mean_sq - mean * mean)


_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
    """``lax.conv_general_dilated``, except that an unpadded, undilated 1x1 convolution of an
    NHWC input is computed as a matrix product (after a strided slice when its stride is > 1).
    """
    one_by_one = (
        rhs.ndim == 4 and rhs.shape[:2] == (1, 1) and feature_group_count == 1
        and all(d in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
        and (padding == "VALID" or (not isinstance(padding, str)
                                    and all(tuple(p) == (0, 0) for p in padding)))
        and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
    if not one_by_one:
        return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                            rhs_dilation, dimension_numbers,
                                            feature_group_count, precision=precision, **kwargs)
    sh, sw = window_strides
    if sh > 1 or sw > 1:
        lhs = lhs[:, ::sh, ::sw, :]
    n, h, w, c = lhs.shape
    out = jax.lax.dot_general(lhs.reshape(n * h * w, c), rhs.reshape(c, rhs.shape[3]),
                              (((1,), (0,)), ((), ())), precision=precision,
                              preferred_element_type=kwargs.get("preferred_element_type"))
    return out.reshape(n, h, w, rhs.shape[3])


def window_reduce(x: jax.Array, window: int, stride: int, pads, op: str) -> jax.Array:
    """`layers.reduce_window` written as ``window**2`` strided slices combined elementwise:
    XLA fuses them into one loop, and their gradient (pads and selects) is 3-4x faster on
    XLA:CPU than reduce_window's."""
    fill, combine = (-jnp.inf, jnp.maximum) if op == "max" else (0.0, jnp.add)
    (lh, hh), (lw, hw) = pads
    if any((lh, hh, lw, hw)):
        x = jnp.pad(x, ((0, 0), (lh, hh), (lw, hw), (0, 0)), constant_values=fill)
    n, h, w, c = x.shape
    oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
    out = None
    for i in range(window):
        for j in range(window):
            view = jax.lax.slice(x, (0, i, j, 0),
                                 (n, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c),
                                 (1, stride, stride, 1))
            out = view if out is None else combine(out, view)
    return out


LAYERS = Layers("xla_cpu", conv_general_dilated=conv_general_dilated,
                batch_norm_type=BatchNorm, window_reduce=window_reduce)
