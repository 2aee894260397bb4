"""ResNet-50 (``Imagenet/architectures/resnet50.prototxt``) on ImageNet (ILSVRC-2012): the
author's rows of the reference's ImageNet table, accuracies top-1 (top-5 beside it) on the
validation split.

Total batch 128: the run names' "BS32" is per GPU and the job scripts ask for 4 GPUs
(`ngpus=4`), and 20 epochs x 1,281,167 / 128 = 200,180 matches the 1cycle solvers'
`max_iter: 200000`. From the solvers and logged LRs: 1cycle 0.05-1.0, cyclical momentum
0.95-0.85, Nesterov, 200,000 iterations, stepsize 75,000 (WD 1e-6 run; logged LR 0.3033 at
iteration 20,000) or 95,000 (WD 3e-6 run, `bsolver36.prototxt`); the standard schedule is
Caffe's "step" policy, LR 0.1 x0.94 every 20,000 iterations (`asolver1.prototxt`; logged
0.094 at 20,000), momentum 0.9, WD 1e-4, 145 epochs planned, its log ending at iteration
1,337,500 = 133.6 epochs. Augmentation: the random-resized crop and flip of
`hparams_jax.data.imagenet` (host-side), 224x224.
"""

from hparams_jax.experiment import Experiment, PaperResult, Setting
from hparams_jax.experiment.protocols import caffe_step_boundaries
from hparams_jax.train import TrainConfig

TRAIN_IMAGES, BATCH = 1_281_167, 128

STANDARD = dict(lr_policy="piecewise", min_lr=0.0, max_lr=0.1, momentum=0.9,
                weight_decay=1e-4, steps=None, epochs=145, step_size=None,
                piecewise_boundaries=caffe_step_boundaries(
                    145, train_images=TRAIN_IMAGES, batch_size=BATCH, every=20_000),
                piecewise_gamma=0.94)

EXPERIMENT = Experiment(
    name="imagenet_resnet50",
    title="ResNet-50, ImageNet",
    section="Sec. 5.3",
    config=TrainConfig(model="resnet50", dataset="imagenet2012", batch_size=BATCH,
                       epochs=None, steps=200_000, lr_policy="one_cycle", min_lr=0.05,
                       max_lr=1.0, step_size=95_000, momentum=(0.95, 0.85),
                       weight_decay=3e-6),
    settings=(
        Setting("one_cycle", {},
                paper=PaperResult(0.6637, 20, "log resnetCM9585CLR.051WD3e-6BS32_20Epochs_1",
                                  top5=0.8796),
                note="the author's run: 1cycle 0.05-1, CM 0.95-0.85, WD 3e-6, 20 epochs, "
                     "step size 95,000"),
        Setting("wd1e-6", {"weight_decay": 1e-6, "step_size": 75_000},
                paper=PaperResult(0.6361, 20, "log resnetCM9585CLR.051WD1e-6BS32_20Epochs_1",
                                  top5=0.8529),
                note="the author's run: the same 1cycle with WD 1e-6 and step size 75,000"),
        Setting("piecewise", STANDARD,
                paper=PaperResult(0.6370, 133.6, "log resnetM9LR1WD1e-4BS32_145Epochs_1, "
                                                 "ending at iteration 1,337,500 of 145 planned "
                                                 "epochs", top5=0.8565),
                note="the standard schedule: LR 0.1 x0.94 every 20,000 iterations (2 epochs), "
                     "momentum 0.9, WD 1e-4, 145 epochs"),
    ),
    baseline="piecewise",
    comparisons={
        "learning-rate policy": ("one_cycle", "piecewise"),
        "weight decay": ("wd1e-6", "one_cycle"),
    },
    notes=("ImageNet is streamed from the prepared tfds files (experiments/README.md), "
           "224x224 crops.",
           "The two 1cycle rows differ in step size (75,000 and 95,000) as well as weight "
           "decay, as the author's solvers did.",
           "The baseline's log ends at 133.6 of its 145 planned epochs; its number is the last "
           "one logged."),
)
