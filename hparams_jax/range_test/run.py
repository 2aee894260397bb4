"""Running the LR range test and its families (Smith 2018, Sec. 4.1-4.4; Smith 2017, Sec. 3.3).

A short run whose learning rate rises from `start` to `stop` (linearly, as in the paper, or
exponentially) records the training loss every step and, every `eval_every` steps, the loss and
accuracy on a fixed held-out subset. It runs the training engine's compiled step (the config's
optimizer, SGD or AdamW; a step is one optimizer step, of `accumulate_steps` micro-batches) in
chunks of `lax.scan`, checks between chunks and stops once the EMA of the training loss (`ema`)
exceeds `stop_factor` x its minimum or turns non-finite. It builds its own state: no model or
optimizer of the caller's is touched. `range_test_family` repeats the test over batch sizes
(Sec. 4.2), momenta (Sec. 4.3) or weight decays (Sec. 4.4): settings that share shapes run as
one vmapped program.

The training engine is imported on first use (`_engine`): the records and their reading
(`hparams_jax.range_test.result`, `hparams_jax.range_test.read`) need only the core install.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import jax
import numpy as np

from hparams_jax import _validate as v
from hparams_jax import momenta
from hparams_jax.errors import ConfigError
from hparams_jax.range_test.read import centred
from hparams_jax.range_test.result import Family, RangeTestResult, _label, _values
from hparams_jax.train.config import RANGE_MODES, TrainConfig
from hparams_jax.train.metrics import ACCURACY

if TYPE_CHECKING:
    from hparams_jax.train.task import Task

# The settings a family may vary.
FAMILY_PARAMS = ("weight_decay", "momentum", "batch_size")


def _engine():
    """The training engine's session and task modules, imported here on first use: reading
    range tests needs only the core install, running them the train extra."""
    from hparams_jax import _extras

    try:
        from hparams_jax.train import session, task
    except ModuleNotFoundError as err:
        _extras.reraise(err, "running an LR range test")
    return session, task


def _open_session(config: TrainConfig, task: Task):
    return _engine()[0].open_session(config, task)


class _Ema:
    """Bias-corrected exponential moving average of K series, fed one step at a time."""

    def __init__(self, k: int, beta: float = 0.98):
        self.beta, self.count, self.avg = beta, 0, np.zeros(k)

    def step(self, row: np.ndarray) -> np.ndarray:
        self.count += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * np.asarray(row, np.float64)
        return self.avg / (1 - self.beta ** self.count)


def ema(loss: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average (as in fastai's and pytorch-lr-finder's
    finders), the smoothing by which a test stops, applied to a whole curve; non-finite values
    propagate. Causal, so it decides when to stop; it lags the loss by about 1 / (1 - beta)
    steps, so the curve is read (and kept as `smoothed_loss`) with `centred` instead.

    Args:
      loss: the losses, one per step.
      beta: the decay of the average, in [0, 1).

    Returns:
      The averaged losses (same length).

    Examples:
      >>> import numpy as np
      >>> from hparams_jax.range_test import ema
      >>> ema(np.array([1.0, 1.0, 4.0]), beta=0.5)  # (2 * 0.5 + 4 * 0.5) / (1 - 0.125)
      array([1.        , 1.        , 2.71428571])
    """
    average = _Ema(1, beta)
    return np.array([average.step(np.array([x]))[0] for x in loss])


class _StoppingRule:
    """The EMA of each member's loss (as `ema` smooths it) kept up chunk by chunk with its
    running minimum, so the rule reads each new loss once instead of re-smoothing the whole
    curve."""

    def __init__(self, k: int):
        self.ema, self.best, self.last = _Ema(k), np.full(k, np.inf), np.full(k, np.nan)

    def update(self, loss: np.ndarray, stop_factor: float) -> np.ndarray:
        """Feeds (n, K) losses; True where their EMA now exceeds stop_factor x its minimum."""
        for row in loss:
            self.last = self.ema.step(row)
            self.best = np.fmin(self.best, self.last)
        return self.last > stop_factor * self.best


