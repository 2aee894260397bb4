"""LeNet on MNIST: the paper's MNIST/LeNet protocol (Table 1, MNIST rows).

The author's published logs hold no MNIST runs and `shared/reference/smith2018_runs.md` gives no
MNIST number, so every setting has `paper=None`. The settings are exactly those of
`fashion_mnist_lenet.py` (see its docstring for which follow the paper's text and which are
inferred: total batch 512, the piecewise-constant baseline, constant momentum 0.9 for the
baselines, the three weight decays); only the dataset differs. MNIST is read from tfds files
(`hparams_jax.data.sources`), not from the offline Fashion-MNIST IDX files.
"""

from hparams_jax.experiment import Experiment, core_comparisons
from hparams_jax.train import TrainConfig

ONE_CYCLE = dict(lr_policy="one_cycle", min_lr=0.01, max_lr=0.1, momentum=(0.95, 0.8),
                 epochs=12)

EXPERIMENT = Experiment(
    name="mnist_lenet",
    title="LeNet, MNIST",
    section="Sec. 4.1, 4.3, 4.4, 5.2; Table 1 (MNIST rows)",
    config=TrainConfig(model="lenet", dataset="mnist", batch_size=512, weight_decay=5e-4,
                       augmentation="none", **ONE_CYCLE),
    **core_comparisons(one_cycle="1cycle 0.01-0.1, CM 0.95-0.8, WD 5e-4, 12 epochs",
                       baseline_lr=0.01, baseline_epochs=85, one_cycle_epochs=12,
                       weight_decays=(1e-3, 1e-4)),
    eval_every_epochs=0.25,
    notes=("The author's logs hold no MNIST run: no paper number is shown for any row.",),
)
