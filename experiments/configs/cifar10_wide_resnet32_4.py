"""The author's Wide ResNet-32 (k=4, widths 16/64/256; ``wide32cifar.prototxt``) on CIFAR-10,
random horizontal flips only.

From the author's logs, total batch 512 (4 x 128), Nesterov: `wide32cifar_Wide1CycLR.1001CM0.95
.85WD1e-4Epoch50BS128a_1`: 1cycle 0.1-1, cyclical momentum 0.95-0.85, WD 1e-4, 50 epochs
(4882 iterations), stepsize 2246 -> 0.9138; `wide32cifar_Wide1CycLR.1001M0.95WD1e-5Epoch100
BS128j_1`: the same with WD 1e-5, 100 epochs (9765 iterations), stepsize 4394 -> 0.8903.
Inferred: the `piecewise` baseline, Zagoruyko & Komodakis (2016)'s WRN recipe (LR 0.1, x0.2
at 60/120/160 of 200 epochs, batch 128, Nesterov momentum 0.9, WD 5e-4); the author's logs
give no baseline number for this net.
"""

from hparams_jax.experiment import Experiment, PaperResult, Setting
from hparams_jax.train import TrainConfig

WRN_2016 = dict(lr_policy="piecewise", min_lr=0.0, max_lr=0.1, momentum=0.9,
                weight_decay=5e-4, batch_size=128, epochs=200, step_size=None,
                piecewise_boundaries=(0.3, 0.6, 0.8), piecewise_gamma=0.2)

EXPERIMENT = Experiment(
    name="cifar10_wide_resnet32_4",
    title="Wide ResNet-32 (k=4), CIFAR-10",
    section="Sec. 5.1",
    config=TrainConfig(model="wide_resnet32_4", dataset="cifar10", batch_size=512, epochs=50,
                       lr_policy="one_cycle", min_lr=0.1, max_lr=1.0, step_size=2246,
                       momentum=(0.95, 0.85), weight_decay=1e-4, augmentation="flip"),
    settings=(
        Setting("one_cycle", {},
                paper=PaperResult(0.9138, 50, "log wide32cifar_Wide1CycLR.1001CM0.95.85WD1e-4"
                                              "Epoch50BS128a_1"),
                note="the author's run: 1cycle 0.1-1, CM 0.95-0.85, WD 1e-4, TBS 512, "
                     "50 epochs, step size 2246"),
        Setting("wd1e-5_100ep", {"weight_decay": 1e-5, "epochs": 100, "step_size": 4394},
                paper=PaperResult(0.8903, 100, "log wide32cifar_Wide1CycLR.1001M0.95WD1e-5"
                                               "Epoch100BS128j_1"),
                note="the author's run: the same 1cycle with WD 1e-5 over 100 epochs, "
                     "step size 4394"),
        Setting("piecewise", WRN_2016,
                note="baseline (inferred): Zagoruyko & Komodakis 2016, LR 0.1, x0.2 at 60, "
                     "120, 160 of 200 epochs, TBS 128, momentum 0.9, WD 5e-4"),
    ),
    baseline="piecewise",
    comparisons={
        "learning-rate policy": ("one_cycle", "piecewise"),
        "weight decay": ("one_cycle", "wd1e-5_100ep"),
    },
    notes=("The two 1cycle rows differ in length as well as weight decay, as the author's "
           "runs did.",),
)
