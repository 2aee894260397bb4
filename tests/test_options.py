"""TrainConfig's fields as command-line options: every field settable and round-tripping, config
files and `--set` with their precedence, the spellings the command line had before, the help.
Parse-only: nothing trains here."""

import collections.abc
import dataclasses
import json
import re
import types
import typing

import pytest

from hparams_jax import ConfigError, cli, options
from hparams_jax.train import TrainConfig
from hparams_jax.train.config import EXECUTION_FIELDS

FIELDS = dataclasses.fields(TrainConfig)
TYPES = typing.get_type_hints(TrainConfig)
# Values the type alone does not give: a sweep member may set only some fields.
# Each value must be valid alone and with all the others: the batch divides into the micro-batches,
# 1cycle's final LR lies below min_lr.
SPECIAL = {"members": ({"seed": 5}, {"seed": 6, "max_lr": 0.3}), "momentum": (0.95, 0.85),
           "batch_size": 256, "accumulate_steps": 2, "adam_b2": 0.99, "final_lr": 1e-5}


def other_value(f: dataclasses.Field):
    """A valid value of field `f` that differs from its default (from its type)."""
    if f.name in SPECIAL:
        return SPECIAL[f.name]
    default = getattr(TrainConfig(), f.name)
    if f.metadata.get("choices"):
        return next(c for c in f.metadata["choices"] if c != default)
    tp = TYPES[f.name]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None, X | tuple: X
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp)
    if tp is bool:
        return not default
    if tp is int:
        return 2 if default is None else default + 1
    if tp is float:
        return 0.5 if default is None else default * 2
    if tp is str:
        return "elsewhere" if default is None else default + "_x"
    if origin is tuple:
        return (0.25,)
    if origin is collections.abc.Mapping:
        return {"in_channels": 1, "input_size": 28}
    raise AssertionError(f"no test value for field {f.name} of type {tp!r}: add one here")


def as_text(value) -> str:
    if isinstance(value, tuple) and all(isinstance(x, (int, float)) for x in value):
        return ",".join(map(str, value))
    if isinstance(value, (dict, tuple)):
        return json.dumps(value)
    return str(value)


