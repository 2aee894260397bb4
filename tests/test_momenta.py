"""A momentum setting held one way (`hparams_jax.momenta`): read from every form a user writes,
refused with the argument, the value and what is allowed, written as the paper writes it."""

import pytest

from hparams_jax import ConfigError, momenta
from hparams_jax.train import TrainConfig


@pytest.mark.parametrize("value, expected", [
    ("0.9", 0.9), (0.9, 0.9), (0, 0.0), ("0.95:0.85", (0.95, 0.85)),
    ("0.95-0.85", (0.95, 0.85)), ("0.95,0.85", (0.95, 0.85)), (" 0.95 - 0.85 ", (0.95, 0.85)),
    ("[0.95, 0.85]", (0.95, 0.85)), ([0.95, 0.85], (0.95, 0.85)), ((0.95, 0.85), (0.95, 0.85)),
    ("9.5e-1-8.5e-1", (0.95, 0.85)), ("1e-3", 0.001),
])
def test_every_written_form_reads_as_a_float_or_a_max_min_tuple(value, expected):
    read = momenta.parse(value)
    assert read == expected and type(read) is type(expected)
    assert momenta.parse(momenta.format(read)) == read  # the written form reads back


@pytest.mark.parametrize("value, message", [
    ("0.9:0.8:0.7", "momentum='0.9:0.8:0.7' is not allowed: momentum must be a number in"),
    ("fast", "momentum='fast' is not allowed"),
    ("1.2", r"momentum=1.2 is not allowed: momentum must be in \[0, 1\)"),
    ("-0.5", "momentum=-0.5 is not allowed"),
    ("0.85:0.95", "momentum min=0.95 is above momentum max=0.85"),
    ((0.9,), r"momentum=\(0.9,\) is not allowed: momentum must be a float or a \(max, min\)"),
    (True, "momentum=True is not allowed"),
    (None, "momentum=None is not allowed"),
])
def test_a_bad_momentum_names_the_value_and_what_is_allowed(value, message):
    with pytest.raises(ConfigError, match=message):
        momenta.parse(value)
    with pytest.raises(ConfigError, match="betas='x'"):
        momenta.parse("x", name="betas")


def test_bounds_and_the_written_form():
    assert momenta.bounds(0.9) == (0.9, 0.9) and momenta.bounds((0.95, 0.85)) == (0.95, 0.85)
    assert momenta.format((0.95, 0.85)) == "0.95-0.85" and momenta.format(0.9) == "0.9"
    assert momenta.is_cyclical((0.95, 0.85)) and not momenta.is_cyclical(0.9)


def test_a_config_holds_its_and_its_members_momenta_as_tuples():
    """A pair read back from JSON (a list), the config's or a sweep member's, is the same
    cyclical setting as the tuple it was written from."""
    config = TrainConfig(momentum=[0.95, 0.85], members=[{"momentum": [0.95, 0.8]},
                                                         {"momentum": (0.9, 0.85)}])
    assert config.momentum == (0.95, 0.85)
    assert [m["momentum"] for m in config.members] == [(0.95, 0.8), (0.9, 0.85)]
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert [s.momentum_bounds for s in config.members_or_self()] == [(0.95, 0.8), (0.9, 0.85)]
