"""Datasets, on-device augmentation and mesh batching (Smith 2018's datasets).

`load(name, split)` gives a split as uint8 NHWC images and int32 labels; `info(name)` its
shape, statistics and the author's augmentation; `augment`/`normalize` run inside jit;
`epoch_indices`/`eval_indices` and the mesh helpers lay batches out over devices.
"""

from hparams_jax.data.augment import POLICIES, augment, normalize, random_crop, random_flip
from hparams_jax.data.pipeline import (batch_sharding, check_batch_divisible, epoch_indices,
                                       eval_indices, make_mesh, replicated)
from hparams_jax.data.sources import (DatasetInfo, DatasetUnavailableError, available, info,
                                      load)

__all__ = [
    "POLICIES", "DatasetInfo", "DatasetUnavailableError", "augment", "available",
    "batch_sharding", "check_batch_divisible", "epoch_indices", "eval_indices", "info",
    "load", "make_mesh", "normalize", "random_crop", "random_flip", "replicated",
]