def as_args(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    return [flag, as_text(value)]


def parse(argv: list[str]) -> TrainConfig:
    """The TrainConfig of a `train` command line (parsed, not run)."""
    args = cli.build_parser().parse_args(["train", *argv])
    return options.config_from(args, cli._train_defaults(), options.fields())


TRAIN_DEFAULTS = TrainConfig(workdir="runs/train")
VALUES = {f.name: other_value(f) for f in FIELDS}


def test_every_field_has_a_one_line_help():
    for f in FIELDS:
        text = f.metadata.get("help")
        assert text and "\n" not in text, f"TrainConfig.{f.name} needs _field(..., help)"


def test_every_field_is_an_option_and_round_trips():
    expected = TRAIN_DEFAULTS.replace(**VALUES)
    for name, value in VALUES.items():
        assert getattr(expected, name) != getattr(TRAIN_DEFAULTS, name), name
    argv = [a for name, value in VALUES.items() for a in as_args(name, value)]
    assert parse(argv) == expected


@pytest.mark.parametrize("name", [f.name for f in FIELDS])
def test_every_field_is_settable_with_set(name):
    value = VALUES[name]
    config = parse(["--set", f"{name}={as_text(value)}"])
    assert config == TRAIN_DEFAULTS.replace(**{name: value})


def test_help_lists_every_field_with_its_default_and_doc(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in FIELDS:
        flag = "--" + f.name.replace("_", "-")
        default = options._show(getattr(TRAIN_DEFAULTS, f.name))
        doc = " ".join(f.metadata["help"].split())
        # the option's entry: the flag (and its --no- form), the metavar, the doc, the default
        entry = (rf" {re.escape(flag)}(, --no-{re.escape(flag[2:])})?( \S+)? {re.escape(doc)} "
                 rf"\(default: {re.escape(default)}\)")
        assert re.search(entry, text), f.name
    for name in ("--config FILE", "--set FIELD=VALUE", "--runs N"):
        assert name in text


def test_values_are_read_by_the_fields_type():
    config = parse(["--momentum", "0.95:0.85", "--augmentation", "none", "--eval-every", "None",
                    "--piecewise-boundaries", "[0.3, 0.6]", "--final-lr", "null",
                    "--model-options", '{"in_channels": 1}', "--no-nesterov"])
    assert config.momentum == (0.95, 0.85) and config.augmentation == "none"
    assert config.eval_every is None and config.final_lr is None
    assert config.piecewise_boundaries == (0.3, 0.6)
    assert config.model_options == {"in_channels": 1} and config.nesterov is False
    assert parse(["--momentum", "0.95,0.85"]).momentum == (0.95, 0.85)
    assert parse(["--augmentation", "None"]).augmentation is None
    assert parse(["--set", "nesterov=false", "--set", "progress=yes"]).nesterov is False


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "1.5"], "batch_size='1.5' is not allowed: batch_size must be an integer"),
    (["--momentum", "0.9:0.8:0.7"], "momentum='0.9:0.8:0.7' is not allowed"),
    (["--lr-policy", "cosine_restarts"], "lr_policy must be one of one_cycle, triangular"),
    (["--model-options", "[1]"], "model_options must be a JSON object"),
    (["--steps", "none"], "steps must be an integer or None"),
])
def test_a_bad_option_value_is_one_line_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["train", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"argument {argv[0]}:" in err and message in err


def test_config_files_then_options_then_set(tmp_path):
    py = tmp_path / "lenet.py"
    py.write_text("from hparams_jax.train import TrainConfig\n"
                  "config = TrainConfig(max_lr=0.3, min_lr=0.03, momentum=(0.95, 0.8), "
                  "workdir='runs/py')\n")
    config = parse(["--config", str(py)])
    assert (config.max_lr, config.min_lr, config.momentum, config.workdir) == (
        0.3, 0.03, (0.95, 0.8), "runs/py")
    # the options given override the file, and each --set overrides both, the last one winning
    config = parse(["--set", "max_lr=0.5", "--config", str(py), "--max-lr", "0.4",
                    "--min-lr", "0.02", "--set", "max_lr=0.6"])
    assert (config.max_lr, config.min_lr, config.momentum) == (0.6, 0.02, (0.95, 0.8))
    (tmp_path / "upper.py").write_text("from hparams_jax.train import TrainConfig\n"
                                       "CONFIG = TrainConfig(seed=7)\n")
    assert parse(["--config", str(tmp_path / "upper.py")]).seed == 7

    # JSON: a partial object over the command's defaults, or a whole run's config.json
    js = tmp_path / "partial.json"
    js.write_text(json.dumps({"max_lr": 0.2, "momentum": [0.95, 0.85]}))
    config = parse(["--config", str(js), "--seed", "3"])
    assert config == TRAIN_DEFAULTS.replace(max_lr=0.2, momentum=(0.95, 0.85), seed=3)
    whole = TRAIN_DEFAULTS.replace(**VALUES)
    js.write_text(json.dumps(whole.to_dict()))
    assert parse(["--config", str(js)]) == whole


@pytest.mark.parametrize("content, suffix, message", [
    (None, ".py", "no such file"),
    ("x = 1\n", ".py", "defines no TrainConfig named config or CONFIG"),
    ("[1, 2]", ".json", "must be a JSON object of TrainConfig fields"),
    ("{max_lr: 1}", ".json", "is not JSON"),
    ('{"max_lrr": 1}', ".json", "unknown TrainConfig fields ['max_lrr']"),
    ("max_lr: 1", ".yaml", "a config file is a .py or a .json file"),
])
def test_bad_config_files_are_config_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"config{suffix}"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(["--config", str(path)])


def test_set_names_a_known_field_and_a_valid_value():
    with pytest.raises(ConfigError, match="'max_lrr' is not a field this command sets"):
        parse(["--set", "max_lrr=0.1"])
    with pytest.raises(ConfigError, match="expected FIELD=VALUE"):
        parse(["--set", "max_lr"])
    with pytest.raises(ConfigError, match="seed='x' is not allowed: seed must be an integer"):
        parse(["--set", "seed=x"])
    with pytest.raises(ConfigError, match="batch_size=0 is not allowed"):
        parse(["--set", "batch_size=0"])  # TrainConfig's own validation


def test_the_spellings_the_command_line_always_had():
    config = parse(["--model", "cifar3", "--dataset", "mnist", "--batch-size", "32",
                    "--momentum", "0.95:0.85", "--no-nesterov", "--weight-decay", "1e-4",
                    "--augmentation", "flip", "--train-examples", "512", "--seed", "3",
                    "--image-size", "64", "--data-workers", "2", "--epochs", "5",
                    "--steps", "16", "--lr-policy", "triangular", "--min-lr", "0.003",
                    "--max-lr", "0.03", "--step-size", "4", "--log-every", "4",
                    "--eval-every", "8", "--checkpoint-every", "8", "--workdir", "runs/x",
                    "--no-progress"])
    assert config == TrainConfig(
        model="cifar3", dataset="mnist", batch_size=32, momentum=(0.95, 0.85), nesterov=False,
        weight_decay=1e-4, augmentation="flip", train_examples=512, seed=3, image_size=64,
        data_workers=2, epochs=5.0, steps=16, lr_policy="triangular", min_lr=0.003,
        max_lr=0.03, step_size=4.0, log_every=4, eval_every=8, checkpoint_every=8,
        workdir="runs/x", progress=False)
    args = cli.build_parser().parse_args(["train", "--runs", "4", "--distributed"])
    assert args.runs == 4 and args.distributed

    args = cli.build_parser().parse_args([
        "range-test", "--model", "lenet", "--batch-size", "32", "--start", "0.001", "--stop",
        "0.2", "--steps", "20", "--mode", "exp", "--eval-every", "5", "--eval-examples", "128",
        "--family", "momentum=0.9,0.95:0.85", "--momentum", "0.95:0.85", "--no-nesterov",
        "--workdir", "runs/rt"])
    assert (args.start, args.stop, args.steps, args.mode, args.eval_every, args.workdir) == (
        0.001, 0.2, 20, "exp", 5, "runs/rt")
    assert args.family == ("momentum", [0.9, (0.95, 0.85)])
    config = options.config_from(args, cli._range_test_defaults(), cli._range_test_fields())
    assert config == TrainConfig(batch_size=32, eval_examples=128, momentum=(0.95, 0.85),
                                 nesterov=False, progress=False)
    assert config.steps is None  # --steps is the ramp's length, not TrainConfig.steps

    args = cli.build_parser().parse_args([
        "experiment", "run", "tiny", "--setting", "a", "--setting", "b", "--runs", "2",
        "--scale", "0.5", "--root", "r", "--configs", "c", "--no-progress",
        "--data-workers", "3", "--distributed"])
    assert (args.name, args.setting, args.runs, args.scale, args.progress, args.data_workers,
            args.distributed) == ("tiny", ["a", "b"], 2, 0.5, False, 3, True)


def test_range_test_options_leave_out_what_the_ramp_replaces(capsys):
    fields = cli._range_test_fields()
    assert fields == [f.name for f in FIELDS if f.name not in cli.RANGE_TEST_EXCLUDED]
    assert {"model", "momentum", "weight_decay", "batch_size", "eval_examples"} <= set(fields)
    with pytest.raises(SystemExit):
        cli.main(["range-test", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--lr-policy" not in help_text and "--max-lr" not in help_text
    assert "not options here" in help_text and "lr_policy" in help_text
    args = cli.build_parser().parse_args(["range-test", "--set", "lr_policy=constant"])
    with pytest.raises(ConfigError, match="'lr_policy' is not a field this command sets"):
        options.config_from(args, cli._range_test_defaults(), fields)


def test_experiment_run_takes_the_execution_fields_only(capsys):
    assert {"data_workers", "progress"} <= set(EXECUTION_FIELDS)  # --data-workers, --no-progress
    defining = {"model", "dataset", "batch_size", "epochs", "steps", "lr_policy", "min_lr",
                "max_lr", "momentum", "weight_decay", "seed", "members", "workdir"}
    assert not defining & set(EXECUTION_FIELDS)
    with pytest.raises(SystemExit):
        cli.main(["experiment", "--help"])
    help_text = capsys.readouterr().out
    for name in EXECUTION_FIELDS:
        assert "--" + name.replace("_", "-") in help_text
    assert "--max-lr" not in help_text
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["experiment", "run", "x", "--max-lr", "0.1"])
    assert exit_.value.code == 2


def test_runs_must_be_positive_and_not_given_with_members(tmp_path):
    assert cli.main(["train", "--runs", "0", "--workdir", str(tmp_path)]) == 2
    assert cli.main(["train", "--runs", "2", "--members", '[{"seed": 1}]',
                     "--workdir", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # refused before anything was written
