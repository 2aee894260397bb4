"""Timing helpers shared by the benchmark scripts: interleaved repeats, medians, ratios."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import jax


def block(x):
    return jax.block_until_ready(x)


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` (its result blocked on) over `repeats` calls."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, per_round: int,
                warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds so that a noisy
    neighbour on a shared machine hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(per_round):
                out = fn()
            block(out)
            samples[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(s) for name, s in samples.items()}


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of `rows` (dicts) with the given columns."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells]
    return "\n".join(out)
