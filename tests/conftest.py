"""Helpers shared by the test modules that train tiny LeNet runs on the offline Fashion-MNIST
(`from conftest import ...`), and the test session's set-up, as an entry point's: the CPU
plan's XLA flags before anything starts JAX (so that this process computes as the runs it
starts in subprocesses do, whichever test first touches JAX), and a persistent XLA
compilation cache in a temporary folder, shared by the tests and the processes they start
(through JAX's environment variables), so that the many tiny runs which compile the same
programs (a run, its killed copy and its resumption; one plan, then the other) compile each
program once. It is removed at the end."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from hparams_jax import _xla
from hparams_jax.train import TrainConfig
from hparams_jax.train.checkpoint import Checkpointer

TINY = dict(model="lenet", dataset="fashion_mnist", batch_size=32, train_examples=256,
            eval_examples=128, steps=16, lr_policy="one_cycle", min_lr=0.01,
            max_lr=0.05, momentum=(0.95, 0.85), weight_decay=5e-4, log_every=4, eval_every=8,
            checkpoint_every=8, progress=False)

TINY_CLI = ["train", "--model", "lenet", "--dataset", "fashion_mnist", "--steps", "12",
            "--batch-size", "32", "--train-examples", "256", "--lr-policy", "one_cycle",
            "--min-lr", "0.01", "--max-lr", "0.05", "--momentum", "0.95:0.85",
            "--log-every", "4", "--no-progress"]


_xla.apply_cpu_defaults()
_CACHE = tempfile.mkdtemp(prefix="hparams_jax_tests_xla_cache_")
_SETTINGS = {"jax_compilation_cache_dir": _CACHE,
             "jax_persistent_cache_min_compile_time_secs": 0,
             "jax_persistent_cache_min_entry_size_bytes": -1}
for _name, _value in _SETTINGS.items():
    os.environ[_name.upper()] = str(_value)
    jax.config.update(_name, _value)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


def tiny(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, **changes})


def params_of(workdir) -> dict:
    """The parameters in the newest checkpoint of a finished run, as flat NumPy arrays (read
    onto this process's first device, whatever devices or processes wrote them)."""
    ckpt = Checkpointer(Path(workdir) / "checkpoints", keep=3)
    step = ckpt.latest_step
    ckpt.close()
    path = Path(workdir) / "checkpoints" / str(step) / "default"
    reader = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          reader.metadata(path).item_metadata)
    restored = reader.restore(path, target)
    leaves = jax.tree_util.tree_leaves_with_path(restored)
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def assert_same_checkpoints(workdir, reference) -> None:
    """The newest checkpoints of two finished runs hold bitwise-equal parameters."""
    got, expected = params_of(workdir), params_of(reference)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def run_cli(args, devices=1, **kwargs):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.run([sys.executable, "-m", "hparams_jax", *args], capture_output=True,
                          text=True, env=env, **kwargs)


HOLDER = ("import sys\n"
          "from hparams_jax.train import workdir_lock\n"
          "with workdir_lock(sys.argv[1]):\n"
          "    print('held', flush=True)\n"
          "    sys.stdin.read()\n")


@contextlib.contextmanager
def held_by_another_process(workdir):
    """Another process holds `workdir`'s lock for the block; yields that process."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
