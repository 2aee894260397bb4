"""The author's ResNet-56 (``gResnet56.prototxt``) on CIFAR-10, random horizontal flips only.

From the author's log `gResnet56_ResTBS512LR.0800.8M.95WD1e-4Epoch95BS128b_1`: 1cycle
0.08-0.8 with constant momentum 0.95, WD 1e-4, total batch 512 (4 x 128), 95 epochs (9277
iterations), stepsize 4003 -> final test accuracy 0.9191. Inferred: `cyclical_momentum`
(0.95-0.85, the range of the author's other CIFAR ResNet runs); the weight-decay rows 1e-5
and 1e-3 (Sec. 4.4) on the same 1cycle; the `piecewise` baseline, He et al. (2016)'s CIFAR
recipe (LR 0.1, /10 at 32k and 48k of 64k iterations, batch 128, momentum 0.9 without
Nesterov, WD 1e-4), for which the author's logs give no number.

Super-convergence rows (Smith & Topin 2017), settings from the solver parameters printed in
the author's replication logs (`lnsmith54/super-convergence`, `Results/clr3SS5k*`,
`Results/lr35*`): 8 GPUs x 125 = total batch 1000, plain momentum SGD (no Nesterov) 0.9,
WD 1e-4; `sc_one_cycle` is Caffe's "triangular" policy 0.1-3 with stepsize 5000 over 10,000
iterations (one cycle spanning the run, no annihilation) with BN moving-average fraction
0.95; `sc_piecewise` is "multistep" LR 0.35, /10 at 50k and 70k of 80,000 iterations, BN
fraction 0.999. The `n*` rows train on a fixed random subset of the training split for the
same number of iterations. Numbers: 92.44% vs 90.32% on all 50,000 images; 91.10/89.64/
87.92/80.59 (1cycle) vs 90.43/86.36/62.33/71.20 with 40k/30k/20k/10k images. Those logs ran
He et al.'s 9/9/9-block ResNet-56 with a ReLU after each addition; here they run on the
author's later ResNet-56 of `gResnet56.prototxt` like every other row.
"""

from hparams_jax.experiment import Experiment, PaperResult, Setting
from hparams_jax.train import TrainConfig

LOG = "log gResnet56_ResTBS512LR.0800.8M.95WD1e-4Epoch95BS128b_1"
HE_2016 = dict(lr_policy="piecewise", min_lr=0.0, max_lr=0.1, momentum=0.9, nesterov=False,
               batch_size=128, epochs=None, steps=64_000, step_size=None,
               piecewise_boundaries=(0.5, 0.75))
# Smith & Topin's replication solvers: total batch 1000, plain SGD, momentum 0.9, WD 1e-4.
SC = dict(batch_size=1000, epochs=None, momentum=0.9, nesterov=False, weight_decay=1e-4)
SC_CLR = dict(SC, lr_policy="triangular", min_lr=0.1, max_lr=3.0, step_size=5000,
              steps=10_000, model_options={"bn_momentum": 0.95})
SC_PC = dict(SC, lr_policy="piecewise", min_lr=0.0, max_lr=0.35, step_size=None,
             steps=80_000, piecewise_boundaries=(50 / 80, 70 / 80), piecewise_gamma=0.1,
             model_options={"bn_momentum": 0.999})
SC_SOURCE = "Smith & Topin replication log Results/"


def _subset_rows(n: int, clr: float, pc: float) -> tuple[Setting, Setting]:
    k = f"n{n // 1000}k"
    return (
        Setting(f"{k}_one_cycle", dict(SC_CLR, train_examples=n),
                paper=PaperResult(clr, 10_000 * 1000 / n, f"{SC_SOURCE}clr3SS5kTr{k[1:]}Tab1"),
                note=f"as sc_one_cycle on {n:,} training images"),
        Setting(f"{k}_piecewise", dict(SC_PC, train_examples=n),
                paper=PaperResult(pc, 80_000 * 1000 / n, f"{SC_SOURCE}lr35Tr{k[1:]}Tab1"),
                note=f"as sc_piecewise on {n:,} training images"),
    )


SUBSETS = [row for n, clr, pc in ((40_000, 0.9110, 0.9043), (30_000, 0.8964, 0.8636),
                                  (20_000, 0.8792, 0.6233), (10_000, 0.8059, 0.7120))
           for row in _subset_rows(n, clr, pc)]

EXPERIMENT = Experiment(
    name="cifar10_resnet56",
    title="ResNet-56, CIFAR-10",
    section="Sec. 4.1, 4.3, 4.4; Smith & Topin 2017 (super-convergence), Table 1",
    config=TrainConfig(model="resnet56", dataset="cifar10", batch_size=512, epochs=95,
                       lr_policy="one_cycle", min_lr=0.08, max_lr=0.8, step_size=4003,
                       momentum=0.95, weight_decay=1e-4, augmentation="flip"),
    settings=(
        Setting("one_cycle", {}, paper=PaperResult(0.9191, 95, LOG),
                note="the author's run: 1cycle 0.08-0.8, momentum 0.95 constant, WD 1e-4, "
                     "TBS 512, 95 epochs, step size 4003"),
        Setting("cyclical_momentum", {"momentum": (0.95, 0.85)},
                note="the same 1cycle with cyclical momentum 0.95-0.85 (Sec. 4.3; inferred)"),
        Setting("wd1e-5", {"weight_decay": 1e-5}, note="1cycle, WD 1e-5 (Sec. 4.4)"),
        Setting("wd1e-3", {"weight_decay": 1e-3}, note="1cycle, WD 1e-3 (Sec. 4.4)"),
        Setting("piecewise", HE_2016,
                note="baseline (inferred): He et al. 2016, LR 0.1, /10 at 32k and 48k of 64k "
                     "iterations (164 epochs), TBS 128, momentum 0.9 (no Nesterov), WD 1e-4"),
        Setting("sc_one_cycle", SC_CLR,
                paper=PaperResult(0.9244, 200, f"{SC_SOURCE}clr3SS5kFig1a"),
                note="super-convergence: LR 0.1-3-0.1 in one cycle of 10k iterations "
                     "(200 epochs), TBS 1000, momentum 0.9, WD 1e-4"),
        Setting("sc_piecewise", SC_PC,
                paper=PaperResult(0.9032, 1600, f"{SC_SOURCE}lr35Fig1a"),
                note="its baseline: LR 0.35, /10 at 50k and 70k of 80k iterations "
                     "(1600 epochs), TBS 1000, momentum 0.9, WD 1e-4"),
        *SUBSETS,
    ),
    baseline="piecewise",
    comparisons={
        "learning-rate policy": ("one_cycle", "piecewise"),
        "momentum": ("one_cycle", "cyclical_momentum"),
        "weight decay": ("wd1e-5", "one_cycle", "wd1e-3"),
        "super-convergence": ("sc_one_cycle", "sc_piecewise"),
        "training-set size": tuple(s.name for s in SUBSETS),
    },
    notes=("The super-convergence rows use total batch 1000 as the author's 8-GPU runs did: "
           "they need a device count that divides 1000 (1, 2, 4 or 8).",
           "Their paper epochs are the logged iterations x 1000 / training images.",),
)
