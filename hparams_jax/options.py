"""`TrainConfig`'s fields as command-line options, config files and `--set` overrides.

Every option comes from `dataclasses.fields(TrainConfig)`: its name (`--batch-size` for
`batch_size`), its type (how the text is read), its default and its `help` and `choices`
metadata (see `hparams_jax.train.config`). A bool field is a `--x/--no-x` pair; the others take
one value, read by the field's type:

- numbers and strings as written; a string with `choices` must be one of them;
- `None` or `null` for an optional field (`--eval-every None`; `none` stays a string, as in
  `--augmentation none`);
- tuples as values separated by commas or colons (`--piecewise-boundaries 0.5,0.75`) or as a
  JSON list;
- a field with its own reader (`parse` in its metadata) by that reader: `--momentum 0.9`, or a
  cyclical pair `0.95:0.85`, `0.95-0.85` or `0.95,0.85` (`hparams_jax.momenta.parse`);
- mappings (and tuples of them) as JSON (`--model cifar3 --model-options
  '{"in_channels": 1}'`).

A command's configuration is built in this order, later wins: its defaults, `--config FILE` (a
Python file that defines a `TrainConfig` named `config` or `CONFIG`, or a JSON object of fields
such as a run's `config.json`), the options given, then each `--set FIELD=VALUE` in turn (the
big_vision style; any field the command accepts, read as above).

Written on argparse rather than with tyro or ml_collections.config_flags: tyro builds its own
parser (subcommands as dataclass unions) and would change spellings the command line keeps
(`--momentum 0.95:0.85` for a `float | tuple` field, `--runs`, range-test's `--steps`), and
config_flags defines global absl flags spelled `--config.field=value`, outside argparse's
subcommands; deriving the options from the dataclass fields takes about as much code as
adapting either.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hparams_jax import _files
from hparams_jax.errors import ConfigError
from hparams_jax.train import policies
from hparams_jax.train.config import TrainConfig

NONE = ("None", "null")  # how an optional field is set to None


@functools.cache
def fields() -> dict[str, dataclasses.Field]:
    """`TrainConfig`'s fields by name, in declaration order."""
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


@functools.cache
def _types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def fields_among(names: Iterable[str]) -> tuple[str, ...]:
    """The `TrainConfig` fields among `names`, in the order of their declaration."""
    names = set(names)
    return tuple(name for name in fields() if name in names)


# The LR policy and every field of one (`train.policies`).
LR_FIELDS = ("lr_policy", *policies.LR_BOUNDS, *policies.fields_of(policies.LR_POLICIES))
# Fields that are no `range-test` options: the ramp replaces the LR policy, its bounds and the
# run's length, its own --eval-every and --workdir replace theirs, and a range test trains one
# setting (--family varies one) without checkpoints or progress bars.
RANGE_TEST_EXCLUDED = fields_among({*LR_FIELDS, "epochs", "steps", "members", "log_every",
                                    "eval_every", "checkpoint_every", "keep_checkpoints",
                                    "workdir", "progress"})
# Fields that are no `tune` options: tune sets the LR policy (1cycle, or its --final-policy)
# and its bounds, so the other policies' fields do not apply; it runs one setting, and takes the
# workdir as its own --workdir.
TUNE_EXCLUDED = fields_among(
    {*(f for f in LR_FIELDS if not any(f in policies.LR_POLICIES[p].fields
                                       for p in policies.FINAL_POLICIES)), "members", "workdir"})


def flag(name: str) -> str:
    """The option of field `name`: `--batch-size` for `batch_size`."""
    return "--" + name.replace("_", "-")


def parse_value(name: str, text: str) -> Any:
    """Field `name`'s value written as `text` (read by the field's type, see the module
    docstring); `ConfigError` when the field is unknown or the text is not such a value."""
    if name not in fields():
        raise ConfigError(f"{name!r} is not a TrainConfig field; the fields are "
                          f"{', '.join(fields())}.")
    tp, choices = _types()[name], fields()[name].metadata.get("choices")
    read = fields()[name].metadata.get("parse")
    if read is not None:
        return read(text, name)  # a ConfigError names the field
    try:
        return _parse(tp, text, choices)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not allowed: {name} must be "
                          f"{_describe(tp, choices)}.") from None


