"""Inception-ResNet-v2 (``Imagenet/architectures/inception-resnet-v2.prototxt``) on ImageNet
(ILSVRC-2012): the author's rows of the reference's ImageNet table, accuracies top-1 (top-5
beside it) on the validation split. Where he ran a setting twice (`_1`, `_2`), the number is
run `_1`'s and the source names run `_2`'s.

Total batch 112: the run names' "BS28" is per GPU on 4 GPUs, as for his ResNet-50 runs. From
the solvers (`bsolver35/36/5/6.prototxt`) and logged LRs: 1cycle 0.05-1.0, Nesterov,
stepsize 108,000, `max_iter: 220000` (220,000 x 112 / 1,281,167 = 19.2 epochs of the "20
epochs" in the run names). The momentum is named 0.95-0.85, but the solvers' momentum step
size is 1,080,000 (ten times the LR's), so the logged momentum only fell from 0.95 to 0.93
over the run; here the momentum cycle follows the LR's. The WD 1e-5 log ends at iteration
129,500 (11.3 epochs, LR 0.80: mid-cycle), so its number is not a final accuracy. The standard
schedule is Caffe's "step" policy, LR 0.1 x0.94 every 20,000 iterations (`asolver1.prototxt`),
momentum 0.9, WD 1e-4, 145 epochs planned; its logs end at iteration 1,090,000 (run `_1`,
95.3 epochs) and 610,000 (`_2`, 53.3 epochs). Input 299x299, the prototxt's.
"""

from hparams_jax.experiment import Experiment, PaperResult, Setting
from hparams_jax.experiment.protocols import caffe_step_boundaries
from hparams_jax.train import TrainConfig

TRAIN_IMAGES, BATCH = 1_281_167, 112

STANDARD = dict(lr_policy="piecewise", min_lr=0.0, max_lr=0.1, momentum=0.9,
                weight_decay=1e-4, steps=None, epochs=145, step_size=None,
                piecewise_boundaries=caffe_step_boundaries(
                    145, train_images=TRAIN_IMAGES, batch_size=BATCH, every=20_000),
                piecewise_gamma=0.94)
LOG = "log inception-resnetCM9585CLR.051WD{}BS28_20Epochs_{}"

EXPERIMENT = Experiment(
    name="imagenet_inception_resnet_v2",
    title="Inception-ResNet-v2, ImageNet",
    section="Sec. 5.3",
    config=TrainConfig(model="inception_resnet_v2", dataset="imagenet2012", batch_size=BATCH,
                       image_size=299,
                       epochs=None, steps=220_000, lr_policy="one_cycle", min_lr=0.05,
                       max_lr=1.0, step_size=108_000, momentum=(0.95, 0.85),
                       weight_decay=3e-6),
    settings=(
        Setting("one_cycle", {},
                paper=PaperResult(0.7382, 19.2, f"{LOG.format('3e-6', 1)}; run _2: "
                                               "0.7386 / 0.9206", top5=0.9230),
                note="the author's runs: 1cycle 0.05-1, CM 0.95-0.85, WD 3e-6, 220k "
                     "iterations, step size 108,000"),
        Setting("wd1e-6", {"weight_decay": 1e-6},
                paper=PaperResult(0.7296, 19.2, f"{LOG.format('1e-6', 1)}; run _2: "
                                               "0.7226 / 0.9172", top5=0.9112),
                note="the author's runs: the same 1cycle with WD 1e-6"),
        Setting("wd1e-5", {"weight_decay": 1e-5},
                paper=PaperResult(0.4364, 11.3, f"{LOG.format('1e-5', 1)}, ending mid-run at "
                                                "iteration 129,500", top5=0.7092),
                note="the author's run: the same 1cycle with WD 1e-5 (his log ends mid-cycle)"),
        Setting("piecewise", STANDARD,
                paper=PaperResult(0.6802, 95.3, "log inception-resnetM9LR.1WD1e-4BS28_145Epochs"
                                                "_1, ending at iteration 1,090,000 of 145 "
                                                "planned epochs; run _2 (610,000): 0.6524 / "
                                                "0.8722", top5=0.8864),
                note="the standard schedule: LR 0.1 x0.94 every 20,000 iterations (1.7 epochs), "
                     "momentum 0.9, WD 1e-4, 145 epochs"),
    ),
    baseline="piecewise",
    comparisons={
        "learning-rate policy": ("one_cycle", "piecewise"),
        "weight decay": ("wd1e-6", "one_cycle", "wd1e-5"),
    },
    notes=("ImageNet is streamed from the prepared tfds files (experiments/README.md), "
           "299x299 crops, the prototxt's input.",
           "The baseline's logs and the WD 1e-5 log end early; their numbers are the last ones "
           "logged, at the epochs shown."),
)
