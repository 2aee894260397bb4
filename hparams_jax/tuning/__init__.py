"""The disciplined approach as one procedure (Smith 2018, Sec. 4-5): `tune(config)` runs the
LR range test, then chooses the batch size, the momentum and the weight decay from range tests,
trains with 1cycle and reads the result (`stages`); `batch` says which batch sizes fit,
`budget` what the search may spend, `advice` the paper's next step, `report` writes
`report.md`."""

from hparams_jax import _extras

try:
    from hparams_jax.tuning.stages import Decision, TuneResult, tune
except ModuleNotFoundError as _err:  # the engine comes with the train extra
    _extras.reraise(_err, "hparams_jax.tune")

__all__ = ["Decision", "TuneResult", "tune"]