def _union_members(tp) -> tuple | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _is_mapping(tp) -> bool:
    return tp is dict or typing.get_origin(tp) in (dict, collections.abc.Mapping)


def _parse(tp, text: str, choices: Sequence[str] | None = None) -> Any:
    """`text` read as a value of type `tp`; ValueError when it is not one."""
    members = _union_members(tp)
    if members is not None:
        if type(None) in members and text in NONE:
            return None
        for member in members:
            if member is type(None):
                continue
            try:
                return _parse(member, text, choices)
            except ValueError:
                pass
        raise ValueError(text)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        return words[text.lower()] if text.lower() in words else _fail(text)
    if tp is int or tp is float:
        return tp(text)
    if tp is str or origin is typing.Literal:
        allowed = choices or args
        return text if not allowed or text in allowed else _fail(text)
    if origin is tuple:
        items = _split(text)
        kinds = [args[0]] * len(items) if args[-1:] == (Ellipsis,) else list(args)
        if len(kinds) != len(items):
            raise ValueError(text)
        return tuple(_parse(kind, item) for kind, item in zip(kinds, items))
    if _is_mapping(tp):
        value = json.loads(text)
        return value if isinstance(value, dict) else _fail(text)
    if tp is Any:
        try:
            return json.loads(text)
        except ValueError:
            return text
    raise TypeError(f"TrainConfig fields of type {tp!r} have no command-line form: add one to "
                    "hparams_jax.options")


def _fail(text: str):
    raise ValueError(text)


def _split(text: str) -> list[str]:
    """A tuple's items: a JSON list (items back as JSON text), or text split on commas (on
    colons when there is no comma)."""
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(text)
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    if not text:
        return []
    return [item.strip() for item in text.split("," if "," in text else ":")]


def _describe(tp, choices: Sequence[str] | None = None) -> str:
    """What a value of type `tp` looks like, for error messages."""
    members = _union_members(tp)
    if members is not None:
        return " or ".join("None" if m is type(None) else _describe(m, choices)
                           for m in members)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str or origin is typing.Literal:
        allowed = choices or args
        return "one of " + ", ".join(map(str, allowed)) if allowed else "a string"
    if origin is tuple:
        if args[-1:] == (Ellipsis,):
            return f"a list of ({_describe(args[0])}) separated by commas, or a JSON list"
        return f"{len(args)} values ({', '.join(_describe(a) for a in args)}) separated by " \
               "commas or colons"
    if _is_mapping(tp):
        return "a JSON object"
    if tp is Any:
        return "a JSON value or a string"
    raise TypeError(f"TrainConfig fields of type {tp!r} have no command-line form: add one to "
                    "hparams_jax.options")


def _metavar(tp, choices: Sequence[str] | None = None) -> str:
    members = _union_members(tp)
    if members is not None:
        return "|".join("None" if m is type(None) else _metavar(m, choices) for m in members)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is str or origin is typing.Literal:
        allowed = choices or args
        return "{" + ",".join(map(str, allowed)) + "}" if allowed else "STR"
    if origin is tuple:
        if _is_mapping(args[0]):
            return "JSON"
        if args[-1:] == (Ellipsis,):
            return f"{_metavar(args[0])},..."
        return ",".join(_metavar(a) for a in args)
    if _is_mapping(tp) or tp is Any:
        return "JSON"
    return tp.__name__.upper()


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return json.dumps(value) if any(isinstance(v, dict) for v in value) else \
            ",".join(map(str, value)) or "()"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def add_options(parser: argparse.ArgumentParser, defaults: TrainConfig,
                names: Iterable[str], *, title: str = "training configuration") -> None:
    """One option per field in `names` (see the module docstring), its help ending with the
    default in `defaults`. An option left out of the command line is absent from the parsed
    namespace, so `config_from` can tell it from a default."""
    group = parser.add_argument_group(title)
    for name in names:
        f, tp = fields()[name], _types()[name]
        choices = f.metadata.get("choices")
        text = f.metadata.get("help", "")
        text = f"{text} (default: {_show(getattr(defaults, name))})".strip()
        text = text.replace("%", "%%")  # argparse formats help with %
        if tp is bool:
            group.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
            continue
        _describe(tp, choices)  # a type without a command-line form fails here, not later
        group.add_argument(flag(name), dest=name, type=_converter(name),
                           default=argparse.SUPPRESS, metavar=_metavar(tp, choices), help=text)


