"""Metrics on disk: `metrics.jsonl` (one JSON object a line, flushed as written) and
`summary.json`, and `History`, the in-memory view `fit` returns.

Rows carry `kind` ("train" or "eval"), `step`, `epoch` and `member` (the sweep member, 0 for a
single run); train rows also the throughput of the steps they cover (`TIMING_KEYS`, measured by
`Throughput`). Resuming from a checkpoint drops the rows written after it and keeps the others
byte for byte, so a resumed run's file equals an uninterrupted run's but for the timings
(`untimed`). `MetricsLog` can mirror the rows into TensorBoard event files (`train.tensorboard`);
`metrics.jsonl` stays the record.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from hparams_jax import _files

if TYPE_CHECKING:
    from hparams_jax.train.tensorboard import ScalarWriter

# The fields of a train row that time its steps; the only ones in which two runs of one config
# differ.
TIMING_KEYS = ("examples_per_second", "step_time_s")

# The metric every tool reads as the accuracy (a task's loss may report it).
ACCURACY = "accuracy"


def _json_value(x: Any) -> Any:
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else repr(x)  # NaN/inf as "nan"/"inf": JSON has neither
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def _read_value(x: Any) -> Any:
    return float(x) if x in ("nan", "inf", "-inf") else x


def _parse(line: bytes) -> dict[str, Any] | str:
    """The row a line holds, or why it holds none."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "not JSON (a torn write)"
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        return "not a metrics row (a JSON object with an integer step)"
    return {k: _read_value(v) for k, v in row.items()}


def _read_lines(path: Path) -> list[tuple[bytes, dict[str, Any] | str]]:
    """Each line of `path` (with its newline) and its row or problem; a problem other than a
    torn last line (a kill mid-write) is reported once, as a warning."""
    if not path.exists():
        return []
    lines = [(raw, _parse(raw)) for raw in path.read_bytes().splitlines(keepends=True)]
    bad = [i for i, (raw, row) in enumerate(lines, 1) if isinstance(row, str)
           and not (i == len(lines) and not raw.endswith(b"\n"))]
    if bad:
        what = "; ".join(sorted({lines[i - 1][1] for i in bad}))
        warnings.warn(f"{path}: skipped line(s) {', '.join(map(str, bad[:5]))}"
                      f"{' ...' if len(bad) > 5 else ''} ({what}).", RuntimeWarning,
                      stacklevel=3)
    return lines


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics file; lines that hold no row (a torn last line after a kill,
    anything but a JSON object with a step) are skipped."""
    return [row for _, row in _read_lines(Path(path)) if isinstance(row, dict)]


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Writes `obj` to a temporary file beside `path` and renames it into place (a reader sees
    the old file or the new one; the temporary file is removed if the write fails)."""
    path = Path(path)
    _replace(path, json.dumps(obj, indent=2, default=_json_value).encode())


def write_text_atomic(path: str | Path, text: str) -> None:
    """`text` written into `path` as `write_json_atomic` writes."""
    _replace(Path(path), text.encode())


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class MetricsLog:
    """Appends rows to `metrics.jsonl`, keeping only those at or before `resume_step`.

    Kept lines stay byte for byte as they were; the file is rewritten only when something is
    dropped (rows past `resume_step`, a torn last line), so reopening a finished run's log
    changes nothing. Lines that hold no row are kept as they are (readers skip them).

    With a `tensorboard` writer, each write also goes to TensorBoard, the first one preceded by
    the kept rows: after a resumption the event files show what `metrics.jsonl` holds.
    """

    def __init__(self, path: str | Path, *, resume_step: int = 0, enabled: bool = True,
                 tensorboard: ScalarWriter | None = None):
        self.path = Path(path)
        self.enabled = enabled
        self.tensorboard = tensorboard if enabled else None
        self._mirrored = 0  # the rows already written to TensorBoard
        lines = _read_lines(self.path)
        keep = [(raw, row) for raw, row in lines
                if (isinstance(row, dict) and row["step"] <= resume_step)
                or (isinstance(row, str) and raw.endswith(b"\n"))]
        self.rows = [row for _, row in keep if isinstance(row, dict)]
        if enabled:
            kept = b"".join(raw for raw, _ in keep)
            if kept and not kept.endswith(b"\n"):  # a whole row cut just before its newline
                kept += b"\n"
            if kept != b"".join(raw for raw, _ in lines):
                _replace(self.path, kept)
            self._file = open(self.path, "a")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = [_clean(r) for r in rows]
        self.rows.extend({k: _read_value(v) for k, v in r.items()} for r in rows)
        if self.enabled:
            self._file.write("".join(json.dumps(r) + "\n" for r in rows))
            self._file.flush()
        if self.tensorboard is not None:
            self.tensorboard.write(self.rows[self._mirrored:])
            self._mirrored = len(self.rows)

    def sync(self) -> None:
        if self.enabled:
            self._file.flush()
            os.fsync(self._file.fileno())
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.enabled and not self._file.closed:
            try:
                self.sync()
            finally:
                self._file.close()
                if self.tensorboard is not None:
                    self.tensorboard.close()


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in row.items()}


