"""XLA:CPU flags the package sets by default, before JAX starts its CPU backend.

Measured by `experiments/bench_train.py --flags` (the README's benchmark table): each flag
here makes the paper's networks train faster on the CPU. They are appended to `XLA_FLAGS`
unless the user already set that flag, or `HPARAMS_JAX_XLA_DEFAULTS=0`. XLA reads the flags
once, when the first computation starts, so importing `hparams_jax` after that changes nothing.
"""

from __future__ import annotations

import os

CPU_FLAGS = (
    # No experimental YNNPACK fusions: XLA's own kernels run these networks' convolutions and
    # their gradients faster (2 cores, batch 128: ResNet-56 step 1529 -> 1039 ms, LeNet 48 ->
    # 26 ms).
    "--xla_cpu_experimental_ynn_fusion_type=",
)


def apply_cpu_defaults() -> None:
    if os.environ.get("HPARAMS_JAX_XLA_DEFAULTS", "1") == "0":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in CPU_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
