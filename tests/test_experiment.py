"""The experiment grid: every config loads and builds (network, data spec, optimizer) without
training; scaling and runs; the runner and the report end to end on a tiny experiment."""

import functools
import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import held_by_another_process

from hparams_jax import ConfigError, data, experiment, models
from hparams_jax.cli import main
from hparams_jax.experiment import Experiment, PaperResult, Setting, spec
from hparams_jax.experiment.records import Run, epochs_to_reach
from hparams_jax.experiment.spec import steps_per_epoch
from hparams_jax.train import History, TrainConfig
from hparams_jax.train.optimizer import learning_rate, make_optimizer, member_hparams

GRID = experiment.load_all()
CASES = [(e, s) for e in GRID.values() for s in e.setting_names]


def test_grid_covers_the_papers_networks_and_datasets():
    pairs = {(e.config.model, e.config.dataset) for e in GRID.values()}
    for pair in [("lenet", "mnist"), ("lenet", "fashion_mnist"), ("cifar3", "fashion_mnist"),
                 ("cifar3", "cifar10"), ("resnet56", "cifar10"), ("wide_resnet32_4", "cifar10"),
                 ("densenet40", "cifar10"), ("cifar3", "cifar100"), ("resnet56", "cifar100"),
                 ("resnet50", "imagenet2012"), ("inception_resnet_v2", "imagenet2012")]:
        assert pair in pairs, pair
    for e in GRID.values():
        assert e.baseline in e.setting_names
        assert any(s.name.startswith("one_cycle") for s in e.settings), e.name


@functools.cache
def abstract_network(name, num_classes, options, size, channels):
    """Traced once per network: (logits, params, weight-decay and LR multipliers) shapes."""
    def build(x):
        model = models.create(name, num_classes=num_classes, rngs=nnx.Rngs(0), **dict(options))
        assert model.INPUT_CHANNELS == channels, "the network must take the dataset's channels"
        return (model(x), nnx.state(model, nnx.Param), model.weight_decay_multipliers(),
                model.lr_multipliers())

    return jax.eval_shape(build, jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32))


