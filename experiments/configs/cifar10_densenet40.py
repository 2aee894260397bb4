"""The author's DenseNet-40 (growth 12, not BC, dropout 0.2; ``genDensenet40.prototxt``) on
CIFAR-10, random horizontal flips only.

From the author's logs, total batch 512 (4 x 128 in the run names), Nesterov:
`genDensenet40_Den1CycLR.1004M0.9WD1e-6Epoch50BS128c_1`: 1cycle 0.1-4, cyclical momentum
0.9-0.8, WD 1e-6, 50 epochs (4882 iterations), stepsize 2148 -> 0.9153;
`genDensenet40_DenOrigLR0.10.1M0.9WD1e-4Epoch400BS128c_1`: "multistep" LR 0.1, gamma 0.316,
momentum 0.9, WD 1e-4, 400 epochs (39,062 iterations) -> 0.9303. Its drop points are not in
the reference table; they are read from the solver parameters printed at the top of that log
(stepvalues 19531, 29296, 34178, 36619, 35398): the last stepvalue is smaller than the one
before it, so Caffe applies it right after 36619 and the LR falls twice there (the logged LR
is 0.1 x 0.316^5 from iteration 36,800 on), i.e. boundaries 1/2, 3/4, 7/8, 15/16, 15/16.
"""

from hparams_jax.experiment import Experiment, PaperResult, Setting
from hparams_jax.train import TrainConfig

MULTISTEP = dict(lr_policy="piecewise", min_lr=0.0, max_lr=0.1, momentum=0.9,
                 weight_decay=1e-4, epochs=400, step_size=None,
                 piecewise_boundaries=(0.5, 0.75, 0.875, 0.9375, 0.9375), piecewise_gamma=0.316)

EXPERIMENT = Experiment(
    name="cifar10_densenet40",
    title="DenseNet-40, CIFAR-10",
    section="Sec. 5.1",
    config=TrainConfig(model="densenet40", dataset="cifar10", batch_size=512, epochs=50,
                       lr_policy="one_cycle", min_lr=0.1, max_lr=4.0, step_size=2148,
                       momentum=(0.9, 0.8), weight_decay=1e-6, augmentation="flip"),
    settings=(
        Setting("one_cycle", {},
                paper=PaperResult(0.9153, 50, "log genDensenet40_Den1CycLR.1004M0.9WD1e-6"
                                              "Epoch50BS128c_1"),
                note="the author's run: 1cycle 0.1-4, CM 0.9-0.8, WD 1e-6, TBS 512, "
                     "50 epochs, step size 2148"),
        Setting("multistep", MULTISTEP,
                paper=PaperResult(0.9303, 400, "log genDensenet40_DenOrigLR0.10.1M0.9WD1e-4"
                                               "Epoch400BS128c_1"),
                note="the author's baseline: LR 0.1, x0.316 at 1/2, 3/4, 7/8 and twice at "
                     "15/16 of 400 epochs, momentum 0.9, WD 1e-4, TBS 512"),
    ),
    baseline="multistep",
    comparisons={"learning-rate policy": ("one_cycle", "multistep")},
    notes=("The author's DenseNet accuracies are on a 7,400-image subset of the test split "
           "with random flips.",),
)
