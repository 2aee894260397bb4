"""Training-step timers shared by the benchmarks (`bench_train.py`, `device_check.py`).

The engine's compiled training step of one of the paper's networks (SGD + Nesterov momentum +
weight decay under 1cycle, on random uint8 images held on the device as the engine holds small
datasets), and the same network and step in PyTorch (the "PyTorch twins": eager or
`torch.compile`), each wrapped as a timer: a function that runs n steps and returns seconds
per step, waiting for the device at the end only. PyTorch is a benchmark-only extra
(`pip install torch==2.13.0`).

Networks take the zoo's size options (`blocks`, `widths`, `depth`, `growth_rate`,
`init_features`, `dropout_rate`) in both frameworks, so a shrunken network is the same in
both; `param_count`s let a caller check that the twins match.
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import Any, Callable

import numpy as np

SHAPES = {"lenet": (28, 28, 1), "resnet56": (32, 32, 3), "wide_resnet32_4": (32, 32, 3),
          "densenet40": (32, 32, 3)}
# The zoo's defaults for the options the twins read (see hparams_jax.models).
TWIN_DEFAULTS = {
    "resnet56": dict(blocks=(8, 9, 9), widths=(16, 32, 64)),
    "wide_resnet32_4": dict(blocks=(5, 5, 5), widths=(16, 64, 256)),
    "densenet40": dict(depth=40, growth_rate=12, init_features=16, dropout_rate=0.2),
}
NUM_EXAMPLES = 2048
TOTAL_STEPS = 10_000  # the 1cycle schedule's length (only its shape matters here)

Timer = Callable[[int], float]


# --- JAX -------------------------------------------------------------------------------------

def jax_engine(model: str, *, batch: int = 128, precision: str = "float32", plan="auto",
               model_options: dict | None = None):
    """(engine, state, hp, dataset) of `model` on `NUM_EXAMPLES` random images; `plan` is a
    plan name or a `train.plan.Plan`."""
    import jax

    from hparams_jax.data import DeviceDataset, make_mesh, put
    from hparams_jax.train import TrainConfig, zoo
    from hparams_jax.train.optimizer import member_hparams
    from hparams_jax.train.plan import Plan
    from hparams_jax.train.steps import Engine
    from hparams_jax.train.task import Task, softmax_classification

    config = TrainConfig(model=model, model_options=model_options or {}, dataset="cifar10",
                         batch_size=batch, steps=TOTAL_STEPS, momentum=(0.95, 0.85),
                         weight_decay=5e-4, precision=precision,
                         plan=plan if isinstance(plan, str) else plan.name, progress=False)
    mesh = make_mesh()
    h, w, c = SHAPES[model]
    rng = np.random.default_rng(0)
    images = {"image": rng.integers(0, 256, (NUM_EXAMPLES, h, w, c), np.uint8),
              "label": rng.integers(0, 10, NUM_EXAMPLES).astype(np.int32)}
    layers = plan.layers if isinstance(plan, Plan) else None
    task = Task(model=zoo.network(config, 10, layers), train=images, precision_in_model=True,
                loss=softmax_classification(np.full(c, 127.0, np.float32),
                                            np.full(c, 64.0, np.float32)))
    engine = Engine(config, task, total_steps=TOTAL_STEPS, mesh=mesh,
                    plan=plan if isinstance(plan, Plan) else None)
    ds = DeviceDataset.from_mapping(images, mesh)
    hp = jax.tree.map(lambda a: put(a, engine.replicated), member_hparams(config))
    return engine, engine.init(hp), hp, ds


def xla_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled JAX function, by XLA's cost analysis."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


def jax_step_timer(model: str, **kwargs) -> tuple[Timer, dict[str, Any]]:
    """The engine's single training step (`Engine._step`), compiled ahead of time and called
    back to back (the device-bound figure), and facts about it: compile seconds, XLA's FLOP
    count per step, the parameter count and the plan."""
    import jax

    from hparams_jax import models
    from hparams_jax.data import put

    engine, state, hp, ds = jax_engine(model, **kwargs)
    batch = engine.config.batch_size
    rng = np.random.default_rng(1)
    idx = put(rng.integers(0, len(ds), (1, 1, batch)).astype(np.int32), engine.chunk_sharding)
    start = time.perf_counter()
    compiled = engine._step.lower(state, hp, ds, idx, np.int32(0)).compile()
    facts = {"compile_s": time.perf_counter() - start, "flops": xla_flops(compiled),
             "params": models.count_params(state.params), "plan": engine.plan.name}
    held = [state]

    def timer(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            held[0], metrics = compiled(held[0], hp, ds, idx, np.int32(0))
        jax.block_until_ready(metrics)
        return (time.perf_counter() - start) / steps

    timer(2)  # first runs: allocations, autotuned kernels
    return timer, facts


# --- PyTorch ----------------------------------------------------------------------------------

def torch_model(name: str, num_classes: int = 10, **options):
    """The PyTorch twin of the zoo's network `name` (NCHW), with the zoo's size options."""
    from torch import nn

    options = {**TWIN_DEFAULTS.get(name, {}), **options}
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                             nn.Linear(500, num_classes))
    if name in ("resnet56", "wide_resnet32_4"):
        return _torch_cifar_resnet(options["blocks"], options["widths"], num_classes)
    if name == "densenet40":
        return _torch_densenet(options["depth"], options["growth_rate"],
                               options["init_features"], options["dropout_rate"], num_classes)
    raise ValueError(f"no PyTorch twin of {name!r}; twins: {', '.join(SHAPES)}")


def _torch_cifar_resnet(blocks, widths, num_classes):
    """The author's CIFAR ResNet (`models.resnet_cifar`): no ReLU after the sum, 2x2/2
    projection + BN shortcuts."""
    from torch import nn

    class Block(nn.Module):
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

    layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
              nn.ReLU()]
    cin = widths[0]
    for i, (n, width) in enumerate(zip(blocks, widths)):
        for j in range(n):
            layers.append(Block(cin, width, 2 if i > 0 and j == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def _torch_densenet(depth, growth, init_features, dropout, num_classes):
    """DenseNet-BC-less (`models.densenet`): BN-ReLU-conv3x3-dropout layers concatenated in
    front of their input, BN-ReLU-conv1x1-dropout-avgpool transitions."""
    import torch
    from torch import nn

    def unit(cin, cout, k):
        return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(),
                             nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.Dropout(dropout))

    class Dense(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.unit = unit(cin, growth, 3)

        def forward(self, x):
            return torch.cat([self.unit(x), x], 1)

    n = (depth - 4) // 3
    layers, c = [nn.Conv2d(3, init_features, 3, 1, 1, bias=False)], init_features
    for b in range(3):
        for _ in range(n):
            layers.append(Dense(c))
            c += growth
        if b < 2:
            layers += [unit(c, c, 1), nn.AvgPool2d(2, 2)]
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raises TimeoutError in the block after `seconds` (None: no limit; main thread only)."""
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def torch_step_timer(name: str, *, batch: int = 128, precision: str = "float32",
                     compile: bool = False, compile_limit_s: float | None = None,
                     threads: int | None = None, model_options: dict | None = None
                     ) -> tuple[Timer, dict[str, Any]]:
    """The PyTorch twin's training step (eager, or its model under `torch.compile` compiled
    within `compile_limit_s`, else TimeoutError): SGD with Nesterov momentum and weight decay
    under `OneCycleLR`, cross-entropy, bfloat16 by `torch.autocast`; on a GPU in channels-last
    layout with cuDNN's autotuner on. Returns the timer and its facts."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if threads:
        torch.set_num_threads(threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = torch_model(name, **(model_options or {})).to(device)
    layout = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(memory_format=layout)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=TOTAL_STEPS,
                                                base_momentum=0.85, max_momentum=0.95)
    forward = torch.compile(model) if compile else model
    h, w, c = SHAPES[name]
    images = torch.randint(0, 256, (NUM_EXAMPLES, c, h, w), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (NUM_EXAMPLES,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()
    half = precision == "bfloat16"

    def step():
        idx = torch.randint(0, NUM_EXAMPLES, (batch,), device=device)
        x = ((images[idx].float() - 127.0) / 64.0).contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=half):
            loss = loss_fn(forward(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss

    def wait():
        if cuda:
            torch.cuda.synchronize()

    start = time.perf_counter()
    with time_limit(compile_limit_s if compile else None):
        for _ in range(2):
            step()
        wait()
    facts = {"compile_s": time.perf_counter() - start if compile else None, "params": params,
             "device": str(device)}

    def timer(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wait()
        return (time.perf_counter() - start) / steps

    return timer, facts
