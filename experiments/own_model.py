"""The paper's procedure on three models that are not ours, written as their authors' examples
write them, through `hparams_jax.Task` (README, "Your own model"):

1. ``cnn``: a Flax NNX CNN written as Flax's MNIST tutorial writes it (`nnx.Conv`,
   `nnx.BatchNorm`, `nnx.Dropout`, its own `__call__` and batch keys), on Fashion-MNIST loaded
   with a few lines of NumPy from Debian's IDX files. The LR range test (Sec. 4.1), then 1cycle
   at the suggested bounds beside 0.5x and 2x the suggested max_lr (one sweep of 3 members).
2. ``tabular``: a functional model (plain JAX, no NNX: a parameter dict and a loss) on a
   tabular regression whose batches hold two inputs under their own names (Friedman's #1
   benchmark function of 10 features, and a categorical group with its own offset). The
   range test, then 1cycle at the suggestion.
3. ``transformer``: a small decoder-only transformer (NNX) on the characters of Debian's
   `fortunes` text, with AdamW: the exponential range test, where the held-out rule, the
   steepest descent and the valley land; 1cycle at the suggestion, 0.5x and 2x; then `tune`
   end to end from its scout (no hand-set ramp).

    python experiments/own_model.py                 # all three, full size
    python experiments/own_model.py --case cnn      # one of them
    python experiments/own_model.py --scale tiny --root /tmp/own   # the tests' sizes
    python experiments/own_model.py --tune          # only the transformer's `tune`

Each case writes into ROOT/CASE (default `experiments/records/own_model/CASE`): the range
test(s) as JSON, each run's workdir (metrics.jsonl, summary.json, config.json; checkpoints are
not committed), `case.json` with the table's numbers, and figures under
`experiments/figures/own_model_CASE_*.png` (full size only). A killed case resumes: finished
range tests are read back and runs resume from their checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hparams_jax import Task
from hparams_jax.range_test import RangeTestResult, lr_range_test
from hparams_jax.train import TrainConfig, fit
from hparams_jax.train.metrics import History, write_json_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE / "records" / "own_model"
FIGURES = HERE / "figures"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FORTUNES = Path("/usr/share/games/fortunes")
CASES = ("cnn", "tabular", "transformer")


# --- 1. The Flax MNIST tutorial's CNN --------------------------------------------------------

class CNN(nnx.Module):
    """A simple CNN model (as Flax's MNIST tutorial writes it)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.dropout1 = nnx.Dropout(rate=0.025, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.dropout2 = nnx.Dropout(rate=0.025, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x)))))
        x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)  # flatten
        x = nnx.relu(self.dropout2(self.linear1(x)))
        x = self.linear2(x)
        return x


def cnn_loss(model: CNN, batch):
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits=logits, labels=batch["label"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}


def load_fashion_mnist(split: str, directory: Path = FASHION_MNIST):
    """{"image": float32 (N, 28, 28, 1) in [0, 1], "label": int32 (N,)} from the IDX files."""
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return {"image": images.astype(np.float32) / 255.0, "label": labels.astype(np.int32)}


def cnn_task(train_examples: int | None = None, eval_examples: int | None = None) -> Task:
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    train = {k: v[:train_examples] for k, v in train.items()}
    test = {k: v[:eval_examples] for k, v in test.items()}
    return Task(model=lambda rngs: CNN(rngs=rngs), loss=cnn_loss, train=train, eval=test,
                name="flax_mnist_cnn")


# --- 2. A functional model on tabular data ----------------------------------------------------

GROUPS = 8


