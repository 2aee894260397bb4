"""What is trained, apart from how: a `Task` is a model, a loss and data; a `TrainConfig` says how
they are trained. Every tool of the paper (the LR range test and its families, Sec. 4; `fit`;
`tune`, Sec. 5; diagnosis, Sec. 3) takes both, and the zoo and the dataset catalog are just one
way to make a task (`Task.from_config`), so a user's own network goes through the same engine.

A task's model is either an NNX module factory (`model=`, called with an `nnx.Rngs`; batch-norm
statistics and other non-parameter state are kept, replicated and checkpointed as the zoo's
are) or a functional model (`params=`, a PRNG key -> parameter pytree, e.g. a Linen model's
`init`, an Equinox or Haiku model's parameters, plain JAX). Its loss returns a scalar, or
`(scalar, metrics)` with named scalar metrics; the metric "accuracy" is what the tools read as
the accuracy. Data is a mapping of arrays (held whole on the device(s), shuffled and batched by
the engine) or a callable that returns an iterable of batches at the global batch size
(streamed from the host).

`NnxModel` and `FunctionalModel` are the engine's view of a task's model: pure functions of
(parameters, other state) that the compiled steps call.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Iterable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hparams_jax import data
from hparams_jax.errors import ConfigError
from hparams_jax.train.metrics import ACCURACY

# An eval batch from an iterator may weight its examples (0 on padding) under this key.
EXAMPLE_MASK = "example_mask"
Batch = Mapping[str, Any]
Data = Mapping[str, Any] | Callable[..., Iterable[Batch]]


def _callable(name: str, value: Any, what: str) -> None:
    if not callable(value):
        raise ConfigError(f"{name}={value!r} is not callable: it must be {what}.")


def _check_data(name: str, value: Any) -> None:
    if callable(value):
        return
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{name}={type(value).__name__}: expected a mapping of arrays with the examples on "
            "axis 0 (e.g. {\"image\": x, \"label\": y}), or a zero-argument callable returning "
            "an iterable of such batches.")
    data.check_same_length(name, value)


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A model, its loss and its data (see the module docstring).

    Attributes:
      loss: with `model=`, `loss(model, batch)`; with `params=`, `loss(params, batch, key)`
        (`key` is a PRNG key in training, None in evaluation). Returns a scalar, or
        `(scalar, metrics)` with a mapping of named scalars; "accuracy" is read as the
        accuracy, the others are logged as `train_NAME` / `test_NAME`. Held-out readings
        are means over the examples, so the loss and metrics should be means over the batch
        (a mean squared error, not its root).
      train: the training data: a mapping of arrays with the examples on axis 0 (any names,
        any number of inputs), or a callable returning an iterable of batches (mappings of
        arrays at the global batch size). A callable that takes a `start` argument is called
        with the first batch to read (a resumed run seeks there); otherwise it is called
        without arguments and a resumed run skips the batches it already trained on.
      eval: the held-out data, as `train` (None: no held-out readings; the range test and
        `tune`, which read them, refuse such a task). An iterator's eval batch may weight its
        examples under "example_mask" (0 on padding).
      model: a factory `Callable[[nnx.Rngs], nnx.Module]`, called with
        `nnx.Rngs(key, params=key, dropout=...)` from the member's seed. Exactly one of
        `model` and `params`.
      params: a factory `Callable[[jax.Array], PyTree]` of the initial parameters from a PRNG
        key.
      augment: optional `augment(key, batch) -> batch`, applied to each global training batch
        inside the compiled step (the zoo's crops and flips).
      steps_per_epoch: for iterator data, the batches of one epoch (default: `len()` of the
        iterable where it has one; else the whole run is one epoch and `steps` must be set).
      precision_in_model: the model computes in `config.precision` itself (the zoo's networks
        take a dtype); otherwise, under "bfloat16", float parameters and inputs are cast to
        bfloat16 for the forward pass (parameters, gradients and the loss stay float32).
      name: how runs record the model and data (`config.json` says `task:NAME`).

    Examples:
      A linear regression on two named inputs, as a functional model:

      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from hparams_jax import Task
      >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
      >>> def loss(params, batch, key):
      ...     pred = batch["x"] @ params["w"] + params["b"]
      ...     return jnp.mean((pred - batch["y"]) ** 2)
      >>> task = Task(params=lambda key: {"w": jnp.zeros(3), "b": jnp.zeros(())}, loss=loss,
      ...             train={"x": x, "y": x.sum(1)}, eval={"x": x[:16], "y": x[:16].sum(1)})
      >>> task.held, task.name
      (True, 'own')
      >>> Task(params=lambda key: {}, loss=loss, train={"x": x, "y": x[:10]})
      ... # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: train holds arrays of different lengths ('x': 64, ...
    """

    loss: Callable[..., Any]
    train: Data
    eval: Data | None = None
    model: Callable[[nnx.Rngs], nnx.Module] | None = None
    params: Callable[[jax.Array], Any] | None = None
    augment: Callable[[jax.Array, Batch], Batch] | None = None
    steps_per_epoch: int | None = None
    precision_in_model: bool = False
    name: str = "own"

    def __post_init__(self):
        if (self.model is None) == (self.params is None):
            raise ConfigError(
                f"model={self.model!r}, params={self.params!r}: give exactly one, a module "
                "factory (model=, nnx.Rngs -> nnx.Module) or a parameter factory (params=, "
                "PRNG key -> pytree) for a functional model.")
        if self.model is not None:
            _callable("model", self.model, "a factory nnx.Rngs -> nnx.Module")
        else:
            _callable("params", self.params, "a factory PRNG key -> parameter pytree")
        _callable("loss", self.loss, "loss(model, batch) or loss(params, batch, key)")
        _check_data("train", self.train)
        if self.eval is not None:
            _check_data("eval", self.eval)
        if self.augment is not None:
            _callable("augment", self.augment, "augment(key, batch) -> batch")
        if self.steps_per_epoch is not None and not (
                isinstance(self.steps_per_epoch, int) and self.steps_per_epoch > 0):
            raise ConfigError(f"steps_per_epoch={self.steps_per_epoch!r} is not allowed: a "
                              "positive integer, or None.")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name={self.name!r} is not allowed: a non-empty string.")

    @property
    def held(self) -> bool:
        """The training data is a mapping of arrays, held whole on the device(s)."""
        return not callable(self.train)

    def record(self, config):
        """`config` as a run of this task records it: its model and dataset name the task."""
        return config.replace(model=f"task:{self.name}", dataset=f"task:{self.name}")

    def require_eval(self, tool: str) -> None:
        """ConfigError unless the task has held-out data, which `tool` reads."""
        if self.eval is None:
            raise ConfigError(f"task {self.name!r} has eval=None: {tool} reads the held-out "
                              "loss (Smith 2018, Sec. 4.1); give eval= held-out data.")

    @classmethod
    def from_config(cls, config) -> "Task":
        """The task of `config`'s zoo network and catalog dataset: softmax cross-entropy on
        standardised images, accuracy as the metric, the dataset's augmentation."""
        from hparams_jax.train import zoo

        return zoo.task(config)


