"""LR range-test wall time against the same number of plain training steps.

Both build the same session (data on the device, the same compiled step) and run N steps in
chunks of `eval_every`; the range test adds its held-out evaluations and its stopping checks.
Target: range test / plain <= 1.15.

    python experiments/bench_range_test.py [--steps 300] [--eval-examples 1000]
"""

from __future__ import annotations

import argparse
import time

import jax

from hparams_jax import _xla
from hparams_jax.range_test import lr_range_test
from hparams_jax.train import TrainConfig
from hparams_jax.train.session import Session
from timing import table


def plain_steps(config: TrainConfig, steps: int, chunk: int) -> float:
    start = time.perf_counter()
    session = Session(config.replace(lr_policy="range_test", min_lr=0.001, max_lr=0.05,
                                     steps=steps))
    state, step = session.init_state(), 0
    while step < steps:
        n = session.chunk_length(step, chunk)
        state, m = session.chunk(state, step, n)
        jax.device_get(m)
        step += n
    return time.perf_counter() - start


def range_test(config: TrainConfig, steps: int, chunk: int) -> float:
    start = time.perf_counter()
    result = lr_range_test(config, start=0.001, stop=0.05, num_steps=steps, eval_every=chunk)
    assert result.steps_run == steps, result.stop_reason  # the ramp stays below divergence
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-examples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _xla.apply_cpu_defaults()  # the CPU plan's flags (on a CPU), before JAX starts
    config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=128,
                         eval_examples=args.eval_examples, momentum=0.9, weight_decay=5e-4,
                         progress=False)
    chunk = max(1, args.steps // 20)
    rows = []
    for _ in range(args.rounds):  # alternate, so a noisy neighbour hits both alike
        plain = plain_steps(config, args.steps, chunk)
        test = range_test(config, args.steps, chunk)
        rows.append({"steps": args.steps, "evaluations": args.steps // chunk,
                     "held-out examples": args.eval_examples,
                     "plain training (s)": f"{plain:.1f}", "range test (s)": f"{test:.1f}",
                     "ratio": f"{test / plain:.3f}"})
    print(f"LeNet / Fashion-MNIST, batch 128, backend {jax.default_backend()}, wall time "
          "including set-up and compilation")
    print(table(rows, list(rows[0])))
    ratios = sorted(float(r["ratio"]) for r in rows)
    print(f"median ratio {ratios[len(ratios) // 2]:.3f} over {len(rows)} rounds (target <= 1.15)")


if __name__ == "__main__":
    main()
