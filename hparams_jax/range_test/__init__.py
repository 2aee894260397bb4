"""The LR range test and its families (Smith 2018, Sec. 4.1-4.4; Smith 2017, Sec. 3.3).

`lr_range_test` runs one test: a short run whose learning rate rises from `start` to `stop`,
recording the training loss every step and the held-out loss and accuracy every `eval_every`
steps; `range_test_family` repeats it over batch sizes, momenta or weight decays
(Sec. 4.2-4.4). `RangeTestResult.suggest()` reads LR bounds from a test by the paper's rule
(Sec. 4.1), or says why there are none (`NoSuggestionError`, the command line's exit status 3);
`Family.pick()` chooses among a family (Sec. 4.4).

Modules, one job each:

- `run`: running tests and families on the training engine (imported on first use, so the
  rest needs only the core install).
- `result`: `RangeTestResult` and `Family`, the curves, kept as strict JSON.
- `read`: reading the curves: the `centred` smoothing, the suggestion rule and its warnings,
  `near_lowest_loss` for a family.
"""

from hparams_jax.range_test.read import (DISAGREE_FACTOR, EVAL_TOLERANCE, FLAT_DROP,
                                         MIN_EVALS, MIN_LR_FRACTION, MIN_STEPS, NO_SUGGESTION,
                                         NOISY_SCATTER, RAGGED_FACTOR, RAGGED_FLOOR, Alternative,
                                         NoSuggestionError, Suggestion, centred,
                                         near_lowest_loss)
from hparams_jax.range_test.result import Family, RangeTestResult
from hparams_jax.range_test.run import (FAMILY_PARAMS, check_ramp, ema, lr_range_test,
                                        range_test_family, range_test_members)

__all__ = ["DISAGREE_FACTOR", "EVAL_TOLERANCE", "FAMILY_PARAMS", "FLAT_DROP", "MIN_EVALS",
           "MIN_LR_FRACTION", "MIN_STEPS", "NOISY_SCATTER", "NO_SUGGESTION", "RAGGED_FACTOR",
           "RAGGED_FLOOR", "Alternative", "Family", "NoSuggestionError", "RangeTestResult",
           "Suggestion", "centred", "check_ramp", "ema", "lr_range_test", "near_lowest_loss",
           "range_test_family", "range_test_members"]
