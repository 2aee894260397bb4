"""The author's shallow 3-layer net (Caffe's cifar10_full) on CIFAR-10, with mean-subtracted
0-255 inputs and no augmentation, as his Caffe data layers fed it.

The author's logs hold no CIFAR-10 run of this net, so no row has a paper number. Every value
is inferred from his CIFAR-100 run of the same net (`cifar100_C100CycLR.0020.02CM0.95.8WD6e-4
Epoch50BS128l_1`: 1cycle 0.002-0.02, cyclical momentum 0.95-0.8, WD 6e-4, total batch 512,
50 epochs, stepsize 2246 of 4882 iterations). The batch-size rows (Sec. 4.2) keep the LR
range, the momentum, the weight decay and the 50 epochs, and scale the step size with the
number of iterations (46% of the run, as 2246 of 4882). The `piecewise` baseline is Caffe's own
cifar10_full recipe (`examples/cifar10/cifar10_full_solver*.prototxt`, `train_full.sh`):
LR 0.001, /10 after 120 and 130 of 140 epochs, momentum 0.9 without Nesterov, WD 0.004 (times
the net's 250 on the final layer); its batch is 128 instead of Caffe's 100 so that it splits
over 8 devices.
"""

from hparams_jax.experiment import Experiment, Setting
from hparams_jax.experiment.protocols import CAFFE_CIFAR10_FULL
from hparams_jax.train import TrainConfig

ONE_CYCLE = dict(lr_policy="one_cycle", min_lr=0.002, max_lr=0.02, momentum=(0.95, 0.8),
                 weight_decay=6e-4, batch_size=512, epochs=50, step_size=2246)

EXPERIMENT = Experiment(
    name="cifar10_cifar3",
    title="3-layer net, CIFAR-10",
    section="Sec. 4.1, 4.2 (batch size)",
    config=TrainConfig(model="cifar3", dataset="cifar10", augmentation="none",
                       normalization="mean", **ONE_CYCLE),
    settings=(
        Setting("one_cycle", {},
                note="1cycle 0.002-0.02, CM 0.95-0.8, WD 6e-4, TBS 512, 50 epochs, step size "
                     "2246 (all inferred from the author's CIFAR-100 run of this net)"),
        Setting("piecewise", CAFFE_CIFAR10_FULL,
                note="baseline: Caffe's cifar10_full recipe, LR 0.001, /10 at 120 and 130 of "
                     "140 epochs, momentum 0.9 (no Nesterov), WD 0.004, TBS 128"),
        Setting("tbs128", {"batch_size": 128, "step_size": 8984},
                note="1cycle as one_cycle at total batch 128 (step size 8984)"),
        Setting("tbs256", {"batch_size": 256, "step_size": 4492},
                note="1cycle as one_cycle at total batch 256 (step size 4492)"),
        Setting("tbs1024", {"batch_size": 1024, "step_size": 1123},
                note="1cycle as one_cycle at total batch 1024 (step size 1123)"),
    ),
    baseline="piecewise",
    comparisons={
        "learning-rate policy": ("one_cycle", "piecewise"),
        "batch size": ("tbs128", "tbs256", "one_cycle", "tbs1024"),
    },
    notes=("No CIFAR-10 run of this net is in the author's logs: no paper number is shown.",
           "`one_cycle` is the total-batch-512 row of the batch-size comparison."),
)
