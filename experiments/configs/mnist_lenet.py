"""LeNet on MNIST: the paper's MNIST/LeNet protocol (Table 1, MNIST rows).

The author's published logs hold no MNIST runs and `shared/reference/smith2018_runs.md` gives no
MNIST number, so every setting has `paper=None`. The settings are exactly those of
`fashion_mnist_lenet.py` (see its docstring for which follow the paper's text and which are
inferred: total batch 512, the piecewise-constant baseline, constant momentum 0.9 for the
baselines, the three weight decays); only the dataset differs. MNIST is read from tfds files
(`hparams_jax.data.sources`), not from the offline Fashion-MNIST IDX files.
"""

from hparams_jax.experiment import Experiment, Setting
from hparams_jax.train import TrainConfig

ONE_CYCLE = dict(lr_policy="one_cycle", min_lr=0.01, max_lr=0.1, momentum=(0.95, 0.8),
                 epochs=12)
BASELINE = dict(min_lr=0.0, max_lr=0.01, momentum=0.9, epochs=85)

EXPERIMENT = Experiment(
    name="mnist_lenet",
    title="LeNet, MNIST",
    section="Sec. 4.1, 4.3, 4.4, 5.2; Table 1 (MNIST rows)",
    config=TrainConfig(model="lenet", dataset="mnist", batch_size=512, weight_decay=5e-4,
                       augmentation="none", **ONE_CYCLE),
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
    notes=("The author's logs hold no MNIST run: no paper number is shown for any row.",),
)
