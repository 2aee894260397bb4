"""Datasets, on-device augmentation and mesh batching (Smith 2018's datasets).

A batch's way from disk to the model:
- `sources.load(name, split)`: a whole split as read-only uint8 NHWC images and int32 labels
  (tfds array_record files; Fashion-MNIST from Debian's IDX files first); `catalog.info(name)`:
  classes, shape, pixel statistics and the author's augmentation.
- `pipeline`: the split placed once on a "data" mesh (`DeviceDataset`), per-epoch shuffled
  (`epoch_indices`) or masked evaluation (`eval_indices`) index arrays, `gather` inside jit.
- `augment`: `augment(key, images, policy)` and `normalize` inside the compiled step.
- `imagenet`: ImageNet streamed with grain (host-side decode, crop and resize).
"""

from hparams_jax.data.augment import (POLICIES, augment, check_policy, normalize, random_crop,
                                      random_flip)
from hparams_jax.data.catalog import SPLITS, DatasetInfo, available, info
from hparams_jax.data.pipeline import (DeviceDataset, batch_sharding, check_batch_divisible,
                                       check_same_length, epoch_indices, eval_indices, gather,
                                       make_mesh, micro_batches, put, replicated)
from hparams_jax.data.sources import DatasetUnavailableError, load

__all__ = [
    "POLICIES", "SPLITS", "DatasetInfo", "DatasetUnavailableError", "DeviceDataset", "augment",
    "available", "batch_sharding", "check_batch_divisible", "check_policy", "check_same_length",
    "epoch_indices",
    "eval_indices", "gather", "info", "load", "make_mesh", "micro_batches", "normalize", "put",
    "random_crop", "random_flip", "replicated",
]
