"""The compiled parts of training: member initialisation, a chunk of train steps, and
evaluation, each a pure function jitted once; for streamed data, a step and an evaluation on
one global batch fed from the host.

What is trained is a `task.Task`: its model (an NNX module or a functional model, seen through
`task.NnxModel` / `task.FunctionalModel` as pure functions of parameters and other state), its
loss and its data (named arrays). `member_step` is one member's optimizer step over the task's
loss, a module-level pure function (as Flax's MNIST example writes its `train_step`);
`eval_sums` one member's summed held-out loss and metrics on a batch.

The train state of K sweep members carries a leading axis K; one member's step is written
once and lifted to K members, batched with `jax.vmap` or unrolled (each member's step traced
once into the same program). A chunk of steps is one `lax.scan` or a host loop over the jitted
step. Which, and which layer implementations the zoo's networks are built from, is the
execution plan (`plan.Plan`, chosen from the backend; see `plan` for why XLA:CPU differs). The
network computes in the config's `precision` (float32 or bfloat16) with float32 parameters,
optimizer state and batch-norm statistics; the loss is float32.
The global batch is sharded over the mesh's "data" axis; parameters are replicated, so batch
norm sees global-batch statistics. Random keys derive from (seed, step): a resumed run draws
exactly the keys an uninterrupted run would.

One step is one optimizer step. With `accumulate_steps` k > 1 it augments the global batch as a
whole (the task's `augment`), splits each of its arrays into k micro-batches, each spread over all
devices (`data.micro_batches`), and feeds their gradients in turn to the `optax.MultiSteps`
optimizer, which updates the parameters after the k-th: a `lax.scan` over the micro-batches where
the plan scans chunks, unrolled where it loops on the host (XLA:CPU, for the reason `plan` gives).
Batch norm runs on each micro-batch in turn (its statistics are the micro-batch's; its running
averages move k times a step).

Evaluation weighs each batch's mean loss and metrics by its examples; the padded last batch of
held data (or a streamed batch with an "example_mask") is evaluated example by example
(`jax.vmap` over batches of one) and its padding masked, so the held-out readings are exact
means over the examples.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from hparams_jax import data, transforms
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.optimizer import make_optimizer
from hparams_jax.train.plan import Plan, resolve
from hparams_jax.train.policies import OPTIMIZERS
from hparams_jax.train.task import Task, model_of


class TrainState(NamedTuple):
    params: Any  # the model's parameters (an nnx.State of its nnx.Param, or a pytree)
    rest: Any  # its other state but RNG streams (batch-norm statistics), or {}
    opt_state: Any
    step: jax.Array  # int32 optimizer steps taken
    diverged: jax.Array  # bool: a non-finite loss was met; the state is frozen since


@dataclasses.dataclass(frozen=True)
class StepFns:
    """The static parts of one member's step: the task's model and augmentation, the
    optimizer of a member's hyper-parameters, and how the step runs (plan, accumulation)."""

    model: Any  # task.NnxModel or task.FunctionalModel
    optimizer: Callable[[Any], optax.GradientTransformation]
    augment: Callable | None
    plan: Plan
    accumulate_steps: int
    num_devices: int


