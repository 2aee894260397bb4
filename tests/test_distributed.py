"""Multi-process training on this machine: two CPU processes (one device each, gloo
collectives, `jax.distributed` on 127.0.0.1) started with the CLI's --coordinator,
--num-processes and --process-id train like one process with two devices; only process 0
writes the metrics, summary and config; a run killed in both processes resumes exactly; the
streamed (grain) pipeline gives each process its own share of every global batch."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_same_checkpoints
from hparams_jax.train.metrics import read_rows, untimed

RUN = ["train", "--model", "lenet", "--dataset", "fashion_mnist", "--steps", "16",
       "--batch-size", "32", "--train-examples", "256", "--lr-policy", "one_cycle",
       "--min-lr", "0.01", "--max-lr", "0.05", "--momentum", "0.95:0.85", "--log-every", "4",
       "--eval-every", "8", "--checkpoint-every", "8", "--no-progress"]

# The CLI, recording the files this process writes (and optionally dying after a step).
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from hparams_jax import cli
    from hparams_jax.train import loop, metrics

    wrote = []
    write_json = loop.write_json_atomic
    def write_json_and_record(path, obj):
        wrote.append(os.path.basename(path))
        write_json(path, obj)
    loop.write_json_atomic = write_json_and_record

    write_rows = metrics.MetricsLog.write
    def write_rows_and_record(self, rows):
        write_rows(self, rows)
        if self.enabled:
            wrote.append(self.path.name)
        if {kill_after} and any(r["step"] > {kill_after} for r in rows):
            os.kill(os.getpid(), signal.SIGKILL)
    metrics.MetricsLog.write = write_rows_and_record

    code = cli.main(sys.argv[1:])
    print("WROTE", json.dumps(sorted(set(wrote))))
    sys.exit(code)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def launch(script: str, args: list[str], processes: int, timeout: float = 240):
    """Runs `script` in `processes` processes (one CPU device each) joined through a
    coordinator on localhost; returns their CompletedProcess-like results in process order."""
    port = free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-c", script, *args, "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", str(processes), "--process-id", str(i)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(1))
        for i in range(processes)]
    try:
        return [(p, *p.communicate(timeout=timeout)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def wrote(stdout: str) -> list[str]:
    return json.loads(stdout.split("WROTE", 1)[1])


def test_two_processes_train_like_two_devices_write_once_and_resume_exactly(tmp_path):
    reference = subprocess.run(
        [sys.executable, "-c", CHILD.format(kill_after=0), *RUN, "--workdir",
         str(tmp_path / "one")], capture_output=True, text=True, env=env(2), timeout=240)
    assert reference.returncode == 0, reference.stderr[-3000:]

    runs = launch(CHILD.format(kill_after=0), [*RUN, "--workdir", str(tmp_path / "two")], 2)
    for proc, out, err in runs:
        assert proc.returncode == 0, err[-3000:]
    assert wrote(runs[0][1]) == ["config.json", "metrics.jsonl", "summary.json"]
    assert wrote(runs[1][1]) == []  # process 1 trains and checkpoints, and writes nothing else
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (one["devices"], two["devices"]) == (2, 2)
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert two["members"][0][key] == pytest.approx(one["members"][0][key], rel=1e-5)
    rows = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len((tmp_path / "one" / "metrics.jsonl").read_text().splitlines())

    # both processes die after logging step 16, whose checkpoint is not written yet
    killed = [*RUN, "--workdir", str(tmp_path / "killed")]
    for proc, _, err in launch(CHILD.format(kill_after=12), killed, 2):
        assert proc.returncode == -9, err[-3000:]
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["8"]
    for proc, _, err in launch(CHILD.format(kill_after=0), killed, 2):
        assert proc.returncode == 0, err[-3000:]
    assert untimed(read_rows(tmp_path / "killed" / "metrics.jsonl")) == untimed(
        read_rows(tmp_path / "two" / "metrics.jsonl"))
    assert_same_checkpoints(tmp_path / "killed", tmp_path / "two")


STREAMED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    import tensorflow_datasets as tfds
    from hparams_jax import _launch, cli
    from hparams_jax.data import sources
    from hparams_jax.train import TrainConfig
    from hparams_jax.train.session import StreamedSession

    _launch.join_cluster(cli.build_parser().parse_args(["train", *sys.argv[1:]]))
    p, n = jax.process_index(), jax.process_count()

    def local(batch):  # (label, mean pixel) of each example of this process's share
        image, label = (np.concatenate([np.asarray(s.data) for s in batch[k].addressable_shards])
                        for k in ("image", "label"))
        return sorted([int(l), round(float(x), 3)] for l, x in zip(label,
                                                                   image.mean((1, 2, 3))))

    with tfds.testing.mock_data(num_examples=24):
        session = StreamedSession(TrainConfig(model="lenet", dataset="imagenet2012",
                                              image_size=32, batch_size=8, steps=2))
        val = next(session.task.eval())
        train = next(session.task.train())
        source = sources.open_tfds("imagenet2012", "train")
        mine = {int(source[i]["label"]) for i in range(p, 24, n)}
    print("SHARES", json.dumps({
        "validation": local(val), "train": local(train), "own_labels": sorted(mine),
        "validation_sum": float(jax.numpy.sum(val["image"].astype(np.float32))),
        "train_global": int(train["label"].shape[0])}))
""")


def shares(stdout: str) -> dict:
    return json.loads(stdout.split("SHARES", 1)[1])


def test_streamed_batches_are_split_between_processes():
    """Each of two processes reads its own half of the examples (validation: every other one,
    in order; training: its half, shuffled), and the global batch they assemble holds the
    examples one process reads alone."""
    single = subprocess.run([sys.executable, "-c", STREAMED], capture_output=True, text=True,
                            env=env(2), timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    alone = shares(single.stdout)
    both = []
    for proc, out, err in launch(STREAMED, [], 2):
        assert proc.returncode == 0, err[-3000:]
        both.append(shares(out))
    assert [len(s["validation"]) for s in both] == [4, 4]
    assert sorted(both[0]["validation"] + both[1]["validation"]) == alone["validation"]
    for s in both:
        assert s["validation_sum"] == pytest.approx(alone["validation_sum"], rel=1e-6)
        assert len(s["train"]) == 4 and s["train_global"] == 8
        assert {label for label, _ in s["train"]} <= set(s["own_labels"])
    assert not set(map(tuple, both[0]["train"])) & set(map(tuple, both[1]["train"]))
