"""What each dataset is: classes, image shape, pixel statistics, sizes, default augmentation.

Mean and std are per channel on the 0-255 scale of the uint8 pixels (what `normalize` takes),
computed over the training split (population std over all its pixels), rounded to 0.01:

- MNIST: 0.1307 / 0.3081 (x 255), the usual values.
- Fashion-MNIST: 0.2860 / 0.3530 (x 255), computed from the Debian IDX files (a test checks).
- CIFAR-10: (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616) (x 255). The often copied std
  (0.2023, 0.1994, 0.2010) is a mean of per-image stds, not the dataset's.
- CIFAR-100: (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762) (x 255).
- ImageNet: (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) (x 255), the torchvision values.

The author's Caffe runs subtracted a mean image instead; dividing by the std as well is ours.

Default augmentation, as the author ran it (shared/reference/smith2018_runs.md): CIFAR ResNet /
Wide ResNet / DenseNet prototxts use `mirror: true, crop_size: 32` on 32x32 images, i.e. a random
horizontal flip only ("flip"); his shallow 3-layer CIFAR nets used none (pass
`augmentation="none"` for them); MNIST-type data none. ImageNet's random-resized crop + flip is
done on the host by `hparams_jax.data.imagenet`, not on the device.
"""

from __future__ import annotations

import dataclasses

from hparams_jax import _validate as v


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset (see the module docstring for the numbers' sources)."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C) of the images the model sees
    mean: tuple[float, ...]  # per channel, 0-255 scale
    std: tuple[float, ...]  # per channel, 0-255 scale
    train_size: int
    test_size: int
    augmentation: str  # the author's: an on-device policy of `augment`, or a host pipeline's
    in_memory: bool  # True: `load` returns whole splits; False: streamed (`data.imagenet`)
    tfds_name: str


def _scaled(values):
    return tuple(round(255.0 * x, 2) for x in values)


def _entry(name, num_classes, image_shape, mean, std, train_size, test_size, augmentation,
           in_memory=True):
    return DatasetInfo(name, num_classes, image_shape, _scaled(mean), _scaled(std), train_size,
                       test_size, augmentation, in_memory, tfds_name=name)


_INFOS = {
    i.name: i
    for i in (
        _entry("mnist", 10, (28, 28, 1), [0.13066048], [0.30810781], 60_000, 10_000, "none"),
        _entry("fashion_mnist", 10, (28, 28, 1), [0.28604060], [0.35302424], 60_000, 10_000,
               "none"),
        _entry("cifar10", 10, (32, 32, 3), [0.49139968, 0.48215841, 0.44653091],
               [0.24703223, 0.24348513, 0.26158784], 50_000, 10_000, "flip"),
        _entry("cifar100", 100, (32, 32, 3), [0.50707516, 0.48654887, 0.44091784],
               [0.26733429, 0.25643846, 0.27615047], 50_000, 10_000, "flip"),
        _entry("imagenet2012", 1000, (224, 224, 3), [0.485, 0.456, 0.406],
               [0.229, 0.224, 0.225], 1_281_167, 50_000, "random_resized_crop_flip",
               in_memory=False),
    )
}

# Splits the in-memory datasets offer ("test" is ImageNet's "validation" split).
SPLITS = ("train", "test")


def available() -> list[str]:
    """Names of the datasets this package knows (whether or not their files are here)."""
    return list(_INFOS)


def info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of `name` (one of `available()`)."""
    v.one_of("name", name, _INFOS)
    return _INFOS[name]


def check_split(split: str) -> str:
    return v.one_of("split", split, SPLITS)
