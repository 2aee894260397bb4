"""`hparams-jax` command line (also `python -m hparams_jax`).

The options of `train`, `range-test`, `tune` and `experiment run` are `TrainConfig`'s fields
(`hparams_jax.options`), with `--config FILE` and `--set FIELD=VALUE` where a whole config is
built. A `ConfigError` (and a missing dataset, a missing optional dependency, a workdir another
run holds, or a file the user hands over that cannot be read: `UnreadableFileError`, naming the
file) ends a command with a one-line message and exit status 2; a divergence, and a range test
that gives no suggestion (`NoSuggestionError`: it diverged before its loss fell), with 3; a
failed write into the workdir (a full disk) with 1; SIGINT/SIGTERM during training with 130/143
after saving the last completed step. Any other exception surfaces with its traceback (status
1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hparams_jax import _launch, momenta, options
from hparams_jax.errors import ConfigError, MissingExtraError, UnreadableFileError
from hparams_jax.options import RANGE_TEST_EXCLUDED, TUNE_EXCLUDED
from hparams_jax.train import TrainConfig, policies


def _demo(args) -> int:
    """The paper's method end to end on the offline Fashion-MNIST (see `hparams_jax.demo`)."""
    from hparams_jax import demo

    budget = {} if args.budget is None else {"budget": args.budget}
    demo.run(args.workdir, epochs=args.epochs, range_steps=args.range_steps,
             train_examples=args.train_examples, eval_examples=args.eval_examples,
             progress=not args.no_progress, **budget)
    return 0


def _train_defaults() -> TrainConfig:
    return TrainConfig(workdir="runs/train")


def _train(args) -> int:
    """Trains one network on one dataset under one policy (Smith 2018, Sec. 4)."""
    _launch.join_cluster(args)
    from hparams_jax.train import fit

    config = _config(args)
    _check_runs(args.runs)
    if args.runs > 1:
        if config.members:
            raise ConfigError(f"--runs {args.runs} with members={list(config.members)!r}: "
                              "give one of them.")
        config = config.replace(members=tuple(
            {"seed": s} for s in range(config.seed, config.seed + args.runs)))
    if config.workdir is None:
        raise ConfigError("workdir=None is not allowed here: train writes its metrics and "
                          "checkpoints to a workdir (--workdir).")
    history = fit(config)
    for member in history.summary["members"]:
        print(f"member {member['member']}: test accuracy {member['test_accuracy']:.4f}, "
              f"test loss {member['test_loss']:.4f}, train loss {member['train_loss']:.4f}")
    print(f"{history.summary['seconds_per_epoch']:.1f} s per epoch; results in "
          f"{config.workdir}")
    return 0


def _check_runs(runs: int | None) -> None:
    if runs is not None and runs < 1:
        raise ConfigError(f"--runs {runs} is not allowed: --runs must be a positive integer "
                          "(seeds trained together).")


def _range_test_defaults() -> TrainConfig:
    return TrainConfig(eval_examples=1000, progress=False)


def _range_test_fields() -> list[str]:
    return [name for name in options.fields() if name not in RANGE_TEST_EXCLUDED]


def _range_test(args) -> int:
    """The LR range test (Smith 2018, Sec. 4.1) or a family of them (Sec. 4.3-4.5), its
    workdir locked while it runs; the config and the ramp are checked before anything is
    written."""
    from hparams_jax.range_test import check_ramp
    from hparams_jax.train import tensorboard, workdir_lock

    config = _config(args)
    check_ramp(args.start, args.stop, args.steps, args.mode, eval_every=args.eval_every)
    if config.tensorboard:
        tensorboard.check_installed()  # before anything trains
    with workdir_lock(args.workdir):
        return _range_test_locked(args, config)


