"""`run_setting`: trains one setting of an experiment, its runs as one program, into
`runs/NAME/SETTING` (`runs/NAME/SETTING@scale0.25` when shrunk), and records how it was run in
`experiment.json` beside the run's own `config.json`, `metrics.jsonl` and `summary.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hparams_jax import _validate as v
from hparams_jax import data
from hparams_jax.experiment.spec import Experiment
from hparams_jax.train import History, fit
from hparams_jax.train.config import EXECUTION_FIELDS
from hparams_jax.train.metrics import write_json_atomic

EVALUATION = {True: "the full test split, no augmentation",
              False: "the full validation split, central crops"}  # in memory / streamed


def run_dir(root: str | Path, experiment: str, setting: str, scale: float = 1.0) -> Path:
    """Where a setting's runs go: `root/experiment/setting`, tagged with the scale if < 1."""
    tag = "" if scale == 1 else f"@scale{scale:g}"
    return Path(root) / experiment / f"{setting}{tag}"


def run_setting(experiment: Experiment, setting: str, *, runs: int = 4, scale: float = 1.0,
                root: str | Path = "runs", progress: bool = True, **execution: Any) -> History:
    """Trains `runs` seeds of `setting` (vmapped together; resumes an interrupted run).

    `execution` sets `TrainConfig` fields that change how the runs execute but not what they
    compute (`EXECUTION_FIELDS`, e.g. `data_workers`: grain processes decoding a
    streamed dataset's images); any other field is a `ConfigError`: the experiment defines it.
    """
    for name in execution:
        v.one_of("execution field", name, EXECUTION_FIELDS)
    workdir = run_dir(root, experiment.name, setting, scale)
    config = experiment.config_for(setting, runs=runs, scale=scale, workdir=str(workdir),
                                   progress=progress).replace(**execution)
    info = data.info(config.dataset)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / "experiment.json", {
        "experiment": experiment.name, "setting": setting, "runs": runs, "scale": scale,
        "augmentation": config.augmentation or info.augmentation,
        "evaluation": EVALUATION[info.in_memory]})
    return fit(config)
