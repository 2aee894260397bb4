"""The data layer: sources (Debian IDX files, tfds through mock_data and through real
array_record files), the unavailable-dataset error, augmentation properties, batching
invariants, gathers on the device (4 simulated devices in a subprocess), the ImageNet pipeline."""

import io
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
from hparams_jax.data import imagenet, sources


@pytest.fixture
def fresh_cache():
    sources._load_cached.cache_clear()
    yield
    sources._load_cached.cache_clear()


# --- catalog ---------------------------------------------------------------------------------

def test_catalog():
    assert data.available() == ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet2012"]
    for name in data.available():
        info = data.info(name)
        assert len(info.mean) == len(info.std) == info.image_shape[2]
        assert all(0 < s < m + 255 for m, s in zip(info.mean, info.std))
    assert data.info("cifar10").augmentation == "flip"  # the author's CIFAR runs
    assert data.info("mnist").augmentation == data.info("fashion_mnist").augmentation == "none"
    assert (data.info("cifar100").num_classes, data.info("cifar100").train_size) == (100, 50_000)
    assert not data.info("imagenet2012").in_memory


# --- sources ---------------------------------------------------------------------------------

def test_fashion_mnist_from_debian_files():
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = data.load("fashion_mnist", split)
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int32
        np.testing.assert_array_equal(np.bincount(labels), [n // 10] * 10)
    images, labels = data.load("fashion_mnist", "train")
    assert data.load("fashion_mnist", "train")[0] is images  # cached per process ...
    assert not images.flags.writeable and not labels.flags.writeable  # ... so read-only
    with pytest.raises(ValueError):
        images[0, 0, 0, 0] = 1
    info = data.info("fashion_mnist")
    pixels = images.astype(np.float64)
    assert pixels.mean() == pytest.approx(info.mean[0], abs=0.01)
    assert pixels.std() == pytest.approx(info.std[0], abs=0.01)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_tfds_code_path_with_mock_data(name, monkeypatch, tmp_path, fresh_cache):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path))  # no IDX files: tfds path
    with tfds.testing.mock_data(num_examples=12):
        images, labels = data.load(name, "test", data_dir=str(tmp_path))
    info = data.info(name)
    assert images.shape == (12, *info.image_shape) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < info.num_classes
    assert not images.flags.writeable


