"""The author's shallow 3-layer net (``cifar100.prototxt``: cifar10_full with 100 outputs) on
CIFAR-100, mean-subtracted 0-255 inputs, no augmentation (his prototxt has none).

From the author's log `cifar100_C100CycLR.0020.02CM0.95.8WD6e-4Epoch50BS128l_1`: 1cycle
0.002-0.02, cyclical momentum 0.95-0.8, WD 6e-4, total batch 512 (4 x 128), 50 epochs
(4882 iterations), stepsize 2246 -> final test accuracy 0.5285. Inferred: the `piecewise`
baseline, Caffe's own cifar10_full recipe (`examples/cifar10/cifar10_full_solver*.prototxt`):
LR 0.001, /10 after 120 and 130 of 140 epochs, momentum 0.9 without Nesterov, WD 0.004 (times
the net's 250 on the final layer), batch 128 instead of Caffe's 100 so that it splits over 8
devices; the author's logs hold no baseline run of this net.
"""

from hparams_jax.experiment import Experiment, PaperResult, Setting
from hparams_jax.experiment.protocols import CAFFE_CIFAR10_FULL
from hparams_jax.train import TrainConfig

ONE_CYCLE = dict(lr_policy="one_cycle", min_lr=0.002, max_lr=0.02, momentum=(0.95, 0.8),
                 weight_decay=6e-4, batch_size=512, epochs=50, step_size=2246)

EXPERIMENT = Experiment(
    name="cifar100_cifar3",
    title="3-layer net, CIFAR-100",
    section="Sec. 5.2",
    config=TrainConfig(model="cifar3", dataset="cifar100", augmentation="none",
                       normalization="mean", **ONE_CYCLE),
    settings=(
        Setting("one_cycle", {},
                paper=PaperResult(0.5285, 50, "log cifar100_C100CycLR.0020.02CM0.95.8WD6e-4"
                                              "Epoch50BS128l_1"),
                note="the author's run: 1cycle 0.002-0.02, CM 0.95-0.8, WD 6e-4, TBS 512, "
                     "50 epochs, step size 2246"),
        Setting("piecewise", CAFFE_CIFAR10_FULL,
                note="baseline (inferred): Caffe's cifar10_full recipe, LR 0.001, /10 at 120 "
                     "and 130 of 140 epochs, momentum 0.9 (no Nesterov), WD 0.004, TBS 128"),
    ),
    baseline="piecewise",
    comparisons={"learning-rate policy": ("one_cycle", "piecewise")},
)
