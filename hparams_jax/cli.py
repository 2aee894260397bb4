"""`hparams-jax` command line (also `python -m hparams_jax`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def _demo(args) -> int:
    """The paper's method end to end on the offline Fashion-MNIST (see `hparams_jax.demo`)."""
    from hparams_jax import demo

    demo.run(args.workdir, epochs=args.epochs, range_steps=args.range_steps,
             train_examples=args.train_examples, eval_examples=args.eval_examples,
             progress=not args.no_progress)
    return 0


def _momentum(text: str):
    """`0.9` (constant) or `0.95:0.85` (cyclical, max:min)."""
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--momentum {text!r}: expected a number like 0.9 or max:min like 0.95:0.85")
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return tuple(values)
    raise argparse.ArgumentTypeError(f"--momentum {text!r}: at most one ':' (max:min)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: it must be a positive integer")
    return value


def _join_cluster(args) -> None:
    if args.distributed:
        import jax

        jax.distributed.initialize()


def _train(args) -> int:
    """Trains one network on one dataset under one policy (Smith 2018, Sec. 4)."""
    _join_cluster(args)
    from hparams_jax.train import TrainConfig, fit

    _check_model(args.model)
    config = TrainConfig(
        model=args.model, dataset=args.dataset, batch_size=args.batch_size,
        epochs=None if args.steps else args.epochs, steps=args.steps,
        lr_policy=args.lr_policy, min_lr=args.min_lr, max_lr=args.max_lr,
        step_size=args.step_size, momentum=args.momentum, nesterov=not args.no_nesterov,
        weight_decay=args.weight_decay, augmentation=args.augmentation,
        train_examples=args.train_examples, seed=args.seed, image_size=args.image_size,
        data_workers=args.data_workers,
        members=tuple({"seed": s} for s in range(args.seed, args.seed + args.runs))
        if args.runs > 1 else (),
        log_every=args.log_every, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, workdir=args.workdir,
        progress=not args.no_progress)
    history = fit(config)
    for member in history.summary["members"]:
        print(f"member {member['member']}: test accuracy {member['test_accuracy']:.4f}, "
              f"test loss {member['test_loss']:.4f}, train loss {member['train_loss']:.4f}")
    print(f"{history.summary['seconds_per_epoch']:.1f} s per epoch; results in {args.workdir}")
    return 0


def _family(text: str):
    """`weight_decay=1e-3,1e-4` or `momentum=0.9,0.95:0.85` or `batch_size=64,128`."""
    name, _, values = text.partition("=")
    if name not in ("weight_decay", "momentum", "batch_size") or not values:
        raise argparse.ArgumentTypeError(
            f"--family {text!r}: expected weight_decay=V1,V2,..., momentum=V1,V2,... (a value "
            "may be max:min) or batch_size=B1,B2,...")
    parse = int if name == "batch_size" else _momentum if name == "momentum" else float
    try:
        return name, [parse(x) for x in values.split(",")]
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"--family {text!r}: {values!r} are not numbers")


def _range_test(args) -> int:
    """The LR range test (Smith 2018, Sec. 4.1) or a family of them (Sec. 4.3-4.5), its
    workdir locked while it runs."""
    from hparams_jax.train import workdir_lock

    with workdir_lock(args.workdir):
        return _range_test_locked(args)


def _range_test_locked(args) -> int:
    import json

    from hparams_jax import plots
    from hparams_jax.range_test import lr_range_test, range_test_family
    from hparams_jax.train import TrainConfig

    _check_model(args.model)
    config = TrainConfig(model=args.model, dataset=args.dataset, batch_size=args.batch_size,
                         momentum=args.momentum, nesterov=not args.no_nesterov,
                         weight_decay=args.weight_decay, augmentation=args.augmentation,
                         train_examples=args.train_examples, eval_examples=args.eval_examples,
                         seed=args.seed, image_size=args.image_size,
                         data_workers=args.data_workers, progress=False)
    ramp = dict(start=args.start, stop=args.stop, num_steps=args.steps, mode=args.mode,
                eval_every=args.eval_every)
    workdir = Path(args.workdir)
    if args.family:
        param, values = args.family
        family = range_test_family(config, param, values, **ramp)
        (workdir / "range_test.json").write_text(json.dumps(
            {"family": param, "values": [list(x) if isinstance(x, tuple) else x
                                         for x in values],
             "results": [r.to_dict() for r in family.results]}, indent=1))
        plots.plot_family(family.results, workdir / "range_test.png",
                          title=f"LR range tests over {param} ({args.model}, {args.dataset})")
        print(family.text())
        for r in family.results:
            print(f"{r.label}: {r.suggest().text()}")
    else:
        result = lr_range_test(config, **ramp)
        result.label = f"{args.model}, {args.dataset}, weight_decay={args.weight_decay:g}"
        result.save(workdir / "range_test.json")
        plots.plot_range_test(result, workdir / "range_test.png")
        print(result.suggest().text())
    print(f"saved {workdir / 'range_test.json'} and {workdir / 'range_test.png'}")
    return 0


