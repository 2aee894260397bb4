"""`hparams-jax` command line (also `python -m hparams_jax`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _demo(args) -> int:
    """The 1cycle policy of Smith 2018 (Sec. 4.1) as a table and a figure."""
    import jax
    import jax.numpy as jnp

    from hparams_jax import plots, schedules

    total = args.steps
    lr = schedules.one_cycle(total, 0.1, 1.0)
    momentum = schedules.one_cycle_momentum(total)
    weight_decay = schedules.constant(1e-4)
    steps = jnp.arange(total + 1)
    curves = {name: np.asarray(jax.vmap(fn)(steps)) for name, fn in
              [("learning_rate", lr), ("momentum", momentum), ("weight_decay", weight_decay)]}
    print(f"1cycle over {total} steps: LR 0.1 -> 1.0 -> 0.1 -> 1e-4, momentum 0.95 -> 0.85 -> 0.95")
    print(f"{'step':>6} {'learning_rate':>14} {'momentum':>9} {'weight_decay':>13}")
    for t in np.linspace(0, total, 11).astype(int):
        print(f"{t:>6} {curves['learning_rate'][t]:>14.6f} {curves['momentum'][t]:>9.4f} "
              f"{curves['weight_decay'][t]:>13.1e}")
    path = plots.plot_schedules(curves, Path(args.workdir) / "schedules.png",
                                title="1cycle learning rate and cyclical momentum")
    print(f"saved {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hparams-jax",
        description="Smith's disciplined approach to neural-network hyper-parameters "
                    "(1cycle, cyclical momentum, LR range test) in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="print and plot the 1cycle policy")
    demo.add_argument("--workdir", default="runs/demo", help="where the figures go")
    demo.add_argument("--steps", type=int, default=1000, help="length of the policy")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"hparams-jax: error: {err}", file=sys.stderr)
        return 2
