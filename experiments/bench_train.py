"""Training-step throughput: the engine's compiled step against the same network and step in
PyTorch eager, in one run, on this machine's CPU.

For LeNet (28x28x1) and ResNet-56 (the author's, 32x32x3) at batch 128, with SGD + Nesterov
momentum + weight decay under a 1cycle schedule, prints images/s of both frameworks and their
ratio, and the share of the step time the training loop spends outside the compiled step
(gathering indices, dispatch, reading metrics back). Data are random images of the right
shape held on the device, as the engine holds small datasets.

    python experiments/bench_train.py                    # both networks
    python experiments/bench_train.py --models lenet --rounds 5
    python experiments/bench_train.py --flags            # each default XLA:CPU flag's effect
    python experiments/bench_train.py --batch-norm --models resnet56  # the CPU batch norm
    python experiments/bench_train.py --conv-layers      # each convolution alone

PyTorch is a benchmark-only extra (`pip install torch==2.13.0`); it is skipped when missing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

import step_timers
from hparams_jax import _xla

MODELS = ("lenet", "resnet56")
BATCH = 128


def jax_timers(model: str, steps: int):
    """Two functions that each run `steps` steps and return seconds per step: the compiled
    step back to back (the device-bound reference), and the engine's chunk loop with its
    metrics read back (what `fit` does)."""
    import jax

    steps = 1 << (steps - 1).bit_length()  # the engine's chunk shapes are powers of two
    bare, _ = step_timers.jax_step_timer(model, batch=BATCH)
    engine, state, hp, ds = step_timers.jax_engine(model, batch=BATCH)
    rng = np.random.default_rng(1)
    host_idx = rng.integers(0, len(ds), (steps, 1, BATCH)).astype(np.int32)
    held = [state]
    # warm-up: compile for this chunk length, then settle the allocator and thread pool
    for _ in range(2):
        held[0], m = engine.train_chunk(held[0], hp, ds, host_idx)
        jax.block_until_ready(m)

    def looped() -> float:
        start = time.perf_counter()
        held[0], m = engine.train_chunk(held[0], hp, ds, host_idx)
        jax.device_get(m)
        return (time.perf_counter() - start) / steps

    return (lambda: bare(steps)), looped


def torch_timer(name: str, steps: int, threads: int):
    """A function that runs `steps` PyTorch eager steps and returns seconds per step."""
    timer, _ = step_timers.torch_step_timer(name, batch=BATCH, threads=threads)
    return lambda: timer(steps)


# --- report ------------------------------------------------------------------------------

def run(models: list[str], steps: dict[str, int], rounds: int) -> None:
    """Each network's JAX step, JAX loop and PyTorch step, timed in `rounds` alternating
    rounds (medians), so that a noisy neighbour hits all three alike."""
    import statistics

    import jax

    from timing import table

    threads = os.cpu_count() or 1
    rows = []
    for name in models:
        bare, looped = jax_timers(name, steps[name])
        timers = {"step": bare, "loop": looped}
        try:
            timers["torch"] = torch_timer(name, steps[name], threads)
        except ImportError:
            pass
        samples = {k: [] for k in timers}
        for _ in range(rounds):
            for k, timer in timers.items():
                samples[k].append(timer())
        j = {k: statistics.median(v) for k, v in samples.items()}
        t = j.get("torch", float("nan"))
        rows.append({
            "network": name, "batch": BATCH,
            "JAX step (ms)": f"{j['step'] * 1e3:.1f}",
            "PyTorch eager step (ms)": f"{t * 1e3:.1f}",
            "JAX img/s": f"{BATCH / j['step']:.0f}",
            "PyTorch img/s": f"{BATCH / t:.0f}",
            "JAX / PyTorch speed": f"{t / j['step']:.2f}x",
            "outside compiled step": f"{max(0.0, 1 - j['step'] / j['loop']):.1%}",
        })
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), {threads} threads, "
          f"{rounds} rounds, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(table(rows, list(rows[0])))


def flag_sweep(models: list[str], steps: dict[str, int]) -> None:
    """Each default XLA:CPU flag's effect, one subprocess per setting (flags are read once)."""
    variants = {"none (XLA defaults)": ""}
    for flag in _xla.CPU_FLAGS:
        variants[f"only {flag}"] = flag
    variants["all package defaults"] = " ".join(_xla.CPU_FLAGS)
    for label, flags in variants.items():
        print(f"\n## {label}")
        env = {**os.environ, "XLA_FLAGS": flags, "HPARAMS_JAX_XLA_DEFAULTS": "0"}
        subprocess.run([sys.executable, __file__, "--models", *models, "--steps",
                        *(str(steps[m]) for m in models), "--jax-only"], env=env, check=True)


def batch_norm_ab(models: list[str], rounds: int = 7) -> None:
    """The CPU plan's JAX step with ``flax.nnx.BatchNorm`` against its lane-dense
    `xla_cpu.BatchNorm` (the rest of the XLA:CPU layers alike): both engines built in one
    process, timed in alternating rounds."""
    import dataclasses

    from flax import nnx

    from hparams_jax.models import xla_cpu
    from hparams_jax.train.plan import resolve
    from timing import interleaved

    cpu = resolve("cpu")
    plans = {"nnx.BatchNorm": dataclasses.replace(cpu, layers=dataclasses.replace(
                 cpu.layers, batch_norm_type=nnx.BatchNorm)),
             "xla_cpu.BatchNorm": cpu}
    assert cpu.layers.batch_norm_type is xla_cpu.BatchNorm
    for name in models:
        steps = {label: engine_step(name, plan) for label, plan in plans.items()}
        ms = {k: v * 1e3 for k, v in interleaved(steps, rounds=rounds, per_round=2).items()}
        print(f"{name}: JAX step with nnx.BatchNorm {ms['nnx.BatchNorm']:.1f} ms, with "
              f"xla_cpu.BatchNorm {ms['xla_cpu.BatchNorm']:.1f} ms "
              f"({ms['nnx.BatchNorm'] / ms['xla_cpu.BatchNorm']:.2f}x)")