def _range_test_locked(args, config) -> int:
    from hparams_jax import plots
    from hparams_jax.range_test import NoSuggestionError, lr_range_test, range_test_family
    from hparams_jax.train import tensorboard

    ramp = dict(start=args.start, stop=args.stop, num_steps=args.steps, mode=args.mode,
                eval_every=args.eval_every)
    workdir = Path(args.workdir)
    none: NoSuggestionError | None = None
    if args.family:
        param, values = args.family
        family = range_test_family(config, param, values, **ramp)
        family.save(workdir / "range_test.json")
        plots.plot_family(family.results, workdir / "range_test.png",
                          title=f"LR range tests over {param} ({config.model}, "
                                f"{config.dataset}, {config.optimizer})")
        print(family.text())
        for r in family.results:
            print(f"{r.label}: {r.suggest().text()}")
        results = family.results
        try:
            family.pick()
        except NoSuggestionError as err:
            none = err
    else:
        result = lr_range_test(config, **ramp)
        result.label = (f"{config.model}, {config.dataset}, {config.optimizer}, "
                        f"weight_decay={config.weight_decay:g}")
        result.save(workdir / "range_test.json")
        plots.plot_range_test(result, workdir / "range_test.png")
        suggestion = result.suggest()
        print(suggestion.text())
        results = [result]
        if not suggestion.found:
            none = NoSuggestionError(f"the range test gives no suggestion: {suggestion.reason}")
    print(f"saved {workdir / 'range_test.json'} and {workdir / 'range_test.png'}")
    if config.tensorboard:
        logdir = tensorboard.write_range_tests(results if args.family else results[0],
                                               workdir / tensorboard.LOGDIR)
        print(f"TensorBoard: tensorboard --logdir {logdir}")
    if none is not None:
        raise none  # exit status 3, after the curves are saved
    return 0


def _budget(text: str) -> int | str:
    """`--budget`: an integer (steps) or a multiple of the 1cycle run's examples ("1.0x"),
    checked by `tune`."""
    try:
        return int(text)
    except ValueError:
        return text


def _tune(args) -> int:
    """The disciplined approach as one command (Smith 2018, Sec. 4-5; `hparams_jax.tuning`)."""
    from hparams_jax.tuning import tune

    config = _config(args)
    result = tune(config.replace(workdir=args.workdir), budget=args.budget,
                  batch_sizes=args.batch_sizes, momenta=args.momenta,
                  weight_decays=args.weight_decays, start=args.start, stop=args.stop,
                  range_steps=args.range_steps, seeds=args.seeds,
                  final_policy=args.final_policy)
    print(result.text())
    return 0


def _diagnose(args) -> int:
    """Reads a run's curves for under- and over-fitting (Smith 2018, Sec. 3)."""
    from hparams_jax import plots
    from hparams_jax.diagnose import diagnose
    from hparams_jax.train import History

    workdir = Path(args.workdir)
    if not (workdir / "metrics.jsonl").exists():
        raise ConfigError(f"workdir={str(workdir)!r} has no metrics.jsonl: is it the workdir "
                          "of a training run?")
    history = History.load(workdir)  # a damaged summary.json: named, exit status 2
    output = Path(args.output) if args.output else workdir / "diagnosis.png"
    for member in range(history.num_members):
        found = diagnose(history, member=member)
        if history.num_members > 1:
            print(f"member {member}:")
        print(found.text())
        path = output if history.num_members == 1 else output.with_name(
            f"{output.stem}_{member}{output.suffix}")
        try:
            plots.plot_training(history, path, diagnosis=found, member=member)
        except OSError as err:  # a read-only run: the findings stand without the figure
            print(f"hparams-jax: note: figure skipped: cannot write {path} "
                  f"({err.strerror or err}); --output FILE writes it elsewhere",
                  file=sys.stderr)
            continue
        print(f"saved {path}")
    return 0