def friedman1(n: int, seed: int):
    """Friedman's #1 regression benchmark (10 uniform features, 5 informative) plus a
    categorical group with its own offset; noise std 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 10)).astype(np.float32)
    group = rng.integers(0, GROUPS, n).astype(np.int32)
    y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
         + 5 * x[:, 4] + np.linspace(-3, 3, GROUPS)[group] + rng.normal(size=n))
    return {"features": x, "group": group, "target": y.astype(np.float32)}


def mlp_params(key, hidden: int = 64):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"embed": 0.1 * jax.random.normal(k1, (GROUPS, 8)),
            "w1": jax.random.normal(k2, (18, hidden)) * jnp.sqrt(2 / 18),
            "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k3, (hidden, 1)) * jnp.sqrt(1 / hidden),
            "b2": jnp.full((1,), 14.0)}


def mlp_loss(params, batch, key):
    h = jnp.concatenate([batch["features"], params["embed"][batch["group"]]], axis=-1)
    h = jax.nn.relu(h @ params["w1"] + params["b1"])
    if key is not None:  # dropout in training only
        h = h * jax.random.bernoulli(key, 0.9, h.shape) / 0.9
    pred = (h @ params["w2"] + params["b2"])[:, 0]
    mse = jnp.mean((pred - batch["target"]) ** 2)
    return mse, {"mae": jnp.mean(jnp.abs(pred - batch["target"]))}  # means over the examples


def tabular_task(train_examples: int = 20_000, eval_examples: int = 4_000) -> Task:
    return Task(params=mlp_params, loss=mlp_loss, train=friedman1(train_examples, 0),
                eval=friedman1(eval_examples, 1), name="friedman1_mlp")


# --- 3. A small decoder-only transformer on characters -------------------------------------

class Block(nnx.Module):
    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.up = nnx.Linear(dim, 4 * dim, rngs=rngs)
        self.down = nnx.Linear(4 * dim, dim, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x, mask):
        x = x + self.dropout(self.attention(self.norm1(x), mask=mask))
        return x + self.dropout(self.down(nnx.gelu(self.up(self.norm2(x)))))


class CharTransformer(nnx.Module):
    def __init__(self, vocab: int, context: int, dim: int = 64, heads: int = 4,
                 layers: int = 2, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.position = nnx.Embed(context, dim, rngs=rngs)
        self.blocks = nnx.List([Block(dim, heads, rngs=rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, vocab, rngs=rngs)

    def __call__(self, tokens):
        x = self.embed(tokens) + self.position(jnp.arange(tokens.shape[1]))
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


def transformer_loss(model: CharTransformer, batch):
    inputs, targets = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
    logits = model(inputs).astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == targets)}


def fortunes_text(directory: Path = FORTUNES) -> str:
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.suffix)
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


def transformer_task(context: int = 64, max_chars: int | None = None) -> tuple[Task, int]:
    """Non-overlapping windows of context + 1 characters; the last 10% held out."""
    text = fortunes_text()[:max_chars]
    vocab = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocab)}
    tokens = np.array([lookup[c] for c in text], np.int32)
    n = len(tokens) // (context + 1)
    windows = tokens[: n * (context + 1)].reshape(n, context + 1)
    split = int(n * 0.9)
    task = Task(model=lambda rngs: CharTransformer(len(vocab), context, rngs=rngs),
                loss=transformer_loss, train={"tokens": windows[:split]},
                eval={"tokens": windows[split:]}, name="char_transformer")
    return task, len(vocab)


# --- the runs ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Scale:
    """The sizes of one scale of the cases."""

    train_examples: int | None  # CNN
    eval_examples: int | None
    cnn_epochs: float
    range_steps: int
    tabular_epochs: float
    max_chars: int | None  # transformer
    transformer_epochs: float
    tune_range_steps: int


SCALES = {
    "full": Scale(None, None, 3, 300, 10, None, 1, 100),
    "tiny": Scale(512, 256, 1, 30, 1, 60_000, 0.2, 50),
    "test": Scale(256, 128, 1, 12, 1, 12_000, 0.1, 50),
}


def _range_test(root: Path, config: TrainConfig, task: Task, **ramp) -> RangeTestResult:
    path = root / "range_test.json"
    if path.exists():
        return RangeTestResult.load(path)
    t0 = time.perf_counter()
    result = lr_range_test(config, task=task, **ramp)
    result.save(path)
    write_json_atomic(root / "range_test_time.json", {"wall_time_s": time.perf_counter() - t0})
    return result


def _sweep(root: Path, config: TrainConfig, task: Task, max_lr: float,
           factors: tuple[float, ...]) -> History:
    """1cycle at `factors` x `max_lr` (min_lr a tenth of each), one sweep."""
    members = [{"max_lr": f * max_lr, "min_lr": f * max_lr / 10} for f in factors]
    return fit(config.replace(members=members, workdir=str(root / "one_cycle")), task=task)


def _finals(history: History, factors) -> list[dict]:
    out = []
    for k, f in enumerate(factors):
        m = history.summary["members"][k]
        out.append({"factor": f, "max_lr": m["setting"]["max_lr"], "diverged": m["diverged"],
                    "test_loss": m["test_loss"], "test_accuracy": m["test_accuracy"],
                    "train_loss": m["train_loss"]})
    return out


def _suggestion(result: RangeTestResult) -> dict:
    s = result.suggest("one_cycle")
    return {"max_lr": s.max_lr, "min_lr": s.min_lr, "method": s.method, "reason": s.reason,
            "alternatives": {a.name: a.lr for a in s.alternatives},
            "warnings": list(s.warnings), "usable_steps": result.steps_run,
            "stop_reason": result.stop_reason}


def _figures(case: str, result: RangeTestResult, history: History, labels) -> None:
    from hparams_jax import plots

    FIGURES.mkdir(exist_ok=True)
    plots.plot_range_test(result, FIGURES / f"own_model_{case}_range_test.png")
    histories = {label: History([{**r, "member": 0} for r in history.rows if r["member"] == k])
                 for k, label in enumerate(labels)}
    metric = "test_accuracy" if any("test_accuracy" in r for r in history.rows) else "test_loss"
    plots.plot_comparison(histories, FIGURES / f"own_model_{case}_one_cycle.png",
                          metric=metric, title=f"{case}: 1cycle at the suggestion, 0.5x, 2x")


def _transformer(s: Scale) -> tuple[Task, TrainConfig]:
    """The transformer case's task and its AdamW config at scale `s`."""
    task, _ = transformer_task(max_chars=s.max_chars)
    return task, TrainConfig(batch_size=64, epochs=s.transformer_epochs, optimizer="adamw",
                             momentum=0.9, adam_b2=0.99, weight_decay=0.1, log_every=20,
                             eval_examples=1024, progress=False, seed=0)