# (H, C_in, C_out, kernel, pad) of the networks' stride-1 convolutions, batch 128
CONV_LAYERS = {"resnet56 stage 1": (32, 16, 16, 3, 1), "resnet56 stage 2": (16, 32, 32, 3, 1),
               "resnet56 stage 3": (8, 64, 64, 3, 1), "lenet conv1": (28, 1, 20, 5, 0),
               "lenet conv2": (12, 20, 50, 5, 0)}


def conv_layers(rounds: int = 7) -> None:
    """Each convolution's forward, input gradient and kernel gradient alone: XLA:CPU (NHWC,
    jitted) against PyTorch eager (NCHW), medians of rounds alternating between a framework's
    three passes. (Training never needs LeNet conv1's input gradient.)"""
    import jax
    import torch

    from timing import interleaved, table

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    rows = []
    for label, (h, cin, cout, k, pad) in CONV_LAYERS.items():
        out = h + 2 * pad - k + 1
        x = rng.standard_normal((BATCH, h, h, cin), np.float32)
        w = rng.standard_normal((k, k, cin, cout), np.float32)
        g = rng.standard_normal((BATCH, out, out, cout), np.float32)

        def conv(x, w):
            return jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

        jx, jw, jg = (jax.device_put(a) for a in (x, w, g))
        pieces = {"forward": jax.jit(conv),
                  "input grad": jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)),
                  "kernel grad": jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g))}
        tx, tw, tg = (torch.tensor(x).permute(0, 3, 1, 2).contiguous(),
                      torch.tensor(w).permute(3, 2, 0, 1).contiguous(),
                      torch.tensor(g).permute(0, 3, 1, 2).contiguous())
        backward = torch.ops.aten.convolution_backward
        jax_fns = {
            "JAX forward": lambda: pieces["forward"](jx, jw),
            "JAX input grad": lambda: pieces["input grad"](jx, jw, jg),
            "JAX kernel grad": lambda: pieces["kernel grad"](jx, jw, jg),
        }
        torch_fns = {
            "PyTorch forward": lambda: torch.nn.functional.conv2d(tx, tw, padding=pad),
            "PyTorch input grad": lambda: backward(tg, tx, tw, None, (1, 1), (pad, pad), (1, 1),
                                                  False, (0, 0), 1, (True, False, False)),
            "PyTorch kernel grad": lambda: backward(tg, tx, tw, None, (1, 1), (pad, pad),
                                                   (1, 1), False, (0, 0), 1,
                                                   (False, True, False)),
        }
        # one framework at a time: PyTorch's OpenMP threads spin for a while after each op
        # and would slow XLA's threads down if their calls alternated
        ms = {k: v * 1e3 for fns in (jax_fns, torch_fns)
              for k, v in interleaved(fns, rounds=rounds, per_round=3).items()}
        for piece in ("forward", "input grad", "kernel grad"):
            j, t = ms[f"JAX {piece}"], ms[f"PyTorch {piece}"]
            rows.append({"layer": label, "pass": piece, "JAX (ms)": f"{j:.2f}",
                         "PyTorch (ms)": f"{t:.2f}", "JAX / PyTorch time": f"{j / t:.2f}x"})
    print(table(rows, list(rows[0])))


def engine_step(model: str, plan):
    """A function that runs one compiled train step of a fresh engine and returns its metrics."""
    from hparams_jax.data import put

    engine, state, hp, ds = step_timers.jax_engine(model, batch=BATCH, plan=plan)
    idx = put(np.random.default_rng(1).integers(0, len(ds), (1, 1, BATCH)).astype(np.int32),
              engine.chunk_sharding)
    held = [state]

    def step():
        held[0], metrics = engine._step(held[0], hp, ds, idx, np.int32(0))
        return metrics

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", nargs="+", type=int, default=None,
                        help="timed steps per network, rounded up to a power of two "
                             "(default: lenet 32, resnet56 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timing rounds per network (medians are printed)")
    parser.add_argument("--flags", action="store_true",
                        help="measure the effect of each default XLA:CPU flag")
    parser.add_argument("--batch-norm", action="store_true",
                        help="time the CPU plan's JAX step with flax.nnx.BatchNorm and with "
                             "the lane-dense xla_cpu.BatchNorm")
    parser.add_argument("--conv-layers", action="store_true",
                        help="time each convolution's forward and gradients alone, JAX vs "
                             "PyTorch")
    parser.add_argument("--jax-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.flags:
        _xla.apply_cpu_defaults("cpu")  # the CPU plan's flags, before JAX starts
    defaults = {"lenet": 32, "resnet56": 4}
    steps = dict(zip(args.models, args.steps)) if args.steps else defaults
    if args.flags:
        flag_sweep(args.models, steps)
        return
    if args.conv_layers:
        conv_layers()
        return
    if args.batch_norm:
        batch_norm_ab(args.models)
        return
    if args.jax_only:
        import jax

        for name in args.models:
            bare, looped = jax_timers(name, steps[name])
            step, loop = bare(), looped()
            print(f"{name}: JAX step {step * 1e3:.1f} ms ({BATCH / step:.0f} img/s), "
                  f"loop {loop * 1e3:.1f} ms, backend {jax.default_backend()}")
        return
    run(args.models, steps, args.rounds)


if __name__ == "__main__":
    main()
