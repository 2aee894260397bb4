"""LeNet on Fashion-MNIST: the paper's MNIST/LeNet protocol (Table 1) on the MNIST-shaped
dataset this project can use offline.

The author's published logs hold no MNIST runs, so every value here follows the paper's text:
1cycle LR 0.01-0.1 with cyclical momentum 0.95-0.8 and weight decay 5e-4, 12 epochs, against
a baseline of 85 epochs; the LR range test of this network and dataset (`make demo`) puts the
bounds at 0.009-0.09, the same decade. Inferred: total batch 512 (the batch of the author's
CIFAR runs), the baseline's piecewise-constant schedule (LR 0.01, /10 at 50% and 75%; the
Caffe LeNet solver's own "inv" decay is not offered), constant momentum 0.9 for the
baselines, and the three weight decays 1e-3 / 5e-4 / 1e-4.
"""

from hparams_jax.experiment import Experiment, Setting
from hparams_jax.train import TrainConfig

ONE_CYCLE = dict(lr_policy="one_cycle", min_lr=0.01, max_lr=0.1, momentum=(0.95, 0.8),
                 epochs=12)
BASELINE = dict(min_lr=0.0, max_lr=0.01, momentum=0.9, epochs=85)

EXPERIMENT = Experiment(
    name="fashion_mnist_lenet",
    title="LeNet, Fashion-MNIST",
    section="Sec. 4.1, 4.3, 4.4; Table 1 (MNIST rows)",
    config=TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=512,
                       weight_decay=5e-4, augmentation="none", **ONE_CYCLE),
    settings=(
        Setting("one_cycle", {}, note="1cycle 0.01-0.1, CM 0.95-0.8, WD 5e-4, 12 epochs"),
        Setting("one_cycle_6ep", {"epochs": 6},
                note="the same 1cycle squeezed into 6 epochs"),
        Setting("piecewise", dict(BASELINE, lr_policy="piecewise"),
                note="baseline: LR 0.01, /10 at 50% and 75% of 85 epochs, momentum 0.9"),
        Setting("constant", dict(BASELINE, lr_policy="constant"),
                note="constant LR 0.01, momentum 0.9, 85 epochs"),
        Setting("constant_momentum", {"momentum": 0.9},
                note="1cycle LR with constant momentum 0.9 (Sec. 4.3)"),
        Setting("wd1e-3", {"weight_decay": 1e-3}, note="1cycle, WD 1e-3 (Sec. 4.4)"),
        Setting("wd1e-4", {"weight_decay": 1e-4}, note="1cycle, WD 1e-4 (Sec. 4.4)"),
    ),
    baseline="piecewise",
    comparisons={
        "learning-rate policy": ("one_cycle", "one_cycle_6ep", "piecewise", "constant"),
        "momentum": ("one_cycle", "constant_momentum"),
        "weight decay": ("wd1e-3", "one_cycle", "wd1e-4"),
    },
    eval_every_epochs=0.25,
)
