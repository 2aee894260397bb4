"""The data layer: sources (Debian IDX files, tfds through mock_data), augmentation
properties, batching invariants, the unavailable-dataset error, sharded gathers."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from hparams_jax import data
from hparams_jax.data import sources


def test_fashion_mnist_from_debian_files():
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = data.load("fashion_mnist", split)
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int32
        np.testing.assert_array_equal(np.bincount(labels), [n // 10] * 10)
        assert not images.flags.writeable
    mean = data.load("fashion_mnist", "train")[0].mean()
    assert mean == pytest.approx(data.info("fashion_mnist").mean[0], abs=0.05)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_tfds_code_path_with_mock_data(name, monkeypatch, tmp_path):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path))  # force the tfds path
    sources._load.cache_clear()
    with tfds.testing.mock_data(num_examples=12):
        images, labels = data.load(name, "test", data_dir=str(tmp_path / name))
    sources._load.cache_clear()
    info = data.info(name)
    assert images.shape == (12, *info.image_shape) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < info.num_classes


def test_unavailable_dataset_says_where_it_looked_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path / "nothing"))
    sources._load.cache_clear()
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load("fashion_mnist", "train", data_dir=str(tmp_path / "tfds"))
    sources._load.cache_clear()
    message = str(err.value)
    assert "'fashion_mnist'" in message
    assert str(tmp_path / "nothing") in message and str(tmp_path / "tfds") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "tfds.data_source('fashion_mnist', download=True)" in message


@pytest.mark.parametrize("call, argument", [
    (lambda: data.load("svhn", "train"), "name"),
    (lambda: data.load("mnist", "validation"), "split"),
    (lambda: data.info("imagenet"), "name"),
    (lambda: data.augment(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), "mixup"), "policy"),
    (lambda: data.check_batch_divisible(30, 4), "batch_size=30"),
])
def test_bad_arguments(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def images_batch(n=16, h=8, w=8, c=3):
    return jnp.asarray(np.random.default_rng(0).integers(1, 256, (n, h, w, c)), jnp.uint8)


def test_flip_is_an_involution_per_image():
    x = images_batch()
    key = jax.random.key(3)
    once = data.random_flip(key, x)
    np.testing.assert_array_equal(data.random_flip(key, once), x)
    flipped = [bool(jnp.all(once[i] == x[i, :, ::-1])) and not bool(jnp.all(once[i] == x[i]))
               for i in range(len(x))]
    kept = [bool(jnp.all(once[i] == x[i])) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < len(x)  # each image draws its own coin


def test_crops_are_windows_of_the_zero_padded_image():
    x = images_batch(n=32)
    out = np.asarray(data.random_crop(jax.random.key(1), x, pad=4))
    padded = np.pad(np.asarray(x), ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if np.array_equal(padded[i, dy:dy + 8, dx:dx + 8], out[i])]
        assert hits, f"crop {i} is not a window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 5


def test_augmentation_is_a_function_of_the_key():
    x = images_batch()
    a = data.augment(jax.random.key(7), x, "crop_flip")
    b = data.augment(jax.random.key(7), x, "crop_flip")
    c = data.augment(jax.random.key(8), x, "crop_flip")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(data.augment(jax.random.key(7), x, "none"), x)
    jitted = jax.jit(data.augment, static_argnums=2)(jax.random.key(7), x, "crop_flip")
    np.testing.assert_array_equal(jitted, a)


def test_normalize_per_channel():
    x = jnp.full((2, 2, 2, 3), 100, jnp.uint8)
    out = data.normalize(x, (100.0, 50.0, 0.0), (1.0, 10.0, 50.0))
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 5.0, 2.0])
    assert out.dtype == jnp.float32


def test_epoch_indices_shuffle_per_epoch_and_drop_last():
    a = data.epoch_indices(1000, 64, seed=1, epoch=0)
    assert a.shape == (15, 64) and a.dtype == np.int32
    assert len(np.unique(a)) == a.size  # no repeats; 40 examples dropped
    np.testing.assert_array_equal(a, data.epoch_indices(1000, 64, seed=1, epoch=0))
    assert not np.array_equal(a, data.epoch_indices(1000, 64, seed=1, epoch=1))
    assert not np.array_equal(a, data.epoch_indices(1000, 64, seed=2, epoch=0))


def test_eval_indices_keep_every_example_once():
    idx, mask = data.eval_indices(1000, 64)
    assert idx.shape == mask.shape == (16, 64)
    np.testing.assert_array_equal(np.sort(idx[mask > 0]), np.arange(1000))
    assert mask.sum() == 1000 and mask[-1].sum() == 1000 - 15 * 64


GATHER_CHILD = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from hparams_jax import data
    mesh = data.make_mesh()
    assert mesh.size == 4
    images = jax.device_put(np.arange(64 * 2, dtype=np.uint8).reshape(64, 2, 1, 1),
                            data.replicated(mesh))
    idx = jax.device_put(data.epoch_indices(64, 16, seed=0, epoch=0)[0], data.batch_sharding(mesh))
    out = jax.jit(lambda im, i: jax.lax.with_sharding_constraint(
        im[i], data.batch_sharding(mesh)))(images, idx)
    assert out.sharding.spec == P("data"), out.sharding
    assert [s.data.shape[0] for s in out.addressable_shards] == [4, 4, 4, 4]
    np.testing.assert_array_equal(np.asarray(out), np.asarray(images)[np.asarray(idx)])
    print("ok")
""")


def test_sharded_gather_on_four_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", GATHER_CHILD], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
