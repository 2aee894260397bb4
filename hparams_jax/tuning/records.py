"""What `tune` records in `WORKDIR/stages/` (Smith 2018, Sec. 4-5: one record per stage of
`procedure.STAGES`, then the 1cycle run's): each stage's `Decision` and range tests, written
atomically, and read back on a restart.

Records are named by stage: `inputs.json` and `plan.json` (what the stages rest on), then
`NAME.json` for each stage. A workdir whose records are numbered by position (`0_inputs.json`,
`1_lr_range.json`, ..., as hparams_jax wrote them before) has them renamed on its first resume
(`make_folder`), so it continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from hparams_jax import _files
from hparams_jax.diagnose import Diagnosis
from hparams_jax.errors import ConfigError, UnreadableFileError
from hparams_jax.range_test import RangeTestResult
from hparams_jax.train import History, TrainConfig, WorkdirWriteError
from hparams_jax.train.metrics import write_json_atomic
from hparams_jax.tuning.procedure import show

FOLDER = "stages"
INPUTS, PLAN = "inputs", "plan"
# The records' names when they were numbered by position (read, renamed, never written).
NUMBERED = {"0_inputs": INPUTS, "0_plan": PLAN, "1_lr_range": "lr_range",
            "2_batch_size": "batch_size", "3_momentum": "momentum",
            "4_weight_decay": "weight_decay", "5_one_cycle": "one_cycle"}


@dataclasses.dataclass
class Decision:
    """One recorded decision of the procedure."""

    stage: str
    section: str
    rule: str
    candidates: list[dict[str, Any]]  # each candidate with the numbers the rule reads
    choice: Any
    reason: str
    budget_cut: str
    bounds: dict[str, float]  # max_lr and min_lr after this stage
    steps_spent: int  # training steps its range tests ran (a step of one setting)
    examples_spent: int = 0  # training examples its range tests ran (all settings)
    seconds: float = 0.0  # wall time of its range tests (and throughput measures)
    ramp: dict[str, Any] = dataclasses.field(default_factory=dict)  # its readings' (`Ramp`)
    attempts: list[str] = dataclasses.field(default_factory=list)  # scouted, run again: why
    tie_order: list[Any] = dataclasses.field(default_factory=list)  # ties go to the first

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclasses.dataclass
class TuneResult:
    """What `tune` decided and the tuned 1cycle run."""

    workdir: Path
    decisions: list[Decision]
    config: TrainConfig  # the tuned 1cycle run's
    history: History
    diagnosis: Diagnosis
    next_step: str

    def text(self) -> str:
        lines = [f"{d.section:>4}  {d.stage}: {show(d.choice)} ({d.reason})"
                 for d in self.decisions]
        accuracy = final_accuracy(self.history.summary)
        lines.append(f"1cycle {self.config.min_lr:.4g} -> {self.config.max_lr:.4g}, batch "
                     f"{self.config.batch_size}, momentum {show(self.config.momentum)}, "
                     f"weight decay {self.config.weight_decay:g}: test accuracy "
                     f"{accuracy['text']} after {self.history.summary['epochs']:g} epochs; "
                     f"verdict {self.diagnosis.verdict} (seed {self.config.seed})")
        lines.append(f"next step: {self.next_step}")
        lines.append(f"tune.json and report.md in {self.workdir}")
        return "\n".join(lines)


def final_accuracy(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's final test accuracy over its members (seeds): their values, mean and sample
    standard deviation (None for one member), and "mean ± std" as text."""
    values = [m["test_accuracy"] for m in summary["members"]]
    known = [x for x in values if x is not None]
    mean = sum(known) / len(known) if known else None
    std = (None if len(known) < 2 or len(known) < len(values) else
           (sum((x - mean) ** 2 for x in known) / (len(known) - 1)) ** 0.5)
    text = "-" if mean is None else f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")
    return {"test_accuracies": values, "test_accuracy": mean, "test_accuracy_std": std,
            "text": text}


def path(workdir: Path, name: str) -> Path:
    """The record of stage `name` (or `INPUTS`, `PLAN`) in `workdir`."""
    return workdir / FOLDER / f"{name}.json"


