"""Overhead of scheduled hyper-parameters: `hparams_jax.transforms.sgd` with three schedules
(1cycle LR, cyclical momentum, linear weight decay) against `optax.sgd` with constants (plus
`optax.add_decayed_weights`, the same arithmetic), and `transforms.adamw` with three schedules
(1cycle LR, cyclical beta1, linear weight decay) against `optax.adamw` with constants, all
jitted, on a ~1M-parameter MLP.

Prints the median time of the optimizer update alone and of a whole training step
(forward + backward + update, batch 128), and their ratios. Target: ratio <= 1.03.

    python experiments/bench_policies.py [--rounds 30]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hparams_jax import _xla, schedules, transforms
from timing import interleaved, table

LAYERS = (784, 1024, 256, 10)  # 1,068,810 parameters
BATCH = 128
TOTAL_STEPS = 10_000


def init_mlp(key):
    params = []
    for fan_in, fan_out in zip(LAYERS[:-1], LAYERS[1:]):
        key, sub = jax.random.split(key)
        params.append({"w": jax.random.normal(sub, (fan_in, fan_out)) * np.sqrt(2 / fan_in),
                       "b": jnp.zeros(fan_out)})
    return params


def loss_fn(params, x, y):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_fns(opt, params, x, y):
    state = opt.init(params)

    @jax.jit
    def update_only(grads, state, params):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    @jax.jit
    def train_step(params, state, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    grads = jax.grad(loss_fn)(params, x, y)
    holder = {"u": (params, state), "t": (params, state)}

    def run_update():
        holder["u"] = update_only(grads, holder["u"][1], holder["u"][0])
        return holder["u"]

    def run_step():
        holder["t"] = train_step(*holder["t"], x, y)
        return holder["t"]

    return run_update, run_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    _xla.apply_cpu_defaults()  # the package's XLA:CPU flags, as a run on the CPU has them

    key = jax.random.PRNGKey(0)
    params = init_mlp(key)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    x = jax.random.normal(key, (BATCH, LAYERS[0]))
    y = jax.random.randint(key, (BATCH,), 0, LAYERS[-1])

    pairs = {
        "sgd": (transforms.sgd(schedules.one_cycle(TOTAL_STEPS, 0.1, 1.0),
                               schedules.one_cycle_momentum(TOTAL_STEPS), nesterov=True,
                               weight_decay=schedules.linear(1e-4, 1e-5, TOTAL_STEPS)),
                optax.chain(optax.add_decayed_weights(1e-4),
                            optax.sgd(0.1, 0.9, nesterov=True))),
        "adamw": (transforms.adamw(schedules.one_cycle(TOTAL_STEPS, 1e-4, 1e-3),
                                   b1=schedules.one_cycle_momentum(TOTAL_STEPS),
                                   weight_decay=schedules.linear(1e-2, 1e-3, TOTAL_STEPS)),
                  optax.adamw(1e-3, b1=0.9, weight_decay=1e-2)),
    }
    columns = ["optimizer", "what", "optax, constants (ms)", "ours, 3 schedules (ms)", "ratio"]
    rows = []
    for name, (scheduled, constant) in pairs.items():
        ours_update, ours_step = make_fns(scheduled, params, x, y)
        ref_update, ref_step = make_fns(constant, params, x, y)
        updates = interleaved({"ours": ours_update, "optax": ref_update},
                              rounds=args.rounds, per_round=20)
        steps = interleaved({"ours": ours_step, "optax": ref_step}, rounds=args.rounds,
                            per_round=5)
        for what, t in (("optimizer update", updates), (f"train step, batch {BATCH}", steps)):
            rows.append(dict(zip(columns, (name, what, f"{t['optax'] * 1e3:.3f}",
                                           f"{t['ours'] * 1e3:.3f}",
                                           f"{t['ours'] / t['optax']:.3f}"))))
    print(f"MLP {LAYERS}, {n_params:,} parameters, backend {jax.default_backend()}, "
          f"{args.rounds} interleaved rounds, medians")
    print(table(rows, columns))


if __name__ == "__main__":
    main()