def _experiment(args) -> int:
    """The paper's grid: list the experiments, run one, or write experiments/RESULTS.md."""
    from hparams_jax import experiment
    from hparams_jax.train.config import EXECUTION_FIELDS

    args.root = args.root or experiment.DEFAULT_ROOT
    if args.action == "list":
        for e in experiment.load_all(args.configs).values():
            print(f"{e.name}: {e.title} ({e.section})")
            for s in e.settings:
                paper = f" [paper {s.paper.accuracy:.4f}]" if s.paper else ""
                print(f"    {s.name}: {s.note}{paper}")
        return 0
    if args.action == "report":
        path = experiment.write_report(experiment.load_all(args.configs), root=args.root,
                                       output=args.output, allow_empty=args.allow_empty)
        print(f"wrote {path}")
        return 0
    if not 0 < args.scale <= 1:  # before anything runs, the range tests included
        raise ConfigError(f"--scale {args.scale:g} is not allowed: --scale must be a number "
                          "in (0, 1] (the fraction of each setting's length).")
    _launch.join_cluster(args)
    if not args.name:
        raise ConfigError("experiment run needs NAME (see hparams-jax experiment list)")
    _check_runs(args.runs)
    execution = {name: getattr(args, name) for name in EXECUTION_FIELDS
                 if hasattr(args, name)}
    e = experiment.find(args.name, args.configs)
    everything = not (args.setting or args.range_test)
    tests = args.range_test or ([t.name for t in e.range_tests] if everything else [])
    settings = args.setting or (e.setting_names if everything else [])
    for name in settings:
        e.setting(name)  # an unknown setting or test fails before anything trains
    for name in tests:
        e.range_test(name)
    for name in tests:
        family = experiment.run_range_test(e, name, root=args.root)
        print(f"{e.name}/range test {name}:")
        for r in family.results:
            print(f"    {r.label}: {r.suggest().text()}")
    for name in settings:
        runs = args.runs or e.runs_for(name)
        print(f"{e.name}/{name}: {runs} run(s), scale {args.scale:g}")
        history = experiment.run_setting(e, name, runs=runs, scale=args.scale,
                                         root=args.root, **execution)
        accuracy = [m["test_accuracy"] for m in history.summary["members"]
                    if m["test_accuracy"] is not None]
        print(f"    test accuracy {', '.join(f'{a:.4f}' for a in accuracy)}; in "
              f"{experiment.run_dir(args.root, e.name, name, args.scale)}")
    return 0


# The commands that build a configuration: (their defaults, the fields they take as options,
# whether the config keeps its LR policy: a range test and tune set their own).
_CONFIGS = {
    "train": lambda: (_train_defaults(), list(options.fields()), True),
    "range-test": lambda: (_range_test_defaults(), _range_test_fields(), False),
    "tune": lambda: (TrainConfig(), [f for f in options.fields() if f not in TUNE_EXCLUDED],
                     False),
}