def check_ramp(start, stop, num_steps, mode="linear", stop_factor=4.0, eval_every=None):
    """Checks an LR range test's ramp before anything trains (`lr_range_test`,
    `range_test_family`, `tune`).

    Args:
      start: the LR at step 0 (>= 0; > 0 for `mode="exp"`).
      stop: the LR at the last step (> `start`: equal bounds are no ramp).
      num_steps: the ramp's length in optimizer steps (an integer >= 2).
      mode: "linear" (the paper) or "exp".
      stop_factor: the early-stopping factor on the EMA of the training loss (`ema`; > 1).
      eval_every: steps between held-out evaluations (a positive integer), or None.

    Returns:
      None; a disallowed value raises.

    Raises:
      ConfigError: naming the argument, its value and what is allowed.

    Examples:
      >>> from hparams_jax.range_test import check_ramp
      >>> check_ramp(0.001, 1.0, 100)
      >>> check_ramp(0.1, 0.01, 100)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: ...
    """
    v.one_of("mode", mode, RANGE_MODES)
    (v.strictly_positive if mode == "exp" else v.non_negative)("start", start)
    v.strictly_positive("stop", stop)
    v.ordered("start", start, "stop", stop)
    v.check("stop", stop, bool(np.all(np.asarray(stop) > np.asarray(start))),
            f"above start={start!r} (the ramp rises from start to stop)")
    v.positive_int("num_steps", num_steps)
    v.check("num_steps", num_steps, num_steps >= 2, "at least 2")
    v.check("stop_factor", stop_factor, stop_factor > 1, "greater than 1")
    if eval_every is not None:
        v.positive_int("eval_every", eval_every)