def _converter(name: str):
    def convert(text: str):
        try:
            return parse_value(name, text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = name
    return convert


def list_option(flag: str, read: Callable[[str], Any], items: str) -> Callable[[str], list]:
    """The reader of option `flag`'s comma-separated list, each item read by `read` (a
    ValueError when it is not one); argparse reports a bad item as one line naming the option
    and what the `items` are."""
    def convert(text: str) -> list:
        try:
            return [read(x.strip()) for x in text.split(",")] if text.strip() else []
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} {text!r}: expected a comma-separated list of {items}") from None

    return convert


def family(text: str) -> tuple[str, list]:
    """`--family`'s value, a field of `range_test.FAMILY_PARAMS` and its values, as (field,
    values): `weight_decay=1e-3,1e-4`, `momentum=0.9,0.95:0.85` or `batch_size=64,128`."""
    from hparams_jax.range_test import FAMILY_PARAMS

    name, _, values = text.partition("=")
    if name not in FAMILY_PARAMS or not values:
        raise argparse.ArgumentTypeError(
            f"--family {text!r}: expected weight_decay=V1,V2,..., momentum=V1,V2,... (a value "
            "may be max:min) or batch_size=B1,B2,...")
    try:
        return name, [parse_value(name, x) for x in values.split(",")]
    except ConfigError as err:
        raise argparse.ArgumentTypeError(f"--family {text!r}: {err}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` and repeated `--set FIELD=VALUE` (read by `config_from`)."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="start from this config: a Python file defining a TrainConfig "
                             "named config (or CONFIG), or a JSON object of fields such as a "
                             "run's config.json; the options given override it")
    parser.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[],
                        dest="overrides",
                        help="set a field, after the other options (repeatable; values as "
                             "the options read them, e.g. --set momentum=0.95,0.85, or --set "
                             "model=cifar3 --set model_options='{\"in_channels\": 1, "
                             "\"input_size\": 28}' for the 3-layer CIFAR net on MNIST-shaped "
                             "images; a keyword the network does not take is refused)")


def load_config(path: str | Path, defaults: TrainConfig | None = None) -> TrainConfig:
    """The `TrainConfig` of a config file: a Python file's `config` (or `CONFIG`), or a JSON
    object of fields applied over `defaults` (TrainConfig's own when None). A file that cannot
    be read (a folder, a syntax error, an error raised while it runs, JSON that does not parse)
    is an `UnreadableFileError` naming it (and the line, for Python)."""
    path = Path(path)
    _files.read_text(path, "--config ")  # a folder, a missing or unreadable file: named so
    if path.suffix == ".json":
        values = _files.read_json(path, "--config ", "a JSON object of TrainConfig fields")
        return TrainConfig.from_dict({**dataclasses.asdict(defaults or TrainConfig()),
                                      **values})
    if path.suffix != ".py":
        raise ConfigError(f"--config {str(path)!r}: a config file is a .py or a .json file.")
    namespace = _files.run_python(path, "--config ")
    config = namespace.get("config", namespace.get("CONFIG"))
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"--config {str(path)!r} defines no TrainConfig named config or "
                          f"CONFIG (found {type(config).__name__}).")
    return config


def parse_assignment(text: str, names: Iterable[str]) -> tuple[str, Any]:
    """`FIELD=VALUE` of `--set` as (field, value), for a field among `names`."""
    name, sep, value = text.partition("=")
    names = list(names)
    name = name.strip().replace("-", "_")
    if not sep or name not in names:
        unknown = "" if not sep else f"{name!r} is not a field this command sets; "
        raise ConfigError(f"--set {text!r}: {unknown}expected FIELD=VALUE with FIELD one of "
                          f"{', '.join(names)}.")
    return name, parse_value(name, value)


def config_from(args: argparse.Namespace, defaults: TrainConfig,
                names: Iterable[str]) -> TrainConfig:
    """The configuration of a parsed command: `defaults`, then `args.config` (when the command
    has `--config`), the options of `names` given, and each `--set` (among `names`)."""
    names = list(names)
    path = getattr(args, "config", None)
    config = load_config(path, defaults) if path else defaults
    changes = {name: getattr(args, name) for name in names if hasattr(args, name)}
    for text in getattr(args, "overrides", []):
        name, value = parse_assignment(text, names)
        changes[name] = value
    return config.replace(**changes)