@pytest.fixture(scope="module")
def tiny_array_record(tmp_path_factory):
    """A real tfds dataset in array_record files (20 PNG images labelled with their index; tfds
    shuffles them on writing), written without TensorFlow."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)
    labels = np.arange(20)

    class HparamsJaxTinyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(6, 5, 3)),
                "label": tfds.features.ClassLabel(num_classes=20)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(20):
                f = io.BytesIO()
                Image.fromarray(images[i]).save(f, format="PNG")
                f.seek(0)
                yield i, {"image": f, "label": int(labels[i])}

    builder = HparamsJaxTinyImages(data_dir=str(tmp_path_factory.mktemp("tfds")),
                                   file_format="array_record")
    builder.download_and_prepare()
    return builder.as_data_source(split="train"), images, labels


def test_read_all_reads_real_array_record_files_in_batches(tiny_array_record, monkeypatch):
    source, images, labels = tiny_array_record
    calls = []
    original = type(source).__getitems__

    def spy(self, keys):
        calls.append(len(keys))
        return original(self, keys)

    monkeypatch.setattr(type(source), "__getitems__", spy)
    monkeypatch.setattr(sources, "_READ_CHUNK", 8)
    got_images, got_labels = sources.read_all(source)
    np.testing.assert_array_equal(np.sort(got_labels), labels)
    np.testing.assert_array_equal(got_images, images[got_labels])
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int32
    assert calls == [1, 8, 8, 4]  # a probe for the shape, then batched reads


def test_unavailable_fashion_mnist_says_where_it_looked_and_how_to_get_it(
        monkeypatch, tmp_path, fresh_cache):
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path / "nothing"))
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load("fashion_mnist", "train", data_dir=str(tmp_path / "tfds"))
    message = str(err.value)
    assert "'fashion_mnist'" in message
    assert str(tmp_path / "nothing") in message and str(tmp_path / "tfds") in message
    assert sources.FASHION_MNIST_ENV in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert (f"tfds.data_source('fashion_mnist', data_dir='{tmp_path / 'tfds'}', download=True)"
            in message)


def test_unavailable_tfds_datasets(tmp_path, fresh_cache):
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load("cifar10", "test", data_dir=str(tmp_path))
    message = str(err.value)
    assert "'cifar10'" in message and str(tmp_path) in message
    assert f"tfds build cifar10 --data_dir={tmp_path} --file_format=array_record" in message
    assert "apt-get" not in message
    with pytest.raises(data.DatasetUnavailableError) as err:
        imagenet.dataset("train", 8, data_dir=str(tmp_path))
    message = str(err.value)
    assert "'imagenet2012'" in message and f"{tmp_path}/downloads/manual/" in message
    assert "ILSVRC2012_img_train.tar" in message and "tfds build imagenet2012" in message


@pytest.mark.parametrize("call, argument", [
    (lambda: data.load("svhn", "train"), "name='svhn'"),
    (lambda: data.load("mnist", "validation"), "split='validation'"),
    (lambda: data.load("imagenet2012", "train"), "imagenet.dataset"),
    (lambda: data.info("imagenet"), "name"),
    (lambda: data.augment(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), "mixup"),
     "policy='mixup'.*'none', 'flip', 'crop_flip'"),
    (lambda: data.random_crop(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), pad=-1), "pad"),
    (lambda: data.check_batch_divisible(30, 4), "batch_size=30.*4 devices.*28 or 32"),
    (lambda: data.check_batch_divisible(36, 4, 2),
     "batch_size=36.*2 micro-batches.*4 devices.*multiple of 8.*32 or 40"),
    (lambda: data.epoch_indices(10, 16, seed=0, epoch=0), "batch_size=16"),
    (lambda: data.epoch_indices(10, 2, seed=-1, epoch=0), "seed=-1"),
    (lambda: data.eval_indices(0, 2), "num_examples=0"),
    (lambda: imagenet.from_source([], "val", 4), "split='val'"),
    (lambda: imagenet.from_source([], "train", 6, process_count=4), "batch_size=6"),
])
def test_bad_arguments(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


# --- augmentation ----------------------------------------------------------------------------

def images_batch(n=16, h=8, w=8, c=3, dtype=jnp.uint8):
    return jnp.asarray(np.random.default_rng(0).integers(1, 256, (n, h, w, c)), dtype)


def test_flip_is_an_involution_per_image():
    x = images_batch()
    key = jax.random.key(3)
    once = data.random_flip(key, x)
    np.testing.assert_array_equal(data.random_flip(key, once), x)
    flipped = [bool(jnp.all(once[i] == x[i, :, ::-1])) for i in range(len(x))]
    kept = [bool(jnp.all(once[i] == x[i])) for i in range(len(x))]
    assert all(f != k for f, k in zip(flipped, kept))  # the images have no mirror symmetry
    assert 0 < sum(flipped) < len(x)  # each image draws its own coin


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.float32])
def test_crops_are_windows_of_the_zero_padded_image(dtype):
    x = images_batch(n=32, h=8, w=6, dtype=dtype)
    out = np.asarray(data.random_crop(jax.random.key(1), x, pad=4))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(np.asarray(x), ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if np.array_equal(padded[i, dy:dy + 8, dx:dx + 6], out[i])]
        assert hits, f"crop {i} is not a window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 5  # each image draws its own offset


def test_augmentation_is_a_function_of_the_key():
    x = images_batch()
    for policy in ("flip", "crop_flip"):
        a = data.augment(jax.random.key(7), x, policy)
        np.testing.assert_array_equal(a, data.augment(jax.random.key(7), x, policy))
        assert not np.array_equal(a, data.augment(jax.random.key(8), x, policy))
        jitted = jax.jit(data.augment, static_argnums=2)(jax.random.key(7), x, policy)
        np.testing.assert_array_equal(jitted, a)
    np.testing.assert_array_equal(data.augment(jax.random.key(7), x, "none"), x)
    flip_only = data.augment(jax.random.key(7), x, "flip")
    assert all(np.array_equal(flip_only[i], x[i]) or np.array_equal(flip_only[i], x[i, :, ::-1])
               for i in range(len(x)))


def test_normalize_per_channel():
    x = jnp.full((2, 2, 2, 3), 100, jnp.uint8)
    out = data.normalize(x, (100.0, 50.0, 0.0), (1.0, 10.0, 50.0))
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 5.0, 2.0], rtol=1e-6)
    assert out.dtype == jnp.float32
    assert data.normalize(x, (0.0,) * 3, (1.0,) * 3, dtype=jnp.bfloat16).dtype == jnp.bfloat16


# --- batching ----------------------------------------------------------------------------------

def test_epoch_indices_shuffle_per_epoch_and_drop_last():
    a = data.epoch_indices(1000, 64, seed=1, epoch=0)
    assert a.shape == (15, 64) and a.dtype == np.int32
    assert len(np.unique(a)) == a.size and a.min() >= 0 and a.max() < 1000  # 40 dropped
    np.testing.assert_array_equal(a, data.epoch_indices(1000, 64, seed=1, epoch=0))
    assert not np.array_equal(a, data.epoch_indices(1000, 64, seed=1, epoch=1))
    assert not np.array_equal(a, data.epoch_indices(1000, 64, seed=2, epoch=0))
    assert data.epoch_indices(128, 64, seed=0, epoch=0).shape == (2, 64)  # nothing to drop


def test_eval_indices_keep_every_example_once():
    idx, mask = data.eval_indices(1000, 64)
    assert idx.shape == mask.shape == (16, 64) and idx.dtype == np.int32
    np.testing.assert_array_equal(np.sort(idx[mask > 0]), np.arange(1000))
    assert mask.sum() == 1000 and mask[-1].sum() == 1000 - 15 * 64
    assert idx.max() < 1000  # padding stays in bounds
    idx, mask = data.eval_indices(128, 64)
    assert idx.shape == (2, 64) and mask.all()


def test_device_dataset_same_seed_same_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(100, dtype=np.int32)
    ds = data.DeviceDataset.from_arrays(images, labels)
    assert len(ds) == 100 and ds.images.dtype == jnp.uint8 and ds.labels.dtype == jnp.int32

    @jax.jit
    def batch(ds, idx, key):  # what a training step does with its batch
        b = ds.gather(idx)
        x, y = b["image"], b["label"]
        return data.normalize(data.augment(key, x, "crop_flip"), (128.0,) * 3, (64.0,) * 3), y

    def epoch(seed):
        idx = ds.put_indices(data.epoch_indices(len(ds), 32, seed=seed, epoch=0))
        return [batch(ds, idx[s], jax.random.key(s)) for s in range(idx.shape[0])]

    first, again, other = epoch(5), epoch(5), epoch(6)
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(first[0][1], other[0][1])
    idx = data.epoch_indices(len(ds), 32, seed=5, epoch=0)
    np.testing.assert_array_equal(first[1][1], labels[idx[1]])
    with pytest.raises(ValueError, match="images"):
        data.DeviceDataset.from_arrays(images.astype(np.float32), labels)


SHARDED_CHILD = textwrap.dedent("""
    import re
    import jax, numpy as np
    from jax.sharding import PartitionSpec as P
    from hparams_jax import data
    from hparams_jax.data import imagenet
    assert jax.device_count() == 4
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(64, dtype=np.int32)

    def step(ds, idx, key):
        b = ds.gather(idx)
        x, y = b["image"], b["label"]
        return data.normalize(data.augment(key, x, "crop_flip"), (128.0,) * 3, (64.0,) * 3), y

    outs = {}
    for n in (4, 1):
        mesh = data.make_mesh(jax.devices()[:n])
        ds = data.DeviceDataset.from_arrays(images, labels, mesh)
        idx = ds.put_indices(data.epoch_indices(64, 16, seed=0, epoch=0))
        assert idx.sharding.spec == P(None, "data")
        f = jax.jit(step)
        x, y = f(ds, idx[1], jax.random.key(3))
        outs[n] = (np.asarray(x), np.asarray(y))
        if n == 4:
            assert x.sharding.spec == P("data") and y.sharding.spec == P("data"), x.sharding
            assert [s.data.shape for s in x.addressable_shards] == [(4, 8, 8, 3)] * 4
            np.testing.assert_array_equal(np.asarray(y), np.asarray(idx[1]))
            hlo = f.lower(ds, idx[1], jax.random.key(3)).compile().as_text()
            found = re.findall("all-gather|all-reduce|all-to-all|collective-permute", hlo)
            assert not found, found  # each device gathers its own shard locally
            batched = jax.jit(lambda ds, i: ds.gather(i)["image"])(ds, idx)
            assert batched.sharding.spec == P(None, "data")
            np.testing.assert_array_equal(np.asarray(batched), images[np.asarray(idx)])
    # a host batch of the ImageNet pipeline onto the mesh
    batch = imagenet.to_device({"image": images[:8], "label": labels[:8]}, data.make_mesh())
    assert batch["image"].sharding.spec == P("data")
    assert [s.data.shape for s in batch["image"].addressable_shards] == [(2, 8, 8, 3)] * 4
    # the same batch, augmentation included, on 4 devices as on 1
    np.testing.assert_array_equal(outs[4][0], outs[1][0])
    np.testing.assert_array_equal(outs[4][1], outs[1][1])
    try:
        data.DeviceDataset.from_arrays(images, labels, data.make_mesh()).put_indices(
            np.zeros((2, 6), np.int32))
    except ValueError as err:
        assert "batch_size=6" in str(err) and "4 devices" in str(err)
    else:
        raise AssertionError("batch of 6 over 4 devices was accepted")
    print("ok")