@pytest.mark.parametrize("exp, setting", CASES, ids=[f"{e.name}/{s}" for e, s in CASES])
def test_every_setting_builds_model_data_spec_and_optimizer(exp, setting):
    config = exp.config_for(setting, runs=4)
    info = data.info(config.dataset)
    assert config.num_members == 4
    # the author's Inception-ResNet-v2 runs cropped 299x299 (224 does not fit its reductions)
    size = 299 if config.model == "inception_resnet_v2" else info.image_shape[0]
    logits, params, wd_mult, lr_mult = abstract_network(
        config.model, info.num_classes, tuple(sorted(config.model_options.items())), size,
        info.image_shape[2])
    assert logits.shape == (2, info.num_classes)
    total = config.steps or max(1, round(config.epochs * steps_per_epoch(config)))
    member = jax.tree.map(lambda a: a[0], member_hparams(config))
    ones = lambda tree: jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), tree)  # noqa: E731
    opt = make_optimizer(config, member, total, weight_decay_multipliers=ones(wd_mult),
                         learning_rate_multipliers=ones(lr_mult))
    jax.eval_shape(opt.init, params)
    lr = learning_rate(config, member, total)
    values = np.array([lr(t) for t in (0, total // 2, total - 1)])
    assert np.all(np.isfinite(values)) and np.all(values >= 0) and values.max() > 0
    paper = exp.setting(setting).paper
    if paper is not None:
        assert 0 < paper.accuracy <= 1 and paper.source


def test_scale_shrinks_length_and_step_size_and_runs_become_seeds():
    base = TrainConfig(epochs=10, step_size=400.0, batch_size=100, seed=3)
    e = Experiment("x", "x", "Sec. 4", base, (Setting("a"), Setting("b", {"steps": 50})), "a",
                   eval_every_epochs=0.5)
    c = e.config_for("a", runs=3, scale=0.25)
    assert c.epochs == 2.5 and c.step_size == 100.0
    assert [m["seed"] for m in c.members] == [3, 4, 5]
    assert c.eval_every == 300  # half of 60,000 / 100 steps per epoch
    assert e.config_for("b", scale=0.5).steps == 25


@pytest.mark.parametrize("kwargs, argument", [
    (dict(scale=0.0), "scale"), (dict(scale=1.5), "scale"), (dict(runs=0), "runs")])
def test_bad_run_arguments_are_refused(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        GRID["fashion_mnist_lenet"].config_for("one_cycle", **kwargs)


def test_bad_experiments_are_refused():
    base = TrainConfig()
    with pytest.raises(ValueError, match="settings"):
        Experiment("x", "x", "s", base, (Setting("a"), Setting("a")), "a")
    with pytest.raises(ValueError, match="baseline"):
        Experiment("x", "x", "s", base, (Setting("a"),), "b")
    with pytest.raises(ValueError, match="comparisons"):
        Experiment("x", "x", "s", base, (Setting("a"),), "a", comparisons={"g": ("z",)})
    with pytest.raises(ValueError, match="accuracy"):
        PaperResult(91.4, 50, "log")
    with pytest.raises(ValueError, match="setting"):
        GRID["fashion_mnist_lenet"].setting("nope")


def _history(curves):
    rows = [{"kind": "eval", "step": i, "epoch": ep, "member": k, "test_accuracy": acc,
             "test_loss": 1 - acc}
            for k, (epochs, accs) in enumerate(curves) for i, (ep, acc) in
            enumerate(zip(epochs, accs))]
    return History(rows)


def test_epochs_to_reach_is_the_first_evaluation_at_or_above_the_target():
    curves = [([1, 2, 3, 4], [0.5, 0.8, 0.79, 0.9]), ([1, 2, 3, 4], [0.5, 0.6, 0.7, 0.75])]
    summary = {"members": [{"member": 0, "diverged": False}, {"member": 1, "diverged": False}]}
    got = epochs_to_reach(Run("a", 1.0, summary, _history(curves)), 0.8)
    np.testing.assert_array_equal(got, [2.0, np.nan])


TINY_CONFIG = textwrap.dedent("""
    from hparams_jax.experiment import Claim, Experiment, PaperResult, RangeTest, Setting
    from hparams_jax.train import TrainConfig

    EXPERIMENT = Experiment(
        name="tiny", title="Tiny LeNet", section="Sec. 4.1",
        config=TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=32,
                           train_examples=256, eval_examples=128, epochs=4,
                           lr_policy="one_cycle", min_lr=0.005, max_lr=0.05,
                           momentum=(0.95, 0.85)),
        settings=(Setting("one_cycle", note="1cycle"),
                  Setting("piecewise", {"lr_policy": "piecewise", "max_lr": 0.02,
                                        "momentum": 0.9}, note="baseline",
                          paper=PaperResult(0.99, 85, "a log")),
                  Setting("unrun", {"weight_decay": 0.0}, note="never run")),
        baseline="piecewise",
        comparisons={"learning-rate policy": ("one_cycle", "piecewise")},
        eval_every_epochs=0.5,
        range_tests=(RangeTest("lr", start=0.001, stop=0.05, num_steps=20, note="bounds"),),
        claims=(Claim("Super-convergence", "Sec. 4.1", "1cycle reaches the baseline sooner",
                      "super_convergence", dict(one_cycle="one_cycle",
                                                baseline="piecewise")),))
""")


def test_run_then_report_end_to_end(tmp_path, capsys):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny.py").write_text(TINY_CONFIG)
    root, output = tmp_path / "runs", tmp_path / "out" / "RESULTS.md"
    args = ["experiment", "run", "tiny", "--configs", str(configs), "--root", str(root),
            "--runs", "2", "--scale", "0.5", "--no-progress"]
    for setting in ("piecewise", "one_cycle"):
        assert main(args + ["--setting", setting]) == 0
    assert main(args + ["--range-test", "lr"]) == 0
    assert "range test lr" in capsys.readouterr().out
    curves = json.loads((root / "tiny" / "range_tests" / "lr" / "range_test.json").read_text())
    lr = curves["results"][0]["learning_rate"]
    assert lr[0] == pytest.approx(0.001) and np.all(np.diff(lr) > 0)
    assert len(lr) == len(curves["results"][0]["train_loss"]) > 5
    # a finished setting is not trained again: its records stay byte for byte
    metrics = (root / "tiny" / "piecewise@scale0.5" / "metrics.jsonl").read_bytes()
    assert main(args + ["--setting", "piecewise"]) == 0
    assert (root / "tiny" / "piecewise@scale0.5" / "metrics.jsonl").read_bytes() == metrics
    run = root / "tiny" / "one_cycle@scale0.5"
    meta = json.loads((run / "experiment.json").read_text())
    assert meta == {"experiment": "tiny", "setting": "one_cycle", "runs": 2, "scale": 0.5,
                    "augmentation": "none",
                    "evaluation": "the full test split, no augmentation"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and len(summary["members"]) == 2
    assert [m["setting"]["seed"] for m in summary["members"]] == [0, 1]

    assert main(["experiment", "report", "--configs", str(configs), "--root", str(root),
                 "--output", str(output)]) == 0
    text = output.read_text()
    accs = [m["test_accuracy"] for m in summary["members"]]
    mean_std = f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}"
    row = next(line for line in text.splitlines() if line.startswith("| `one_cycle`"))
    assert "scaled ×0.5" in row and mean_std in row
    assert "| `unrun` | — | not run here |" in text
    assert "0.9900 (85 ep.)" in text
    assert (output.parent / "figures" / "tiny@scale0.5.png").stat().st_size > 10_000
    base = json.loads((root / "tiny" / "piecewise@scale0.5" / "summary.json").read_text())
    target = np.mean([m["test_accuracy"] for m in base["members"]])
    assert f"final test accuracy: {target:.4f}" in text
    assert "| `lr` | setting=lr |" in text and "fashion" not in text.split("tiny")[0]
    claim = next(line for line in text.splitlines() if line.startswith("| **Super-"))
    assert "**not run**" in claim  # scaled runs carry no verdict


def test_a_saved_range_test_of_another_definition_is_refused_and_kept(tmp_path):
    from hparams_jax.experiment import RangeTest, runner
    from hparams_jax.range_test import Family, RangeTestResult

    def family(values, start=0.001):
        lr = np.linspace(start, 0.05, 20)
        results = [RangeTestResult(lr, 2 - lr, 2 - lr, 0 * lr, np.array([10.0]), lr[9:10],
                                   np.array([1.5]), np.array([0.5]), "linear", start, 0.05,
                                   20, 4.0, "completed") for _ in values]
        return Family("weight_decay", list(values), results)

    test = RangeTest("wd", start=0.001, stop=0.05, num_steps=20,
                     family=("weight_decay", (1e-3, 1e-4)))
    tiny = Experiment(name="tiny", title="Tiny", section="Sec. 4.4",
                      config=TrainConfig(model="lenet", dataset="fashion_mnist"),
                      settings=(Setting("one_cycle"),), baseline="one_cycle",
                      range_tests=(test,))
    path = family([1e-3, 1e-4]).save(runner.range_test_dir(tmp_path, "tiny", "wd")
                                     / "range_test.json")
    assert runner.run_range_test(tiny, "wd", root=tmp_path).values == [1e-3, 1e-4]  # not rerun
    for stale, why in ((family([1e-3]), "values [0.001] where the config has [0.001, 0.0001]"),
                       (family([1e-3, 1e-4], start=0.002),
                        "ramp (0.002, 0.05, 20, 'linear') where the config has (0.001,")):
        stale.save(path)
        saved = path.read_bytes()
        with pytest.raises(ConfigError, match="another definition of range test 'wd'") as err:
            runner.run_range_test(tiny, "wd", root=tmp_path)
        assert why in str(err.value) and "Move it aside" in str(err.value)
        assert path.read_bytes() == saved


def test_a_setting_another_run_holds_is_refused(tmp_path, capsys):
    configs, root = tmp_path / "configs", tmp_path / "runs"
    configs.mkdir()
    (configs / "tiny.py").write_text(TINY_CONFIG)
    workdir = root / "tiny" / "one_cycle@scale0.5"
    with held_by_another_process(workdir) as holder:
        assert main(["experiment", "run", "tiny", "--configs", str(configs), "--root", str(root),
                     "--setting", "one_cycle", "--scale", "0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"(process {holder.pid} holds" in err and len(err.splitlines()) == 1
    assert not (workdir / "experiment.json").exists()


def test_configs_come_only_from_the_checkout_or_an_explicit_folder(tmp_path, monkeypatch):
    """Config files are code: an installed package does not run `./experiments/configs`."""
    planted = tmp_path / "experiments" / "configs"
    planted.mkdir(parents=True)
    (planted / "evil.py").write_text("import pathlib; pathlib.Path('ran').write_text('x')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(spec.CONFIGS_ENV, raising=False)
    assert spec.configs_dir() == spec._REPOSITORY / "experiments" / "configs"  # a checkout
    monkeypatch.setattr(spec, "_REPOSITORY", tmp_path / "site-packages")  # an installed wheel
    with pytest.raises(ValueError, match="--configs DIR .* HPARAMS_JAX_EXPERIMENTS"):
        experiment.load_all()
    assert main(["experiment", "list"]) == 2
    assert not (tmp_path / "ran").exists()
    monkeypatch.setenv(spec.CONFIGS_ENV, str(planted))  # named explicitly: then it runs
    with pytest.raises(ValueError, match="defines no EXPERIMENT"):
        experiment.load_all()
    assert (tmp_path / "ran").exists()


def test_cli_lists_the_grid(capsys):
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist_lenet" in out and "one_cycle" in out
    assert main(["experiment", "run", "no_such_experiment"]) == 2
    assert "no_such_experiment" in capsys.readouterr().err


def test_run_setting_changes_only_how_runs_execute(tmp_path):
    e = GRID["fashion_mnist_lenet"]
    with pytest.raises(ConfigError, match="execution field='max_lr' is not allowed"):
        experiment.run_setting(e, e.baseline, root=tmp_path, max_lr=1.0)
    assert not any(tmp_path.iterdir())  # refused before anything was written
