"""Datasets as in-memory arrays: `load(name, split) -> (images uint8 NHWC, labels int32)`.

The paper's small datasets (MNIST, CIFAR-10/100; Smith 2018, Sec. 4-5) and the offline
Fashion-MNIST. Source: tensorflow-datasets' `tfds.data_source` (array_record files, no
TensorFlow needed) from prepared data; `fashion_mnist` first reads Debian's
`dataset-fashion-mnist` IDX files. Nothing is downloaded: a missing dataset raises
`DatasetUnavailableError` saying where it looked and the command that gets it.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
from pathlib import Path

import numpy as np

from hparams_jax import _validate as v

SPLITS = ("train", "test")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "HPARAMS_JAX_FASHION_MNIST_DIR"
_IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class DatasetUnavailableError(RuntimeError):
    """The dataset's files are not on this machine."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Shape and statistics of a dataset; `mean`/`std` per channel on the 0-255 scale.

    `augmentation` is the author's (Smith 2018 runs, see shared/reference): random horizontal
    flip for CIFAR (his 32-pixel crop of 32x32 images is a no-op), none for MNIST-type data.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    augmentation: str


_INFO = {
    "mnist": DatasetInfo("mnist", 10, (28, 28, 1), (33.32,), (78.57,), 60_000, 10_000, "none"),
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (28, 28, 1), (72.94,), (90.02,), 60_000,
                                 10_000, "none"),
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), (125.31, 122.95, 113.87),
                           (62.99, 62.09, 66.70), 50_000, 10_000, "flip"),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3), (129.30, 124.07, 112.43),
                            (68.17, 65.39, 70.42), 50_000, 10_000, "flip"),
}
IMAGENET = "imagenet2012"


def available() -> list[str]:
    """Dataset names `load` (and, for imagenet2012, `imagenet.batches`) accepts."""
    return sorted([*_INFO, IMAGENET])


def info(name: str) -> DatasetInfo:
    v.one_of("name", name, tuple(_INFO))
    return _INFO[name]


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; gzip): magic 0x00 0x00 dtype ndim, big-endian dims."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_idx(split: str) -> tuple[np.ndarray, np.ndarray] | None:
    folder = Path(os.environ.get(FASHION_MNIST_ENV, FASHION_MNIST_DIR))
    paths = [folder / f for f in _IDX_FILES[split]]
    if not all(p.exists() for p in paths):
        return None
    images, labels = (_read_idx(p) for p in paths)
    return images[..., None], labels.astype(np.int32)


def _load_tfds(name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # tfds raises assorted errors for missing files
        return err
    # tfds decodes (PNG) one record at a time whichever way it is asked; this is load-once.
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
    labels = np.asarray([e["label"] for e in examples], np.int32)
    return images, labels


@functools.lru_cache(maxsize=8)
def _load(name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    looked = []
    if name == "fashion_mnist":
        found = _load_idx(split)
        if found is not None:
            return found
        looked.append(f"Debian's IDX files in {os.environ.get(FASHION_MNIST_ENV, FASHION_MNIST_DIR)}")
    found = _load_tfds(name, split, data_dir)
    if not isinstance(found, Exception):
        return found
    import tensorflow_datasets as tfds

    looked.append(f"tfds data_dir {data_dir or tfds.core.constants.DATA_DIR} "
                  f"({type(found).__name__})")
    get = [f"python -c \"import tensorflow_datasets as tfds; "
           f"tfds.data_source('{name}', download=True)\" (on a machine with internet access, "
           "then copy the data_dir)"]
    if name == "fashion_mnist":
        get.insert(0, "sudo apt-get install dataset-fashion-mnist")
    raise DatasetUnavailableError(
        f"dataset {name!r} (split {split!r}) is not available: looked in "
        f"{'; '.join(looked)}. Get it with: {' or '.join(get)}.")


def load(name: str, split: str, *, data_dir: str | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """The whole split as `(images, labels)`: uint8 (N, H, W, C) and int32 (N,), read-only."""
    v.one_of("name", name, tuple(_INFO))
    v.one_of("split", split, SPLITS)
    images, labels = _load(name, split, data_dir)
    for a in (images, labels):
        a.flags.writeable = False
    return images, labels
