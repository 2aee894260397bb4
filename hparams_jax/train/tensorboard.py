"""TensorBoard event files of runs and range tests (optional: the ``tensorboard`` extra).

With `TrainConfig(tensorboard=True)` (``--tensorboard``), `fit` writes every metric row of
`metrics.jsonl` also as TensorBoard scalars into ``WORKDIR/tensorboard``, under the same names:
``train_loss``, ``train_accuracy``, the ``learning_rate``, ``momentum`` and ``weight_decay``
the steps used (Adam's ``b1``, ``b2``), ``examples_per_second`` and ``step_time_s``;
``test_loss`` and ``test_accuracy`` at each evaluation. A sweep writes one TensorBoard run per
member (``tensorboard/member_K``; `summary.json` lists each member's setting). Point
TensorBoard at the workdir, or at a folder of workdirs to compare runs:
``tensorboard --logdir runs``.

`metrics.jsonl` stays the record: each process that writes a run's event files starts a new
file that tells TensorBoard to drop the points of the earlier ones (a SessionLog START at step
0, as TensorFlow marks a restart) and writes every row `metrics.jsonl` holds before its new
ones, so a resumed run shows what its `metrics.jsonl` holds, not the steps a killed process
logged past its last checkpoint.

`write_range_tests` writes LR range tests (Smith 2018, Sec. 4.1; the command line's
``range-test --tensorboard``, and `tune`'s stages): per step the training loss, its smoothed
curve, accuracy and LR, the held-out loss and accuracy at each evaluation, and the loss against
the LR as an image (TensorBoard's scalar charts can only put the step on the horizontal axis).

The files are written with tensorboardX (numpy and protobuf, no TensorFlow); clu's metric
writers, the Flax examples' choice, need TensorFlow for the same files.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hparams_jax import _extras

if TYPE_CHECKING:
    from hparams_jax.range_test import RangeTestResult
    from hparams_jax.train.config import TrainConfig

LOGDIR = "tensorboard"  # the folder under a run's workdir
# Row fields that are no metric: what the row is and whose, and the step it is at.
NOT_SCALARS = ("kind", "step", "member", "epoch")
RANGE_TEST_IMAGE = "loss_vs_learning_rate"


def check_installed() -> None:
    """Raises `MissingExtraError` when tensorboardX, which writes the event files, is missing.

    Returns:
      None.

    Raises:
      MissingExtraError: naming ``pip install "hparams_jax[tensorboard]"``.

    Examples:
      >>> from hparams_jax.train import tensorboard
      >>> tensorboard.check_installed()  # tensorboardX is here
    """
    _extras.require("TensorBoard output (tensorboard=True)", "tensorboardX",
                    extra="tensorboard")


def _summary_writer(logdir: Path):
    """A tensorboardX writer of a new event file in `logdir` that drops earlier files' points
    (`purge_step=0`); the nanosecond suffix keeps two files opened in one second apart."""
    from tensorboardX import SummaryWriter

    return SummaryWriter(str(logdir), purge_step=0, filename_suffix=f".{time.time_ns()}")


class ScalarWriter:
    """Writes metric rows (as `metrics.jsonl` holds them) as TensorBoard scalars.

    Each number of a row but its `NOT_SCALARS` is written under its key at the row's `step`;
    a sweep of several members writes member K's rows into `logdir/member_K`. Event files are
    opened at the first write (a finished run reopened writes none), each starting with the
    restart marker described in the module docstring.

    Args:
      logdir: the folder of the event files (made as needed).
      num_members: the sweep's members, K (1: the rows go into `logdir` itself).

    Attributes:
      logdir: the folder.
      num_members: K.

    Examples:
      >>> import tempfile
      >>> from hparams_jax.train.tensorboard import ScalarWriter, read_scalars
      >>> logdir = tempfile.mkdtemp()
      >>> writer = ScalarWriter(logdir)
      >>> writer.write([{"kind": "train", "step": 4, "member": 0, "train_loss": 2.25,
      ...                "learning_rate": 0.01},
      ...               {"kind": "eval", "step": 4, "member": 0, "test_accuracy": 0.5}])
      >>> writer.close()
      >>> read_scalars(logdir)["train_loss"]
      [(4, 2.25)]
    """

    def __init__(self, logdir: str | Path, *, num_members: int = 1):
        check_installed()
        self.logdir = Path(logdir)
        self.num_members = num_members
        self._writers: dict[int, Any] = {}

    def _writer(self, member: int):
        if member not in self._writers:
            folder = self.logdir if self.num_members == 1 else self.logdir / f"member_{member}"
            self._writers[member] = _summary_writer(folder)
        return self._writers[member]

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        """Writes each row's numbers at its step (NaN and inf as they are)."""
        for row in rows:
            writer = self._writer(int(row.get("member", 0)))
            for key, value in row.items():
                if key not in NOT_SCALARS and _is_number(value):
                    writer.add_scalar(key, float(value), int(row["step"]))

    def flush(self) -> None:
        """Hands what was written to the event files' writers and flushes their files."""
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Writes everything still queued and closes the files."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def for_run(config: TrainConfig, workdir: str | Path) -> ScalarWriter | None:
    """The writer of `fit`'s rows into `workdir/tensorboard` when `config.tensorboard`, else
    None; checks first that tensorboardX is installed, so a run fails before it trains.

    Args:
      config: the run (its `tensorboard` and `num_members`).
      workdir: the run's folder.

    Returns:
      A `ScalarWriter`, or None.

    Raises:
      MissingExtraError: `config.tensorboard` without tensorboardX.

    Examples:
      >>> from hparams_jax.train import TrainConfig, tensorboard
      >>> tensorboard.for_run(TrainConfig(), "runs/x") is None
      True
      >>> tensorboard.for_run(TrainConfig(tensorboard=True), "runs/x").logdir
      PosixPath('runs/x/tensorboard')
    """
    if not config.tensorboard:
        return None
    return ScalarWriter(Path(workdir) / LOGDIR, num_members=config.num_members)


