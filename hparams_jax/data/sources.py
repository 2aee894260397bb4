"""Whole splits of the small datasets as NumPy arrays: `load(name, split)`.

Sources, in order:
1. `fashion_mnist` only: Debian's `dataset-fashion-mnist` IDX files, in
   `$HPARAMS_JAX_FASHION_MNIST_DIR` or `/usr/share/datasets/fashion-mnist/` (the offline data
   of this project's tests, demo and CPU-scale reproductions).
2. tensorflow-datasets files prepared in array_record format, read with `tfds.data_source`
   (random access, no TensorFlow needed) in batched `__getitems__` reads.

Loaded splits are cached per process and returned read-only (`images.flags.writeable` is
False): take a copy (`np.array(images)`) before writing into one.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from hparams_jax.data import catalog
from hparams_jax.data.idx import read_idx
from hparams_jax.errors import ConfigError

FASHION_MNIST_ENV = "HPARAMS_JAX_FASHION_MNIST_DIR"
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_STEMS = {"train": "train", "test": "t10k"}
_READ_CHUNK = 4096  # examples per batched read of a tfds data source


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are not on this machine; the message says where we looked and how to
    get them."""


def load(name: str, split: str, *, data_dir: str | os.PathLike | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W, C), labels int32 (N,)) of a whole split, read-only.

    Args:
      name: "mnist", "fashion_mnist", "cifar10" or "cifar100".
      split: "train" or "test".
      data_dir: the tfds data folder (default: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).

    Returns:
      The images, uint8 (N, H, W, C), and the labels, int32 (N,), both read-only.

    Raises:
      DatasetUnavailableError: the files are missing (the message says how to get them).
      ConfigError: `name` or `split` is unknown, or `name` is streamed (imagenet2012).

    Examples:
      >>> from hparams_jax import data
      >>> images, labels = data.load("fashion_mnist", "test")
      >>> images.shape, images.dtype, labels.shape, labels.dtype
      ((10000, 28, 28, 1), dtype('uint8'), (10000,), dtype('int32'))
      >>> images[:256].shape, images.flags.writeable
      ((256, 28, 28, 1), False)
    """
    ds_info = catalog.info(name)
    catalog.check_split(split)
    if not ds_info.in_memory:
        raise ConfigError(f"name={name!r} is streamed, not loaded whole: use "
                          f"hparams_jax.data.imagenet.dataset(split, batch_size, ...) for it; "
                          f"load() takes one of {in_memory_names()}.")
    idx_dir = fashion_mnist_dir() if name == "fashion_mnist" else None
    return _load_cached(name, split, None if data_dir is None else str(data_dir), idx_dir)


def in_memory_names() -> list[str]:
    return [n for n in catalog.available() if catalog.info(n).in_memory]


def fashion_mnist_dir() -> str:
    """Where the Fashion-MNIST IDX files are looked for."""
    return os.environ.get(FASHION_MNIST_ENV) or DEBIAN_FASHION_MNIST_DIR


def tfds_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """The tfds data folder that `data_dir=None` stands for."""
    if data_dir is not None:
        return str(data_dir)
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, split: str, data_dir: str | None, idx_dir: str | None):
    if idx_dir is not None:
        arrays = _load_idx(idx_dir, split)
        if arrays is not None:
            return _read_only(*arrays)
    source = open_tfds(name, split, data_dir=data_dir, idx_dir=idx_dir)
    return _read_only(*read_all(source))


def _idx_paths(idx_dir: str, split: str) -> tuple[Path, Path]:
    stem = _IDX_STEMS[split]
    return (Path(idx_dir) / f"{stem}-images-idx3-ubyte.gz",
            Path(idx_dir) / f"{stem}-labels-idx1-ubyte.gz")


def _load_idx(idx_dir: str, split: str):
    """Fashion-MNIST from IDX files (gzipped or not), or None when they are not there."""
    found = []
    for path in _idx_paths(idx_dir, split):
        if not path.exists():
            path = path.with_suffix("")  # the uncompressed file
        if not path.exists():
            return None
        found.append(path)
    images, labels = (read_idx(p) for p in found)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{found[0]} and {found[1]} do not match: images {images.shape}, "
                         f"labels {labels.shape}.")
    return images[..., None], labels.astype(np.int32)


def _read_only(images: np.ndarray, labels: np.ndarray):
    images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def open_tfds(name: str, split: str, *, data_dir=None, idx_dir: str | None = None, decoders=None):
    """`tfds.data_source(...)` of an array_record dataset already prepared (never downloads);
    `DatasetUnavailableError` with instructions when it is not there (or tensorflow-datasets,
    which reads it, is not installed)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DatasetUnavailableError(
            f"dataset {name!r} is read with tensorflow-datasets, which is not installed here: "
            "pip install tensorflow-datasets (Fashion-MNIST also reads Debian's IDX files: "
            f"set ${FASHION_MNIST_ENV} to their folder).") from err

    tfds_split = "validation" if (name == "imagenet2012" and split == "test") else split
    try:
        return tfds.data_source(catalog.info(name).tfds_name, split=tfds_split,
                                data_dir=data_dir, download=False, decoders=decoders)
    except (NotImplementedError, AssertionError, FileNotFoundError, OSError) as err:
        raise DatasetUnavailableError(unavailable_message(name, data_dir, idx_dir)) from err


