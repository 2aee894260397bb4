"""Speed of the CIFAR networks of `hparams_jax.models` on this machine's default JAX device.

Each network is built from the layers of this backend's execution plan (`train.plan`: the
XLA:CPU forms on a CPU, plain Flax elsewhere). For each network: the jitted training step's
forward + backward (cross-entropy, gradients of
all parameters, batch-norm statistics updated, dropout on) at batch 128 -- compile time, then
the median over a few timed steps after a warm-up -- as images/s; and the forward FLOPs per
image, two ways:

* ``XLA GFLOP``: ``jax.jit(forward).lower(...).compile().cost_analysis()["flops"]`` (XLA's
  own count of the compiled eval-mode forward, all ops; a multiply-add is 2 FLOPs);
* ``conv+fc GMAC``: multiply-accumulates of the convolutions and matrix products, counted
  from the forward's jaxpr (kernel size x input channels x output elements).

Then the time to produce one epoch (50,000 images, batches of 128) of augmented CIFAR-shaped
batches on the device -- a jitted gather from a device-resident uint8 array, then
``random_crop(key, images, pad=4)`` + ``random_flip`` from ``hparams_jax.data.augment`` and
normalisation to float32, every batch dispatched from Python -- as a percentage of that
epoch's training time (= 391 median steps; target < 2%).

    python experiments/bench_models.py                  # all six CIFAR networks
    python experiments/bench_models.py --quick          # 1 warm-up + 3 timed steps
    python experiments/bench_models.py --models resnet20,cifar3 --steps 10
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_timers import xla_flops  # noqa: E402
from timing import median_seconds, table  # noqa: E402

from hparams_jax import _xla, models  # noqa: E402
from hparams_jax.train.plan import resolve  # noqa: E402

CIFAR_MODELS = ["cifar3", "resnet20", "resnet56", "resnet110", "wide_resnet32_4", "densenet40"]
EPOCH_IMAGES = 50_000


def conv_fc_macs(jaxpr: jax.extend.core.Jaxpr) -> int:
    """Multiply-accumulates of conv_general_dilated and dot_general in ``jaxpr`` (recursing
    into sub-jaxprs such as pjit's)."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            out = eqn.outvars[0].aval.shape
            out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
            total += math.prod(out) * math.prod(rhs) // rhs[out_feature_dim]
        elif name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += (math.prod(eqn.outvars[0].aval.shape)
                      * math.prod(lhs[d] for d in lhs_contract))
        for value in eqn.params.values():
            for sub in (value if isinstance(value, (tuple, list)) else (value,)):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    total += conv_fc_macs(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    total += conv_fc_macs(sub)
    return total


def bench_model(name: str, batch: int, steps: int, warmup: int) -> dict:
    rngs = nnx.Rngs(params=0, dropout=1)
    model = models.create(name, num_classes=10, rngs=rngs, layers=resolve().layers)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    n_params = models.count_params(params)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, 32, 32, 3), np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch))

    @jax.jit
    def train_step(params, rest, x, y):
        def loss_fn(params, rest):  # `rest` an argument: BN stats are updated in this trace
            model = nnx.merge(graphdef, params, rest, copy=True)
            loss = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
            return loss, nnx.split(model, nnx.Param, ...)[2]  # updated BN stats, RNG counts
        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
        return loss, grads, new_rest

    start = time.perf_counter()
    compiled = train_step.lower(params, rest, x, y).compile()
    compile_s = time.perf_counter() - start
    step_s = median_seconds(lambda: compiled(params, rest, x, y), repeats=steps, warmup=warmup)

    model.eval()
    eval_graph, eval_state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(eval_graph, state)(x)

    flops = (xla_flops(jax.jit(forward).lower(eval_state, x).compile()) or math.nan) / batch
    macs = conv_fc_macs(jax.make_jaxpr(forward)(eval_state, x).jaxpr) / batch
    steps_per_epoch = math.ceil(EPOCH_IMAGES / batch)
    return {
        "model": name,
        "params": f"{n_params:,}",
        "XLA GFLOP/img": f"{flops / 1e9:.3f}",
        "conv+fc GMAC/img": f"{macs / 1e9:.3f}",
        "compile s": f"{compile_s:.1f}",
        "step ms": f"{step_s * 1e3:.0f}",
        "img/s": f"{batch / step_s:.0f}",
        "epoch s": f"{steps_per_epoch * step_s:.0f}",
        "_epoch_s": steps_per_epoch * step_s,
    }


def augmentation_epoch_seconds(batch: int) -> float | None:
    """Seconds to produce one epoch of augmented batches on the device, as the training step
    would: gather a batch of uint8 images from a device-resident 50,000-image array, pad-4
    random crop, random flip, normalise to float32. None when ``hparams_jax.data.augment`` is
    not available."""
    try:
        data = importlib.import_module("hparams_jax.data")
        random_crop, random_flip = data.random_crop, data.random_flip
    except (ImportError, AttributeError) as err:
        print(f"(augmentation not timed: hparams_jax.data.augment unavailable: {err})")
        return None

    mean = jnp.array([125.3, 123.0, 113.9], jnp.float32)
    std = jnp.array([63.0, 62.1, 66.7], jnp.float32)

    @jax.jit
    def make_batch(key, images, idx):
        crop_key, flip_key = jax.random.split(key)
        x = random_flip(flip_key, random_crop(crop_key, images[idx], pad=4))
        return (x.astype(jnp.float32) - mean) / std

    rng = np.random.default_rng(0)
    images = jax.device_put(rng.integers(0, 256, (EPOCH_IMAGES, 32, 32, 3), np.uint8))
    steps = EPOCH_IMAGES // batch
    order = jnp.asarray(rng.permutation(EPOCH_IMAGES)[: steps * batch].reshape(steps, batch))
    keys = jax.random.split(jax.random.key(0), steps)
    jax.block_until_ready(make_batch(keys[0], images, order[0]))  # compile
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for i in range(steps):
            out = make_batch(keys[i], images, order[i])
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * EPOCH_IMAGES / (steps * batch)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(CIFAR_MODELS),
                        help=f"comma-separated subset of {CIFAR_MODELS}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 3 timed steps")
    args = parser.parse_args(argv)
    _xla.apply_cpu_defaults()  # the CPU plan's flags (on a CPU), before JAX starts
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in models.available()]
    if unknown:
        parser.error(f"unknown models {unknown}; available: {models.available()}")
    if args.quick:
        args.steps, args.warmup = 3, 1

    print(f"JAX {jax.__version__} on {jax.devices()[0].platform} "
          f"({os.cpu_count()} CPU cores visible), batch {args.batch}, "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    rows = []
    for name in names:
        rows.append(bench_model(name, args.batch, args.steps, args.warmup))
        print(f"  {name}: {rows[-1]['img/s']} img/s", flush=True)

    aug_s = augmentation_epoch_seconds(args.batch)
    for row in rows:
        epoch_s = row.pop("_epoch_s")
        row["aug % of epoch"] = "n/a" if aug_s is None else f"{100 * aug_s / epoch_s:.2f}"
    columns = ["model", "params", "XLA GFLOP/img", "conv+fc GMAC/img", "compile s", "step ms",
               "img/s", "epoch s", "aug % of epoch"]
    print()
    print(table(rows, columns))
    if aug_s is not None:
        print(f"\naugmentation (gather + pad-4 crop + flip + normalise, batch {args.batch}): "
              f"{aug_s:.2f} s per 50,000-image epoch")


if __name__ == "__main__":
    main()
