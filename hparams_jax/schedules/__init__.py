"""Hyper-parameter policies of Smith (2018) as `optax.Schedule`s: step -> value.

Every function returns a plain function of the step count that works on Python ints and on
traced int32 arrays (under `jax.jit`, `jax.vmap`, `lax.scan`), holds its final value past the
end of the policy and never produces NaN. The scalar values (bounds, final values) may be JAX
arrays so that `jax.vmap` can sweep them (a str, bool or list is refused); step counts are static
Python numbers of at most 2**31 - 1 (optax counts steps in int32).

The schedules of the cyclical policies and ramps carry a `horizon`: the steps `[0, horizon]`
hold every value the schedule takes (it holds or repeats them after), which lets
`transforms.sgd` check a scheduled momentum over its whole range when it is given no horizon.

- `triangular`: cyclical learning rates (Smith 2017, Sec. 3.1): `triangular`, `triangular2`,
  `exp_range`.
- `one_cycle`: the 1cycle policy (Smith 2018, Sec. 4.1; Smith & Topin 2017).
- `one_cycle_momentum`: cyclical momentum, the mirror of 1cycle (Smith 2018, Sec. 4.3).
- `range_test`: the LR range-test ramp (Smith 2018, Sec. 4.1; Smith 2017, Sec. 3.3).
- `constant`, `linear`: weight-decay policies (Smith 2018, Sec. 4.4); `triangular` and
  `one_cycle` give the cyclical ones.
- `inv`, `step`, `multistep`, `poly`: Caffe's decay policies, the baselines the author's
  solvers ran against (`inv` is the LeNet/MNIST baseline of Sec. 4.1 and Table 1).
- `cosine`, `wsd`: today's schedules that 1cycle is measured against, cosine decay and
  warmup-stable-decay after a linear warmup.
"""

from hparams_jax.schedules.cyclical import (ANNEALS, RAMP_MODES, TRIANGULAR_MODES, one_cycle,
                                            one_cycle_momentum, range_test, triangular)
from hparams_jax.schedules.decay import constant, inv, linear, multistep, poly, step
from hparams_jax.schedules.warmup import WSD_DECAYS, cosine, wsd

__all__ = ["ANNEALS", "RAMP_MODES", "TRIANGULAR_MODES", "WSD_DECAYS", "constant", "cosine",
           "inv", "linear", "multistep", "one_cycle", "one_cycle_momentum", "poly",
           "range_test", "step", "triangular", "wsd"]