def _prepared_format(name: str, data_dir) -> str | None:
    """The file format `name` is prepared in under `data_dir`, or None if it is not there."""
    try:
        import tensorflow_datasets as tfds

        builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared():
            return str(builder.info.file_format.value)
    except Exception:  # noqa: BLE001 - only used to word the error message
        pass
    return None


def unavailable_message(name: str, data_dir=None, idx_dir: str | None = None) -> str:
    """Which dataset is missing, where we looked and the commands that get it."""
    where = tfds_data_dir(data_dir)
    fmt = _prepared_format(name, data_dir)
    lines = [f"dataset {name!r} is not available on this machine."]
    if idx_dir is not None:
        images, labels = _idx_paths(idx_dir, "train")
        lines += [f"- Debian IDX files: not found in {idx_dir} (looked for {images.name}, "
                  f"{labels.name}, t10k-...; set ${FASHION_MNIST_ENV} to their folder).",
                  "  Install them (as root): sudo apt-get install dataset-fashion-mnist"]
    if fmt is not None:
        lines.append(f"- tfds data_dir {where}: {name} is prepared there as {fmt}, but random "
                     "access needs array_record. Prepare it again in that format:")
    else:
        lines.append(f"- tfds data_dir {where}: no prepared {name} found there.")
    dd = f", data_dir={where!r}"
    if name == "imagenet2012":
        lines += [
            "  ImageNet must be downloaded by hand: register at https://image-net.org, put "
            f"ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in {where}/downloads/manual/, "
            "then (preparing needs TensorFlow: pip install tensorflow):",
            f"  tfds build imagenet2012 --data_dir={where} --file_format=array_record"]
    else:
        lines += [
            "  On a machine with network access (preparing needs TensorFlow, reading does not):",
            "  pip install tensorflow",
            f"  python -c \"import tensorflow_datasets as tfds; tfds.data_source({name!r}{dd}, "
            "download=True)\"",
            f"  (or: tfds build {name} --data_dir={where} --file_format=array_record), then "
            f"copy {where}/{name} to this machine."]
    return "\n".join(lines)


def read_all(source) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels int32) of every example of a tfds data source, read in batches."""
    n = len(source)
    if n == 0:
        raise ValueError(f"{source!r} holds no examples.")
    first = _read_batch(source, [0])[0]
    images = np.empty((n, *np.shape(first["image"])), np.uint8)
    labels = np.empty((n,), np.int32)
    for start in range(0, n, _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, n)))
        examples = _read_batch(source, keys)
        images[start:start + len(keys)] = np.stack([e["image"] for e in examples])
        labels[start:start + len(keys)] = [int(e["label"]) for e in examples]
    return images, labels


def _read_batch(source, keys: list[int]) -> list:
    """`source.__getitems__(keys)` (3-4x faster than one `source[k]` per key on array_record)."""
    getitems = getattr(source, "__getitems__", None)
    if getitems is not None:
        try:
            return getitems(keys)
        except TypeError:
            # tfds.testing.mock_data (4.9.10) installs an unbound `__getitems__` on its mock
            # array_record reader; its `__getitem__` works.
            pass
    return [source[k] for k in keys]