def _diagnose(args) -> int:
    """Reads a run's curves for under- and over-fitting (Smith 2018, Sec. 3)."""
    from hparams_jax import plots
    from hparams_jax.diagnose import diagnose
    from hparams_jax.train import History

    workdir = Path(args.workdir)
    if not (workdir / "metrics.jsonl").exists():
        raise ValueError(f"workdir={str(workdir)!r} has no metrics.jsonl: is it the workdir of "
                         "a training run?")
    history = History.load(workdir)
    for member in range(history.num_members):
        found = diagnose(history, member=member)
        if history.num_members > 1:
            print(f"member {member}:")
        print(found.text())
        name = "diagnosis.png" if history.num_members == 1 else f"diagnosis_{member}.png"
        path = plots.plot_training(history, workdir / name, diagnosis=found, member=member)
        print(f"saved {path}")
    return 0


def _experiment(args) -> int:
    """The paper's grid: list the experiments, run one, or write experiments/RESULTS.md."""
    from hparams_jax import experiment

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
                                       output=args.output)
        print(f"wrote {path}")
        return 0
    _join_cluster(args)
    if not args.name:
        raise ValueError("experiment run needs NAME (see hparams-jax experiment list)")
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
                                         root=args.root, progress=not args.no_progress,
                                         data_workers=args.data_workers)
        accuracy = [m["test_accuracy"] for m in history.summary["members"]
                    if m["test_accuracy"] is not None]
        print(f"    test accuracy {', '.join(f'{a:.4f}' for a in accuracy)}; in "
              f"{experiment.run_dir(args.root, e.name, name, args.scale)}")
    return 0


