"""Setting sets shared by several experiments.

`core_comparisons`: the paper's core comparisons for one network (Sec. 4.1, 4.3, 4.4; Table 1's
MNIST rows): a 1cycle run, the same 1cycle in half the epochs, a piecewise-constant baseline and
a constant LR of the baseline's length, constant instead of cyclical momentum, and two other
weight decays.
"""

from __future__ import annotations

from typing import Any

from hparams_jax.experiment.spec import Setting


def _wd_name(wd: float) -> str:
    return f"wd{wd:.0e}".replace("e-0", "e-")  # wd1e-3


def core_comparisons(*, one_cycle: str, baseline_lr: float, baseline_epochs: float,
                     one_cycle_epochs: float, weight_decays: tuple[float, float],
                     constant_momentum: float = 0.9) -> dict[str, Any]:
    """`settings`, `baseline` and `comparisons` for `Experiment(...)`. The experiment's base
    config is the 1cycle run (`one_cycle` describes it); the baselines train `baseline_epochs`
    at `baseline_lr` with momentum `constant_momentum`."""
    baseline = dict(min_lr=0.0, max_lr=baseline_lr, momentum=constant_momentum,
                    epochs=baseline_epochs)
    low, high = sorted(weight_decays)
    short = f"one_cycle_{one_cycle_epochs / 2:g}ep"
    return dict(
        settings=(
            Setting("one_cycle", {}, note=one_cycle),
            Setting(short, {"epochs": one_cycle_epochs / 2},
                    note=f"the same 1cycle squeezed into {one_cycle_epochs / 2:g} epochs"),
            Setting("piecewise", dict(baseline, lr_policy="piecewise"),
                    note=f"baseline: LR {baseline_lr:g}, /10 at 50% and 75% of "
                         f"{baseline_epochs:g} epochs, momentum {constant_momentum:g}"),
            Setting("constant", dict(baseline, lr_policy="constant"),
                    note=f"constant LR {baseline_lr:g}, momentum {constant_momentum:g}, "
                         f"{baseline_epochs:g} epochs"),
            Setting("constant_momentum", {"momentum": constant_momentum},
                    note=f"1cycle LR with constant momentum {constant_momentum:g} (Sec. 4.3)"),
            Setting(_wd_name(high), {"weight_decay": high},
                    note=f"1cycle, WD {high:g} (Sec. 4.4)"),
            Setting(_wd_name(low), {"weight_decay": low},
                    note=f"1cycle, WD {low:g} (Sec. 4.4)"),
        ),
        baseline="piecewise",
        comparisons={
            "learning-rate policy": ("one_cycle", short, "piecewise", "constant"),
            "momentum": ("one_cycle", "constant_momentum"),
            "weight decay": (_wd_name(high), "one_cycle", _wd_name(low)),
        },
    )


def caffe_step_boundaries(epochs: float, *, train_images: int, batch_size: int,
                          every: int) -> tuple[float, ...]:
    """Caffe's "step" LR policy (a drop every `every` iterations) as the fractions of a run of
    `epochs` that `TrainConfig.piecewise_boundaries` takes (the author's ImageNet baselines)."""
    total = epochs * train_images / batch_size
    return tuple(k * every / total for k in range(1, int(total // every) + 1)
                 if k * every < total)


# Caffe's cifar10_full solver, the baseline of the author's 3-layer net: LR 0.001, /10 at 120
# and 130 of 140 epochs, momentum 0.9 (no Nesterov), WD 0.004; batch 128 (Caffe's is 100).
CAFFE_CIFAR10_FULL = dict(lr_policy="piecewise", min_lr=0.0, max_lr=0.001, momentum=0.9,
                          nesterov=False, weight_decay=0.004, batch_size=128, epochs=140,
                          piecewise_boundaries=(120 / 140, 130 / 140), piecewise_gamma=0.1,
                          step_size=None)
