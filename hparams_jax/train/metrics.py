"""Metrics on disk: `metrics.jsonl` (one JSON object a line, flushed as written) and
`summary.json`, and `History`, the in-memory view `fit` returns.

Rows carry `kind` ("train" or "eval"), `step`, `epoch` and `member` (the sweep member, 0 for a
single run). Resuming from a checkpoint drops the rows written after it, so a resumed run's
file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np


def _json_value(x: Any) -> Any:
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else repr(x)  # NaN/inf as "nan"/"inf": JSON has neither
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def _read_value(x: Any) -> Any:
    return float(x) if x in ("nan", "inf", "-inf") else x


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics file; a torn last line (a kill mid-write) is ignored."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append({k: _read_value(v) for k, v in json.loads(line).items()})
        except json.JSONDecodeError:
            continue
    return rows


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_value))
    os.replace(tmp, path)


class MetricsLog:
    """Appends rows to `metrics.jsonl`, keeping only those at or before `resume_step`."""

    def __init__(self, path: str | Path, *, resume_step: int = 0, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.rows = [r for r in read_rows(self.path) if r["step"] <= resume_step]
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r, default=_json_value) + "\n"
                                   for r in map(_clean, self.rows)))
            os.replace(tmp, self.path)
            self._file = open(self.path, "a")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = [_clean(r) for r in rows]
        self.rows.extend({k: _read_value(v) for k, v in r.items()} for r in rows)
        if self.enabled:
            self._file.write("".join(json.dumps(r) + "\n" for r in rows))
            self._file.flush()

    def sync(self) -> None:
        if self.enabled:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self.enabled:
            self.sync()
            self._file.close()


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in row.items()}


class History:
    """The metrics of a run: `train(member)` and `eval(member)` give dicts of NumPy arrays."""

    def __init__(self, rows: list[dict[str, Any]], summary: dict[str, Any] | None = None):
        self.rows = rows
        self.summary = summary or {}

    @classmethod
    def load(cls, workdir: str | Path) -> "History":
        workdir = Path(workdir)
        summary_path = workdir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        return cls(read_rows(workdir / "metrics.jsonl"), summary)

    @property
    def num_members(self) -> int:
        return 1 + max((r.get("member", 0) for r in self.rows), default=0)

    def _columns(self, kind: str, member: int) -> dict[str, np.ndarray]:
        rows = [r for r in self.rows if r["kind"] == kind and r.get("member", 0) == member]
        keys = [k for k in (rows[0] if rows else {}) if k not in ("kind", "member")]
        return {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}

    def train(self, member: int = 0) -> dict[str, np.ndarray]:
        return self._columns("train", member)

    def eval(self, member: int = 0) -> dict[str, np.ndarray]:
        return self._columns("eval", member)
