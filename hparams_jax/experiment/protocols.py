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