def resolve(config, task: Task | None):
    """(the config as the run records it, the task): `config`'s zoo task where `task` is
    None."""
    if task is None:
        return config, Task.from_config(config)
    if not isinstance(task, Task):
        raise ConfigError(f"task={task!r} is not allowed: a hparams_jax.Task, or None for the "
                          "config's model and dataset.")
    return task.record(config), task


def train_examples(config, task: Task | None = None) -> int | None:
    """The training examples a run of `config` on `task` (default: the config's zoo dataset)
    sees in an epoch; None for a task streaming from an iterator."""
    if task is None:
        n = data.info(config.dataset).train_size
    elif task.held:
        n = data.check_same_length("train", task.train)
    else:
        return None
    return min(n, config.train_examples or n)


# --- the loss's output ------------------------------------------------------------------------

def loss_and_metrics(out: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A loss function's output as (float32 scalar loss, {name: float32 scalar}); ConfigError
    (at trace time) for anything else."""
    loss, metrics = out if isinstance(out, tuple) else (out, {})
    if isinstance(out, tuple) and len(out) != 2:
        raise ConfigError(f"the loss returned a tuple of {len(out)}: it must return a scalar "
                          "or (scalar, metrics).")
    if jnp.shape(loss) != ():
        raise ConfigError(f"the loss returned shape {tuple(jnp.shape(loss))}: it must return "
                          "a scalar (e.g. the mean over the batch), or (scalar, metrics).")
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"the loss returned metrics of type {type(metrics).__name__}: they "
                          "must be a mapping of names to scalars.")
    for name, value in metrics.items():
        if not isinstance(name, str) or jnp.shape(value) != ():
            raise ConfigError(f"the loss returned metric {name!r} of shape "
                              f"{tuple(jnp.shape(value))}: metrics must be named scalars.")
    return (jnp.asarray(loss, jnp.float32),
            {k: jnp.asarray(x, jnp.float32) for k, x in metrics.items()})


def _call_factory(what: str, factory: Callable, *args, **kwargs):
    try:
        return factory(*args, **kwargs)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"the task's {what} factory raised {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:300]}") from err


def _call_loss(loss: Callable, *args):
    try:
        return loss_and_metrics(loss(*args))
    except KeyError as err:
        raise ConfigError(f"the loss read the batch key {err} that the batch lacks (its keys: "
                          f"{sorted(args[1])}): train and eval batches need every input the "
                          "loss reads.") from err


def _cast(tree, dtype):
    """Floating leaves of `tree` in `dtype` (the others unchanged)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(
        jnp.result_type(x), jnp.floating) else x, tree)