def untimed(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` without their `TIMING_KEYS`: what two runs of one config (or a run and its
    resumption) record alike.

    Examples:
      >>> from hparams_jax.train.metrics import untimed
      >>> untimed([{"kind": "train", "step": 4, "train_loss": 0.5, "step_time_s": 0.01}])
      [{'kind': 'train', 'step': 4, 'train_loss': 0.5}]
    """
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


class Throughput:
    """The speed of a run's training steps: each train row's `examples_per_second` and
    `step_time_s` (per optimizer step) for the chunk of steps it covers, and the run's medians
    for `summary.json`.

    A row's time is the chunk's wall time on the host, from its dispatch until its metrics are
    back (neither evaluations nor checkpoints are in it); a chunk that compiled its program
    counts its compilation. The medians leave those chunks out when there are others. In a
    sweep every member processes `examples_per_step` examples a step, so the device processes
    K times the member's `examples_per_second`.

    Args:
      examples_per_step: training examples in one optimizer step (the global batch).

    Examples:
      >>> from hparams_jax.train.metrics import Throughput
      >>> speed = Throughput(examples_per_step=128)
      >>> speed.record(steps=10, seconds=2.0, compiled=True)  # the first chunk compiles
      {'examples_per_second': 640.0, 'step_time_s': 0.2}
      >>> for seconds in (0.5, 0.4, 0.6):
      ...     _ = speed.record(steps=10, seconds=seconds)
      >>> speed.summary()
      {'median_examples_per_second': 2560.0, 'median_step_time_s': 0.05}
    """

    def __init__(self, examples_per_step: int):
        self.examples_per_step = examples_per_step
        self._chunks: list[tuple[float, bool]] = []  # (seconds per step, compiled)

    def record(self, steps: int, seconds: float, compiled: bool = False) -> dict[str, float]:
        """The row fields of a chunk of `steps` optimizer steps that took `seconds` (`compiled`:
        its time includes compiling the program)."""
        per_step = seconds / steps
        self._chunks.append((per_step, compiled))
        return {"examples_per_second": self.examples_per_step / per_step,
                "step_time_s": per_step}

    def summary(self) -> dict[str, float | None]:
        """The medians of the chunks recorded (those that did not compile, where there are
        any): `median_examples_per_second`, `median_step_time_s` (None before any chunk)."""
        timed = [t for t, compiled in self._chunks if not compiled]
        times = timed or [t for t, _ in self._chunks]
        if not times:
            return {"median_examples_per_second": None, "median_step_time_s": None}
        median = float(np.median(times))
        return {"median_examples_per_second": self.examples_per_step / median,
                "median_step_time_s": median}


class History:
    """The metrics of a run: `train(member)` and `eval(member)` give dicts of NumPy arrays.

    `fit` returns one; `History.load(workdir)` reads a run's records back.

    Args:
      rows: the metric rows, dicts with `kind` ("train" or "eval"), `step` and, in a sweep,
        `member` (0 when absent), as `metrics.jsonl` holds them.
      summary: the run's `summary.json` (status, steps, per-member results), or None.

    Attributes:
      rows: the metric rows.
      summary: the summary, {} without one.

    Examples:
      >>> from hparams_jax.train import History
      >>> history = History([
      ...     {"kind": "train", "step": 50, "train_loss": 1.2, "learning_rate": 0.1},
      ...     {"kind": "train", "step": 100, "train_loss": 0.8, "learning_rate": 0.2},
      ...     {"kind": "eval", "step": 100, "test_loss": 0.9, "test_accuracy": 0.7}])
      >>> sorted(history.train()), history.num_members
      (['learning_rate', 'step', 'train_loss'], 1)
      >>> history.train()["train_loss"], history.eval()["test_accuracy"]
      (array([1.2, 0.8]), array([0.7]))
    """

    def __init__(self, rows: list[dict[str, Any]], summary: dict[str, Any] | None = None):
        self.rows = rows
        self.summary = summary or {}

    @classmethod
    def load(cls, workdir: str | Path) -> "History":
        """The history a run wrote into `workdir` (finished or not).

        Args:
          workdir: the run's folder (`TrainConfig.workdir`).

        Returns:
          Its `metrics.jsonl` rows (a torn last line skipped) and its `summary.json` ({}
          while the run has none).

        Raises:
          UnreadableFileError: `summary.json` is not a JSON object (damaged), named.

        Examples:
          >>> import json, pathlib, tempfile
          >>> from hparams_jax.train import History
          >>> workdir = pathlib.Path(tempfile.mkdtemp())
          >>> rows = [{"kind": "train", "step": s, "train_loss": 2.0 / s} for s in (1, 2)]
          >>> _ = (workdir / "metrics.jsonl").write_text(
          ...     "".join(json.dumps(r) + "\\n" for r in rows) + '{"kind": "tra')
          >>> history = History.load(workdir)
          >>> history.train()["train_loss"], history.summary
          (array([2., 1.]), {})
        """
        workdir = Path(workdir)
        summary_path = workdir / "summary.json"
        summary = _files.read_json(summary_path) if summary_path.exists() else None
        return cls(read_rows(workdir / "metrics.jsonl"), summary)

    @property
    def num_members(self) -> int:
        """K, the number of sweep members in the rows."""
        return 1 + max((r.get("member", 0) for r in self.rows), default=0)

    def _columns(self, kind: str, member: int) -> dict[str, np.ndarray]:
        rows = [r for r in self.rows if r["kind"] == kind and r.get("member", 0) == member]
        keys = [k for k in (rows[0] if rows else {}) if k not in ("kind", "member")]
        return {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}

    def train(self, member: int = 0) -> dict[str, np.ndarray]:
        """`member`'s training rows: one float array per metric (`step`, `train_loss`,
        `learning_rate`, ...); NaN where a row lacks the metric."""
        return self._columns("train", member)

    def eval(self, member: int = 0) -> dict[str, np.ndarray]:
        """`member`'s evaluation rows (`step`, `test_loss`, `test_accuracy`, ...), as `train`."""
        return self._columns("eval", member)
