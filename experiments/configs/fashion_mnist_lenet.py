"""LeNet on Fashion-MNIST: the author's LeNet protocol (Caffe's `lenet_solver.prototxt` and the
paper's Table 1) on the MNIST-shaped dataset this project can use offline, full length, with the
variations each of the paper's claims needs (`experiment.protocols.lenet_protocol`).

From the author's protocol (`shared/reference/smith2018_runs.md`): the `inv` baseline (LR 0.01,
gamma 1e-4, power 0.75, momentum 0.9, WD 5e-4, 85 epochs), 1cycle 0.01-0.1 with a step size of
5 epochs and annihilation to 12 epochs, cyclical momentum 0.95-0.8, WD 5e-4, total batch 512
(the public Keras reproduction's), Caffe's SGD with the LR inside the velocity
(`momentum_form="caffe"`). Inferred: plain (not Nesterov) momentum for the 1cycle runs as in
Caffe's LeNet solver; 2 seeds (not 4) for each 85-epoch setting, which takes over an hour on
2 CPU cores; the annihilation's end value (min_lr / 1000, the author's CIFAR solvers').

The range tests (Sec. 4.1-4.4) run at the 1cycle's settings: batch 512, cyclical momentum
falling 0.95 -> 0.8 while the LR rises linearly from 0.001 to 0.5 over 400 steps, held-out loss
on the full test split every 20 steps.

`tuned` holds what `tune` chose with its defaults at 12 epochs
(`experiments/tune_fashion_mnist_lenet.py`, its record in `records/fashion_mnist_lenet/tune`),
in the protocol's 1cycle shape; the setting exists once that record does.
"""

import json
from pathlib import Path

from hparams_jax import momenta
from hparams_jax.experiment import Claim, Experiment, RangeTest, Setting
from hparams_jax.experiment.protocols import lenet_protocol

RAMP = dict(start=0.001, stop=0.5, num_steps=400)
TRAIN_IMAGES = 60_000

# The bounds our range tests suggest (`range_tests/lr` and `range_tests/batch_size` in
# experiments/records; RESULTS.md lists them): max_lr where the held-out loss stops improving,
# capped where the smoothed training loss is lowest; min_lr = max_lr / 10.
SUGGESTED_MAX_LR = {128: 0.0523, 256: 0.101, 512: 0.191, 1024: 0.25}


