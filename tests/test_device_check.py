"""`experiments/device_check.py --smoke`: the one-shot GPU check runs end to end at tiny sizes
on this CPU, in a Python where tensorflow-datasets and grain cannot be imported (as on the GPU
machine), and writes its JSON and Markdown; there, a tfds dataset asked for says what to
install."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# Imported by Python at start-up (a `sitecustomize` module on the path): any import of these
# packages fails, as on a machine without them.
BLOCKER = '''
import sys

class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow_datasets", "grain"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, _Absent())
'''


def test_smoke_run_without_tfds_and_grain(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
           "JAX_PLATFORMS": "cpu"}
    blocked = subprocess.run([sys.executable, "-c", "import tensorflow_datasets"], env=env,
                             capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked by the test" in blocked.stderr
    cifar = subprocess.run([sys.executable, "-c", "from hparams_jax import data\n"
                            "try:\n    data.load('cifar10', 'train')\n"
                            "except data.DatasetUnavailableError as err:\n    print(err)"],
                           env=env, capture_output=True, text=True)
    assert "pip install tensorflow-datasets" in cifar.stdout, cifar.stderr[-2000:]
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "device_check.py"),
                           "--smoke", "--data", FASHION_MNIST, "--out", str(tmp_path / "out"),
                           "--budget-s", "3600"],  # every part, however busy this machine
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert result["smoke"] and result["modules_absent"] == {"tensorflow_datasets": True,
                                                            "grain": True}
    rows = result["throughput"]
    assert [(r["network"], r["precision"]) for r in rows] == [
        (n, p) for n in ("lenet", "resnet56", "wide_resnet32_4", "densenet40")
        for p in ("float32", "bfloat16")]
    for r in rows:
        assert r["jax"]["images_per_s"] > 0 and r["jax"]["flops"] > 0
        assert r["jax"]["plan"] == "cpu"
        eager = r["torch_eager"]
        if "skipped" not in eager:  # the twins are the same networks
            assert eager["params"] == r["jax"]["params"] and eager["images_per_s"] > 0
    pair = result["fashion_mnist"]  # 1cycle, then the experiment's baseline
    assert len(pair) == 2 and pair[0]["setting"] == "one_cycle" != pair[1]["setting"]
    assert all(r["status"] == "completed" and 0.1 < r["test_accuracy"] <= 1 for r in pair)
    assert result["range_test"]["ratio"] > 0
    table = (tmp_path / "out" / "device_check.md").read_text()
    assert "| densenet40 " in table and "1cycle against the baseline" in table
