"""The zoo's networks on the catalog's datasets as a `Task` (Smith 2018's experiments): one way
of making a task, run by the same engine as a user's own.

The network is `models.create(config.model, ...)` in the config's precision with the plan's
layer implementations; the loss is softmax cross-entropy on standardised images (or, with
`normalization="mean"`, on pixel - mean at the 0-255 scale, as the author's Caffe data layers
fed them) with the accuracy; MNIST, Fashion-MNIST and CIFAR are held whole on the device(s)
with the dataset's on-device augmentation, ImageNet is streamed by `data.imagenet` (grain),
each process reading its share of every batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hparams_jax import data, models
from hparams_jax.data import imagenet, sources
from hparams_jax.errors import ConfigError
from hparams_jax.train.plan import resolve
from hparams_jax.train.task import EXAMPLE_MASK, Task, softmax_classification


def task(config) -> Task:
    """The `Task` of `config`'s network and dataset (see the module docstring)."""
    if config.model.startswith("task:") or config.dataset.startswith("task:"):
        raise ConfigError(f"model={config.model!r}, dataset={config.dataset!r} name a user's "
                          "task: this run trained the user's own model and data, so pass it "
                          "again as task=.")
    info = data.info(config.dataset)
    std = info.std if config.normalization == "standardize" else np.ones_like(info.std)
    loss = softmax_classification(np.asarray(info.mean, np.float32), np.asarray(std, np.float32))
    common = dict(model=network(config, info.num_classes), loss=loss,
                  precision_in_model=True, name=config.model)
    if info.in_memory:
        if config.image_size is not None:
            raise ConfigError(f"image_size={config.image_size} applies to streamed datasets; "
                              f"{config.dataset} is held whole at its own size: leave it None.")
        policy = config.augmentation or info.augmentation
        train_x, train_y = data.load(config.dataset, "train")
        test_x, test_y = data.load(config.dataset, "test")
        return Task(train={"image": train_x, "label": train_y},
                    eval={"image": test_x, "label": test_y},
                    augment=None if policy == "none" else functools.partial(_augment, policy),
                    **common)
    if config.augmentation not in (None, "none"):
        raise ConfigError(f"augmentation={config.augmentation!r}: {config.dataset} is "
                          f"augmented on the host ({info.augmentation}); leave it None.")
    return _streamed(config, info, common)


def network(config, num_classes: int, layers=None):
    """The factory `nnx.Rngs -> nnx.Module` of `config`'s network with `num_classes` outputs,
    in its precision, built from `layers` (default: those of the config's plan)."""
    layers = resolve(config.plan).layers if layers is None else layers
    return functools.partial(_network, config.model, num_classes, jnp.dtype(config.precision),
                             layers, tuple(sorted(config.model_options.items())))


def _network(name, num_classes, dtype, layers, options, rngs: nnx.Rngs) -> nnx.Module:
    return models.create(name, num_classes=num_classes, rngs=rngs, dtype=dtype, layers=layers,
                         **dict(options))


def _augment(policy: str, key, batch):
    return {**batch, "image": data.augment(key, batch["image"], policy)}


def _streamed(config, info, common) -> Task:
    """ImageNet from prepared tfds files: a seekable training stream (batch s of the stream
    is the same whatever batch it starts from) and the validation split's central crops, the
    last batch's padding masked."""
    train_source = sources.open_tfds(info.tfds_name, "train")
    test_source = sources.open_tfds(info.tfds_name, "validation")
    size = config.image_size or info.image_shape[0]
    num_train = min(len(train_source), config.train_examples or len(train_source))
    mesh = data.make_mesh()

    def batches(source, split, num_examples, start=0):
        local = imagenet.from_source(
            source, split, config.batch_size, seed=config.seed, image_size=size,
            worker_count=config.data_workers, num_examples=num_examples, start_batch=start,
            process_index=jax.process_index(), process_count=jax.process_count())
        return (imagenet.to_device(b, mesh) for b in local)

    def train(start: int = 0):
        return ({"image": b["image"], "label": b["label"]}
                for b in batches(train_source, "train", config.train_examples, start))

    def evaluate():
        return ({"image": b["image"], "label": b["label"], EXAMPLE_MASK: b["mask"]}
                for b in batches(test_source, "validation", config.eval_examples))

    if num_train < config.batch_size:
        raise ConfigError(f"batch_size={config.batch_size} is larger than the {num_train} "
                          "training examples: it must be at most that.")
    return Task(train=train, eval=evaluate, steps_per_epoch=num_train // config.batch_size,
                **common)
