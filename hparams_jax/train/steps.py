"""The compiled parts of training: member initialisation, a chunk of train steps, and
evaluation, each a pure function jitted once; for streamed datasets, a step and an evaluation
on one global batch fed from the host.

The train state of K sweep members carries a leading axis K; one member's step is written
once and lifted to K members, batched with `jax.vmap` or unrolled (each member's step traced
once into the same program). A chunk of steps is one `lax.scan` or a host loop over the jitted
step. Which, and which layer implementations the network is built from, is the execution plan
(`plan.Plan`, chosen from the backend; see `plan` for why XLA:CPU differs). The network
computes in the config's `precision` (float32 or bfloat16) with float32 parameters, optimizer
state and batch-norm statistics; logits, loss and softmax are float32.
The global batch is sharded over the mesh's "data" axis; parameters are replicated, so batch
norm sees global-batch statistics. Random keys derive from (seed, step): a resumed run draws
exactly the keys an uninterrupted run would.

One step is one optimizer step. With `accumulate_steps` k > 1 it augments the global batch as
a whole, splits it into k micro-batches each spread over all devices (`data.micro_batches`)
and feeds their gradients in turn to the `optax.MultiSteps` optimizer, which updates the
parameters after the k-th: a `lax.scan` over the micro-batches where the plan scans chunks,
unrolled where it loops on the host (XLA:CPU, for the reason `plan` gives). Batch norm runs on
each micro-batch in turn (its statistics are the micro-batch's; its running averages move k
times a step).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from hparams_jax import data, models, transforms
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.optimizer import make_optimizer
from hparams_jax.train.plan import Plan, resolve


class TrainState(NamedTuple):
    params: Any  # nnx.State of the nnx.Param variables
    rest: Any  # nnx.State of everything else but RNG streams (batch-norm statistics)
    opt_state: Any
    step: jax.Array  # int32 optimizer steps taken
    diverged: jax.Array  # bool: a non-finite loss was met; the state is frozen since


def _lift(fn: Callable, num_members: int, shared: tuple[int, ...] = (),
          vectorize: bool = True) -> Callable:
    """`fn` of one member applied to K members: every argument has a leading axis K except
    those at the positions in `shared`, which all members see whole. `vectorize` batches the
    members with `jax.vmap`; otherwise each member's computation is traced once into the same
    program (unrolled) and the results are stacked."""
    if num_members > 1 and vectorize:
        def batched(*args):
            in_axes = tuple(None if i in shared else 0 for i in range(len(args)))
            return jax.vmap(fn, in_axes=in_axes)(*args)

        return batched

    def unrolled(*args):
        outs = [fn(*[a if i in shared else jax.tree.map(lambda x: x[k], a)
                     for i, a in enumerate(args)])
                for k in range(num_members)]
        return jax.tree.map(lambda *x: jnp.stack(x), *outs)

    return unrolled


class Engine:
    """Builds and holds the jitted init / train-chunk / evaluate functions of one config, run
    as `plan` says (default: `plan.resolve(config.plan)`)."""

    def __init__(self, config: TrainConfig, *, num_classes: int, mean, std, augmentation: str,
                 total_steps: int, mesh: Mesh, plan: Plan | None = None):
        self.config = config
        self.plan = resolve(config.plan) if plan is None else plan
        self.total_steps = total_steps
        self.mesh = mesh
        self.num_members = config.num_members
        self.augmentation = augmentation
        if config.normalization == "mean":
            std = np.ones_like(np.asarray(std, np.float32))
        self.mean, self.std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
        self.num_classes = num_classes

        model = nnx.eval_shape(lambda: self._create(0))
        self.multipliers = dict(weight_decay_multipliers=model.weight_decay_multipliers(),
                                learning_rate_multipliers=model.lr_multipliers())
        model.train()
        self.train_graph, _, self.rng_template, _ = nnx.split(model, nnx.Param, nnx.RngState,
                                                              ...)
        model.eval()
        self.eval_graph = nnx.graphdef(model)

        self.replicated = data.replicated(mesh)
        self.chunk_sharding = data.batch_sharding(mesh, leading=2)
        self.init = jax.jit(self._init, out_shardings=self.replicated)
        self.scan_steps = self.plan.scan_chunks
        self.vectorize = self.plan.vmap_members
        self.lift = lambda fn, shared=(): _lift(fn, self.num_members, shared, self.vectorize)
        self._scan = jax.jit(self._train_scan, donate_argnums=0)
        self._step = jax.jit(self._train_step, donate_argnums=0)
        self.evaluate = jax.jit(self._evaluate)
        self._batch_step = jax.jit(self._train_batch, donate_argnums=0)
        self._eval_batch = jax.jit(self._evaluate_batch)

    # --- model plumbing ----------------------------------------------------------------
    def _create(self, seed):
        key = jax.random.key(seed)
        return models.create(self.config.model, num_classes=self.num_classes,
                             rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)),
                             dtype=jnp.dtype(self.config.precision), layers=self.plan.layers,
                             **self.config.model_options)

    def _model(self, graph, state: TrainState, dropout_key=None):
        """The module of `state`; its dropout stream is seeded with `dropout_key`."""
        rngs = jax.tree.map(_placeholder, self.rng_template)
        model = nnx.merge(graph, state.params, rngs, state.rest, copy=True)
        if dropout_key is not None:
            nnx.reseed(model, dropout=dropout_key)
        return model

    def _optimizer(self, hp) -> optax.GradientTransformation:
        return make_optimizer(self.config, hp, self.total_steps, **self.multipliers)

    def _prepare(self, images, key):
        x = data.augment(key, images, self.augmentation)
        return data.normalize(x, self.mean, self.std)

    # --- init ----------------------------------------------------------------------------
    def _init(self, hp) -> TrainState:
        def member(hp):
            model = self._create(hp["seed"])
            model.train()
            _, params, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
            return TrainState(params, rest, self._optimizer(hp).init(params),
                              jnp.zeros((), jnp.int32), jnp.zeros((), jnp.bool_))

        return self.lift(member)(hp)

    # --- training -----------------------------------------------------------------------
    def _member_step(self, state: TrainState, hp, ds: data.DeviceDataset, idx):
        return self._member_update(state, hp, *ds.gather(idx))

    def _member_update(self, state: TrainState, hp, x, y):
        """One member's optimizer step on the uint8 images `x` and labels `y` (the global
        batch; `accumulate_steps` micro-batches of it in turn, see the module docstring)."""
        key = jax.random.fold_in(jax.random.key(hp["seed"]), state.step)
        aug_key, dropout_key = jax.random.split(key)
        x = self._prepare(x, aug_key)
        optimizer = self._optimizer(hp)

        def micro_step(carry, batch):
            params, rest, opt_state = carry
            x, y, dropout_key = batch

            def loss_fn(params):
                model = self._model(self.train_graph, state._replace(params=params, rest=rest),
                                    dropout_key)
                logits = model(x)
                loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
                _, _, _, rest_out = nnx.split(model, nnx.Param, nnx.RngState, ...)
                return loss, (logits, rest_out)

            (loss, (logits, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
            return (optax.apply_updates(params, updates), rest, opt_state), (
                loss, jnp.mean(jnp.argmax(logits, -1) == y), finite)

        carry = (state.params, state.rest, state.opt_state)
        k = self.config.accumulate_steps
        if k == 1:
            new, (loss, accuracy, finite) = micro_step(carry, (x, y, dropout_key))
        else:
            micro = (data.micro_batches(x, k, self.mesh.size),
                     data.micro_batches(y, k, self.mesh.size), jax.random.split(dropout_key, k))
            new, (loss, accuracy, finite) = self._micro_loop(micro_step, carry, micro)
            loss, accuracy, finite = loss.mean(), accuracy.mean(), finite.all()
        metrics = {"loss": loss, "accuracy": accuracy, "finite": finite,
                   **transforms.hyperparams(new[2])}
        keep_new = finite & ~state.diverged
        kept = jax.tree.map(lambda n, o: jnp.where(keep_new, n, o), new, carry)
        state = TrainState(*kept, step=state.step + 1, diverged=state.diverged | ~finite)
        return state, metrics

    def _micro_loop(self, body: Callable, carry, xs):
        """`lax.scan(body, carry, xs)`, unrolled in the program where the plan runs chunks as
        host loops (XLA:CPU: see `plan`)."""
        if self.scan_steps:
            return jax.lax.scan(body, carry, xs)
        outs = []
        for i in range(self.config.accumulate_steps):
            carry, out = body(carry, jax.tree.map(lambda a: a[i], xs))
            outs.append(out)
        return carry, jax.tree.map(lambda *o: jnp.stack(o), *outs)

    def _train_scan(self, state: TrainState, hp, ds: data.DeviceDataset, idx):
        step = self.lift(self._member_step, shared=(2,))

        def body(state, idx):
            return step(state, hp, ds, idx)

        return jax.lax.scan(body, state, idx)

    def _train_step(self, state: TrainState, hp, ds: data.DeviceDataset, idx, i):
        """Step `i` of the chunk `idx` (n, K, B), for the host loop."""
        step = self.lift(self._member_step, shared=(2,))
        return step(state, hp, ds, jax.lax.dynamic_index_in_dim(idx, i, 0, False))

    def train_chunk(self, state: TrainState, hp, ds: data.DeviceDataset, idx: np.ndarray):
        """n steps of K members on global batches of B, from host indices `idx` (n, K, B);
        returns the new state and per-step metrics with a leading axis n."""
        n = len(idx)
        if self.scan_steps:
            return self._scan(state, hp, ds, data.put(idx, self.chunk_sharding))
        # padded to a power of two so that a few chunk shapes serve every chunk length
        padded = np.zeros((1 << (n - 1).bit_length(), *idx.shape[1:]), idx.dtype)
        padded[:n] = idx
        idx = data.put(padded, self.chunk_sharding)
        return self._host_loop(state, (lambda s, i=i: self._step(s, hp, ds, idx, np.int32(i))
                                       for i in range(n)))

    def compile_step(self, hp, *args):
        """One training step compiled for `hp` and the step's remaining arguments (abstract
        `jax.ShapeDtypeStruct`s will do), without running it: a `jax.stages.Compiled`, whose
        `memory_analysis()` says what the step needs on the device. The arguments are
        (dataset, chunk indices (1, K, B)) for a held dataset, (images, labels) for a
        streamed one."""
        state = jax.eval_shape(self.init, hp)
        if isinstance(args[0], data.DeviceDataset):
            return self._step.lower(state, hp, *args, np.int32(0)).compile()
        return self._batch_step.lower(state, hp, *args).compile()

    def _host_loop(self, state: TrainState, steps):
        """`state` through each `step(state) -> (state, metrics)` of `steps`, dispatched
        asynchronously; returns the last state and the metrics stacked on a leading axis."""
        metrics = []
        for step in steps:
            state, m = step(state)
            if self.plan.sync_each_step:  # several CPU devices in one process: see `plan`
                jax.block_until_ready(m)
            metrics.append(m)
        return state, jax.tree.map(lambda *x: jnp.stack(x), *metrics)

    def _train_batch(self, state: TrainState, hp, images, labels):
        """One step of K members on a global batch they share (a streamed dataset)."""
        return self.lift(self._member_update, shared=(2, 3))(state, hp, images, labels)

    def train_batches(self, state: TrainState, hp, batches):
        """A step per device batch {"image", "label"} of `batches` (global arrays sharded
        on the batch axis); returns the new state and per-step metrics with a leading axis."""
        return self._host_loop(state, (
            lambda s, b=b: self._batch_step(s, hp, b["image"], b["label"]) for b in batches))

    # --- evaluation ---------------------------------------------------------------------
    def _eval_sums(self, model, images, labels, mask):
        """Summed cross-entropy, correct predictions and count of the examples where `mask`
        is 1."""
        logits = model(data.normalize(images, self.mean, self.std))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = jnp.argmax(logits, -1) == labels
        return jnp.stack([jnp.sum(ce * mask), jnp.sum(correct * mask), jnp.sum(mask)])

    def _evaluate(self, state: TrainState, ds: data.DeviceDataset, idx, mask):
        """Mean loss and accuracy over the examples `idx` (steps, B) where `mask` is set."""

        def member(state):
            model = self._model(self.eval_graph, state)

            def body(totals, batch):
                idx, m = batch
                return totals + self._eval_sums(model, *ds.gather(idx), m), None

            (loss, correct, n), _ = jax.lax.scan(body, jnp.zeros(3), (idx, mask))
            return {"loss": loss / n, "accuracy": correct / n}

        return self.lift(member)(state)

    def _evaluate_batch(self, state: TrainState, images, labels, mask):
        """(K, 3) summed loss, correct predictions and example count of each member on one
        global batch."""
        return self.lift(lambda s: self._eval_sums(self._model(self.eval_graph, s), images,
                                                   labels, mask))(state)

    def evaluate_batches(self, state: TrainState, batches) -> dict[str, np.ndarray]:
        """Mean loss and accuracy of each member over device batches {"image", "label",
        "mask"} (a streamed split; the mask is 0 on padding)."""
        totals = 0.0
        for batch in batches:
            totals = totals + self._eval_batch(state, batch["image"], batch["label"],
                                               batch["mask"])
        totals = jax.device_get(totals)
        return {"loss": totals[:, 0] / totals[:, 2], "accuracy": totals[:, 1] / totals[:, 2]}


def _placeholder(x):
    """A concrete stand-in for an abstract RNG-stream variable (reseeded before use)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.key(0)
    return jnp.zeros(x.shape, x.dtype)
