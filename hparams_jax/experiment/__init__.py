"""The paper's experiment grid as code (Smith 2018, Sec. 4-5 and Table 1).

An `Experiment` is one network x dataset of the paper with its settings (the 1cycle run, the
baseline, and the learning-rate policy, momentum, weight-decay and batch-size variations of its
figures), each beside the author's own number where his logs give one. The configs live in
`experiments/configs/*.py` (one `EXPERIMENT` per file); `run_setting` trains a setting's runs
as one program into `experiments/records/NAME/SETTING` and `run_range_test` its LR range
tests, `report` turns every finished run into
`experiments/RESULTS.md`.
"""

from hparams_jax import _extras

try:
    from hparams_jax.experiment.spec import (Claim, Experiment, PaperResult, RangeTest, Setting,
                                             find, load_all)
    from hparams_jax.experiment.protocols import core_comparisons
    from hparams_jax.experiment.runner import (DEFAULT_ROOT, run_dir, run_range_test,
                                               run_setting)
    from hparams_jax.experiment.report import write_report
except ModuleNotFoundError as _err:  # the engine comes with the train extra
    _extras.reraise(_err, "hparams_jax.experiment")

__all__ = ["DEFAULT_ROOT", "Claim", "Experiment", "PaperResult", "RangeTest", "Setting",
           "core_comparisons", "find", "load_all", "run_dir", "run_range_test", "run_setting",
           "write_report"]
