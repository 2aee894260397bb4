"""Setting sets shared by several experiments.

`core_comparisons`: the paper's core comparisons for one network (Sec. 4.1, 4.3, 4.4; Table 1's
MNIST rows): a 1cycle run, the same 1cycle in half the epochs, a piecewise-constant baseline and
a constant LR of the baseline's length, constant instead of cyclical momentum, and two other
weight decays.

`lenet_protocol`: the author's LeNet protocol (Caffe's `lenet_solver.prototxt` and the paper's
Table 1, as `shared/reference` records it) with the variations each of the paper's claims
needs, for MNIST and Fashion-MNIST alike.
"""

from __future__ import annotations

from typing import Any

from hparams_jax.experiment.spec import Setting


def _wd_name(wd: float) -> str:
    return f"wd{wd:.0e}".replace("e-0", "e-")  # wd1e-3


def _by_weight_decay(others: tuple[float, ...], base: str, base_wd: float, prefix: str
                     ) -> tuple[str, ...]:
    """Setting names from the largest weight decay to the smallest: `base` (at `base_wd`) among
    `prefix` + `wd...` of each of `others`."""
    names = {base_wd: base, **{w: prefix + _wd_name(w) for w in others}}
    return tuple(names[w] for w in sorted(names, reverse=True))


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


# Caffe's lenet_solver.prototxt: the `inv` policy, base LR 0.01, gamma 1e-4, power 0.75,
# momentum 0.9, weight decay 5e-4, plain (not Nesterov) SGD with the LR inside the velocity.
LENET_SOLVER = dict(lr_policy="inv", min_lr=0.0, max_lr=0.01, inv_gamma=1e-4, inv_power=0.75,
                    momentum=0.9, nesterov=False, momentum_form="caffe", weight_decay=5e-4)


def lenet_protocol(dataset: str, *, steps_per_epoch: int, baseline_runs: int = 2
                   ) -> dict[str, Any]:
    """`config`, `settings`, `baseline` and `comparisons` for `Experiment(...)`: the paper's
    LeNet protocol at total batch 512, `steps_per_epoch` optimizer steps an epoch.

    Base (`one_cycle`, Table 1): 1cycle LR 0.01-0.1 with a step size of 5 epochs (up 5, down 5)
    then annihilation to the end of 12 epochs, cyclical momentum 0.95-0.8, weight decay 5e-4,
    Caffe's SGD. Baselines of 85 epochs (`baseline_runs` seeds each, for their length): Caffe's
    `inv` (`LENET_SOLVER`) and a constant LR 0.01. Variations: cyclical momentum 0.95-0.85 and
    constant 0.9 / 0.95 (Sec. 4.3); weight decays 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5 under 1cycle
    and 3e-3, 1e-3, 1e-4 under the constant LR (Sec. 4.4); the 1cycle in half and twice the
    epochs, to test what the curves of the 12-epoch run say (Sec. 3).
    """
    from hparams_jax.train import TrainConfig

    def cycle(epochs: float) -> dict[str, Any]:  # step size 5/12 of the run, as 5 of 12 epochs
        return dict(epochs=epochs, step_size=round(5 * steps_per_epoch * epochs / 12))

    long = dict(runs=baseline_runs, eval_every_epochs=1.0)
    constant = dict(LENET_SOLVER, lr_policy="constant", epochs=85)
    base_wd = 5e-4  # Table 1's LeNet runs
    wd = (3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
    constant_wd = (3e-3, 1e-3, 1e-4)
    settings = (
        Setting("one_cycle", {}, note="1cycle 0.01-0.1, step 5 epochs, CM 0.95-0.8, WD 5e-4, "
                                      "12 epochs (Table 1)"),
        Setting("inv", dict(LENET_SOLVER, epochs=85), **long,
                note="baseline: Caffe's LeNet solver, `inv` LR 0.01 (gamma 1e-4, power 0.75), "
                     "momentum 0.9, 85 epochs"),
        Setting("constant", constant, **long, note="constant LR 0.01, momentum 0.9, 85 epochs"),
        Setting("cm_0.95-0.85", {"momentum": (0.95, 0.85)},
                note="1cycle, cyclical momentum 0.95-0.85 (Sec. 4.3)"),
        Setting("momentum_0.9", {"momentum": 0.9}, note="1cycle, constant momentum 0.9"),
        Setting("momentum_0.95", {"momentum": 0.95}, note="1cycle, constant momentum 0.95"),
        *(Setting(_wd_name(w), {"weight_decay": w}, note=f"1cycle, WD {w:g} (Sec. 4.4)")
          for w in wd),
        Setting("one_cycle_6ep", cycle(6), note="the 1cycle in half the epochs (step 2.5)"),
        Setting("one_cycle_24ep", cycle(24), note="the 1cycle in twice the epochs (step 10)"),
        *(Setting(f"constant_{_wd_name(w)}", dict(constant, weight_decay=w), **long,
                  note=f"constant LR 0.01, WD {w:g}, 85 epochs (Sec. 4.4)") for w in constant_wd),
    )
    return dict(
        config=TrainConfig(model="lenet", dataset=dataset, batch_size=512, augmentation="none",
                           nesterov=False, momentum_form="caffe", weight_decay=base_wd,
                           lr_policy="one_cycle",
                           min_lr=0.01, max_lr=0.1, momentum=(0.95, 0.8), **cycle(12)),
        settings=settings,
        baseline="inv",
        comparisons={
            "learning-rate policy": ("one_cycle", "one_cycle_6ep", "one_cycle_24ep", "inv",
                                     "constant"),
            "momentum": ("one_cycle", "cm_0.95-0.85", "momentum_0.9", "momentum_0.95"),
            "weight decay, 1cycle": _by_weight_decay(wd, "one_cycle", base_wd, ""),
            "weight decay, constant LR": _by_weight_decay(constant_wd, "constant",
                                                          LENET_SOLVER["weight_decay"],
                                                          "constant_"),
        },
    )
