"""One command for one GPU machine (no network, no tensorflow-datasets, no grain): the engine's
speed there against PyTorch and the paper's headline result, in one JSON file and one Markdown
table, within a time budget (default 450 s, for an 8-minute slot).

    PYTHONPATH=. python experiments/device_check.py --data DIR --out OUT
    PYTHONPATH=. python experiments/device_check.py --smoke --out /tmp/check   # CPU, tiny

1. Training-step throughput of LeNet, ResNet-56, WRN-32-4 and DenseNet-40 at batch 128 and
   512, float32 and bfloat16 (mixed): the engine's compiled step (`step_timers`) against the
   same network and step in PyTorch eager and, on a GPU while the budget lasts, under
   `torch.compile`; alternating rounds, medians. Each JAX figure also as achieved FLOP/s
   (XLA's cost analysis of the compiled step) and as a fraction of the device's peak
   (`PEAK_TFLOPS`; dense figures of NVIDIA's datasheet).
2. Fashion-MNIST (the IDX files in --data), LeNet: the `fashion_mnist_lenet` experiment's
   1cycle and baseline settings at full length (`fit`, the "auto" plan): test accuracy and
   wall time.
3. The LR range test's wall time against the same number of plain steps
   (`bench_range_test.py`).

Sections 2 and 3 run first (bounded); section 1 starts a measurement only while its expected
cost fits in what is left of the budget, and lists what it skipped. `--smoke` runs every part
at tiny sizes on any machine (under a minute on a CPU): `tests/test_device_check.py` runs it
where tensorflow-datasets and grain cannot be imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# JAX takes most of a GPU's memory at start-up by default; leave room for PyTorch's twins.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

NETWORKS = ("lenet", "resnet56", "wide_resnet32_4", "densenet40")
BATCHES = (128, 512)
PRECISIONS = ("float32", "bfloat16")
# Dense peak FLOP/s by device name (NVIDIA H100/H200 SXM datasheet: BF16 tensor core 989.4
# TFLOP/s without sparsity, FP32 66.9 TFLOP/s). XLA's float32 convolutions and matrix products
# may run as TF32 on tensor cores (jax_default_matmul_precision), whose peak is 494.7 TFLOP/s.
PEAK_TFLOPS = {"H200": {"bfloat16": 989.4, "float32": 66.9},
               "H100": {"bfloat16": 989.4, "float32": 66.9}}
# --smoke: one block per stage, narrow; no dropout (XLA:CPU compiles each dropout layer's
# random bits slowly)
SMOKE_OPTIONS = {"lenet": {}, "resnet56": {"blocks": (1, 1, 1), "widths": (4, 8, 16)},
                 "wide_resnet32_4": {"blocks": (1, 1, 1), "widths": (4, 8, 16)},
                 "densenet40": {"depth": 7, "growth_rate": 4, "init_features": 8,
                                "dropout_rate": 0.0}}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


class Budget:
    """Wall-clock budget: what is left, and whether a step of a given cost still fits."""

    def __init__(self, seconds: float, reserve: float):
        self.end, self.reserve = time.perf_counter() + seconds, reserve
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.end - time.perf_counter() - self.reserve

    def allows(self, cost: float, what: str) -> bool:
        if cost <= self.left():
            return True
        self.skipped.append(f"{what} (expected {cost:.0f} s, {max(self.left(), 0):.0f} s left)")
        return False


def medians(timers: dict, rounds: int, target_s: float) -> dict[str, float]:
    """Seconds per step of each timer: calibrated so a round takes about `target_s`, then
    `rounds` rounds alternating between the timers, medians."""
    steps = {k: max(2, min(500, round(target_s / t(2)))) for k, t in timers.items()}
    samples = {k: [] for k in timers}
    for _ in range(rounds):
        for k, timer in timers.items():
            samples[k].append(timer(steps[k]))
    return {k: statistics.median(v) for k, v in samples.items()}


def environment() -> dict:
    import jax

    out = {"python": platform.python_version(), "jax": jax.__version__,
           "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
           "device_count": jax.device_count(),
           "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
           "xla_flags": os.environ.get("XLA_FLAGS", "")}
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_device"] = (torch.cuda.get_device_name() if torch.cuda.is_available()
                               else "cpu")
        out["torch_tf32"] = {"cudnn": torch.backends.cudnn.allow_tf32,
                             "matmul": torch.backends.cuda.matmul.allow_tf32}
    except ImportError:
        out["torch"] = None
    return out


def peak_for(device: str) -> dict | None:
    return next((peak for name, peak in PEAK_TFLOPS.items() if name in device), None)


# --- 1. throughput -----------------------------------------------------------------------

def throughput(args, budget: Budget, peak: dict | None) -> list[dict]:
    import step_timers

    try:
        import torch

        torch_missing, gpu = None, torch.cuda.is_available()
    except ImportError:
        torch_missing, gpu = "PyTorch not installed", False
    rows, kept, cost = [], {}, {}
    for name in args.networks:
        options = SMOKE_OPTIONS[name] if args.smoke else {}
        for batch in args.batches:
            for precision in PRECISIONS:
                what = f"{name} batch {batch} {precision}"
                if not budget.allows(cost.get(name, args.first_cost_s), what):
                    continue
                start = time.perf_counter()
                row = {"network": name, "batch": batch, "precision": precision,
                       "model_options": options}
                jax_timer, facts = step_timers.jax_step_timer(
                    name, batch=batch, precision=precision, model_options=options)
                timers = {"jax": jax_timer}
                row["jax"] = facts
                if torch_missing:
                    row["torch_eager"] = {"skipped": torch_missing}
                else:
                    timers["torch_eager"], row["torch_eager"] = step_timers.torch_step_timer(
                        name, batch=batch, precision=precision, model_options=options)
                seconds = medians(timers, args.rounds, args.round_s)
                for k, s in seconds.items():
                    row[k].update(step_ms=1e3 * s, images_per_s=batch / s)
                if facts["flops"]:
                    row["jax"]["tflops"] = facts["flops"] / seconds["jax"] / 1e12
                    if peak:
                        row["jax"]["peak_fraction"] = row["jax"]["tflops"] / peak[precision]
                row["torch_compile"] = {"skipped": torch_missing or (
                    "GPU only" if not gpu else "not reached: time budget")}
                rows.append(row)
                kept[id(row)] = timers
                cost[name] = time.perf_counter() - start
    if gpu:
        torch_compile_pass(args, budget, rows, kept)
    return rows


def torch_compile_pass(args, budget: Budget, rows: list[dict], kept: dict) -> None:
    """`torch.compile` twins, smallest networks first, while the budget lasts; each compiled
    step is timed in alternating rounds with the JAX step it is compared with."""
    import step_timers

    for row in sorted(rows, key=lambda r: NETWORKS.index(r["network"])):
        limit = min(args.compile_limit_s, budget.left() - 20)
        if limit < 30:
            budget.skipped.append(f"torch.compile of {row['network']} batch {row['batch']} "
                                  f"{row['precision']} (time budget)")
            continue
        try:
            compiled, facts = step_timers.torch_step_timer(
                row["network"], batch=row["batch"], precision=row["precision"], compile=True,
                compile_limit_s=limit, model_options=row["model_options"])
        except TimeoutError as err:
            row["torch_compile"] = {"skipped": f"compile {err}"}
            continue
        seconds = medians({"jax": kept[id(row)]["jax"], "torch_compile": compiled},
                          args.rounds, args.round_s)
        row["torch_compile"] = {**facts, "step_ms": 1e3 * seconds["torch_compile"],
                                "images_per_s": row["batch"] / seconds["torch_compile"],
                                "jax_step_ms_beside": 1e3 * seconds["jax"]}


# --- 2. Fashion-MNIST, 1cycle against the baseline ------------------------------------------

def fashion_mnist_pair(args) -> list[dict]:
    import tempfile

    from hparams_jax import experiment
    from hparams_jax.train import DivergenceError, History, fit

    e = experiment.find("fashion_mnist_lenet")
    rows = []
    for setting in ("one_cycle", e.baseline):
        with tempfile.TemporaryDirectory() as workdir:
            if args.smoke:  # the same policies, 1% of their length, cut to a few steps
                config = e.config_for(setting, runs=1, scale=0.01, workdir=workdir,
                                      progress=False)
                config = config.replace(steps=16 if setting == "one_cycle" else 24,
                                        eval_examples=256, eval_every=8, log_every=8)
            else:
                config = e.config_for(setting, runs=1, workdir=workdir, progress=False)
            start = time.perf_counter()
            try:
                summary = fit(config).summary
            except DivergenceError:
                summary = History.load(workdir).summary
        member = summary["members"][0]
        rows.append({"setting": setting, "lr_policy": config.lr_policy,
                     "status": summary["status"], "epochs": summary["epochs"],
                     "steps": summary["step"], "batch": config.batch_size,
                     "plan": summary["plan"], "test_accuracy": member["test_accuracy"],
                     "test_loss": member["test_loss"], "wall_s": time.perf_counter() - start,
                     "seconds_per_epoch": summary["seconds_per_epoch"]})
    return rows


# --- 3. range test against plain steps --------------------------------------------------------

def range_test_cost(args) -> dict:
    import bench_range_test
    from hparams_jax.train import TrainConfig

    steps, eval_examples = (16, 128) if args.smoke else (300, 1000)
    config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=128,
                         eval_examples=eval_examples, momentum=0.9, weight_decay=5e-4,
                         train_examples=1024 if args.smoke else None, progress=False)
    chunk = max(1, steps // 20)
    plain, test = [], []
    for _ in range(1 if args.smoke else 2):  # alternating rounds
        plain.append(bench_range_test.plain_steps(config, steps, chunk))
        test.append(bench_range_test.range_test(config, steps, chunk))
    return {"steps": steps, "evaluations": steps // chunk, "held_out_examples": eval_examples,
            "plain_s": statistics.median(plain), "range_test_s": statistics.median(test),
            "ratio": statistics.median(test) / statistics.median(plain)}


# --- report -------------------------------------------------------------------------------

def _num(x, fmt: str = ".0f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(result: dict) -> str:
    from timing import table

    env, peak = result["environment"], result["peak_tflops"]
    smoke = " (smoke: tiny sizes, not a measurement)" if result["smoke"] else ""
    lines = [f"# device_check{smoke}", "",
             f"{env['device']} ({env['backend']}, {env['device_count']} device(s)); jax "
             f"{env['jax']}, PyTorch {env.get('torch') or 'not installed'}; "
             f"{result['elapsed_s']:.0f} s of a {result['budget_s']:.0f} s budget.",
             "", "## Training step: images/s (medians of alternating rounds)", ""]
    rows = []
    for r in result["throughput"]:
        j, eager, comp = r["jax"], r["torch_eager"], r["torch_compile"]
        rows.append({
            "network": r["network"], "batch": r["batch"], "precision": r["precision"],
            "JAX": _num(j.get("images_per_s")),
            "JAX TFLOP/s": _num(j.get("tflops"), ".2f"),
            "of peak": _num(100 * j["peak_fraction"], ".1f") + "%" if "peak_fraction" in j
            else "-",
            "PyTorch eager": _num(eager.get("images_per_s")) if "skipped" not in eager
            else eager["skipped"],
            "torch.compile": _num(comp.get("images_per_s")) if "skipped" not in comp
            else comp["skipped"],
            "JAX / eager": f"{j['images_per_s'] / eager['images_per_s']:.2f}x"
            if "images_per_s" in eager else "-",
            "JAX / compile": f"{comp['jax_step_ms_beside'] / comp['step_ms']:.2f}x"
            if "step_ms" in comp else "-"})
    if rows:
        lines.append(table(rows, list(rows[0])))
    peaks = (f"peak: {peak['bfloat16']} TFLOP/s bfloat16, {peak['float32']} float32 (dense, "
             "datasheet)" if peak else "peak: unknown for this device")
    lines += ["", f"JAX step: `Engine._step` compiled ahead of time, called back to back; "
              f"TFLOP/s from XLA's cost analysis of that step; {peaks}. "
              "JAX / compile compares the compiled PyTorch step with the JAX step timed beside "
              "it.", "", "## Fashion-MNIST, LeNet: 1cycle against the baseline", ""]
    lines.append(table([{"setting": r["setting"], "policy": r["lr_policy"],
                         "status": r["status"], "epochs": f"{r['epochs']:g}",
                         "batch": r["batch"], "plan": r["plan"],
                         "test accuracy": _num(r["test_accuracy"], ".4f"),
                         "wall (s)": f"{r['wall_s']:.1f}",
                         "s/epoch": f"{r['seconds_per_epoch']:.2f}"}
                        for r in result["fashion_mnist"]],
                       ["setting", "policy", "status", "epochs", "batch", "plan",
                        "test accuracy", "wall (s)", "s/epoch"]))
    rt = result["range_test"]
    lines += ["", "## LR range test against plain steps (wall time with set-up and compiles)",
              "", table([{"steps": rt["steps"], "evaluations": rt["evaluations"],
                          "plain (s)": f"{rt['plain_s']:.1f}",
                          "range test (s)": f"{rt['range_test_s']:.1f}",
                          "ratio": f"{rt['ratio']:.2f}"}],
                        ["steps", "evaluations", "plain (s)", "range test (s)", "ratio"])]
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(result["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help="folder with the Fashion-MNIST IDX files (default: "
                             "$HPARAMS_JAX_FASHION_MNIST_DIR or Debian's)")
    parser.add_argument("--out", required=True, help="where device_check.json/.md go")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check it runs")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="wall-clock budget in seconds (the throughput grid stops "
                             "starting measurements that would not fit)")
    parser.add_argument("--compile-limit-s", type=float, default=150.0,
                        help="longest a torch.compile may take before it is abandoned")
    args = parser.parse_args(argv)
    args.networks, args.batches = NETWORKS, (8,) if args.smoke else BATCHES
    args.rounds, args.round_s = (1, 0.0) if args.smoke else (3, 0.25)
    args.first_cost_s = 5.0 if args.smoke else 60.0
    started = time.perf_counter()
    budget = Budget(args.budget_s, reserve=5.0)

    from hparams_jax import _xla
    from hparams_jax.data import sources

    if args.data is not None:
        os.environ[sources.FASHION_MNIST_ENV] = args.data
    folder = Path(sources.fashion_mnist_dir())
    missing = [f for f in IDX_FILES if not (folder / f).exists()
               and not (folder / f"{f}.gz").exists()]
    if missing:
        parser.error(f"--data {str(folder)!r} lacks the Fashion-MNIST IDX files {missing} "
                     "(copy /usr/share/datasets/fashion-mnist/ from a machine with Debian's "
                     "dataset-fashion-mnist)")
    _xla.apply_cpu_defaults()  # the CPU plan's flags, if this machine has no accelerator
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    env = environment()
    peak = peak_for(env["device"])
    result = {"smoke": args.smoke, "budget_s": args.budget_s, "environment": env,
              "peak_tflops": peak}
    result["fashion_mnist"] = fashion_mnist_pair(args)
    result["range_test"] = range_test_cost(args)
    result["throughput"] = throughput(args, budget, peak)
    result["skipped"] = budget.skipped
    result["elapsed_s"] = time.perf_counter() - started
    result["modules_absent"] = {m: m not in sys.modules
                                for m in ("tensorflow_datasets", "grain")}
    (out_dir / "device_check.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (out_dir / "device_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