""")


def test_sharded_gather_on_four_devices():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED_CHILD], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


# --- ImageNet pipeline -------------------------------------------------------------------------

def fake_imagenet(n=10):
    """Examples of assorted sizes whose label is their index."""
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 256, (int(rng.integers(20, 60)), int(rng.integers(20, 60)),
                                            3), dtype=np.uint8), "label": i} for i in range(n)]


def test_random_resized_box_stays_inside_and_in_range():
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(s) for s in rng.integers(8, 300, 2))
        left, top, right, bottom = imagenet.random_resized_box(rng, h, w)
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
    left, top, right, bottom = imagenet.center_box(256, 320, 224)
    assert (right - left, bottom - top) == (224, 224) and (left, top) == (48, 16)


def test_imagenet_pipeline_train_and_eval():
    source = fake_imagenet(10)
    train = imagenet.from_source(source, "train", 4, seed=1, image_size=16, num_epochs=2,
                                 num_threads=2)
    batches = list(train)
    assert len(batches) == 5  # 20 examples over 2 epochs, partial batches dropped
    assert batches[0]["image"].shape == (4, 16, 16, 3) and batches[0]["image"].dtype == np.uint8
    assert batches[0]["label"].dtype == np.int32 and batches[0]["mask"].all()
    again = list(imagenet.from_source(source, "train", 4, seed=1, image_size=16, num_epochs=2,
                                      num_threads=2))
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    labels = np.concatenate([b["label"] for b in batches])
    assert sorted(labels[:8]) == sorted(set(labels[:8]))  # no repeats within the first epoch

    seen = []
    for process in range(2):  # each process reads its own half, the same number of batches
        val = list(imagenet.from_source(source, "validation", 4, image_size=16, num_threads=2,
                                        process_index=process, process_count=2))
        assert len(val) == 3 and val[0]["image"].shape == (2, 16, 16, 3)
        seen += [int(l) for b in val for l, m in zip(b["label"], b["mask"]) if m]
    assert sorted(seen) == list(range(10))


def test_imagenet_stream_starts_at_any_batch_and_keeps_a_subset():
    """`start_batch=s` yields the stream's batches s, s+1, ... (how a resumed run continues);
    `num_examples` keeps the source's first examples, in training and in evaluation."""
    source = fake_imagenet(10)
    kw = dict(seed=3, image_size=12, num_threads=2, num_examples=7)
    whole = list(imagenet.from_source(source, "train", 2, num_epochs=3, **kw))
    tail = list(imagenet.from_source(source, "train", 2, num_epochs=3, start_batch=4, **kw))
    assert len(whole) == 10 and len(tail) == 6  # 21 examples in batches of 2
    for a, b in zip(whole[4:], tail):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    labels = np.concatenate([b["label"] for b in whole])
    assert labels.max() < 7 and sorted(labels[:6]) == sorted(set(labels[:6]))
    val = list(imagenet.from_source(source, "validation", 4, image_size=12, num_threads=2,
                                    num_examples=7))
    assert [float(b["mask"].sum()) for b in val] == [4.0, 3.0]
    assert [int(l) for b in val for l, m in zip(b["label"], b["mask"]) if m] == list(range(7))


