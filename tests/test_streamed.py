"""`fit` on a streamed dataset: ImageNet through tfds' mock data, read by the host pipeline
(`data.imagenet`), at 32x32 with ResNet-20. Evaluation against NumPy over the central crops,
an interrupted and resumed run against an uninterrupted one, bad settings, the experiment
runner's ImageNet rows."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from hparams_jax import data, experiment
from hparams_jax.data import imagenet, sources
from hparams_jax.range_test import lr_range_test
from hparams_jax.train import TrainConfig, fit, metrics
from hparams_jax.train.session import StreamedSession, open_session

from test_train import assert_same_checkpoints, tiny

MOCK_EXAMPLES = 24
STREAMED = dict(model="resnet20", dataset="imagenet2012", image_size=32, batch_size=8, steps=6,
                lr_policy="one_cycle", min_lr=0.01, max_lr=0.05, momentum=(0.95, 0.85),
                log_every=2, eval_every=3, checkpoint_every=3, eval_examples=12,
                progress=False)


def streamed(**changes) -> TrainConfig:
    return TrainConfig(**{**STREAMED, **changes})


@pytest.fixture
def mock_imagenet():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        yield


def test_streamed_run_logs_trains_and_evaluates(mock_imagenet, tmp_path):
    history = fit(streamed(workdir=str(tmp_path)))
    train = [r for r in history.rows if r["kind"] == "train"]
    evals = [r for r in history.rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [2, 3, 4, 6] and [r["step"] for r in evals] == [3, 6]
    assert history.summary["steps_per_epoch"] == MOCK_EXAMPLES // 8
    assert all(np.isfinite(r["train_loss"]) for r in train)
    assert train[0]["learning_rate"] > 0.01 and train[-1]["learning_rate"] < 0.05
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["dataset"] == "imagenet2012" and saved["image_size"] == 32


def test_streamed_evaluation_is_the_mean_over_the_central_crops(mock_imagenet):
    """The session's evaluation (global batches of 8, the last one padded and masked) equals
    softmax cross-entropy and accuracy computed in NumPy over the same 12 central crops."""
    session = open_session(streamed(eval_examples=12))
    assert isinstance(session, StreamedSession)
    state = session.init_state()
    got = session.evaluate(state)

    member = jax.tree.map(lambda x: x[0], state)
    model = session.engine.model.merge(member.params, member.rest, train=False)
    info = data.info("imagenet2012")
    source = sources.open_tfds("imagenet2012", "validation")
    (batch,) = imagenet.from_source(source, "validation", 12, image_size=32, num_examples=12,
                                    num_threads=2)
    assert batch["mask"].all()
    logits = np.asarray(model(data.normalize(batch["image"], info.mean, info.std)),
                        np.float64)
    logits -= logits.max(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = batch["label"]
    np.testing.assert_allclose(got["loss"], [-log_p[np.arange(12), labels].mean()],
                               rtol=1e-5)
    np.testing.assert_allclose(got["accuracy"], [(logits.argmax(-1) == labels).mean()])


def test_interrupted_streamed_run_resumes_to_the_same_result(mock_imagenet, tmp_path,
                                                             monkeypatch):
    """A run that dies after step 4 (its last checkpoint at step 3) and is started again
    restarts the stream at batch 3 and ends exactly as the uninterrupted run."""
    full = fit(streamed(workdir=str(tmp_path / "full")))

    write = metrics.MetricsLog.write

    def write_then_die(self, rows):
        write(self, rows)
        if any(r["step"] > 3 for r in rows):
            raise KeyboardInterrupt

    config = streamed(workdir=str(tmp_path / "killed"))
    monkeypatch.setattr(metrics.MetricsLog, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    monkeypatch.setattr(metrics.MetricsLog, "write", write)
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["3"]

    resumed = fit(config)
    assert metrics.untimed(resumed.rows) == metrics.untimed(full.rows)
    assert_same_checkpoints(tmp_path / "killed", tmp_path / "full")


def test_lr_range_test_on_a_streamed_dataset(mock_imagenet):
    """The LR range test (Sec. 4.1) ramps over the stream and evaluates on the validation
    crops, as on the datasets held in memory."""
    result = lr_range_test(streamed(eval_examples=8), start=0.001, stop=0.5, num_steps=8,
                           eval_every=4)
    assert result.stop_reason == "completed" and len(result.learning_rate) == 8
    np.testing.assert_allclose(result.learning_rate, np.linspace(0.001, 0.5, 8), rtol=1e-5)
    assert list(result.eval_step) == [4, 8] and np.isfinite(result.eval_loss).all()


STREAMED_CHILD = textwrap.dedent("""
    import json, sys
    import jax, tensorflow_datasets as tfds
    from hparams_jax.train import TrainConfig, fit
    with tfds.testing.mock_data(num_examples={examples}):
        history = fit(TrainConfig.from_dict(json.loads(sys.argv[1])))
    print(json.dumps([jax.device_count(), history.summary["members"][0]]))
""")


def test_four_devices_stream_like_one(tmp_path):
    """Each of 4 (simulated) devices gets its quarter of every host batch: same losses."""
    # a small LR keeps the comparison well conditioned: at max_lr 0.05 four steps leave the
    # logits large (test loss ~23), and the float32 rounding of batch-norm statistics summed in
    # another order over 4 devices moves that loss by ~1e-3 relative
    config = streamed(steps=4, eval_every=4, checkpoint_every=4, min_lr=0.001, max_lr=0.005)
    results = {}
    for devices in (1, 4):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        proc = subprocess.run(
            [sys.executable, "-c", STREAMED_CHILD.format(examples=MOCK_EXAMPLES),
             json.dumps(config.replace(workdir=str(tmp_path / str(devices))).to_dict())],
            capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        count, results[devices] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert count == devices
    assert results[4]["train_loss"] == pytest.approx(results[1]["train_loss"], rel=1e-4)
    assert results[4]["test_loss"] == pytest.approx(results[1]["test_loss"], rel=1e-4)


@pytest.mark.parametrize("make, argument", [
    (lambda: open_session(streamed(augmentation="flip")), "augmentation"),
    (lambda: open_session(tiny(image_size=32)), "image_size"),
    (lambda: streamed(data_workers=-1), "data_workers"),
    (lambda: streamed(image_size=0), "image_size"),
])
def test_streamed_settings_are_checked(mock_imagenet, make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_runner_trains_the_imagenet_rows(monkeypatch, tmp_path):
    """`experiment run` hands an ImageNet row to `fit` with the row's crop size and the
    decoding workers asked for, and records the central-crop evaluation."""
    from hparams_jax.experiment import runner

    seen = []
    monkeypatch.setattr(runner, "fit", lambda config: seen.append(config))
    grid = experiment.load_all()
    for name, side in (("imagenet_resnet50", None), ("imagenet_inception_resnet_v2", 299)):
        e = grid[name]
        experiment.run_setting(e, e.baseline, runs=2, root=tmp_path, progress=False,
                               data_workers=3)
        config = seen[-1]
        assert config.dataset == "imagenet2012" and config.image_size == side
        assert config.data_workers == 3
        assert config.num_members == 2
        meta = json.loads((Path(config.workdir) / "experiment.json").read_text())
        assert meta["evaluation"] == "the full validation split, central crops"