def run_case(case: str, scale: str = "full", root: Path = ROOT, figures: bool = True,
             study: bool = True) -> dict:
    """Runs (or resumes) one case (with `study`, the transformer's further runs: 1cycle at the
    other finders' LRs, and `tune`); returns and writes its `case.json`."""
    s = SCALES[scale]
    root = Path(root) / case
    root.mkdir(parents=True, exist_ok=True)
    common = dict(progress=False, seed=0)
    if case == "cnn":
        task = cnn_task(s.train_examples, s.eval_examples)
        config = TrainConfig(batch_size=128, epochs=s.cnn_epochs, momentum=0.9,
                             weight_decay=5e-4, log_every=20, eval_every=None, **common)
        result = _range_test(root, config, task, start=0.001, stop=1.0,
                             num_steps=s.range_steps)
        factors = (1.0, 0.5, 2.0)
    elif case == "tabular":
        task = tabular_task(*{"full": (20_000, 4_000), "tiny": (2_000, 500)}.get(
            scale, (512, 256)))
        config = TrainConfig(batch_size=128, epochs=s.tabular_epochs, momentum=0.9,
                             weight_decay=1e-4, log_every=20, **common)
        result = _range_test(root, config, task, start=1e-5, stop=0.1,
                             num_steps=s.range_steps)
        factors = (1.0,)
    else:
        task, config = _transformer(s)
        result = _range_test(root, config, task, start=1e-5, stop=1.0, mode="exp",
                             num_steps=s.range_steps)
        factors = (1.0, 0.5, 2.0)
    suggestion = _suggestion(result)
    history = _sweep(root, config, task, suggestion["max_lr"], factors)
    range_seconds = json.loads((root / "range_test_time.json").read_text())["wall_time_s"]
    record = {"case": case, "scale": scale, "task": task.name,
              "range_test_wall_time_s": range_seconds,
              "one_cycle_wall_time_s": history.summary["wall_time_s"],
              "train_time_s": history.summary["train_time_s"],
              "epochs": history.summary["epochs"], "suggestion": suggestion,
              "runs": _finals(history, factors)}
    if case == "transformer" and study:  # 1cycle where the other finders land too
        rules = ("valley", "steepest")
        alt = [suggestion["alternatives"][name] / suggestion["max_lr"] for name in rules]
        others = fit(config.replace(workdir=str(root / "one_cycle_alternatives"), members=[
            {"max_lr": f * suggestion["max_lr"], "min_lr": f * suggestion["max_lr"] / 10}
            for f in alt]), task=task)
        record["alternative_runs"] = [{"rule": name, **row} for name, row
                                      in zip(rules, _finals(others, alt))]
        record["one_cycle_wall_time_s"] += others.summary["wall_time_s"]
    if case == "transformer" and study:
        record["tune"] = _tune(root, config, task, s)
    record["wall_time_s"] = range_seconds + record["one_cycle_wall_time_s"] + record.get(
        "tune", {}).get("wall_time_s", 0.0)
    if figures:
        _figures(case, result, history, [f"{f:g}x suggested max_lr" for f in factors])
    write_json_atomic(root / "case.json", record)
    return record


