"""XLA:CPU flags the entry points set for the CPU plan, before JAX starts its backends.

Measured by `experiments/bench_train.py --flags` (the README's benchmark table): each flag
here makes the paper's networks train faster on the CPU. Importing the package sets nothing;
the entry points that run a config (`train.session.open_session`, behind `fit`, the LR range
test, the CLI and `demo`) and the benchmarks call `apply_cpu_defaults`, which appends them to
`XLA_FLAGS` unless the user already set that flag, the plan is "accelerator", JAX has already
started its backends (XLA reads the flags once, when the first backend starts), or
`HPARAMS_JAX_XLA_DEFAULTS=0`. They are XLA:CPU flags: on a GPU or TPU machine, where "auto"
picks the accelerator plan, they only reach the host's CPU backend. They change XLA:CPU's
kernels, hence float rounding: a run resumed in a process whose JAX started without them (a
notebook that computed before calling `fit`) continues within rounding of, not bitwise as, an
uninterrupted run; call `apply_cpu_defaults()` first in such a program to keep them alike.
"""

from __future__ import annotations

import os

SWITCH = "HPARAMS_JAX_XLA_DEFAULTS"

CPU_FLAGS = (
    # No experimental YNNPACK fusions: XLA's own kernels run these networks' convolutions and
    # their gradients faster (2 cores, batch 128: ResNet-56 step 1529 -> 1039 ms, LeNet 48 ->
    # 26 ms).
    "--xla_cpu_experimental_ynn_fusion_type=",
)


def _backends_started() -> bool:
    from jax._src import xla_bridge  # jax has no public query for this (0.10)

    return xla_bridge.backends_are_initialized()


def apply_cpu_defaults(plan: str = "auto") -> bool:
    """Adds `CPU_FLAGS` to `XLA_FLAGS` for a run under `plan` (see the module docstring);
    returns whether `XLA_FLAGS` was changed."""
    if plan == "accelerator" or os.environ.get(SWITCH, "1") == "0" or _backends_started():
        return False
    before = os.environ.get("XLA_FLAGS", "")
    flags = before
    for flag in CPU_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    if flags == before:
        return False
    os.environ["XLA_FLAGS"] = flags
    return True