def _check_model(name: str) -> None:
    from hparams_jax import models

    if name not in models.available():
        raise ValueError(f"--model {name!r} is unknown; available: "
                         f"{', '.join(models.available())}")


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument as one line (no usage block): `hparams-jax train: error: ...`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What `train` and `range-test` share: the network, the data and the optimizer."""
    parser.add_argument("--model", default="lenet", help="network (see models.available())")
    parser.add_argument("--dataset", default="fashion_mnist",
                        help="mnist, fashion_mnist, cifar10, cifar100 (held on the device) "
                             "or imagenet2012 (streamed from prepared tfds files)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="global batch, split over all devices")
    parser.add_argument("--momentum", type=_momentum, default=0.9,
                        help="constant (0.9) or cyclical max:min (0.95:0.85; in a range test "
                             "it falls while the LR rises)")
    parser.add_argument("--no-nesterov", action="store_true", help="heavy-ball momentum")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    parser.add_argument("--augmentation", default=None,
                        help="none, flip, crop_flip (default: the dataset's, as in the paper)")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="use a fixed random subset of the training split")
    parser.add_argument("--seed", type=int, default=0, help="random seed (init, order, noise)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="imagenet2012 only: side of the crops (default 224; 299 for "
                             "inception_resnet_v2)")
    parser.add_argument("--data-workers", type=int, default=0,
                        help="imagenet2012 only: grain worker processes decoding images")


def _add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """What the commands that train full runs share: progress bars and multi-host."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host TPU/GPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hparams-jax",
        description="Smith's disciplined approach to neural-network hyper-parameters "
                    "(1cycle, cyclical momentum, LR range test) in JAX.",
        epilog="exit status: 0 done; 1 a write into the workdir failed (a full disk); 2 bad "
               "arguments, or a workdir another run holds or that cannot be written; 3 training "
               "diverged; 130/143 stopped by SIGINT/SIGTERM after saving the last completed "
               "step (run the same command again to resume).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser(
        "demo", help="range test, then 1cycle vs a constant LR, on Fashion-MNIST",
        description="LeNet on the offline Fashion-MNIST: an LR range test picks the bounds, "
                    "then 1cycle at those bounds and a constant LR at min_lr train for the "
                    "same epochs; prints the comparison and saves the figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--workdir", default="runs/demo", help="where results and figures go")
    demo.add_argument("--epochs", type=float, default=3.0, help="epochs of each training run")
    demo.add_argument("--range-steps", type=int, default=300, help="steps of the range test")
    demo.add_argument("--train-examples", type=int, default=None,
                      help="train on a subset (for a quick look)")
    demo.add_argument("--eval-examples", type=int, default=None,
                      help="evaluate on a subset of the test split")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    train = sub.add_parser(
        "train", help="train a network under a learning-rate policy",
        description="Train one of the paper's networks. Metrics go to WORKDIR/metrics.jsonl, "
                    "the final figures to WORKDIR/summary.json, checkpoints to "
                    "WORKDIR/checkpoints; running the same command again resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_run_arguments(train)
    train.add_argument("--epochs", type=float, default=3.0, help="length of the run in epochs")
    train.add_argument("--steps", type=int, default=None,
                       help="length of the run in optimizer steps (overrides --epochs)")
    train.add_argument("--lr-policy", default="one_cycle",
                       choices=["one_cycle", "triangular", "constant", "piecewise"],
                       help="1cycle, CLR triangle, constant (max-lr), or step decay from max-lr")
    train.add_argument("--min-lr", type=float, default=0.01,
                       help="lower LR bound (1cycle starts and ends its cycle here)")
    train.add_argument("--max-lr", type=float, default=0.1,
                       help="upper LR bound, from an LR range test")
    train.add_argument("--step-size", type=float, default=None,
                       help="steps in half a cycle (default: 45%% of the run for 1cycle)")
    train.add_argument("--runs", type=_positive_int, default=1,
                       help="train this many seeds at once in one program (jax.vmap)")
    train.add_argument("--log-every", type=int, default=50, help="steps between metric rows")
    train.add_argument("--eval-every", type=int, default=None,
                       help="steps between test-set evaluations (default: every epoch)")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help="steps between checkpoints (default: every epoch)")
    train.add_argument("--workdir", default="runs/train", help="output folder")
    _add_launch_arguments(train)
    train.set_defaults(func=_train)

    rt = sub.add_parser(
        "range-test", help="LR range test: find the learning-rate bounds",
        description="Train briefly while the learning rate rises from --start to --stop and "
                    "read where the loss and held-out accuracy stop improving (Smith 2018, "
                    "Sec. 4.1). Writes WORKDIR/range_test.json and WORKDIR/range_test.png and "
                    "prints the suggested min_lr/max_lr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_run_arguments(rt)
    rt.add_argument("--start", type=float, default=0.001, help="first learning rate")
    rt.add_argument("--stop", type=float, default=1.0, help="last learning rate")
    rt.add_argument("--steps", type=int, default=300, help="steps of the ramp")
    rt.add_argument("--mode", choices=["linear", "exp"], default="linear",
                    help="linear ramp (the paper) or exponential (equal ratios)")
    rt.add_argument("--eval-every", type=int, default=None,
                    help="steps between held-out evaluations (default: 20 in the test)")
    rt.add_argument("--eval-examples", type=int, default=1000,
                    help="size of the fixed held-out subset of the test split")
    rt.add_argument("--family", type=_family, default=None,
                    help="repeat for several values: weight_decay=1e-3,1e-4,1e-5 or "
                         "momentum=0.99,0.95,0.9 or batch_size=64,128,256")
    rt.add_argument("--workdir", default="runs/range_test", help="output folder")
    rt.set_defaults(func=_range_test)

    diag = sub.add_parser(
        "diagnose", help="read a run's curves for under/over-fitting",
        description="Print the findings on a finished or running training run (divergence, "
                    "under-fitting, over-fitting, instability, the early horizontal test loss "
                    "of Smith 2018, Sec. 3) and save the annotated plot WORKDIR/diagnosis.png.")
    diag.add_argument("workdir", help="the workdir of a training run")
    diag.set_defaults(func=_diagnose)

    exp = sub.add_parser(
        "experiment", help="the paper's experiment grid: list, run, report",
        description="list: the experiments of the grid (experiments/configs/*.py) and their "
                    "settings. run NAME: train its settings (or --setting S ...), --runs seeds "
                    "of each in one program, into ROOT/NAME/SETTING (SETTING@scaleS when "
                    "--scale < 1). report: aggregate every finished run into "
                    "experiments/RESULTS.md beside the paper's numbers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    exp.add_argument("action", choices=["list", "run", "report"])
    exp.add_argument("name", nargs="?", help="experiment to run (see list)")
    exp.add_argument("--setting", action="append", default=None,
                     help="run only this setting (repeatable; default: all range tests, "
                          "then all settings)")
    exp.add_argument("--range-test", action="append", default=None,
                     help="run only this LR range test of the experiment (repeatable)")
    exp.add_argument("--runs", type=_positive_int, default=None,
                     help="seeds per setting, trained together (default: the setting's own, "
                          "4 unless its config says otherwise)")
    exp.add_argument("--scale", type=float, default=1.0,
                     help="multiply every setting's length by this (0, 1] for a quick check; "
                          "recorded, and reported as a scaled run")
    exp.add_argument("--root", default=None,
                     help="where runs are written and read (default: experiments/records, the "
                          "committed records; a finished setting there is not trained again)")
    exp.add_argument("--output", default="experiments/RESULTS.md", help="report file")
    exp.add_argument("--configs", default=None,
                     help="folder of experiment configs (default: the repository's "
                          "experiments/configs)")
    exp.add_argument("--data-workers", type=int, default=0,
                     help="ImageNet rows: grain worker processes decoding images")
    _add_launch_arguments(exp)
    exp.set_defaults(func=_experiment)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hparams_jax.data import DatasetUnavailableError
    from hparams_jax.train import (DivergenceError, TrainingInterrupted, WorkdirLocked,
                                   WorkdirWriteError)

    try:
        return args.func(args)
    except (ValueError, DatasetUnavailableError, WorkdirLocked) as err:
        print(f"hparams-jax: error: {err}", file=sys.stderr)
        return 2
    except DivergenceError as err:
        print(f"hparams-jax: {err}", file=sys.stderr)
        return 3
    except WorkdirWriteError as err:
        print(f"hparams-jax: error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:  # SIGINT/SIGTERM during training: 130/143
        print(f"hparams-jax: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("hparams-jax: interrupted", file=sys.stderr)
        return 130