# What `case.json` keeps of each candidate row of `tune`'s decisions (tune.json has them all).
READING_KEYS = ("name", "lr", "batch_size", "momentum", "weight_decay", "usable_steps", "seeds",
                "best_eval_loss", "best_eval_loss_std", "tie")


def _tune(root: Path, config: TrainConfig, task: Task, s: Scale) -> dict:
    """`tune` end to end on the transformer from its own defaults: an exponential scout from
    LR 1e-4 (AdamW's range) finds where the loss blows up, linear range tests ramp to just past
    it, each family at 2 seeds; returns its decisions, each candidate's usable steps, seeds and
    spread."""
    from hparams_jax import tune

    path = root / "tune_time.json"
    t0 = time.perf_counter()
    result = tune(config.replace(workdir=str(root / "tune")), task=task, start=1e-4,
                  range_steps=s.tune_range_steps, batch_sizes=(64, 128),
                  momenta=(0.9, (0.95, 0.85)), weight_decays=(0.1, 0.01))
    summary = result.history.summary["members"][0]
    if not path.exists():  # the first (whole) tune's time, not a finished one read back
        write_json_atomic(path, {"wall_time_s": time.perf_counter() - t0})
    return {"wall_time_s": json.loads(path.read_text())["wall_time_s"],
            "decisions": {d.stage: d.choice for d in result.decisions},
            "readings": {d.stage: [{k: row[k] for k in READING_KEYS if k in row}
                                   for row in d.candidates] for d in result.decisions},
            "final": {k: getattr(result.config, k) for k in
                      ("batch_size", "momentum", "weight_decay", "min_lr", "max_lr")},
            "test_loss": summary["test_loss"], "test_accuracy": summary["test_accuracy"],
            "verdict": result.diagnosis.verdict}


