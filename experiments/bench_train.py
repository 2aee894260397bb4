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
    python experiments/bench_train.py --batch-norm --models resnet56  # the zoo's batch norm
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

SHAPES = {"lenet": (28, 28, 1), "resnet56": (32, 32, 3)}
BATCH = 128


# --- JAX ---------------------------------------------------------------------------------

def jax_engine(model: str, num_examples: int = 2048):
    import jax

    from hparams_jax.train import TrainConfig
    from hparams_jax.train.optimizer import member_hparams
    from hparams_jax.data import DeviceDataset, make_mesh, put
    from hparams_jax.train.steps import Engine

    config = TrainConfig(model=model, dataset="cifar10", batch_size=BATCH, steps=10_000,
                         momentum=(0.95, 0.85), weight_decay=5e-4, progress=False)
    mesh = make_mesh()
    h, w, c = SHAPES[model]
    engine = Engine(config, num_classes=10, mean=[127.0] * c, std=[64.0] * c,
                    augmentation="none", total_steps=10_000, mesh=mesh)
    rng = np.random.default_rng(0)
    ds = DeviceDataset.from_arrays(rng.integers(0, 256, (num_examples, h, w, c), dtype=np.uint8),
                                   rng.integers(0, 10, num_examples).astype(np.int32), mesh)
    hp = jax.tree.map(lambda a: put(a, engine.replicated), member_hparams(config))
    return engine, engine.init(hp), hp, ds


def jax_timers(model: str, steps: int):
    """Two functions that each run `steps` steps and return seconds per step: the compiled
    step back to back (the device-bound reference), and the engine's chunk loop with its
    metrics read back (what `fit` does)."""
    import jax

    from hparams_jax.data import put

    engine, state, hp, ds = jax_engine(model)
    steps = 1 << (steps - 1).bit_length()  # the engine's chunk shapes are powers of two
    rng = np.random.default_rng(1)
    host_idx = rng.integers(0, len(ds), (steps, 1, BATCH)).astype(np.int32)
    device_idx = put(host_idx, engine.chunk_sharding)
    held = [state]
    # warm-up: compile for this chunk length, then settle the allocator and thread pool
    for _ in range(2):
        held[0], m = engine.train_chunk(held[0], hp, ds, host_idx)
        jax.block_until_ready(m)

    def bare() -> float:
        start = time.perf_counter()
        for i in range(steps):
            held[0], m = engine._step(held[0], hp, ds, device_idx, np.int32(i))
        jax.block_until_ready(m)
        return (time.perf_counter() - start) / steps

    def looped() -> float:
        start = time.perf_counter()
        held[0], m = engine.train_chunk(held[0], hp, ds, host_idx)
        jax.device_get(m)
        return (time.perf_counter() - start) / steps

    return bare, looped


# --- PyTorch -----------------------------------------------------------------------------

def torch_model(name: str):
    from torch import nn

    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                             nn.Linear(500, 10))

    class Block(nn.Module):  # the author's block: no ReLU after the sum, 2x2/2 projection
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.proj = (nn.Sequential(nn.Conv2d(cin, cout, stride, stride, bias=False),
                                       nn.BatchNorm2d(cout)) if stride > 1 or cin != cout
                         else nn.Identity())

        def forward(self, x):
            return self.body(x) + self.proj(x)

    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for i, (n, width) in enumerate(zip((8, 9, 9), (16, 32, 64))):
        for j in range(n):
            layers.append(Block(cin, width, 2 if i > 0 and j == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def torch_timer(name: str, steps: int, threads: int):
    """A function that runs `steps` PyTorch eager steps and returns seconds per step."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_model(name)
    h, w, c = SHAPES[name]
    total = 10_000
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total,
                                                base_momentum=0.85, max_momentum=0.95)
    images = torch.randint(0, 256, (2048, c, h, w), dtype=torch.uint8)
    labels = torch.randint(0, 10, (2048,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        idx = torch.randint(0, 2048, (BATCH,))
        x = (images[idx].float() - 127.0) / 64.0
        loss = loss_fn(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss.item()

    for _ in range(2):
        step()

    def timed() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps

    return timed


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
    from hparams_jax import _xla

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
    """The JAX step with ``flax.nnx.BatchNorm`` against the zoo's lane-dense
    `layers.BatchNorm`: both engines built in one process, timed in alternating rounds."""
    from flax import nnx

    from hparams_jax.models import layers
    from timing import interleaved

    zoo = layers.BatchNorm
    for name in models:
        steps = {}
        for label, cls in (("nnx.BatchNorm", nnx.BatchNorm), ("layers.BatchNorm", zoo)):
            layers.BatchNorm = cls  # the class `BatchNormSpec.make` builds
            try:
                steps[label] = engine_step(name)
            finally:
                layers.BatchNorm = zoo
        ms = {k: v * 1e3 for k, v in interleaved(steps, rounds=rounds, per_round=2).items()}
        print(f"{name}: JAX step with nnx.BatchNorm {ms['nnx.BatchNorm']:.1f} ms, with "
              f"layers.BatchNorm {ms['layers.BatchNorm']:.1f} ms "
              f"({ms['nnx.BatchNorm'] / ms['layers.BatchNorm']:.2f}x)")


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

    import hparams_jax  # noqa: F401 - the package's XLA:CPU flags, set before JAX starts

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


def engine_step(model: str):
    """A function that runs one compiled train step of a fresh engine and returns its metrics."""
    from hparams_jax.data import put

    engine, state, hp, ds = jax_engine(model)
    idx = put(np.random.default_rng(1).integers(0, len(ds), (1, 1, BATCH)).astype(np.int32),
              engine.chunk_sharding)
    held = [state]

    def step():
        held[0], metrics = engine._step(held[0], hp, ds, idx, np.int32(0))
        return metrics

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--steps", nargs="+", type=int, default=None,
                        help="timed steps per network, rounded up to a power of two "
                             "(default: lenet 32, resnet56 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timing rounds per network (medians are printed)")
    parser.add_argument("--flags", action="store_true",
                        help="measure the effect of each default XLA:CPU flag")
    parser.add_argument("--batch-norm", action="store_true",
                        help="time the JAX step with flax.nnx.BatchNorm and with the zoo's "
                             "lane-dense layers.BatchNorm")
    parser.add_argument("--conv-layers", action="store_true",
                        help="time each convolution's forward and gradients alone, JAX vs "
                             "PyTorch")
    parser.add_argument("--jax-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