def _one_cycle(batch: int, max_lr: float, min_lr: float | None = None) -> dict:
    """1cycle at `batch` with the protocol's shape: step 5 of 12 epochs, CM 0.95-0.8."""
    return dict(batch_size=batch, max_lr=max_lr, min_lr=max_lr / 10 if min_lr is None else min_lr,
                step_size=5 * (TRAIN_IMAGES // batch))


RANGE_TEST_SETTINGS = (
    Setting("rt_1x", _one_cycle(512, 0.191),
            note="1cycle at the suggested bounds 0.0191-0.191 (range test `lr`)"),
    Setting("rt_0.5x", _one_cycle(512, 0.0955), note="1cycle at half the suggested max_lr"),
    Setting("rt_2x", _one_cycle(512, 0.382), note="1cycle at twice the suggested max_lr"),
    Setting("rt_min_third", _one_cycle(512, 0.191, min_lr=0.191 / 3),
            note="1cycle at the suggested max_lr with min_lr = max_lr / 3"),
    *(Setting(f"bs{b}", _one_cycle(b, SUGGESTED_MAX_LR[b]),
              note=f"1cycle at total batch {b}, bounds from its range test "
                   f"({SUGGESTED_MAX_LR[b] / 10:.3g}-{SUGGESTED_MAX_LR[b]:.3g}; Sec. 4.2)")
      for b in (128, 256, 1024)),
)
# Today's schedules and optimizers at the protocol's 12 epochs, batch 512 and WD 5e-4, peaking
# at the LR range test's suggested max_lr (0.191) where an LR is needed. The usual lengths:
# a linear warmup over the first 5% of the run (Goyal et al. 2017; the Flax ImageNet example's
# 5 of 100 epochs), WSD's decay over the last 20% (Hägele et al. 2024, arXiv 2405.18392, where
# a 20% cooldown matches cosine), decays to 0, constant momentum 0.9 (schedule-free's b1).
WARMUP = dict(max_lr=SUGGESTED_MAX_LR[512], min_lr=0.0, step_size=None, momentum=0.9,
              warmup_fraction=0.05)
# The optimizers that are not the protocol's Caffe SGD take none of its SGD fields.
NOT_CAFFE_SGD = dict(momentum_form="pytorch", nesterov=True)
# The `lr` range test ran 255 of its 400 steps before the loss blew up: with 1cycle's 12 epochs
# (1,404 steps of 512) the procedure trained 1,659 steps' examples.
LR_TEST_STEPS = 255
PROCEDURE_STEPS = 12 * (TRAIN_IMAGES // 512) + LR_TEST_STEPS
SCHEDULE_FREE_SGD_MAX_LR = 2.081  # its own range test's (`range_tests/schedule_free_sgd`)
MODERN_SETTINGS = (
    Setting("cosine", dict(WARMUP, lr_policy="cosine"),
            note="cosine decay to 0 after a 5% linear warmup, peak 0.191, momentum 0.9"),
    Setting("wsd", dict(WARMUP, lr_policy="wsd", decay_fraction=0.2),
            note="warmup-stable-decay: 5% warmup, 0.191 held, linear decay to 0 over the last "
                 "20%, momentum 0.9"),
    Setting("wsd_1-sqrt", dict(WARMUP, lr_policy="wsd", decay_fraction=0.2, wsd_decay="1-sqrt"),
            note="WSD with the 1-sqrt cooldown over the last 20%"),
    Setting("schedule_free_sgd", dict(WARMUP, **NOT_CAFFE_SGD, optimizer="schedule_free_sgd",
                                      lr_policy="constant", max_lr=SCHEDULE_FREE_SGD_MAX_LR),
            note="schedule-free SGD (Defazio et al. 2024): LR 2.081 (its own range test: 0.191 "
                 "does not transfer) after a 5% warmup, b1 0.9, "
                 "evaluated at the averaged weights with batch-norm statistics recomputed"),
    Setting("prodigy", dict(NOT_CAFFE_SGD, optimizer="prodigy", lr_policy="cosine", min_lr=0.0,
                            max_lr=1.0, step_size=None, momentum=0.9, warmup_fraction=0.0),
            note="Prodigy (LR-free; Mishchenko & Defazio 2024): multiplier 1 under a cosine "
                 "decay as its authors advise, betas 0.9/0.999, no warmup"),
    Setting("prodigy_equal_examples",
            dict(NOT_CAFFE_SGD, optimizer="prodigy", lr_policy="cosine", min_lr=0.0, max_lr=1.0,
                 step_size=None, momentum=0.9, warmup_fraction=0.0,
                 steps=PROCEDURE_STEPS),
            note=f"Prodigy for the examples of the procedure: the range test's {LR_TEST_STEPS} "
                 f"steps and rt_1x's 12 epochs, {PROCEDURE_STEPS} steps of 512"),
)
TUNE_RECORD = Path(__file__).resolve().parents[1] / "records" / "fashion_mnist_lenet" / "tune"


def _tuned() -> tuple[Setting, ...]:
    """The `tuned` setting: the batch size, momentum, weight decay and bounds of `tune`'s
    1cycle run (`TUNE_RECORD/tune.json`), in the protocol's 1cycle shape; none before the
    record exists."""
    path = TUNE_RECORD / "tune.json"
    if not path.exists():
        return ()
    chosen = json.loads(path.read_text())["decisions"][-1]["choice"]
    momentum = momenta.parse(chosen["momentum"])
    shown = momenta.format(momentum)
    return (Setting("tuned", {**_one_cycle(chosen["batch_size"], chosen["max_lr"],
                                           chosen["min_lr"]),
                              "momentum": momentum, "weight_decay": chosen["weight_decay"]},
                    note=f"the settings `tune` chose with its defaults at 12 epochs: batch "
                         f"{chosen['batch_size']}, {chosen['min_lr']:.3g}-"
                         f"{chosen['max_lr']:.3g}, momentum {shown}, WD "
                         f"{chosen['weight_decay']:g} (Sec. 4-5; "
                         "experiments/tune_fashion_mnist_lenet.py)"),)


WD_ONE_CYCLE = {3e-3: "wd3e-3", 1e-3: "wd1e-3", 5e-4: "one_cycle", 3e-4: "wd3e-4", 1e-4: "wd1e-4",
                3e-5: "wd3e-5", 1e-5: "wd1e-5"}

PROTOCOL = lenet_protocol("fashion_mnist", steps_per_epoch=TRAIN_IMAGES // 512)

CLAIMS = (
    Claim("Super-convergence", "Sec. 4.1, Table 1",
          "1cycle reaches the baseline's final test accuracy in far fewer epochs",
          "super_convergence", dict(one_cycle="one_cycle", baseline="inv", others=("constant",))),
    Claim("The range test finds the bounds", "Sec. 4.1",
          "1cycle at the suggested max_lr trains, and at least as well as at half or twice it",
          "range_test_bounds", dict(test="lr", at={"1x": "rt_1x", "0.5x": "rt_0.5x",
                                                   "2x": "rt_2x"},
                                    min_fraction={"max/3": "rt_min_third"})),
    Claim("Larger batches", "Sec. 4.2",
          "with 1cycle and bounds from a range test at each size, larger total batches reach "
          "similar or better accuracy (and smaller ones a lower test loss)",
          "batch_size", dict(test="batch_size", runs={128: "bs128", 256: "bs256",
                                                      512: "rt_1x", 1024: "bs1024"})),
    Claim("Cyclical momentum", "Sec. 4.3",
          "momentum falling while the LR rises does at least as well as a constant momentum",
          "cyclical_momentum", dict(cyclical=("one_cycle", "cm_0.95-0.85"),
                                    constant=("momentum_0.9", "momentum_0.95"))),
    Claim("Weight decay by range test", "Sec. 4.4",
          "the WD its range-test family picks (the lowest held-out loss within 2%, kept to the "
          "largest LR) is the one that trains best",
          "weight_decay_pick", dict(test="weight_decay", runs=WD_ONE_CYCLE)),
    Claim("Weight decay depends on the LR policy", "Sec. 4.4",
          "the best WD differs between a constant LR and 1cycle (large LRs regularise)",
          "weight_decay_policy", dict(one_cycle=WD_ONE_CYCLE, constant={
              3e-3: "constant_wd3e-3", 1e-3: "constant_wd1e-3", 5e-4: "constant",
              1e-4: "constant_wd1e-4"})),
    Claim("1cycle against cosine and WSD", "Sec. 4.1",
          "at equal epochs and the same peak LR (the range test's), 1cycle trains at least as "
          "well as cosine decay with warmup and warmup-stable-decay",
          "todays_schedules", dict(one_cycle="rt_1x", others={
              "cosine": "cosine", "WSD": "wsd", "WSD 1-sqrt": "wsd_1-sqrt"})),
    Claim("Schedule-free and LR-free against the procedure", "Sec. 4.1",
          "the range test plus 1cycle trains at least as well as schedule-free SGD and the "
          "LR-free Prodigy, counting the range test's examples",
          "lr_free", dict(procedure="rt_1x", test="lr", others={
              "schedule-free SGD": "schedule_free_sgd", "Prodigy": "prodigy",
              "Prodigy at the procedure's examples": "prodigy_equal_examples"})),
    Claim("Reading the curves", "Sec. 3",
          "under/over-fitting read from the test loss predicts what a longer run does",
          "curve_reading", dict(series=("one_cycle_6ep", "one_cycle", "one_cycle_24ep"),
                                others=("inv", "constant"))),
)

TUNED = _tuned()
if TUNED:  # the procedure end to end, once `tune`'s record exists
    CLAIMS += (Claim(
        "The procedure finds settings as good as the grid's best", "Sec. 4-5",
        "`tune` from its defaults chooses settings whose 1cycle run trains at least as well as "
        "the grid's best setting of the same length and the default 1cycle",
        "procedure", dict(tuned="tuned", default="one_cycle",
                          record=str(TUNE_RECORD / "tune.json"))),)

EXPERIMENT = Experiment(
    name="fashion_mnist_lenet",
    title="LeNet, Fashion-MNIST",
    section="Sec. 3, 4.1-4.4; Table 1 (MNIST rows)",
    **{**PROTOCOL, "settings": PROTOCOL["settings"] + RANGE_TEST_SETTINGS + MODERN_SETTINGS
                    + TUNED,
       "comparisons": {**PROTOCOL["comparisons"],
                       "range-test bounds": ("rt_0.5x", "rt_1x", "rt_2x", "rt_min_third"),
                       "batch size": ("bs128", "bs256", "rt_1x", "bs1024"),
                       "today's schedules and optimizers": (
                           "rt_1x", *(s.name for s in MODERN_SETTINGS))}},
    eval_every_epochs=0.25,
    range_tests=(
        RangeTest("lr", **RAMP, note="the LR bounds of the 1cycle runs (Sec. 4.1)"),
        RangeTest("batch_size", **RAMP, family=("batch_size", (128, 256, 512, 1024)),
                  note="one test per total batch size (Sec. 4.2)"),
        RangeTest("momentum", **RAMP,
                  family=("momentum", (0.99, 0.97, 0.95, 0.9, (0.95, 0.85), (0.95, 0.8))),
                  note="constant and cyclical momenta (Sec. 4.3, Fig. 8)"),
        RangeTest("weight_decay", **RAMP,
                  family=("weight_decay", (3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)),
                  note="weight decays (Sec. 4.4, Fig. 9)"),
        RangeTest("schedule_free_sgd", start=0.001, stop=10.0, num_steps=400,
                  changes=dict(NOT_CAFFE_SGD, optimizer="schedule_free_sgd", momentum=0.9),
                  note="schedule-free SGD's own LR bound"),
    ),
    claims=CLAIMS,
)