def tune_transformer(scale: str = "full", root: Path = ROOT) -> dict:
    """Runs (or resumes) only the transformer's `tune` and puts its record in the case's
    `case.json` (the case's other runs must have run)."""
    s, root = SCALES[scale], Path(root) / "transformer"
    task, config = _transformer(s)
    record = json.loads((root / "case.json").read_text())
    before = record.get("tune", {}).get("wall_time_s", 0.0)
    record["tune"] = _tune(root, config, task, s)
    record["wall_time_s"] += record["tune"]["wall_time_s"] - before
    write_json_atomic(root / "case.json", record)
    return record["tune"]


# 1cycle against today's schedules and optimizers on the transformer (AdamW variants at equal
# steps, 2 seeds each): the peak LR is the range test's suggestion wherever an LR is needed,
# warmups are 5% of the run, WSD decays over the last 20%, Prodigy's multiplier is 1.
TODAYS_SCHEDULES = {
    "one_cycle": dict(lr_policy="one_cycle"),
    "cosine": dict(lr_policy="cosine", warmup_fraction=0.05),
    "wsd": dict(lr_policy="wsd", warmup_fraction=0.05, decay_fraction=0.2),
    "wsd_1-sqrt": dict(lr_policy="wsd", warmup_fraction=0.05, decay_fraction=0.2,
                       wsd_decay="1-sqrt"),
    "schedule_free_adamw": dict(optimizer="schedule_free_adamw", lr_policy="constant",
                                warmup_fraction=0.05),
    "prodigy": dict(optimizer="prodigy", lr_policy="cosine", warmup_fraction=0.0, max_lr=1.0,
                    min_lr=0.0),
}


def todays_schedules(scale: str = "full", root: Path = ROOT) -> dict:
    """Each of `TODAYS_SCHEDULES` on the transformer case for its run's length, seeds 0 and 1
    in one sweep, peaking at the case's suggested max_lr (its range test, run first if it has
    not been); their final held-out loss and accuracy (mean and std over the seeds) and wall
    time, written to `transformer/todays_schedules.json`."""
    s = SCALES[scale]
    root = Path(root) / "transformer"
    task, config = _transformer(s)
    max_lr = _suggestion(_range_test(root, config, task, start=1e-5, stop=1.0, mode="exp",
                                     num_steps=s.range_steps))["max_lr"]
    rows = []
    for name, changes in TODAYS_SCHEDULES.items():
        run = config.replace(**{"max_lr": max_lr, "min_lr": max_lr / 10, **changes,
                                "members": [{"seed": 0}, {"seed": 1}],
                                "workdir": str(root / "todays_schedules" / name)})
        history = fit(run, task=task)
        members = history.summary["members"]
        row = {"setting": name, "optimizer": run.optimizer, "lr_policy": run.lr_policy,
               "max_lr": run.max_lr, "steps": history.summary["step"], "seeds": len(members),
               "diverged": sum(m["diverged"] for m in members),
               "wall_time_s": history.summary["wall_time_s"]}
        for metric in ("test_loss", "test_accuracy"):
            values = np.array([m[metric] for m in members], np.float64)
            row[metric], row[f"{metric}_std"] = float(values.mean()), float(values.std(ddof=1))
        rows.append(row)
    record = {"scale": scale, "task": task.name, "max_lr": max_lr, "runs": rows}
    write_json_atomic(root / "todays_schedules.json", record)
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=CASES)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--todays-schedules", action="store_true",
                        help="only 1cycle against today's schedules on the transformer")
    parser.add_argument("--tune", action="store_true",
                        help="only `tune` on the transformer (its record in case.json)")
    args = parser.parse_args(argv)
    from hparams_jax import _xla

    _xla.apply_cpu_defaults()
    if args.todays_schedules:
        print(json.dumps(todays_schedules(args.scale, args.root), indent=1))
        return
    if args.tune:
        print(json.dumps(tune_transformer(args.scale, args.root), indent=1))
        return
    for case in args.case or CASES:
        record = run_case(case, args.scale, args.root, figures=args.scale == "full")
        print(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