def make_folder(workdir: Path) -> None:
    """Creates `WORKDIR/stages` and renames the records numbered by position that it holds
    (see the module docstring); a failure is a `WorkdirWriteError`."""
    folder = workdir / FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WorkdirWriteError(f"could not create {folder} ({err.strerror or err}).") from err
    for old, new in NUMBERED.items():
        if (folder / f"{old}.json").exists() and not path(workdir, new).exists():
            try:
                os.replace(folder / f"{old}.json", path(workdir, new))
            except OSError as err:
                raise WorkdirWriteError(f"could not rename {folder / old}.json to "
                                        f"{path(workdir, new)} ({err.strerror or err}).") from err


def write(path: Path, obj: Any) -> None:
    """`obj` written to `path` as JSON, atomically; a failed write (a full disk, a read-only
    folder) is a `WorkdirWriteError` naming the file and the cause."""
    try:
        write_json_atomic(path, obj)
    except OSError as err:
        raise WorkdirWriteError(
            f"could not write {path} ({err.strerror or err}); the stages recorded before it "
            "are intact. Free space (or fix the folder) and run the same tune again to "
            "continue.") from err


def check_same_inputs(path: Path, inputs: dict[str, Any]) -> None:
    """Records `inputs` at `path`, or refuses (`ConfigError`) a workdir whose recorded inputs
    differ: its stages rest on them."""
    if not path.exists():
        write(path, inputs)
        return
    saved = _files.read_json(path)
    if not isinstance(saved.get("config"), dict):
        raise UnreadableFileError(path, "it is not a tune's inputs (no config object); the "
                                        "recorded stages rest on them: restore it, or use "
                                        "another workdir")
    changed = [f"config.{k}" for k in inputs["config"]
               if saved["config"].get(k) != inputs["config"][k]]
    changed += [k for k in inputs if k != "config" and saved.get(k) != inputs[k]]
    if changed:
        workdir = path.parent.parent
        raise ConfigError(
            f"workdir={str(workdir)!r} holds a tune of other inputs ({', '.join(changed)} "
            f"differ from {path}): rerun with the same inputs to continue it, or use another "
            "workdir.")


def _move_aside(path: Path, cause: str) -> None:
    """Moves a damaged stage record to `stages/damaged/` (`NAME-1.json`, ... when taken) with a
    warning; refuses it (`UnreadableFileError`) when it cannot be moved."""
    folder = path.parent / "damaged"
    target, k = folder / path.name, 0
    while target.exists():
        k += 1
        target = folder / f"{path.stem}-{k}{path.suffix}"
    try:
        folder.mkdir(exist_ok=True)
        os.replace(path, target)
    except OSError as err:
        raise UnreadableFileError(path, f"{cause}; it could not be moved aside to {target} "
                                        f"({err.strerror or err})") from None
    warnings.warn(f"{path} is damaged ({cause}): moved it to {target}; running the stage "
                  "again", RuntimeWarning, stacklevel=3)


def recorded(path: Path, check: Callable[[dict[str, Any]], Any]) -> dict[str, Any] | None:
    """The record at `path` when `check` reads it; None when there is none, or when it is
    damaged (then moved aside: the stage runs again)."""
    if not path.exists():
        return None
    try:
        record = _files.read_json(path)
        check(record)
    except UnreadableFileError as err:
        _move_aside(path, err.cause)
        return None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        _move_aside(path, f"not a stage record: {type(err).__name__} {err}")
        return None
    return record


def stage_of(record: dict[str, Any]) -> tuple[Decision, list[RangeTestResult]]:
    """A search stage's record read back: its decision and range tests."""
    return (Decision(**record["decision"]),
            [RangeTestResult.from_dict(r) for r in record["range_tests"]])


FINAL_KEYS = ("config", "status", "epochs", "test_accuracy", "test_loss", "train_loss",
              "diagnosis", "next_step")


def check_final(record: dict[str, Any]) -> None:
    """KeyError unless `record` is the 1cycle run's."""
    missing = [k for k in FINAL_KEYS if k not in record]
    if missing:
        raise KeyError(", ".join(missing))
