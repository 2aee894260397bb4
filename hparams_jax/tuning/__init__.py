"""The disciplined approach as one procedure (Smith 2018, Sec. 4-5): `tune(config)` runs the
LR range test, then chooses the batch size, the momentum and the weight decay from range tests,
trains with 1cycle and reads the result (`stages`). `procedure` is the table of its stages;
`ramp` the LR ramp of its range tests and how each reading is made long enough, `readings`
how a family read at several seeds is compared (its ties), `batch` which batch sizes fit and
how fast they train, `budget` what the search may spend, `records` what each stage records in
the workdir, `advice` the paper's next step, `report` writes `report.md`."""

from hparams_jax import _extras

try:
    from hparams_jax.tuning.records import Decision, TuneResult
    from hparams_jax.tuning.stages import tune
except ModuleNotFoundError as _err:  # the engine comes with the train extra
    _extras.reraise(_err, "hparams_jax.tune")

__all__ = ["Decision", "TuneResult", "tune"]
