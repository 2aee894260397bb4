"""Optax transforms whose hyper-parameters may be schedules (Smith 2018, Sec. 4).

`sgd`, `trace` and `adamw` are built from optax's own parts (`add_decayed_weights`, `trace`,
`scale_by_adam`, `scale_by_learning_rate`) wrapped in `optax.inject_hyperparams`, which
evaluates each schedule at the transform's step count and keeps the values it used in the
optimizer state, where `hyperparams` reads them for logging (`state`; it also reads
`optax.contrib`'s schedule-free and Prodigy states, and `schedule_free_eval_params` the
averaged weights a schedule-free optimizer is evaluated at).

Two forms of momentum SGD (`momentum_form`), equal at a constant learning rate:

- `"pytorch"` (optax's and PyTorch's): the learning rate scales the velocity,
  `b = m * b + g; w -= lr * b`.
- `"caffe"` (the paper's solvers): the learning rate is inside the velocity,
  `v = m * v - lr * g; w += v`, so a change of the LR takes effect gradually.
  Under 1cycle the LR moves every step and the two forms differ all run long; under a step
  schedule they differ after each drop.
"""

from hparams_jax.transforms.build import (MOMENTUM_FORMS, Hyperparam, add_decayed_weights, adamw,
                                          scale_by_multipliers, sgd, trace)
from hparams_jax.transforms.state import (ADAM_HYPERPARAM_NAMES, HYPERPARAM_NAMES, hyperparams,
                                          schedule_free_eval_params)

__all__ = ["ADAM_HYPERPARAM_NAMES", "HYPERPARAM_NAMES", "Hyperparam", "MOMENTUM_FORMS",
           "add_decayed_weights", "adamw", "hyperparams", "scale_by_multipliers",
           "schedule_free_eval_params", "sgd", "trace"]
