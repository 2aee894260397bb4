"""The paper's claims, each measured on an experiment's records and given a verdict by a stated
rule (Smith 2018, Sec. 3-4; the claims table that opens `experiments/RESULTS.md`).

A `Claim` (`spec.py`) names what it tests (`check`: a function of this module), the settings
that play each role and the range test it reads. `evaluate` returns a `Verdict`: "holds", "does
not hold", "inconclusive at this scale", or "not run" while a run it needs is missing. Only
full-length runs count: a shortened (scaled) run carries no verdict.

Accuracies are compared as means over seeds. Two settings tie when their means differ by at
most `tie_margin`: two standard errors of the difference, and never less than `MIN_MARGIN`
(0.1 percentage point), so that the spread of a few seeds decides, not a fixed threshold.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np

from hparams_jax import _files
from hparams_jax.diagnose import diagnose
from hparams_jax.experiment.records import Run, epochs_to_reach, mean_std, reached_text
from hparams_jax.experiment.spec import CHECKS, Claim
from hparams_jax.range_test import Family

HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = ("holds", "does not hold", "inconclusive at this scale",
                                      "not run")
MIN_MARGIN = 0.001


@dataclasses.dataclass(frozen=True)
class Verdict:
    verdict: str
    ran: str
    measured: str
    why: str


class _Missing(Exception):
    """A run or range test the claim needs has no full-length record yet."""


class _Diverged(Exception):
    """Every run of a setting the claim needs diverged."""


def tie_margin(a: np.ndarray, b: np.ndarray) -> float:
    """Two standard errors of the difference of the means of `a` and `b` (at least
    `MIN_MARGIN`); a single run contributes no variance of its own."""
    var = sum(x.var(ddof=1) / len(x) for x in (a, b) if len(x) > 1)
    return max(2 * float(np.sqrt(var)), MIN_MARGIN)


def compare(a: np.ndarray, b: np.ndarray) -> int:
    """+1 when `a`'s mean is above `b`'s by more than the tie margin, -1 below, 0 a tie."""
    diff = a.mean() - b.mean()
    margin = tie_margin(a, b)
    return 0 if abs(diff) <= margin else int(np.sign(diff))


class _Records:
    def __init__(self, runs: Mapping[str, Run], tests: Mapping[str, Family]):
        self.runs, self.tests = runs, tests

    def run(self, name: str) -> Run:
        if name not in self.runs:
            raise _Missing(name)
        if not self.runs[name].members:
            raise _Diverged(name)
        return self.runs[name]

    def diverged(self, name: str) -> bool:
        """Whether every run of `name` diverged (an ended run without a final accuracy)."""
        try:
            self.run(name)
        except _Diverged:
            return True
        return False

    def acc(self, name: str) -> np.ndarray:
        return self.run(name).final("test_accuracy")

    def loss(self, name: str) -> np.ndarray:
        return self.run(name).final("test_loss")

    def test(self, name: str) -> Family:
        if name not in self.tests:
            raise _Missing(f"range test {name}")
        return self.tests[name]

    def text(self, name: str) -> str:
        r = self.run(name)
        lost = (f"; {r.diverged} of {len(r.summary['members'])} runs diverged, not counted"
                if r.diverged else "")
        return f"`{name}` {mean_std(self.acc(name))} ({r.summary['epochs']:.3g} ep.{lost})"

    def text_or_diverged(self, name: str) -> str:
        """`text`, or that every run of `name` diverged (a missing run still raises)."""
        if not self.diverged(name):
            return self.text(name)
        summary = self.runs[name].summary
        return (f"`{name}` diverged ({len(summary['members'])} of "
                f"{len(summary['members'])} runs, by epoch {summary['epochs']:.2g})")

    def text_if_run(self, name: str) -> str:
        """`text_or_diverged`, or that `name` has not run yet."""
        try:
            return self.text_or_diverged(name)
        except _Missing:
            return f"`{name}` not run yet"


def evaluate(claim: Claim, runs: Mapping[str, Run], tests: Mapping[str, Family]) -> Verdict:
    """The verdict on `claim` from the full-length `runs` (setting -> Run) and range `tests`."""
    records = _Records(runs, tests)
    try:
        return _CHECKS[claim.check](records, **claim.roles)
    except _Missing as missing:
        return Verdict(NOT_RUN, "", "", f"no full-length record of {missing} yet")
    except _Diverged as name:
        return Verdict(INCONCLUSIVE, "", "", f"every run of `{name}` diverged")


def _epochs_text(epochs: np.ndarray) -> str:
    return reached_text(epochs, "{:.1f}", f"never ({len(epochs)} runs)", "runs")


def super_convergence(r: _Records, *, one_cycle: str, baseline: str, others: tuple = ()
                      ) -> Verdict:
    """Sec. 4.1: 1cycle reaches the baseline's final test accuracy in far fewer epochs.
    Holds when 1cycle's final accuracy ties or beats the baseline's in fewer epochs. `others`
    (further policies of the baseline's length) are shown beside them once they have run; the
    verdict compares 1cycle with the baseline only."""
    cyc, base = r.run(one_cycle), r.run(baseline)
    a, b = r.acc(one_cycle), r.acc(baseline)
    to_base = epochs_to_reach(cyc, float(b.mean()))
    back = epochs_to_reach(base, float(a.mean()))
    measured = [r.text(one_cycle), r.text(baseline)] + [r.text_if_run(o) for o in others]
    measured.append(f"1cycle's epochs to the baseline's final accuracy: {_epochs_text(to_base)}"
                    f"; the baseline's epochs to 1cycle's: {_epochs_text(back)}")
    ran = " vs ".join(f"`{n}`" for n in (one_cycle, baseline, *others))
    side = compare(a, b)
    ratio = base.summary["epochs"] / cyc.summary["epochs"]
    if side >= 0:
        why = (f"1cycle ends {'above' if side > 0 else 'level with'} the baseline "
               f"({a.mean() - b.mean():+.4f}) in {ratio:.1f}x fewer epochs")
        return Verdict(HOLDS, ran, "; ".join(measured), why)
    saved = np.nanmean(back) if np.isfinite(back).any() else np.nan
    why = (f"1cycle ends {b.mean() - a.mean():.4f} below the baseline (tie margin "
           f"{tie_margin(a, b):.4f})")
    if np.isfinite(saved):
        why += (f"; the baseline needs {saved:.1f} epochs to reach 1cycle's "
                f"{cyc.summary['epochs']:.3g}-epoch accuracy")
    return Verdict(FAILS, ran, "; ".join(measured), why)


def range_test_bounds(r: _Records, *, test: str, at: Mapping[str, str],
                      min_fraction: Mapping[str, str] = {}) -> Verdict:
    """Sec. 4.1: the range test's suggested max_lr trains, and no nearby multiple trains
    better. `at` maps "1x", "0.5x", "2x" to settings; `min_fraction` maps a label like
    "max/3" to a setting that only changes min_lr (compared with "1x", max/10). Holds when the
    1x run ties or beats every other multiple (a multiple whose runs all diverged cannot);
    does not hold when every 1x run diverged. A min_lr variant is reported beside the verdict
    (above, level with or below max/10, or diverged) and does not decide it."""
    s = r.test(test).results[0].suggest()
    measured = [f"suggested max_lr {s.max_lr:.4g}, min_lr {s.min_lr:.4g}" if s.found
                else f"the range test gives no suggestion ({s.reason})"]
    measured += [f"{k}: {r.text_or_diverged(name)}"
                 for k, name in (*at.items(), *min_fraction.items())]
    ran = f"range test `{test}`, 1cycle at " + ", ".join(at) + (
        ", min_lr " + ", ".join(min_fraction) if min_fraction else "")
    if r.diverged(at["1x"]):
        return Verdict(FAILS, ran, "; ".join(measured),
                       "every run at the suggested max_lr diverged")
    base = r.acc(at["1x"])
    better = [k for k, name in at.items()
              if k != "1x" and not r.diverged(name) and compare(r.acc(name), base) > 0]
    dead = [k for k, name in at.items() if r.diverged(name)]
    mins = "; ".join(
        f"min_lr {k} " + ("diverged, where max/10 trains" if r.diverged(n) else
                          ["ends below", "ties", "ends above"][compare(r.acc(n), base) + 1]
                          + " max/10") for k, n in min_fraction.items())
    if better:
        return Verdict(FAILS, ran, "; ".join(measured),
                       f"{', '.join(better)} the suggestion trains better than 1x; {mins}")
    why = "1x ties or beats every other multiple" + (
        f" ({', '.join(dead)} diverged)" if dead else "")
    return Verdict(HOLDS, ran, "; ".join(measured), f"{why}; {mins}".rstrip("; "))


def batch_size(r: _Records, *, test: str, runs: Mapping[int, str]) -> Verdict:
    """Sec. 4.2: with 1cycle and bounds from a range test at each batch size, larger total
    batches reach similar or better accuracy; the paper also notes smaller batches ending at a
    lower test loss. Holds when the largest batch ties or beats the smallest."""
    family = r.test(test)
    bounds = {b: res.suggest().max_lr for b, res in zip(family.values, family.results)}
    bounds = {b: float("nan") if lr is None else lr for b, lr in bounds.items()}
    sizes = sorted(runs)
    measured = [f"batch {b}: max_lr {bounds.get(b, float('nan')):.3g}, {r.text(runs[b])}, "
                f"test loss {mean_std(r.loss(runs[b]))}" for b in sizes]
    small, large = runs[sizes[0]], runs[sizes[-1]]
    side = compare(r.acc(large), r.acc(small))
    losses = [r.loss(runs[b]).mean() for b in sizes]
    paradox = ("smaller batches end at lower test loss" if losses == sorted(losses)
               else "test loss is not ordered by batch size")
    ran = f"range test `{test}` per batch, 1cycle at batches {', '.join(map(str, sizes))}"
    if side >= 0:
        return Verdict(HOLDS, ran, "; ".join(measured),
                       f"batch {sizes[-1]} {'beats' if side > 0 else 'ties'} batch {sizes[0]}; "
                       f"{paradox}")
    return Verdict(FAILS, ran, "; ".join(measured),
                   f"batch {sizes[-1]} ends below batch {sizes[0]} by "
                   f"{r.acc(small).mean() - r.acc(large).mean():.4f}; {paradox}")


def cyclical_momentum(r: _Records, *, cyclical: tuple, constant: tuple) -> Verdict:
    """Sec. 4.3: cyclical momentum (falling while the LR rises) under the same 1cycle LR does
    at least as well as a constant momentum. Holds when the best cyclical setting ties or
    beats the best constant one."""
    best_cyc = max(cyclical, key=lambda n: r.acc(n).mean())
    best_const = max(constant, key=lambda n: r.acc(n).mean())
    side = compare(r.acc(best_cyc), r.acc(best_const))
    measured = "; ".join(r.text(n) for n in (*cyclical, *constant))
    ran = "1cycle LR with momentum " + ", ".join(f"`{n}`" for n in (*cyclical, *constant))
    why = (f"best cyclical `{best_cyc}` {['is below', 'ties', 'beats'][side + 1]} best constant "
           f"`{best_const}` ({r.acc(best_cyc).mean() - r.acc(best_const).mean():+.4f})")
    return Verdict(HOLDS if side >= 0 else FAILS, ran, measured, why)


def _best_wd(r: _Records, runs: Mapping[float, str]) -> float:
    return max(runs, key=lambda w: r.acc(runs[w]).mean())


def weight_decay_pick(r: _Records, *, test: str, runs: Mapping[float, str]) -> Verdict:
    """Sec. 4.4: the weight-decay range-test family picks (`Family.pick`: the lowest held-out
    loss, kept to the largest LR) the weight decay that then trains best. Holds when the picked
    value's run ties the best run."""
    family = r.test(test)
    rows = family.rows()
    pick, _ = family.pick()
    if pick not in runs:
        return Verdict(INCONCLUSIVE, "", "", f"the family picks WD {pick:g}, which no run "
                                              "trained")
    best = _best_wd(r, runs)
    side = compare(r.acc(runs[pick]), r.acc(runs[best]))
    measured = ("range test: " + ", ".join(
        f"WD {row['weight_decay']:g} held-out loss {row['best_eval_loss']:.4f} to max_lr "
        f"{row['max_lr']:.3g}" for row in rows)
        + "; runs: " + "; ".join(r.text(runs[w]) for w in sorted(runs, reverse=True)))
    ran = f"range-test family `{test}`, 1cycle at WD " + ", ".join(
        f"{w:g}" for w in sorted(runs, reverse=True))
    if pick == best or side >= 0:
        return Verdict(HOLDS, ran, measured, f"the test picks WD {pick:g}; the best run is WD "
                                             f"{best:g}" + ("" if pick == best else " (a tie)"))
    return Verdict(FAILS, ran, measured,
                   f"the test picks WD {pick:g}, but WD {best:g} trains better by "
                   f"{r.acc(runs[best]).mean() - r.acc(runs[pick]).mean():.4f}")


def _lead_over_runner_up(r: _Records, policy: str, runs: Mapping[float, str], best: float
                         ) -> tuple[bool, str]:
    """Whether `best` beats the runner-up of `runs` beyond the tie margin, and the numbers."""
    runner = max((w for w in runs if w != best), key=lambda w: r.acc(runs[w]).mean())
    a, b = r.acc(runs[best]), r.acc(runs[runner])
    return compare(a, b) > 0, (f"{policy}: {a.mean() - b.mean():+.4f} over WD {runner:g}, "
                               f"tie margin {tie_margin(a, b):.4f}")


def weight_decay_policy(r: _Records, *, one_cycle: Mapping[float, str],
                        constant: Mapping[float, str]) -> Verdict:
    """Sec. 4.4: the best weight decay differs between a constant LR and 1cycle (large LRs
    regularise, so 1cycle wants less). Holds when the two best values differ and each policy's
    best beats the other's choice under that policy beyond the tie margin. Does not hold when
    both policies train best at the same WD, inside the values each tried (not the largest or
    smallest: the optimum may lie beyond an end), and it beats its runner-up beyond the tie
    margin under one policy at least. Anything else (the bests differ, or coincide, but only
    within the tie margins or at an end of the values tried) is inconclusive."""
    shared = sorted(set(one_cycle) & set(constant), reverse=True)
    best_c, best_o = _best_wd(r, constant), _best_wd(r, one_cycle)
    measured = ("under constant LR: " + "; ".join(r.text(constant[w]) for w in sorted(
        constant, reverse=True)) + "; under 1cycle: " + "; ".join(
        r.text(one_cycle[w]) for w in sorted(one_cycle, reverse=True)))
    ran = "WD " + ", ".join(f"{w:g}" for w in shared) + " under both policies"
    if best_c == best_o:
        policies = (("constant LR", constant), ("1cycle", one_cycle))
        ends = [policy for policy, runs in policies if best_c in (min(runs), max(runs))]
        if ends:
            return Verdict(INCONCLUSIVE, ran, measured,
                           f"both policies train best at WD {best_c:g}, an end of the values "
                           f"tried under {' and '.join(ends)}: the optimum may lie beyond it")
        leads = [_lead_over_runner_up(r, *p, best_c) for p in policies]
        why = f"both policies train best at WD {best_c:g} ({'; '.join(t for _, t in leads)})"
        if any(firm for firm, _ in leads):
            return Verdict(FAILS, ran, measured, why)
        return Verdict(INCONCLUSIVE, ran, measured,
                       why + ", but under neither beyond the tie margin of the runner-up")
    distinct = (best_o in constant and best_c in one_cycle
                and compare(r.acc(constant[best_c]), r.acc(constant[best_o])) > 0
                and compare(r.acc(one_cycle[best_o]), r.acc(one_cycle[best_c])) > 0)
    why = f"best WD: constant LR {best_c:g}, 1cycle {best_o:g}"
    if distinct:
        return Verdict(HOLDS, ran, measured, why + ", each beyond the tie margin")
    return Verdict(INCONCLUSIVE, ran, measured,
                   why + ", but within the tie margin of each other under one policy at least")


def _verdict_of(run: Run) -> str:
    kinds = collections.Counter(diagnose(run.history, member=m).verdict for m in run.members)
    return kinds.most_common(1)[0][0]


def _reading(name: str, verdict: str, loss: np.ndarray) -> str:
    return f"`{name}` {verdict} (test loss {mean_std(loss)})"


def _reading_if_run(r: _Records, name: str) -> str:
    """`name`'s majority `diagnose` verdict and test loss, or why it has none."""
    try:
        return _reading(name, _verdict_of(r.run(name)), r.loss(name))
    except (_Missing, _Diverged):
        return r.text_if_run(name)


def curve_reading(r: _Records, *, series: tuple, others: tuple = ()) -> Verdict:
    """Sec. 3: `diagnose` reads under/over-fitting from a run's curves. `series` is one policy
    at increasing lengths: underfitting at a length must mean the next longer run ends at a
    lower test loss, overfitting that it ends higher (or the shorter one lower). Holds when
    every such reading is borne out; inconclusive when no reading names either. `others`
    (runs of other policies) are read beside the series once they have run and do not decide
    the verdict."""
    verdicts = {n: _verdict_of(r.run(n)) for n in series}
    loss = {n: r.loss(n) for n in series}
    checks, wrong = [], []
    for shorter, longer in zip(series, series[1:]):
        for name, is_short in ((shorter, True), (longer, False)):
            kind = verdicts[name]
            if kind not in ("underfitting", "overfitting"):
                continue
            side = compare(-loss[longer], -loss[shorter])  # +1: the longer run ends lower
            expect = 1 if kind == "underfitting" else -1
            ok = side == expect
            ends = ["above", "level with", "below"][side + 1]
            checks.append(f"`{name}` {kind}: `{longer}` ends {ends} `{shorter}` in test loss")
            if not ok:
                wrong.append(checks[-1])
    measured = "; ".join([_reading(n, verdicts[n], loss[n]) for n in series]
                         + [_reading_if_run(r, n) for n in others])
    ran = "`diagnose` on " + ", ".join(f"`{n}`" for n in (*series, *others))
    if not checks:
        return Verdict(INCONCLUSIVE, ran, measured, "no run of the series reads as under- or "
                                                    "over-fitting")
    if wrong:
        return Verdict(FAILS, ran, measured, "not borne out: " + "; ".join(wrong))
    return Verdict(HOLDS, ran, measured, "borne out: " + "; ".join(checks))


def _examples(run: Run) -> int:
    """Training examples a run's members each saw: its optimizer steps x its global batch."""
    return int(run.summary["step"]) * int(run.summary["config"]["batch_size"])


def _against(r: _Records, base: str, others: Mapping[str, str]) -> dict[str, list[str]]:
    """Which of `others` (label -> setting) train "better" than `base`, "tie" with it or train
    "worse", by `compare` on their final accuracies (a setting whose runs all diverged: worse).
    A setting with some runs diverged that would tie is "unstable" instead, and one that would
    train better "unstable better": its surviving runs are a selected sample."""
    out: dict[str, list[str]] = {"better": [], "tie": [], "worse": [], "unstable": [],
                                 "unstable better": []}
    for label, name in others.items():
        if r.diverged(name):
            out["worse"].append(label)
            continue
        side = ["worse", "tie", "better"][compare(r.acc(name), r.acc(base)) + 1]
        if r.run(name).diverged and side != "worse":
            side = "unstable better" if side == "better" else "unstable"
        out[side].append(label)
    return out


def _against_verdict(r: _Records, subject: str, base: str, others: Mapping[str, str], ran: str,
                     measured: str) -> Verdict:
    """Holds when `base` ties or beats every one of `others` that trained in every run; does
    not hold when one of those trains better; inconclusive when only a setting that diverged in
    some runs ends above it (its surviving runs do)."""
    sides = _against(r, base, others)
    if sides["better"]:
        return Verdict(FAILS, ran, measured,
                       f"{', '.join(sides['better'])} trains better than {subject}")
    parts = [f"ties {', '.join(sides['tie'])}" if sides["tie"] else "",
             f"beats {', '.join(sides['worse'])}" if sides["worse"] else "",
             f"{', '.join(sides['unstable'])} diverged in some runs, and the others end level"
             if sides["unstable"] else ""]
    why = f"{subject}: " + "; ".join(p for p in parts if p)
    if sides["unstable better"]:
        return Verdict(INCONCLUSIVE, ran, measured, why.rstrip() + (
            "; " if any(parts) else "") + f"{', '.join(sides['unstable better'])} diverged in "
            f"some runs, and the runs that trained end above {subject}")
    return Verdict(HOLDS, ran, measured, why)


def todays_schedules(r: _Records, *, one_cycle: str, others: Mapping[str, str]) -> Verdict:
    """1cycle (Sec. 4.1) against the schedules of today's practice at equal epochs and the same
    peak LR: cosine decay with warmup, warmup-stable-decay (`others`: label -> setting). Holds
    when 1cycle ties or beats every one of them (`_against_verdict`: a schedule that diverged in
    some runs and whose other runs end above 1cycle leaves it inconclusive); not a fair
    comparison (inconclusive) unless every run trained as many examples."""
    names = {"1cycle": one_cycle, **others}
    runs = {label: r.run(name) for label, name in names.items() if not r.diverged(name)}
    measured = "; ".join(f"{label}: {r.text_or_diverged(name)}" for label, name in names.items())
    ran = ", ".join(f"`{name}`" for name in names.values())
    if len({_examples(run) for run in runs.values()}) > 1:
        return Verdict(INCONCLUSIVE, ran, measured, "the runs trained unequal numbers of "
                       "examples")
    if r.diverged(one_cycle):
        return Verdict(FAILS, ran, measured, "every 1cycle run diverged")
    return _against_verdict(r, "1cycle", one_cycle, others, ran, measured)


def lr_free(r: _Records, *, procedure: str, test: str, others: Mapping[str, str]) -> Verdict:
    """The paper's procedure, an LR range test (`test`) and 1cycle at its suggestion
    (`procedure`), against optimizers that need no schedule or no LR (`others`: label ->
    setting; schedule-free, Prodigy), with every method's cost in training examples: the
    procedure's counts its range test's steps at the run's batch. Holds when the procedure
    ties or beats each of them, does not hold when one trains better (`_against_verdict`)."""
    run = r.run(procedure)
    batch = int(run.summary["config"]["batch_size"])
    search = r.test(test).results[0].steps_run * batch
    epoch = _examples(run) / run.summary["epochs"]  # examples per epoch
    costs = [f"procedure {(search + _examples(run)) / epoch:.3g} epochs of examples (range "
             f"test {search / epoch:.2g} + run {run.summary['epochs']:.3g})"]
    costs += [f"{label} {_examples(r.run(name)) / epoch:.3g}" for label, name in others.items()
              if not r.diverged(name)]
    measured = "; ".join([f"procedure: {r.text(procedure)}"] + [
        f"{label}: {r.text_or_diverged(name)}" for label, name in others.items()]
                         + ["cost: " + ", ".join(costs)])
    ran = f"range test `{test}` + `{procedure}`, " + ", ".join(f"`{n}`" for n in others.values())
    return _against_verdict(r, "the procedure's 1cycle", procedure, others, ran, measured)


def _grid_epochs(r: _Records, exclude: str, batch: int, epoch: float) -> tuple[float, float]:
    """What the grid spent, in epochs of examples: every run of every setting but `exclude`
    (each seed, to where it stopped), and its range tests (each test's steps at its batch:
    the value of a batch-size family, `batch` in any other)."""
    runs = sum(run.summary["epochs"] * len(run.summary["members"])
               for name, run in r.runs.items() if name != exclude)
    tests = sum(res.steps_run * (value if family.param == "batch_size" else batch)
                for family in r.tests.values()
                for value, res in zip(family.values, family.results)) / epoch
    return runs, tests


def procedure(r: _Records, *, tuned: str, default: str, record: str) -> Verdict:
    """The paper's procedure end to end (Sec. 4-5): `tuned` trains with what `tune` chose
    from its defaults (its `tune.json`, at `record`), against the grid's best setting of the
    same length (the highest mean accuracy among the other settings that trained as many
    examples in every run: one whose runs partly diverged is a selected sample and is only
    shown) and the default 1cycle (`default`). Holds when `tuned` ties or beats both by the
    tie rule; does not hold when either trains better, or when every tuned run diverged. The
    row states the search's cost (its range tests, every seed, in epochs of examples, and
    seconds) beside what the grid spent."""
    path = Path(record)
    if not path.exists():
        raise _Missing(f"tune record {path.name}")
    spent = _files.read_json(path, "tune record")["budget"]
    base = r.run(default)
    epoch = _examples(base) / base.summary["epochs"]  # examples per epoch
    runs, tests = _grid_epochs(r, tuned, int(base.summary["config"]["batch_size"]), epoch)
    cost = (f"cost: the search {spent['spent_epochs']:.3g} epochs of examples "
            f"({spent['spent_seconds'] / 60:.3g} min, range tests at {spent['seeds']} seeds); "
            f"the grid {runs + tests:.4g} epochs (runs {runs:.4g} over "
            f"{len(r.runs) - (tuned in r.runs)} settings, range tests {tests:.3g})")
    ran = f"`tune` ({path.parent.name}/{path.name}) -> `{tuned}`, the grid's best, `{default}`"
    if r.diverged(tuned):
        return Verdict(FAILS, ran, f"{r.text_or_diverged(tuned)}; {cost}",
                       "every tuned run diverged")
    size = _examples(r.run(tuned))
    same = [n for n, run in r.runs.items() if n != tuned and not r.diverged(n)
            and _examples(run) == size]
    stable = [n for n in same if not r.run(n).diverged]
    if not stable:
        return Verdict(INCONCLUSIVE, ran, f"tuned: {r.text(tuned)}; {cost}",
                       "no other setting trained as many examples in every run")
    best = max(stable, key=lambda n: r.acc(n).mean())
    shown = [n for n in same if r.acc(n).mean() > r.acc(best).mean() and n not in stable]
    measured = [f"tuned: {r.text(tuned)}", f"the grid's best of {len(stable)} settings of its "
                f"length: {r.text(best)}", f"default 1cycle: {r.text(default)}"]
    measured += [f"above it with runs diverged: {r.text(n)}" for n in shown] + [cost]
    sides = {label: compare(r.acc(tuned), r.acc(name))
             for label, name in ((f"the grid's best `{best}`", best),
                                 (f"the default 1cycle `{default}`", default))}
    words = ["trails", "ties", "beats"]
    why = "tuned " + "; ".join(
        f"{words[side + 1]} {label} ({r.acc(tuned).mean() - r.acc(name).mean():+.4f}, tie "
        f"margin {tie_margin(r.acc(tuned), r.acc(name)):.4f})"
        for (label, side), name in zip(sides.items(), (best, default)))
    verdict = HOLDS if min(sides.values()) >= 0 else FAILS
    return Verdict(verdict, ran, "; ".join(measured), why)


# The rule of each check a `Claim` may name (`spec.CHECKS`): the function of that name above.
_CHECKS = {name: globals()[name] for name in CHECKS}
