"""The tables of LR policies and optimizers (`train.policies`): every entry builds, the config's
choices and help and the command line's exclusions come from them, and a field of a policy or
optimizer the config does not use is refused where a run keeps its policy."""

import jax.numpy as jnp
import numpy as np
import pytest

from hparams_jax import ConfigError, cli, options
from hparams_jax.train import TrainConfig, policies
from hparams_jax.train.optimizer import learning_rate, make_optimizer, member_hparams, momentum


def test_the_config_choices_and_help_come_from_the_tables():
    fields = options.fields()
    assert fields["lr_policy"].metadata["choices"] == tuple(policies.LR_POLICIES)
    assert fields["optimizer"].metadata["choices"] == tuple(policies.OPTIMIZERS)
    for name, table in (("lr_policy", policies.LR_POLICIES), ("optimizer", policies.OPTIMIZERS)):
        for entry in table.values():
            assert f"{entry.name} ({entry.help})" in fields[name].metadata["help"]
            assert set(entry.fields) <= set(fields)


def test_the_command_lines_exclusions_are_the_policy_fields():
    assert cli.RANGE_TEST_EXCLUDED == (
        "epochs", "steps", "lr_policy", "min_lr", "max_lr", "step_size", "final_lr", "anneal",
        "piecewise_boundaries", "piecewise_gamma", "inv_gamma", "inv_power", "range_mode",
        "warmup_fraction", "decay_fraction", "wsd_decay", "members", "log_every", "eval_every",
        "checkpoint_every", "keep_checkpoints", "workdir", "progress")
    assert cli.TUNE_EXCLUDED == (  # tune's final run may be cosine or wsd (--final-policy)
        "lr_policy", "min_lr", "max_lr", "piecewise_boundaries", "piecewise_gamma", "inv_gamma",
        "inv_power", "range_mode", "members", "workdir")


@pytest.mark.parametrize("policy", list(policies.LR_POLICIES))
@pytest.mark.parametrize("optimizer", list(policies.OPTIMIZERS))
def test_every_policy_and_optimizer_builds_and_updates(policy, optimizer):
    # schedule-free's and Prodigy's beta1 is a constant; Prodigy takes no warmup from 0
    cyclical = optimizer in ("sgd", "adamw")
    config = TrainConfig(lr_policy=policy, optimizer=optimizer,
                         momentum=(0.95, 0.85) if cyclical else 0.95, min_lr=0.01, max_lr=0.1,
                         warmup_fraction=0.0 if optimizer == "prodigy" else 0.05)
    hp = {k: v[0] for k, v in member_hparams(config).items()}
    lr, mom = learning_rate(config, hp, 100), momentum(config, hp, 100)
    values = np.array([float(lr(t)) for t in (0, 25, 50, 99, 500)])
    assert np.all(np.isfinite(values)) and np.all(values >= 0) and values.max() <= 0.1 + 1e-7
    if policies.LR_POLICIES[policy].momentum is None or not cyclical:  # held at its max
        assert float(mom) == pytest.approx(0.95)
    else:  # falls from its max while the LR rises (Sec. 4.3)
        assert float(mom(0)) == pytest.approx(0.95)
        assert min(float(mom(t)) for t in range(100)) == pytest.approx(0.85, abs=5e-3)
    opt = make_optimizer(config, hp, 100)
    params = {"w": jnp.ones(3)}
    updates, _ = opt.update({"w": jnp.ones(3)}, opt.init(params), params)
    assert np.all(np.isfinite(np.asarray(updates["w"])))


@pytest.mark.parametrize("changes, message", [
    (dict(inv_gamma=1e-3), "inv_gamma=0.001 only applies to lr_policy inv; this config's "
                           "lr_policy is 'one_cycle'"),
    (dict(lr_policy="inv", step_size=10), "step_size=10 only applies to lr_policy one_cycle or "
                                          "triangular"),
    (dict(adam_b2=0.99), "adam_b2=0.99 only applies to optimizer adamw"),
    (dict(optimizer="adamw", momentum_form="caffe"), "momentum_form='caffe' only applies to "
                                                     "optimizer sgd"),
    (dict(optimizer="adamw", nesterov=False), "(leave nesterov at its default, True)"),
])
def test_a_field_the_policy_or_optimizer_does_not_read_is_refused(changes, message):
    config = TrainConfig(**changes)  # the config itself takes it: tune and range tests do
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        policies.check_fields_apply(config)


def test_fields_that_apply_or_keep_their_defaults_pass():
    for config in (TrainConfig(), TrainConfig(optimizer="adamw", adam_b2=0.99),
                   TrainConfig(lr_policy="inv", inv_gamma=1e-3, nesterov=False,
                               momentum_form="caffe", decoupled_weight_decay=True),
                   TrainConfig(lr_policy="piecewise", piecewise_gamma=0.2, min_lr=0.0)):
        policies.check_fields_apply(config)
    # a range test or tune keeps the policy's fields of the config it starts from
    policies.check_fields_apply(TrainConfig(lr_policy="range_test", step_size=10),
                                lr_policy=False)


def test_the_command_line_refuses_an_unread_field_before_anything_is_written(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli.main(["train", "--inv-gamma", "0.001", "--workdir", str(workdir)]) == 2
    assert "inv_gamma=0.001 only applies to lr_policy inv" in capsys.readouterr().err
    assert cli.main(["tune", "--adam-b2", "0.99", "--workdir", str(workdir)]) == 2
    assert "adam_b2=0.99 only applies to optimizer adamw" in capsys.readouterr().err
    assert not workdir.exists()
