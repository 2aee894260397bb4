"""`tune` with its defaults on LeNet / Fashion-MNIST at the protocol's 12 epochs (Smith 2018,
Sec. 4-5): the record behind the `tuned` setting of `experiments/configs/fashion_mnist_lenet.py`.

The runs share the experiment's base config (`experiment.protocols.lenet_protocol`: Caffe's SGD
with plain momentum, no augmentation, the full 60,000 training and 10,000 test images, 12
epochs). The search starts where `TrainConfig` does (batch 128, momentum 0.9, weight decay 5e-4)
and uses `tune`'s defaults: an exponential scout from LR 0.001, linear range tests of 300 steps
at batch 128 (as many examples at the other batches), batch sizes 128/256/512, momenta
0.95-0.85/0.9/0.95/0.97/0.99, weight decays 1e-3/1e-4/1e-5, 2 seeds, no budget. The tuned
1cycle runs 12 epochs at 2 seeds in 1cycle's default shape (the `tuned` setting puts the
chosen values in the protocol's: step 5 of 12 epochs).

    python experiments/tune_fashion_mnist_lenet.py   # -> records/fashion_mnist_lenet/tune

`tune.json`, `report.md`, `stages/` and the 1cycle run's `one_cycle/` go into the workdir. A
killed run continues where it stopped: run the same command again (each stage is recorded as it
finishes, the 1cycle run resumes from its checkpoints).
"""

from __future__ import annotations

import argparse
from pathlib import Path

WORKDIR = Path(__file__).resolve().parent / "records" / "fashion_mnist_lenet" / "tune"


def start_config():
    """The experiment's base config, as `tune` starts from it: TrainConfig's batch size,
    momentum and weight decay, 1cycle's default shape (tune sets the policy and bounds)."""
    from hparams_jax.experiment.spec import find
    from hparams_jax.train import TrainConfig

    default = TrainConfig()
    return find("fashion_mnist_lenet").config.replace(
        batch_size=default.batch_size, momentum=default.momentum,
        weight_decay=default.weight_decay, step_size=None, epochs=12, steps=None)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    from hparams_jax import _xla

    _xla.apply_cpu_defaults()
    from hparams_jax import tune

    config = start_config().replace(workdir=str(args.workdir), progress=not args.no_progress)
    print(tune(config).text())


if __name__ == "__main__":
    main()