def write_range_tests(results: RangeTestResult | Sequence[RangeTestResult],
                      logdir: str | Path) -> Path:
    """Writes LR range tests as TensorBoard runs: one result into `logdir`, several (a family,
    a tune stage) each into `logdir/LABEL`.

    Each run holds, at step s (the steps run so far, as `eval_step` counts them):
    ``train_loss``, ``smoothed_loss``, ``train_accuracy`` and ``learning_rate`` of the s-th
    step; ``eval_loss`` and ``eval_accuracy`` where the held-out subset was evaluated; and the
    image ``loss_vs_learning_rate`` (`plots.plot_range_test`; with several results,
    `plots.plot_family` in `logdir`).

    Args:
      results: a `RangeTestResult` or a list of them (`Family.results`).
      logdir: the folder (made as needed).

    Returns:
      `logdir`, as a Path.

    Raises:
      MissingExtraError: tensorboardX (or matplotlib) is not installed.

    Examples:
      A made-up range test whose loss falls, then blows up once the LR passes 0.6:

      >>> import numpy as np, tempfile
      >>> from hparams_jax.range_test import RangeTestResult, centred
      >>> from hparams_jax.train.tensorboard import read_scalars, write_range_tests
      >>> lr = np.linspace(0.01, 1.0, 100)
      >>> loss = 2.3 - 1.5 * lr + 20.0 * np.maximum(lr - 0.6, 0.0) ** 2
      >>> at = np.arange(9, 100, 10)
      >>> result = RangeTestResult(lr, loss, centred(loss), 0 * lr, at + 1.0, lr[at],
      ...                          loss[at] - 0.2, 0 * lr[at], "linear", 0.01, 1.0, 100, 4.0,
      ...                          "completed")
      >>> logdir = write_range_tests(result, tempfile.mkdtemp())
      >>> scalars = read_scalars(logdir)
      >>> scalars["learning_rate"][0], scalars["train_loss"][0]
      ((1, 0.01), (1, 2.285))
      >>> len(scalars["eval_loss"])
      10
    """
    from hparams_jax import plots

    check_installed()
    logdir = Path(logdir)
    many = isinstance(results, Sequence)
    tests: list[RangeTestResult] = list(results) if isinstance(results, Sequence) else [results]
    for i, r in enumerate(tests):
        folder = logdir / _folder_name(r.label or f"range_test_{i}") if many else logdir
        writer = _summary_writer(folder)
        try:
            for s in range(r.steps_run):
                for key in ("train_loss", "smoothed_loss", "train_accuracy", "learning_rate"):
                    writer.add_scalar(key, float(getattr(r, key)[s]), s + 1)
            for s, ev_loss, ev_acc in zip(r.eval_step, r.eval_loss, r.eval_accuracy):
                writer.add_scalar("eval_loss", float(ev_loss), int(s))
                writer.add_scalar("eval_accuracy", float(ev_acc), int(s))
            if not many:
                writer.add_image(RANGE_TEST_IMAGE, _pixels(plots.plot_range_test(r)),
                                 r.steps_run, dataformats="HWC")
        finally:
            writer.close()
    if many:
        writer = _summary_writer(logdir)
        try:
            writer.add_image(RANGE_TEST_IMAGE, _pixels(plots.plot_family(tests)),
                             max(r.steps_run for r in tests), dataformats="HWC")
        finally:
            writer.close()
    return logdir


def _folder_name(label: str) -> str:
    """A label ("momentum=0.95-0.85", "batch 512, momentum 0.9") as a portable folder name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "range_test"


def _pixels(fig) -> np.ndarray:
    """The RGB pixels of a matplotlib figure (drawn with Agg; pyplot is never imported)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def read_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the TensorBoard run in `logdir` as TensorBoard shows them: each tag's
    (step, value) pairs in step order, points dropped by a later restart marker left out.

    Reads with TensorBoard's own event reader (the `tensorboard` package, which the
    ``tensorboard`` extra installs beside tensorboardX).

    Args:
      logdir: a folder of event files (one TensorBoard run; subfolders are not read).

    Returns:
      A dict from tag to [(step, value), ...]; values are stored as float32 and given as the
      shortest decimal that float32 rounds to (2.285, not 2.2850000858306885).

    Raises:
      MissingExtraError: the `tensorboard` package is not installed.

    Examples:
      See `ScalarWriter` and `write_range_tests`.

      >>> import tempfile
      >>> from hparams_jax.train.tensorboard import read_scalars
      >>> read_scalars(tempfile.mkdtemp())
      {}
    """
    _extras.require("read_scalars", "tensorboard", extra="tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (EventAccumulator,
                                                                         SCALARS)

    acc = EventAccumulator(str(logdir), size_guidance={SCALARS: 0})  # 0: keep every point
    acc.Reload()
    return {tag: [(e.step, _float(e.value)) for e in acc.Scalars(tag)]
            for tag in sorted(acc.Tags()[SCALARS])}


def _float(x: float) -> float:
    """A float32 value read back, as the float64 it was written from where that is short."""
    return x if not math.isfinite(x) else float(np.format_float_positional(np.float32(x),
                                                                           unique=True))