def _as_before(new, old):
    return jax.tree.map(lambda n, o: jnp.asarray(n, jnp.result_type(o)), new, old)


class NnxModel:
    """A task's NNX module factory and loss as pure functions of (params, rest): `init(seed)`
    builds the member's module, `loss(params, rest, batch, key, train)` merges it, runs the
    loss in train or eval mode and splits off the updated non-parameter state (batch-norm
    statistics). RNG streams are not state: every stream is reseeded each step from the key
    (the "dropout" stream with the key itself)."""

    def __init__(self, factory: Callable, loss: Callable, compute_dtype=None):
        self.factory, self.loss_fn, self.compute_dtype = factory, loss, compute_dtype
        module = nnx.eval_shape(lambda: self.module(0))
        self.multipliers = {
            "weight_decay_multipliers": _method(module, "weight_decay_multipliers"),
            "learning_rate_multipliers": _method(module, "lr_multipliers")}
        _set_mode(module, train=True)
        self.train_graph, _, self.rng_template, _ = nnx.split(module, nnx.Param, nnx.RngState,
                                                              ...)
        self.streams = sorted({getattr(var, "tag", None) or path[-2] for path, var
                               in nnx.to_flat_state(self.rng_template)})
        _set_mode(module, train=False)
        self.eval_graph = nnx.graphdef(module)

    def module(self, seed) -> nnx.Module:
        key = jax.random.key(seed)
        rngs = nnx.Rngs(key, params=key, dropout=jax.random.fold_in(key, 1))
        module = _call_factory("model", self.factory, rngs)
        if not isinstance(module, nnx.Module):
            raise ConfigError(f"the task's model factory returned {type(module).__name__}: it "
                              "must return an nnx.Module.")
        return module

    def init(self, seed):
        module = self.module(seed)
        _set_mode(module, train=True)
        _, params, _, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return params, rest

    def merge(self, params, rest, *, train: bool, key=None) -> nnx.Module:
        """The member's module in train or eval mode; with `key`, its RNG streams reseeded."""
        rngs = jax.tree.map(_placeholder, self.rng_template)
        module = nnx.merge(self.train_graph if train else self.eval_graph, params, rngs, rest,
                           copy=True)
        if key is not None and self.streams:
            nnx.reseed(module, **{s: key if s == "dropout" else jax.random.fold_in(key, i + 2)
                                  for i, s in enumerate(self.streams)})
        return module

    def loss(self, params, rest, batch, key, *, train: bool):
        if self.compute_dtype is not None:
            params, batch = _cast(params, self.compute_dtype), _cast(batch, self.compute_dtype)
        module = self.merge(params, rest, train=train, key=key if train else None)
        loss, metrics = _call_loss(self.loss_fn, module, batch)
        _, _, _, new_rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return loss, metrics, _as_before(new_rest, rest)

    def batch_statistics(self, params, rest, batch):
        """The batch-norm statistics of `batch` itself under `params` (each `nnx.BatchNorm`'s
        mean and variance of this batch, as its running averages would hold them with momentum
        0): averaged over a few batches, they are the statistics recomputed for weights that
        were not trained with them (schedule-free's averaged weights)."""
        if self.compute_dtype is not None:
            params, batch = _cast(params, self.compute_dtype), _cast(batch, self.compute_dtype)
        module = self.merge(params, rest, train=True, key=jax.random.key(0))
        for _, layer in nnx.iter_modules(module):
            if isinstance(layer, nnx.BatchNorm):
                layer.momentum = 0.0
        _call_loss(self.loss_fn, module, batch)
        return nnx.state(module, nnx.BatchStat)

    def with_statistics(self, params, rest, statistics):
        """`rest` with its batch-norm statistics replaced by `statistics`."""
        module = self.merge(params, rest, train=False)
        nnx.update(module, statistics)
        _, _, _, new_rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return _as_before(new_rest, rest)


