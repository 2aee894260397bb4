"""The author's ResNet-56 (``c100Resnet56.prototxt``) on CIFAR-100, random horizontal flips
only.

From the author's log `c100Resnet56_C100Res1CycLR.1001.2CM0.95.85WD1e-4Epoch145BS256g_1`:
1cycle 0.1-1.2, cyclical momentum 0.95-0.85, WD 1e-4, total batch 1024 (4 x 256), Nesterov,
145 epochs (7080 iterations), stepsize 3417 -> final test accuracy 0.6780.

Super-convergence rows (Smith & Topin 2017), settings from the solver parameters printed in
the author's replication logs (`lnsmith54/super-convergence`, `Results/clr3SS5kCifar100Fig8`,
`Results/lr35Cifar100Fig8`): 8 GPUs x 125 = total batch 1000, plain momentum SGD 0.9,
WD 1e-4; `sc_one_cycle` is Caffe's "triangular" LR 0.1-3, stepsize 5000 over 10,000
iterations (one cycle spanning the run), BN moving-average fraction 0.95 -> 68.20%;
`sc_piecewise`, the baseline, "multistep" LR 0.35, /10 at 50k and 70k of 80,000 iterations,
BN fraction 0.999 -> 59.27%. Those logs ran He et al.'s 9/9/9-block ResNet-56 with a ReLU
after each addition; here they run on the author's later ResNet-56 like the 1cycle row.
"""

from hparams_jax.experiment import Experiment, PaperResult, Setting
from hparams_jax.train import TrainConfig

SC = dict(batch_size=1000, epochs=None, momentum=0.9, nesterov=False, weight_decay=1e-4)
SC_SOURCE = "Smith & Topin replication log Results/"

EXPERIMENT = Experiment(
    name="cifar100_resnet56",
    title="ResNet-56, CIFAR-100",
    section="Sec. 5.2; Smith & Topin 2017 (super-convergence), CIFAR-100",
    config=TrainConfig(model="resnet56", dataset="cifar100", batch_size=1024, epochs=145,
                       lr_policy="one_cycle", min_lr=0.1, max_lr=1.2, step_size=3417,
                       momentum=(0.95, 0.85), weight_decay=1e-4, augmentation="flip"),
    settings=(
        Setting("one_cycle", {},
                paper=PaperResult(0.6780, 145, "log c100Resnet56_C100Res1CycLR.1001.2CM0.95"
                                               ".85WD1e-4Epoch145BS256g_1"),
                note="the author's run: 1cycle 0.1-1.2, CM 0.95-0.85, WD 1e-4, TBS 1024, "
                     "145 epochs, step size 3417"),
        Setting("sc_one_cycle",
                dict(SC, lr_policy="triangular", min_lr=0.1, max_lr=3.0, step_size=5000,
                     steps=10_000, model_options={"bn_momentum": 0.95}),
                paper=PaperResult(0.6820, 200, f"{SC_SOURCE}clr3SS5kCifar100Fig8"),
                note="super-convergence: LR 0.1-3-0.1 in one cycle of 10k iterations "
                     "(200 epochs), TBS 1000, momentum 0.9, WD 1e-4"),
        Setting("sc_piecewise",
                dict(SC, lr_policy="piecewise", min_lr=0.0, max_lr=0.35, step_size=None,
                     steps=80_000, piecewise_boundaries=(50 / 80, 70 / 80),
                     model_options={"bn_momentum": 0.999}),
                paper=PaperResult(0.5927, 1600, f"{SC_SOURCE}lr35Cifar100Fig8"),
                note="baseline: LR 0.35, /10 at 50k and 70k of 80k iterations (1600 epochs), "
                     "TBS 1000, momentum 0.9, WD 1e-4"),
    ),
    baseline="sc_piecewise",
    comparisons={"learning-rate policy": ("one_cycle", "sc_one_cycle", "sc_piecewise")},
    notes=("The super-convergence rows use total batch 1000 as the author's 8-GPU runs did: "
           "they need a device count that divides 1000 (1, 2, 4 or 8).",),
)
