"""ImageNet (ILSVRC-2012) streamed from prepared tfds array_record files with grain.

`dataset(split, batch_size, seed=...)` is a `grain.IterDataset` of NumPy batches
{"image": uint8 (B, S, S, 3), "label": int32 (B,), "mask": float32 (B,)}, B = batch_size /
number of processes (each process reads its own share). JPEG decoding (inside the tfds data
source), cropping and resizing (Pillow, which releases the GIL) run on grain's reader threads,
optionally in `worker_count` processes; no Python loop over images runs in the training step.

- train: shuffled each epoch from `seed`, Inception-style random-resized crop (scale 8-100% of
  the area, aspect ratio 3/4-4/3), resized to S x S, random horizontal flip; the epochs run on
  without a break, so a batch may span two of them (only the stream's last partial batch is
  dropped); batch i is the same whatever batch the stream starts from; mask all ones.
- validation ("test" is accepted for it): the central crop of side min(H, W) * S / (S + 32)
  (224 of 256), resized to S x S; every image once, the last batch padded (mask 0 on padding).

Normalise on the device with `normalize(batch["image"], *info("imagenet2012").mean/std)`.
Requires `pip install grain` (tested with grain 0.2.18).
"""

from __future__ import annotations

import math
import os

import numpy as np

from hparams_jax import _validate as v
from hparams_jax.data import sources

NAME = "imagenet2012"
SPLITS = ("train", "validation", "test")
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def _grain():
    try:
        import grain
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("hparams_jax.data.imagenet needs grain: pip install grain") from err
    return grain


def random_resized_box(rng: np.random.Generator, height: int, width: int,
                       scale=SCALE, ratio=RATIO, attempts: int = 10) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random crop covering `scale` of the area with aspect
    ratio (w / h) in `ratio` (Szegedy et al. 2015); after `attempts` misses, the largest central
    crop whose ratio is in range."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def center_box(height: int, width: int, image_size: int) -> tuple[int, int, int, int]:
    """The central square of side min(H, W) * S / (S + 32) (the standard 224-of-256 crop)."""
    side = max(1, int(round(min(height, width) * image_size / (image_size + 32))))
    top, left = (height - side) // 2, (width - side) // 2
    return left, top, left + side, top + side


def _resize(image: np.ndarray, box, size: int) -> np.ndarray:
    from PIL import Image

    image = np.asarray(image, np.uint8)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    out = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box))
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return out


class TrainTransform:
    """Random-resized crop + flip of one example, for `MapDataset.random_map` (picklable, for
    grain's worker processes)."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, example, rng: np.random.Generator):
        image = np.asarray(example["image"])
        box = random_resized_box(rng, image.shape[0], image.shape[1])
        out = _resize(image, box, self.image_size)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        return {"image": np.ascontiguousarray(out), "label": np.int32(example["label"]),
                "mask": np.float32(1.0)}


class EvalTransform:
    """Central crop of example `i` of the source, or a masked blank from example `size` on."""

    def __init__(self, source, image_size: int, size: int | None = None):
        self.source, self.image_size = source, image_size
        self.size = len(source) if size is None else size

    def __call__(self, i: int):
        size = self.image_size
        if i >= self.size:
            return {"image": np.zeros((size, size, 3), np.uint8), "label": np.int32(0),
                    "mask": np.float32(0.0)}
        example = self.source[int(i)]
        image = np.asarray(example["image"])
        out = _resize(image, center_box(image.shape[0], image.shape[1], size), size)
        return {"image": out, "label": np.int32(example["label"]), "mask": np.float32(1.0)}


def _stack(examples):
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def from_source(source, split: str, batch_size: int, *, seed: int = 0, image_size: int = 224,
                num_epochs: int | None = None, num_threads: int = 16, worker_count: int = 0,
                num_examples: int | None = None, start_batch: int = 0,
                process_index: int = 0, process_count: int = 1):
    """The pipeline of `dataset` over any random-access `source` of {"image", "label"} examples
    (a tfds data source, a list). `batch_size` is global; this process yields its share.
    `num_examples` keeps the source's first examples only. Training batches are a pure function
    of (seed, batch number): `start_batch=s` yields exactly the batches s, s + 1, ... of the
    stream that starts at 0 (how a resumed run continues)."""
    grain = _grain()
    v.one_of("split", split, SPLITS)
    v.positive_int("batch_size", batch_size)
    v.positive_int("image_size", image_size)
    v.positive_int("num_threads", num_threads)
    v.positive_int("process_count", process_count)
    v.check("process_index", process_index, 0 <= process_index < process_count,
            f"in [0, process_count={process_count})")
    v.check("batch_size", batch_size, batch_size % process_count == 0,
            f"a multiple of the number of processes ({process_count})")
    v.check("start_batch", start_batch, isinstance(start_batch, int) and start_batch >= 0,
            "an integer >= 0")
    if num_epochs is not None:
        v.positive_int("num_epochs", num_epochs)
    size = len(source)
    if num_examples is not None:
        v.positive_int("num_examples", num_examples)
        size = min(size, num_examples)
    local = batch_size // process_count
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * local)
    if split == "train":
        ds = grain.MapDataset.source(source)[:size][process_index::process_count]
        ds = ds.shuffle(seed=seed).repeat(num_epochs)
        ds = ds.random_map(TrainTransform(image_size), seed=seed)
        ds = ds.batch(local, drop_remainder=True, batch_fn=_stack)[start_batch:]
        it = ds.to_iter_dataset(read)
    else:
        # Pad to whole global batches so every process yields the same number of batches.
        padded = -(-size // batch_size) * batch_size
        ds = grain.MapDataset.range(padded)[process_index::process_count]
        ds = ds.map(EvalTransform(source, image_size, size))
        it = ds.to_iter_dataset(read).batch(local, drop_remainder=True, batch_fn=_stack)
    if worker_count:
        _absl_flags_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


def _absl_flags_parsed() -> None:
    """grain's worker processes read an absl flag, which raises in a program that never parsed
    its flags (one not started by ``absl.app``; google/grain#1355): such a program keeps every
    flag's default."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def dataset(split: str, batch_size: int, *, seed: int = 0, image_size: int = 224,
            data_dir: str | os.PathLike | None = None, num_epochs: int | None = None,
            num_threads: int = 16, worker_count: int = 0):
    """ImageNet batches (see the module docstring) from tfds files prepared in array_record
    format under `data_dir`; `DatasetUnavailableError` (with the commands to prepare them)
    when they are not there. `num_epochs=None` repeats the training split forever."""
    import jax

    v.one_of("split", split, SPLITS)
    source = sources.open_tfds(NAME, split, data_dir=data_dir)
    return from_source(source, split, batch_size, seed=seed, image_size=image_size,
                       num_epochs=num_epochs, num_threads=num_threads,
                       worker_count=worker_count, process_index=jax.process_index(),
                       process_count=jax.process_count())


def to_device(batch: dict, mesh) -> dict:
    """A process's batch as global arrays sharded on the batch axis over `mesh`'s "data"."""
    import jax

    from hparams_jax.data.pipeline import batch_sharding

    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(x))
            for k, x in batch.items()}