class FunctionalModel:
    """A task's parameter factory and `loss(params, batch, key)` as the engine calls them (no
    state beside the parameters)."""

    multipliers = {"weight_decay_multipliers": None, "learning_rate_multipliers": None}

    def __init__(self, factory: Callable, loss: Callable, compute_dtype=None):
        self.factory, self.loss_fn, self.compute_dtype = factory, loss, compute_dtype
        jax.eval_shape(self.init, jnp.int32(0))  # a factory that fails, fails here

    def init(self, seed):
        return _call_factory("params", self.factory, jax.random.key(seed)), {}

    def loss(self, params, rest, batch, key, *, train: bool):
        if self.compute_dtype is not None:
            params, batch = _cast(params, self.compute_dtype), _cast(batch, self.compute_dtype)
        loss, metrics = _call_loss(self.loss_fn, params, batch, key if train else None)
        return loss, metrics, rest

    def batch_statistics(self, params, rest, batch):
        """None: a functional model holds no statistics beside its parameters."""
        return {}

    def with_statistics(self, params, rest, statistics):
        return rest


def model_of(task: Task, precision: str) -> NnxModel | FunctionalModel:
    """The engine's view of `task`'s model, computing in `precision`."""
    cast = None if task.precision_in_model or precision == "float32" else jnp.dtype(precision)
    if task.model is not None:
        return NnxModel(task.model, task.loss, cast)
    return FunctionalModel(task.params, task.loss, cast)


def _method(module, name: str):
    fn = getattr(module, name, None)
    return fn() if callable(fn) else None


def _set_mode(module: nnx.Module, *, train: bool) -> None:
    """Train or eval mode (batch norm's batch statistics, dropout on) where the module has
    them."""
    (module.train if train else module.eval)()


def _placeholder(x):
    """A concrete stand-in for an abstract RNG-stream variable (reseeded before use)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.key(0)
    return jnp.zeros(x.shape, x.dtype)


# --- iterator data -------------------------------------------------------------------------

def seekable(factory: Callable) -> bool:
    """`factory` takes a `start` (the first batch to read)."""
    try:
        return "start" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def open_stream(name: str, factory: Callable, start: int = 0) -> Iterator[Batch]:
    """The batches of `factory` from batch `start` on (seeking where the factory takes
    `start`, else skipping); ConfigError where the factory raises or returns no iterable."""
    if seekable(factory):
        return iter(_call_factory(f"{name} data", factory, start=start))
    it = _call_factory(f"{name} data", factory)
    try:
        it = iter(it)
    except TypeError as err:
        raise ConfigError(f"{name}={factory!r} returned {type(it).__name__}: it must return "
                          "an iterable of batches.") from err
    for _ in range(start):
        next(it, None)
    return it


def iterable_length(factory: Callable) -> int | None:
    """`len()` of the iterable `factory` returns, where it has one (e.g. a DataLoader)."""
    kwargs = {"start": 0} if seekable(factory) else {}
    try:
        return len(_call_factory("train data", factory, **kwargs))
    except TypeError:
        return None


def softmax_classification(mean, std) -> Callable:
    """The zoo's loss: softmax cross-entropy of `model(standardised batch["image"])` against
    the integer `batch["label"]`, with the accuracy."""

    def loss(model, batch):
        logits = model(data.normalize(batch["image"], mean, std))
        labels = batch["label"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return ce, {ACCURACY: jnp.mean(jnp.argmax(logits, -1) == labels)}

    return loss


def subset(arrays: Mapping[str, Any], n: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed random subset of `n` examples of each array (the same for every run)."""
    arrays = dict(arrays)
    length = data.check_same_length("data", arrays)
    if n is None or n >= length:
        return arrays
    keep = np.sort(np.random.default_rng(seed).permutation(length)[:n])
    return {k: np.asarray(a)[keep] for k, a in arrays.items()}
