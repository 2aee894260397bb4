"""XLA:CPU flags (`hparams_jax._xla`): importing the package changes no environment variable;
a run's entry point adds the CPU plan's flags before JAX starts, unless switched off, the
accelerator plan is asked for, or JAX has already started."""

import json
import os
import subprocess
import sys

CHILD = """
import json, os, sys
before = dict(os.environ)
import hparams_jax, hparams_jax.cli, hparams_jax.demo, hparams_jax.experiment
import hparams_jax.models, hparams_jax.plots, hparams_jax.range_test, hparams_jax.train
imported = dict(os.environ)
from hparams_jax import _xla
from hparams_jax.train import TrainConfig
from hparams_jax.train.session import open_session
plan = sys.argv[1]
session = open_session(TrainConfig(train_examples=256, eval_examples=128, steps=1, plan=plan))
started = os.environ.get("XLA_FLAGS", "")
print(json.dumps({"import_changed": sorted(k for k in set(before) | set(imported)
                                           if before.get(k) != imported.get(k)),
                  "flags": started, "plan": session.engine.plan.name,
                  "after_start": _xla.apply_cpu_defaults("cpu")}))
"""


def run(plan: str, **env) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("XLA_FLAGS", "HPARAMS_JAX_XLA_DEFAULTS")}
    proc = subprocess.run([sys.executable, "-c", CHILD, plan], capture_output=True, text=True,
                          env={**environ, "JAX_PLATFORMS": "cpu", **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_changes_nothing_and_the_cpu_plan_sets_its_flags():
    out = run("auto", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    assert out["import_changed"] == []
    assert out["plan"] == "cpu"
    assert out["flags"].split() == ["--xla_force_host_platform_device_count=1",
                                    "--xla_cpu_experimental_ynn_fusion_type="]
    assert out["after_start"] is False  # XLA read its flags already: nothing to change


def test_flags_are_left_alone_when_switched_off_or_not_the_cpu_plan():
    assert run("cpu", HPARAMS_JAX_XLA_DEFAULTS="0")["flags"] == ""
    off = run("accelerator")
    assert (off["flags"], off["plan"]) == ("", "accelerator")