def _run(config: TrainConfig, task: Task, *, start, stop, num_steps, mode, eval_every,
         stop_factor, labels: Sequence[str]) -> list[RangeTestResult]:
    session = _open_session(config.replace(lr_policy="range_test", min_lr=start, max_lr=stop,
                                           steps=num_steps, range_mode=mode, workdir=None,
                                           progress=False), task)
    k = session.num_members
    state = session.init_state()
    eval_every = eval_every or max(1, num_steps // 20)
    losses, accs, lrs, finite = [], [], [], []
    evals: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    stopped = np.full(k, -1)  # step at which each member stopped, -1 while running
    reasons = ["completed"] * k
    rule = _StoppingRule(k)
    step = 0
    while step < num_steps and (stopped < 0).any():
        n = session.chunk_length(step, eval_every)
        state, m = session.chunk(state, step, n)
        m = jax.device_get(m)
        for out, key in ((losses, "loss"), (lrs, "learning_rate"), (finite, "finite")):
            out.append(m[key])
        accs.append(_accuracy(m["metrics"], m["loss"].shape))
        step += n
        e = session.evaluate(state)
        evals.append((step, m["learning_rate"][-1], e["loss"], _accuracy(e, e["loss"].shape)))
        ever_bad = ~np.all(np.concatenate(finite), axis=0)
        too_high = rule.update(m["loss"], stop_factor)
        for j in np.flatnonzero(stopped < 0):
            if ever_bad[j]:
                stopped[j], reasons[j] = step, "non-finite loss or gradient"
            elif too_high[j]:
                stopped[j], reasons[j] = step, f"smoothed loss above {stop_factor:g}x its minimum"
    loss, acc, lr, finite = (np.concatenate(x) for x in (losses, accs, lrs, finite))
    results = []
    settings = session.config.members_or_self()
    for j in range(k):
        end = stopped[j] if stopped[j] >= 0 else step
        bad = np.flatnonzero(~finite[:, j])  # the step that met a non-finite loss or gradient;
        end = min(end, bad[0]) if len(bad) else end  # the member's state is frozen after it
        ev = [(s, l[j], el[j], ea[j]) for s, l, el, ea in evals if s <= end]
        cols = np.array(ev, dtype=float).reshape(-1, 4).T
        results.append(RangeTestResult(
            learning_rate=lr[:end, j].astype(float), train_loss=loss[:end, j].astype(float),
            smoothed_loss=centred(loss[:end, j]), train_accuracy=acc[:end, j].astype(float),
            eval_step=cols[0], eval_learning_rate=cols[1], eval_loss=cols[2],
            eval_accuracy=cols[3], mode=mode, start=float(start), stop=float(stop),
            num_steps=num_steps, stop_factor=stop_factor, stop_reason=reasons[j],
            label=labels[j], setting=dataclasses.asdict(settings[j]),
            optimizer=config.optimizer))
    return results


def _accuracy(metrics, shape) -> np.ndarray:
    """The task's "accuracy" metric, or NaN where its loss reports none."""
    return np.asarray(metrics[ACCURACY]) if ACCURACY in metrics else np.full(shape, np.nan)


def lr_range_test(config: TrainConfig, *, start: float, stop: float, num_steps: int,
                  mode: str = "linear", eval_every: int | None = None,
                  stop_factor: float = 4.0, task: Task | None = None) -> RangeTestResult:
    """One LR range test of `config`'s (or `task`'s) model and data at the config's batch
    size, momentum and weight decay (its LR policy, length and sweep are replaced by the
    ramp). The held-out subset is `config.eval_examples` examples of the held-out data;
    evaluated every `eval_every` steps (default: twenty times in the test).

    Args:
      config: the batch size, optimizer, momentum and weight decay to test, and the model and
        data where `task` is None (no sweep `members`).
      start: the LR at step 0 (>= 0; > 0 for `mode="exp"`).
      stop: the LR at the last step (> `start`).
      num_steps: the ramp's length in optimizer steps (>= 2).
      mode: "linear" (the paper) or "exp".
      eval_every: steps between held-out evaluations (None: `num_steps // 20`, at least 1).
      stop_factor: stop once the EMA of the training loss (`ema`) exceeds this many times its
        minimum (> 1).
      task: the user's own model, loss and data (`Task`; it needs held-out data), in place of
        the config's model and dataset.

    Returns:
      The `RangeTestResult`; `result.suggest()` reads LR bounds from it.

    Raises:
      ConfigError: a ramp argument is out of range, `config` has sweep members, or `task` has
        no held-out data.

    Examples:
      >>> from hparams_jax.range_test import lr_range_test
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64,
      ...                      train_examples=512, eval_examples=256, momentum=0.9,
      ...                      weight_decay=5e-4, progress=False)
      >>> result = lr_range_test(config, start=0.001, stop=1.0, num_steps=40, eval_every=4)
      >>> print(f"{result.learning_rate[0]:.3f}", result.eval_step[:2])
      0.001 [4. 8.]
      >>> result.steps_run < 40, result.stop_reason != "completed"  # the loss blew up early
      (True, True)
      >>> bool(0.001 <= result.suggest().max_lr < result.learning_rate[-1])
      True
    """
    check_ramp(start, stop, num_steps, mode, stop_factor, eval_every)
    if config.members:
        raise ConfigError(f"config.members={list(config.members)!r}: use range_test_family "
                          "to compare settings")
    config, task = _with_eval(config, task, "the LR range test")
    return _run(config, task, start=start, stop=stop, num_steps=num_steps, mode=mode,
                eval_every=eval_every, stop_factor=stop_factor, labels=[""])[0]


def _with_eval(config: TrainConfig, task: Task | None, tool: str) -> tuple[TrainConfig, Task]:
    config, task = _engine()[1].resolve(config, task)
    task.require_eval(tool)
    return config, task


def range_test_family(config: TrainConfig, param: str, values: Sequence, *, start: float,
                      stop: float, num_steps: int, mode: str = "linear",
                      eval_every: int | None = None, stop_factor: float = 4.0,
                      task: Task | None = None) -> Family:
    """Range tests of `config` for each of `values` of `param` ("weight_decay", "momentum" —
    a float or a (max, min) pair, falling while the LR rises — or "batch_size"). Weight decays
    and momenta of one kind run as one vmapped program; batch sizes one after another.

    Args:
      config: the model, data and other settings shared by the family (its `members` are
        replaced).
      param: "weight_decay", "momentum" or "batch_size".
      values: the values of `param` to test (at least one).
      start: the LR at step 0, as in `lr_range_test`.
      stop: the LR at the last step.
      num_steps: the ramp's length in optimizer steps.
      mode: "linear" or "exp".
      eval_every: steps between held-out evaluations.
      stop_factor: a test stops once the EMA of its training loss exceeds this many times
        its minimum.
      task: the user's own model, loss and data (`Task`), as in `lr_range_test`.

    Returns:
      The `Family`: one `RangeTestResult` per value; `family.pick()` chooses among them.

    Raises:
      ConfigError: `param` is unknown, `values` is empty, a value or a ramp argument is not
        allowed.

    Examples:
      >>> from hparams_jax.range_test import range_test_family
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64,
      ...                      train_examples=512, eval_examples=256, momentum=0.9,
      ...                      progress=False)  # the family sets the weight decay
      >>> family = range_test_family(config, "weight_decay", [1e-4, 1e-3], start=0.001,
      ...                            stop=1.0, num_steps=40, eval_every=4)
      >>> [(r.label, r.steps_run < 40) for r in family.results]
      [('weight_decay=0.0001', True), ('weight_decay=0.001', True)]
      >>> print(family.text())  # doctest: +ELLIPSIS
        weight_decay    max_lr  min loss  best eval loss  best eval acc  stop
              0.0001 ...
               0.001 ...
      pick: weight_decay=... (lowest held-out loss ...)
    """
    v.one_of("param", param, FAMILY_PARAMS)
    v.check("values", values, len(values) >= 1, "a non-empty list")
    check_ramp(start, stop, num_steps, mode, stop_factor, eval_every)
    kw = dict(start=start, stop=stop, num_steps=num_steps, mode=mode, eval_every=eval_every,
              stop_factor=stop_factor)
    values = _values(param, values)
    config, task = _with_eval(config, task, "a range-test family")
    if param == "batch_size" and not task.held:
        raise ConfigError(f"param='batch_size': task {task.name!r} streams batches of a fixed "
                          "size from an iterator; vary the batch size with data held as "
                          "arrays.")
    results: dict[int, RangeTestResult] = {}
    if param == "batch_size":
        for i, b in enumerate(values):
            results[i] = _run(config.replace(batch_size=b, members=()), task,
                              labels=[_label(param, b)], **kw)[0]
    else:
        groups: dict[bool, list[int]] = {}
        for i, x in enumerate(values):  # constant and cyclical momenta compile separately
            groups.setdefault(param == "momentum" and momenta.is_cyclical(x), []).append(i)
        for idx in groups.values():
            members = tuple({param: values[i], "seed": config.seed} for i in idx)
            out = _run(config.replace(members=members), task, labels=[
                _label(param, values[i]) for i in idx], **kw)
            results.update(zip(idx, out))
    return Family(param, list(values), [results[i] for i in range(len(values))])


def range_test_members(config: TrainConfig, *, start: float, stop: float, num_steps: int,
                       mode: str = "linear", eval_every: int | None = None,
                       stop_factor: float = 4.0, task: Task | None = None
                       ) -> list[RangeTestResult]:
    """One range test per member of `config.members` (any of `SWEEPABLE`'s settings: seeds,
    momenta, weight decays), run as one vmapped program: a family repeated over seeds measures
    the noise of its readings (Smith 2018, Sec. 4: each reading is one short run). The members'
    momenta must be all constant or all (max, min) pairs, as in any sweep.

    Args:
      config: the model, data and shared settings, with the `members` to test (at least one).
      start: the LR at step 0, as in `lr_range_test`.
      stop: the LR at the last step.
      num_steps: the ramp's length in optimizer steps.
      mode: "linear" or "exp".
      eval_every: steps between held-out evaluations (None: `num_steps // 20`, at least 1).
      stop_factor: a member stops once its smoothed loss exceeds this many times its minimum.
      task: the user's own model, loss and data (`Task`), as in `lr_range_test`.

    Returns:
      A `RangeTestResult` per member, in order; each one's `label` names the member's
      settings and its `setting` holds them.

    Raises:
      ConfigError: `config` has no members, or a ramp argument is not allowed.

    Examples:
      >>> from hparams_jax.range_test import range_test_members
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64,
      ...                      train_examples=512, eval_examples=256, momentum=0.9,
      ...                      weight_decay=5e-4, progress=False,
      ...                      members=[{"seed": 0}, {"seed": 1}])
      >>> results = range_test_members(config, start=0.001, stop=0.3, num_steps=20,
      ...                              eval_every=5)
      >>> [r.label for r in results], [r.setting["seed"] for r in results]
      (['seed=0', 'seed=1'], [0, 1])
    """
    check_ramp(start, stop, num_steps, mode, stop_factor, eval_every)
    v.check("config.members", list(config.members), bool(config.members),
            "at least one member (use lr_range_test for a single setting)")
    config, task = _with_eval(config, task, "a range test of sweep members")
    labels = [", ".join(_label(k, momenta.parse(x) if k == "momentum" else x)
                        for k, x in m.items()) for m in config.members]
    return _run(config, task, start=start, stop=stop, num_steps=num_steps, mode=mode,
                eval_every=eval_every, stop_factor=stop_factor, labels=labels)
