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

from hparams_jax.experiment import Experiment, core_comparisons
from hparams_jax.train import TrainConfig

ONE_CYCLE = dict(lr_policy="one_cycle", min_lr=0.01, max_lr=0.1, momentum=(0.95, 0.8),
                 epochs=12)

EXPERIMENT = Experiment(
    name="fashion_mnist_lenet",
    title="LeNet, Fashion-MNIST",
    section="Sec. 4.1, 4.3, 4.4; Table 1 (MNIST rows)",
    config=TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=512,
                       weight_decay=5e-4, augmentation="none", **ONE_CYCLE),
    **core_comparisons(one_cycle="1cycle 0.01-0.1, CM 0.95-0.8, WD 5e-4, 12 epochs",
                       baseline_lr=0.01, baseline_epochs=85, one_cycle_epochs=12,
                       weight_decays=(1e-3, 1e-4)),
    eval_every_epochs=0.25,
)
