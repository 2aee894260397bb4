"""The author's shallow 3-layer CIFAR net (Caffe's cifar10_full) on Fashion-MNIST, sized for
28x28x1 images, with mean-subtracted 0-255 inputs as his Caffe data layers fed it.

Bounds from this project's LR range test of this network and dataset (batch 128, momentum 0.9,
WD 5e-4, 1e-4 -> 1 exponential over 300 steps on 15,000 training images): the held-out loss is
best up to LR 0.0039 and the training loss turns ragged at 0.0016, the suggested max_lr;
min_lr = max_lr / 10 as in the author's job scripts. Inferred: the protocol (1cycle of 12
epochs against 85-epoch baselines, as for LeNet), the baselines' piecewise-constant LR 0.001
(cifar10_full's base LR) with momentum 0.9, the three weight decays, batch 128 (the range
test's), and a fixed 10,000-image training subset that keeps the runs within a 2-core CPU's
budget (the whole test split is still used for evaluation).
"""

from hparams_jax.experiment import Experiment, core_comparisons
from hparams_jax.train import TrainConfig

ONE_CYCLE = dict(lr_policy="one_cycle", min_lr=0.00016, max_lr=0.0016, momentum=(0.95, 0.8),
                 epochs=12)

EXPERIMENT = Experiment(
    name="fashion_mnist_cifar3",
    title="3-layer net, Fashion-MNIST (10,000 training images)",
    section="Sec. 4.1, 4.3, 4.4; Table 1 (3-layer rows)",
    config=TrainConfig(model="cifar3", model_options={"in_channels": 1, "input_size": 28},
                       dataset="fashion_mnist", batch_size=128, weight_decay=5e-4,
                       augmentation="none", normalization="mean", train_examples=10_000,
                       **ONE_CYCLE),
    **core_comparisons(one_cycle="1cycle 0.00016-0.0016, CM 0.95-0.8, WD 5e-4, 12 epochs",
                       baseline_lr=0.001, baseline_epochs=85, one_cycle_epochs=12,
                       weight_decays=(1e-3, 1e-4)),
    eval_every_epochs=1.0,
)