def member_step(fns: StepFns, state: TrainState, hp, batch) -> tuple[TrainState, dict]:
    """One member's optimizer step on the global `batch` (`accumulate_steps` micro-batches of
    it in turn): its loss, metrics, finiteness and the hyper-parameters it used. A non-finite
    loss or gradient leaves the state as it was and marks it diverged (frozen from then on).
    Random keys derive from (seed, step)."""
    key = jax.random.fold_in(jax.random.key(hp["seed"]), state.step)
    aug_key, dropout_key = jax.random.split(key)
    if fns.augment is not None:
        batch = fns.augment(aug_key, batch)
    optimizer = fns.optimizer(hp)

    def micro_step(carry, micro):
        params, rest, opt_state = carry
        batch, key = micro

        def loss_fn(params):
            loss, metrics, new_rest = fns.model.loss(params, rest, batch, key, train=True)
            return loss, (metrics, new_rest)

        (loss, (metrics, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
        return (optax.apply_updates(params, updates), rest, opt_state), (loss, metrics, finite)

    carry = (state.params, state.rest, state.opt_state)
    k = fns.accumulate_steps
    if k == 1:
        new, (loss, metrics, finite) = micro_step(carry, (batch, dropout_key))
    else:
        micro = (jax.tree.map(lambda a: data.micro_batches(a, k, fns.num_devices), batch),
                 jax.random.split(dropout_key, k))
        new, (loss, metrics, finite) = fns.plan.loop(micro_step, carry, micro, k)
        loss, finite = loss.mean(), finite.all()
        metrics = jax.tree.map(jnp.mean, metrics)
    out = {"loss": loss, "metrics": metrics, "finite": finite,
           **transforms.hyperparams(new[2])}
    keep_new = finite & ~state.diverged
    kept = jax.tree.map(lambda n, o: jnp.where(keep_new, n, o), new, carry)
    return TrainState(*kept, step=state.step + 1, diverged=state.diverged | ~finite), out


def eval_sums(model, state: TrainState, batch, mask=None) -> dict[str, jax.Array]:
    """One member's held-out sums on `batch`: {"loss", "count", "metrics": {...}}, each the
    sum over the examples (where `mask` is 1: then example by example, see the module
    docstring)."""
    if mask is None:
        loss, metrics, _ = model.loss(state.params, state.rest, batch, None, train=False)
        n = jnp.float32(jax.tree.leaves(batch)[0].shape[0])
        return {"loss": loss * n, "count": n, "metrics": jax.tree.map(lambda m: m * n, metrics)}

    def one(example):
        loss, metrics, _ = model.loss(state.params, state.rest,
                                      jax.tree.map(lambda a: a[None], example), None,
                                      train=False)
        return loss, metrics

    loss, metrics = jax.vmap(one)(batch)
    mask = mask.astype(jnp.float32)
    return {"loss": jnp.sum(loss * mask), "count": jnp.sum(mask),
            "metrics": jax.tree.map(lambda m: jnp.sum(m * mask), metrics)}


def means(totals) -> dict[str, np.ndarray]:
    """(K,) mean held-out loss and metrics of summed `eval_sums` (leading axis K)."""
    totals = jax.device_get(totals)
    n = totals["count"]
    return {"loss": totals["loss"] / n, **{k: x / n for k, x in totals["metrics"].items()}}


class Engine:
    """Builds and holds the jitted init / train-chunk / evaluate functions of one config and
    task, run as `plan` says (default: `plan.resolve(config.plan)`)."""

    def __init__(self, config: TrainConfig, task: Task, *, total_steps: int, mesh: Mesh,
                 plan: Plan | None = None):
        self.config = config
        self.plan = resolve(config.plan) if plan is None else plan
        self.total_steps = total_steps
        self.mesh = mesh
        self.num_members = config.num_members
        self.augment = task.augment
        self.model = model_of(task, config.precision)
        self.replicated = data.replicated(mesh)
        self.chunk_sharding = data.batch_sharding(mesh, leading=2)
        self.init = jax.jit(self._init, out_shardings=self.replicated)
        self._scan = jax.jit(self._train_scan, donate_argnums=0)
        self._step = jax.jit(self._train_step, donate_argnums=0)
        self.evaluate = jax.jit(self._evaluate)
        self._batch_step = jax.jit(self._train_batch, donate_argnums=0)
        self._eval_batch = jax.jit(self._evaluate_batch)
        self._statistics = jax.jit(self._batch_statistics)
        self._averaged = jax.jit(self._with_statistics)

    def lift(self, fn: Callable, shared: tuple[int, ...] = ()) -> Callable:
        return self.plan.lift(fn, self.num_members, shared)

    def fns(self) -> StepFns:
        """The step's static parts (read when a step is traced)."""
        return StepFns(self.model, self._optimizer, self.augment, self.plan,
                       self.config.accumulate_steps, self.mesh.size)

    def _optimizer(self, hp) -> optax.GradientTransformation:
        return make_optimizer(self.config, hp, self.total_steps, **self.model.multipliers)

    # --- init ----------------------------------------------------------------------------
    def _init(self, hp) -> TrainState:
        def member(hp):
            params, rest = self.model.init(hp["seed"])
            return TrainState(params, rest, self._optimizer(hp).init(params),
                              jnp.zeros((), jnp.int32), jnp.zeros((), jnp.bool_))

        return self.lift(member)(hp)

    # --- training -----------------------------------------------------------------------
    def _member_step(self, state: TrainState, hp, ds: data.DeviceDataset, idx):
        return member_step(self.fns(), state, hp, ds.gather(idx))

    def _train_scan(self, state: TrainState, hp, ds: data.DeviceDataset, idx):
        step = self.lift(self._member_step, shared=(2,))
        return jax.lax.scan(lambda state, idx: step(state, hp, ds, idx), state, idx)

    def _train_step(self, state: TrainState, hp, ds: data.DeviceDataset, idx, i):
        """Step `i` of the chunk `idx` (n, K, B), for the host loop."""
        step = self.lift(self._member_step, shared=(2,))
        return step(state, hp, ds, jax.lax.dynamic_index_in_dim(idx, i, 0, False))

    def train_chunk(self, state: TrainState, hp, ds: data.DeviceDataset, idx: np.ndarray):
        """n steps of K members on global batches of B, from host indices `idx` (n, K, B);
        returns the new state and per-step metrics with a leading axis n."""
        n = len(idx)
        if self.plan.scan_chunks:
            return self._scan(state, hp, ds, data.put(idx, self.chunk_sharding))
        # padded to a power of two so that a few chunk shapes serve every chunk length
        padded = np.zeros((1 << (n - 1).bit_length(), *idx.shape[1:]), idx.dtype)
        padded[:n] = idx
        idx = data.put(padded, self.chunk_sharding)
        return self.plan.host_loop(state, (lambda s, i=i: self._step(s, hp, ds, idx,
                                                                      np.int32(i))
                                           for i in range(n)))

    def compile_step(self, hp, *args):
        """One training step compiled for `hp` and the step's remaining arguments (abstract
        `jax.ShapeDtypeStruct`s will do), without running it: a `jax.stages.Compiled`, whose
        `memory_analysis()` says what the step needs on the device. The arguments are
        (dataset, chunk indices (1, K, B)) for held data, (a batch,) for streamed data."""
        state = jax.eval_shape(self.init, hp)
        if isinstance(args[0], data.DeviceDataset):
            return self._step.lower(state, hp, *args, np.int32(0)).compile()
        return self._batch_step.lower(state, hp, *args).compile()

    def _train_batch(self, state: TrainState, hp, batch):
        """One step of K members on a global batch they share (streamed data)."""
        return self.lift(lambda s, hp, b: member_step(self.fns(), s, hp, b),
                         shared=(2,))(state, hp, batch)

    def train_batches(self, state: TrainState, hp, batches):
        """A step per global device batch of `batches` (mappings of arrays sharded on the
        batch axis); returns the new state and per-step metrics with a leading axis."""
        return self.plan.host_loop(state, (lambda s, b=b: self._batch_step(s, hp, b)
                                           for b in batches))

    # --- evaluation ---------------------------------------------------------------------
    def _evaluate(self, state: TrainState, ds: data.DeviceDataset, idx, last, mask):
        """Summed held-out loss and metrics of each member over the full batches `idx`
        (steps, B) and the padded batch `last` (B,) where `mask` is set (`last` None: none)."""

        def member(state):
            def body(totals, idx):
                sums = eval_sums(self.model, state, ds.gather(idx))
                return jax.tree.map(jnp.add, totals, sums), None

            totals = None if last is None else eval_sums(self.model, state, ds.gather(last),
                                                         mask)
            if idx.shape[0]:
                first = eval_sums(self.model, state, ds.gather(idx[0]))
                totals = first if totals is None else jax.tree.map(jnp.add, totals, first)
                totals, _ = jax.lax.scan(body, totals, idx[1:])
            return totals

        return self.lift(member)(state)

    def _evaluate_batch(self, state: TrainState, batch, mask):
        """Each member's summed held-out loss and metrics on one global batch."""
        return self.lift(lambda s: eval_sums(self.model, s, batch, mask))(state)

    # --- schedule-free: the averaged weights ----------------------------------------------
    def _batch_statistics(self, state: TrainState, batch):
        def member(state):
            params = transforms.schedule_free_eval_params(state.opt_state, state.params)
            return self.model.batch_statistics(params, state.rest, batch)

        return self.lift(member)(state)

    def _with_statistics(self, state: TrainState, statistics) -> TrainState:
        def member(state, statistics):
            params = transforms.schedule_free_eval_params(state.opt_state, state.params)
            return state._replace(params=params, rest=self.model.with_statistics(
                params, state.rest, statistics))

        return self.lift(member)(state, statistics)

    def averaged(self, state: TrainState, batches) -> TrainState:
        """The state a schedule-free optimizer evaluates (Defazio et al. 2024): the averaged
        weights `x` in place of the trained `y`, with batch-norm statistics recomputed for
        them as the mean of their statistics over `batches` (training batches, as
        `torch.optim.swa_utils.update_bn` recomputes them for averaged weights). The state
        as it is for other optimizers."""
        if not OPTIMIZERS[self.config.optimizer].averaged:
            return state
        totals, n = None, 0
        for batch in batches:
            stats = self._statistics(state, batch)
            totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
            n += 1
        if totals is None:
            raise ValueError("no training batch to recompute the batch-norm statistics on")
        return self._averaged(state, jax.tree.map(lambda a: a / n, totals))

    def evaluate_batches(self, state: TrainState, batches) -> dict[str, np.ndarray]:
        """Mean held-out loss and metrics of each member over (batch, mask) pairs of global
        device batches (mask None, or 0 on padding)."""
        totals = None
        for batch, mask in batches:
            sums = self._eval_batch(state, batch, mask)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        if totals is None:
            raise ValueError("the eval data yielded no batch")
        return means(totals)