def test_imagenet_worker_processes_yield_the_same_batches():
    """`worker_count` moves decoding into grain worker processes (in a program that never
    parsed absl flags, as here); the batches are the same."""
    source = fake_imagenet(12)
    kw = dict(seed=2, image_size=8, num_epochs=2, num_threads=2)
    threads = list(imagenet.from_source(source, "train", 4, **kw))
    workers = list(imagenet.from_source(source, "train", 4, worker_count=2, **kw))
    assert len(workers) == len(threads) == 6
    for a, b in zip(threads, workers):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_imagenet_dataset_through_tfds_mock():
    with tfds.testing.mock_data(num_examples=6):
        batch = next(iter(imagenet.dataset("train", 2, image_size=24, num_threads=2)))
        assert batch["image"].shape == (2, 24, 24, 3) and batch["image"].dtype == np.uint8
        val = list(imagenet.dataset("validation", 4, image_size=24, num_threads=2))
        assert [float(b["mask"].sum()) for b in val] == [4.0, 2.0]


def test_micro_batches_take_a_share_of_every_device():
    """32 examples on 4 devices (8 each) in 2 micro-batches of 16: micro-batch i holds rows
    4i..4i+3 of each device's 8, so each micro-batch spreads over the devices as the batch does,
    and together they hold the batch once."""
    batch = np.arange(32 * 3).reshape(32, 3)
    micro = data.micro_batches(batch, 2, 4)
    assert micro.shape == (2, 16, 3)
    for i in range(2):
        for device in range(4):
            share = micro[i, 4 * device:4 * (device + 1), 0] // 3
            np.testing.assert_array_equal(share, np.arange(8 * device + 4 * i,
                                                           8 * device + 4 * i + 4))
    np.testing.assert_array_equal(np.sort(micro.reshape(32, 3), axis=0), batch)
    np.testing.assert_array_equal(data.micro_batches(batch, 4, 1), batch.reshape(4, 8, 3))