def _config(args) -> TrainConfig:
    """The configuration of command `args.command` (`options.config_from`), its network and
    the fields of its policy and optimizer checked before anything is written."""
    from hparams_jax.models import registry

    defaults, names, own_policy = _CONFIGS[args.command]()
    config = options.config_from(args, defaults, names)
    registry.check_model(config.model, config.model_options)
    policies.check_fields_apply(config, lr_policy=own_policy)
    return config


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument as one line (no usage block): `hparams-jax train: error: ...`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _command(sub, name: str, func, **kwargs) -> argparse.ArgumentParser:
    """Command `name`, run by `func`; one that builds a configuration (`_CONFIGS`) takes
    `--config` and `--set` (and, after its own arguments, an option per field it takes)."""
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(func=func)
    if name in _CONFIGS:
        options.add_config_arguments(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from hparams_jax.train.config import EXECUTION_FIELDS

    parser = _Parser(
        prog="hparams-jax",
        description="Smith's disciplined approach to neural-network hyper-parameters "
                    "(1cycle, cyclical momentum, LR range test) in JAX.",
        epilog="exit status: 0 done; 1 a write into the workdir failed (a full disk); 2 bad "
               "arguments, a file given that cannot be read (named), or a workdir another run "
               "holds or that cannot be written; 3 training diverged, or a range test gives no "
               "suggestion (it diverged before its loss fell); 130/143 stopped by "
               "SIGINT/SIGTERM after saving the last completed step (run the same command "
               "again to resume).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = _command(
        sub, "demo", _demo,
        help="tune LeNet on Fashion-MNIST, beside a hand-set 1cycle and a constant LR",
        description="LeNet on the offline Fashion-MNIST: `tune` (range tests choose the LR "
                    "bounds, batch size, momentum and weight decay, then 1cycle trains with "
                    "them), then a hand-set 1cycle and a constant LR train for the same epochs; "
                    "prints the comparison and writes tune.json, report.md and the figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--workdir", default="runs/demo", help="where results and figures go")
    demo.add_argument("--epochs", type=float, default=3.0, help="epochs of each training run")
    demo.add_argument("--range-steps", type=int, default=200,
                      help="steps of each range test at batch 128")
    demo.add_argument("--budget", type=_budget, default=None,
                      help="most the search's range tests may spend: steps at batch 128, or a "
                           "multiple of the 1cycle run's examples such as 1.0x; None: the "
                           "demo's own, hparams_jax.demo.DEMO_BUDGET")
    demo.add_argument("--train-examples", type=int, default=None,
                      help="train on a subset (for a quick look)")
    demo.add_argument("--eval-examples", type=int, default=None,
                      help="evaluate on a subset of the test split")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")

    train = _command(
        sub, "train", _train, help="train a network under a learning-rate policy",
        description="Train one of the paper's networks. Metrics go to WORKDIR/metrics.jsonl, "
                    "the final figures to WORKDIR/summary.json, checkpoints to "
                    "WORKDIR/checkpoints; running the same command again resumes. Every "
                    "TrainConfig field is an option; the configuration is built from the "
                    "defaults, then --config, then the options given, then each --set.")
    train.add_argument("--runs", type=int, default=1, metavar="N",
                       help="train this many seeds (seed, seed + 1, ...) at once in one "
                            "program (jax.vmap) (default: 1)")
    _launch.add_arguments(train)

    rt = _command(
        sub, "range-test", _range_test, help="LR range test: find the learning-rate bounds",
        description="Train briefly while the learning rate rises from --start to --stop and "
                    "read where the loss and held-out accuracy stop improving (Smith 2018, "
                    "Sec. 4.1). Writes WORKDIR/range_test.json and WORKDIR/range_test.png and "
                    "prints the suggested min_lr/max_lr.",
        epilog="A test that diverges before its loss ever falls (or whose loss is never "
               "finite) gives no suggestion: it prints 'no suggestion' and why, saves the "
               "curves, and exits with status 3 (with --family: when no member gives one). "
               "TrainConfig fields that are not options here (the ramp replaces them, or they "
               "concern full runs): " + ", ".join(RANGE_TEST_EXCLUDED) + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rt.add_argument("--start", type=float, default=0.001, help="first learning rate")
    rt.add_argument("--stop", type=float, default=1.0,
                    help="last learning rate (above --start)")
    rt.add_argument("--steps", type=int, default=300, help="steps of the ramp")
    rt.add_argument("--mode", choices=["linear", "exp"], default="linear",
                    help="linear ramp (the paper) or exponential (equal ratios)")
    rt.add_argument("--eval-every", type=int, default=None,
                    help="steps between held-out evaluations (default: 20 in the test)")
    rt.add_argument("--family", type=options.family, default=None,
                    help="repeat for several values: weight_decay=1e-3,1e-4,1e-5 or "
                         "momentum=0.99,0.95,0.9 or batch_size=64,128,256")
    rt.add_argument("--workdir", default="runs/range_test", help="output folder")

    tune = _command(
        sub, "tune", _tune, help="the paper's whole procedure: LR, batch size, momentum, "
                                 "weight decay, then 1cycle",
        description="Smith 2018's disciplined approach in one command: an LR range test "
                    "(Sec. 4.1), then range tests to choose the batch size (4.2), the momentum "
                    "(4.3) and the weight decay (4.4), then a 1cycle run with the chosen values "
                    "and its diagnosis (Sec. 3, 5). Each stage is recorded in WORKDIR/stages; "
                    "the same command continues a killed tune at the stage it was in. Writes "
                    "WORKDIR/tune.json (every decision and the numbers behind it) and "
                    "WORKDIR/report.md with its figures.",
        epilog="TrainConfig fields that are not options here (tune sets them): "
               + ", ".join(TUNE_EXCLUDED) + ". --batch-size, --momentum and --weight-decay "
               "are the values the search starts from; --epochs or --steps the 1cycle run's "
               "length.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tune.add_argument("--workdir", required=True, help="where the stages, tune.json, "
                      "report.md, the figures and the 1cycle run go")
    tune.add_argument("--batch-sizes", type=options.list_option(
                          "--batch-sizes", int, "integers, e.g. 128,256,512"), default=None,
                      help="batch-size candidates (default: the starting batch x 1, 2, 4); "
                           "those that do not fit the devices are recorded and skipped")
    tune.add_argument("--momenta", type=options.list_option(
                          "--momenta", momenta.parse, "momenta, each a number or a cyclical "
                          "max-min pair, e.g. 0.95-0.85,0.9,0.99"), default=None,
                      help="momentum candidates, a cyclical one as max-min (default: "
                           "0.95-0.85,0.9,0.95,0.97,0.99)")
    tune.add_argument("--weight-decays", type=options.list_option(
                          "--weight-decays", float, "numbers, e.g. 1e-3,1e-4,1e-5"),
                      default=None, help="weight-decay candidates (default: 1e-3,1e-4,1e-5, "
                                         "and 1e-6 on a dataset of 500,000 examples or more)")
    tune.add_argument("--budget", type=_budget, default=None,
                      help="most the search's range tests may spend: steps at the starting "
                           "batch (a test at another batch sees as many examples), or a "
                           "multiple of the 1cycle run's training examples such as 1.0x; "
                           "shortens the range tests, then thins the families (default: no "
                           "cap)")
    tune.add_argument("--start", type=float, default=0.001, help="first LR of each range test")
    tune.add_argument("--stop", type=float, default=None,
                      help="last LR of each range test (default: just past where an "
                           "exponential scout from --start blows up); a ramp that reads fewer "
                           "than 50 usable steps is lengthened")
    tune.add_argument("--range-steps", type=int, default=300,
                      help="steps of each range test at the starting batch")
    tune.add_argument("--final-policy", choices=policies.FINAL_POLICIES, default="one_cycle",
                      help="LR policy of the final run, peaking at the chosen max_lr (1cycle, "
                           "the paper's; cosine or wsd to measure against today's schedules)")
    tune.add_argument("--seeds", type=int, default=2,
                      help="seeds of each family's range tests and of the 1cycle run (their "
                           "spread decides ties)")

    diag = _command(
        sub, "diagnose", _diagnose, help="read a run's curves for under/over-fitting",
        description="Print the findings on a finished or running training run (divergence, "
                    "under-fitting, over-fitting, instability, the early horizontal test loss "
                    "of Smith 2018, Sec. 3) and save the annotated plot WORKDIR/diagnosis.png "
                    "(or --output). A run that cannot be written (read-only) still gets its "
                    "findings; the figure is skipped with a one-line note.")
    diag.add_argument("workdir", help="the workdir of a training run")
    diag.add_argument("--output", metavar="FILE", default=None,
                      help="where the figure goes (default: WORKDIR/diagnosis.png; a sweep's "
                           "members get FILE's name with _0, _1, ...)")

    exp = _command(
        sub, "experiment", _experiment, help="the paper's experiment grid: list, run, report",
        description="list: the experiments of the grid (experiments/configs/*.py) and their "
                    "settings. run NAME: train its settings (or --setting S ...), --runs seeds "
                    "of each in one program, into ROOT/NAME/SETTING (SETTING@scaleS when "
                    "--scale < 1). report: aggregate every finished run into "
                    "experiments/RESULTS.md beside the paper's numbers.",
        epilog="The experiment defines every other TrainConfig field; the options of the "
               "training configuration change only how its runs execute.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    exp.add_argument("action", choices=["list", "run", "report"])
    exp.add_argument("name", nargs="?", help="experiment to run (see list)")
    exp.add_argument("--setting", action="append", default=None,
                     help="run only this setting (repeatable; default: all range tests, "
                          "then all settings)")
    exp.add_argument("--range-test", action="append", default=None,
                     help="run only this LR range test of the experiment (repeatable)")
    exp.add_argument("--runs", type=int, default=None,
                     help="seeds per setting, trained together (default: the setting's own, "
                          "4 unless its config says otherwise)")
    exp.add_argument("--scale", type=float, default=1.0,
                     help="multiply every setting's length by this (0, 1] for a quick check; "
                          "recorded, and reported as a scaled run")
    exp.add_argument("--root", default=None,
                     help="where runs are written and read (default: experiments/records, the "
                          "committed records; a finished setting there is not trained again)")
    exp.add_argument("--output", default="experiments/RESULTS.md", help="report file")
    exp.add_argument("--allow-empty", action="store_true",
                     help="report: write the report even when ROOT holds no finished run or "
                          "range test (refused otherwise, so that a wrong --root never "
                          "replaces a report that has rows)")
    exp.add_argument("--configs", default=None,
                     help="folder of experiment configs (default: the repository's "
                          "experiments/configs)")
    _launch.add_arguments(exp)
    options.add_options(exp, _train_defaults(), EXECUTION_FIELDS,
                        title="how the runs execute (run)")
    for name, config in _CONFIGS.items():
        defaults, names, _ = config()
        options.add_options(sub.choices[name], defaults, names)
    return parser


def _expected_errors() -> dict[type[BaseException], tuple[int, str]]:
    """Exceptions that end a command with a one-line message: (exit status, prefix). Any other
    exception surfaces with its traceback (exit status 1)."""
    from hparams_jax.data import DatasetUnavailableError
    from hparams_jax.range_test import NoSuggestionError
    from hparams_jax.train import TrainingInterrupted, WorkdirLocked

    expected: dict[type[BaseException], tuple[int, str]] = {
        UnreadableFileError: (2, "error: "),  # every file handed over that cannot be read
        ConfigError: (2, "error: "),
        MissingExtraError: (2, "error: "),
        DatasetUnavailableError: (2, "error: "),
        WorkdirLocked: (2, "error: "),
        NoSuggestionError: (3, ""),
        TrainingInterrupted: (130, ""),  # the status is the signal's: see `main`
        KeyboardInterrupt: (130, ""),
    }
    try:
        from hparams_jax.train import DivergenceError, WorkdirWriteError
    except MissingExtraError:  # a core install: no run can start, so none can fail
        return expected
    return {**expected, DivergenceError: (3, ""), WorkdirWriteError: (1, "error: ")}


def main(argv: list[str] | None = None) -> int:
    from hparams_jax import _xla

    args = build_parser().parse_args(argv)
    _xla.apply_cpu_defaults(getattr(args, "plan", None) or "auto")  # before JAX starts
    expected = _expected_errors()
    try:
        return args.func(args)
    except tuple(expected) as err:
        status, prefix = next(v for cls, v in expected.items() if isinstance(err, cls))
        print(f"hparams-jax: {prefix}{str(err) or 'interrupted'}", file=sys.stderr)
        return getattr(err, "exit_code", status)  # 130 for SIGINT, 143 for SIGTERM
