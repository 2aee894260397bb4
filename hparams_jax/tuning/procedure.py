"""The stages of the disciplined approach as one table (Smith 2018, Sec. 4-5).

`STAGES` runs in the paper's order, each stage setting one hyper-parameter from LR range tests
read on held-out loss: the LR range test (Sec. 4.1), then the batch size (Sec. 4.2), the
momentum (Sec. 4.3) and the weight decay (Sec. 4.4); `ONE_CYCLE` is the tuned run that follows
(Sec. 4.1, 5). A stage's entry is what `tune`, its budget and its report know of it:

- `name`: the `TrainConfig` field a family sets, and the name of the stage's record
  (`stages/NAME.json`), figure (`NAME.png`) and TensorBoard folder;
- `section`, `rule`, `title`, `intro`: the paper's section, the rule of the choice, the
  report's heading and its paragraph on why;
- `argument`: the keyword of `tune` (and key of its recorded inputs) giving the candidates;
  None for a single range test;
- `defaults`: the candidates when that keyword is None (the paper's first: the budget thins a
  family from its end);
- `kept`, `tie`: the budget's terms: how many candidates, first in the list, it never thins
  (the starting batch size; a family left with no more than these runs no test), and which
  family is thinned first when two are equally large (the lower `tie`).

A new family stage is one entry here, plus what the entry names: its keyword of `tune` and
the check of its candidates (`tuning.stages`), its option of `hparams-jax tune`, and a
`TrainConfig` field that sweep members can vary. Its record, budget share, cuts, report
section and place in `tune.json` follow from the entry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from hparams_jax import momenta
from hparams_jax.range_test import EVAL_TOLERANCE
from hparams_jax.train.task import train_examples

DEFAULT_SEEDS = 2  # each family's range tests repeat at this many seeds

# The candidates, the paper's first: thinning by the budget drops from the end.
DEFAULT_MOMENTA: tuple[Any, ...] = ((0.95, 0.85), 0.9, 0.95, 0.97, 0.99)
DEFAULT_WEIGHT_DECAYS = (1e-3, 1e-4, 1e-5)
LARGE_DATASET = 500_000  # training examples from which 1e-6 joins the weight decays (Sec. 4.4)
BATCH_FACTORS = (1, 2, 4)  # default batch candidates: the starting batch times these

_TIES = (f"candidates whose mean best held-out loss over the seeds lies within the tie margin "
         f"of the lowest (two standard errors of the difference, at least "
         f"{EVAL_TOLERANCE:.0%}) tie")
_PICK = (f"{_TIES}; a tie goes to the first in the candidates' order (the paper's defaults "
         "first); max_lr the mean of its seeds' suggestions, min_lr = max_lr / 10")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the procedure (see the module docstring)."""

    name: str
    section: str
    rule: str
    title: str
    intro: str = ""
    argument: str | None = None
    defaults: Callable[[Any, Any], tuple] | None = None  # (config, task) -> candidates
    kept: int = 0
    tie: int = 0

    @property
    def label(self) -> str:
        """The stage's name as prose ("weight decay")."""
        return self.name.replace("_", " ")

    def tests(self, candidates: int, seeds: int) -> int:
        """Range tests the stage plans for `candidates` candidates at `seeds` seeds (a single
        test when it searches no family; none when the budget left it no more than `kept`)."""
        if self.argument is None:
            return 1
        return 0 if candidates <= self.kept else seeds * candidates


def _default_weight_decays(config, task) -> tuple[float, ...]:
    num_train = train_examples(config, task) or 0
    return DEFAULT_WEIGHT_DECAYS + ((1e-6,) if num_train >= LARGE_DATASET else ())


STAGES = (
    Stage("lr_range", "4.1", title="LR range test",
          rule="RangeTestResult.suggest: the largest LR before the held-out loss or accuracy "
               "worsens (never past the lowest training loss); min_lr = max_lr / 10 for "
               "1cycle; the ramp ends just past where an exponential scout's loss blew up (or "
               "at the given stop), lengthened until the test reads at least 50 usable steps",
          intro="The LR range test trains briefly while the LR rises linearly; the largest LR "
                "before the held-out loss or accuracy worsens is `max_lr`, and 1cycle starts "
                "a factor of 10 below it. Its ramp is the range every later stage ramps over."),
    Stage("batch_size", "4.2", title="Batch size",
          rule=f"each batch that fits is read at equal training examples (a larger batch takes "
               f"fewer steps); {_TIES}; a tie goes to the batches whose measured examples/s "
               "lies within 10% of the fastest, the smallest first (a larger batch is chosen "
               "for the wall time it buys), then the others, fastest first; max_lr the mean "
               "of its seeds' suggestions, min_lr = max_lr / 10",
          intro="A larger batch allows a larger LR and costs fewer steps an epoch, but "
                "regularises less: the paper uses as large a batch as the hardware allows, "
                "compared by range tests at each candidate. Each sees the same training "
                "examples, so the larger batch is not ahead by the images it has seen.",
          argument="batch_sizes", kept=1, tie=1,  # the starting batch is never thinned
          defaults=lambda config, task: tuple(config.batch_size * f for f in BATCH_FACTORS)),
    Stage("momentum", "4.3", title="Momentum", rule=_PICK,
          intro="Momentum and LR are coupled: a range test per momentum shows which keeps "
                "the held-out loss lowest to the largest LR; cyclical momentum falls while the "
                "LR rises.",
          argument="momenta", tie=0, defaults=lambda config, task: DEFAULT_MOMENTA),
    Stage("weight_decay", "4.4", title="Weight decay", rule=_PICK,
          intro="Weight decay is the last regulariser balanced against the others: the "
                "value whose held-out loss is lowest and stays low to the largest LR.",
          argument="weight_decays", tie=2, defaults=_default_weight_decays),
)
FAMILIES = tuple(s for s in STAGES if s.argument is not None)
BY_NAME = {s.name: s for s in STAGES}
ONE_CYCLE = Stage("one_cycle", "4.1, 5 (1cycle); 3 (diagnosis)",
                  title="The 1cycle run (Sec. 4.1, 5) and its reading (Sec. 3)",
                  rule="1cycle at the chosen batch size, momentum, weight decay and bounds; "
                       "the next step from diagnose's verdict")


def show(x: Any) -> str:
    """A recorded value as the report writes it: a momentum pair as max-min, bounds as
    "max_lr V, min_lr V", numbers to 4 significant digits."""
    if isinstance(x, dict):
        return ", ".join(f"{k} {show(y)}" for k, y in x.items())
    if isinstance(x, (list, tuple)):
        return momenta.format(momenta.parse(x))
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else str(x)
