"""Host throughput of the streamed ImageNet pipeline (`hparams_jax.data.imagenet`): training
images/s of JPEG decoding, random-resized crop, resize and flip, per reader-thread and
worker-process count, on this machine's CPU -- what a host must sustain to keep its
accelerators fed (Sec. 5.3's runs).

The source holds synthetic photo-like JPEGs of ImageNet's typical size (about 400x450,
quality 90) and decodes them on access with tfds' own image decoder, as a prepared tfds
data source does; no ImageNet files are needed.

    python experiments/bench_imagenet_pipeline.py [--images 512] [--threads 1 2 4] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np

from hparams_jax.data import imagenet
from timing import table


class JpegSource:
    """Random access to {"image", "label"} examples stored as JPEG bytes, decoded on read."""

    def __init__(self, count: int, seed: int = 0):
        from PIL import Image

        rng = np.random.default_rng(seed)
        self.blobs = []
        for _ in range(count):
            h, w = int(rng.integers(300, 500)), int(rng.integers(350, 500))
            coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
            smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))
            noisy = np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255)
            buffer = io.BytesIO()
            Image.fromarray(noisy.astype(np.uint8)).save(buffer, "JPEG", quality=90)
            self.blobs.append(buffer.getvalue())

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int):
        import tensorflow_datasets as tfds

        return {"image": tfds.features.Image().decode_example_np(self.blobs[i]), "label": i}


def images_per_second(source, threads: int, workers: int, batch: int, image_size: int) -> float:
    """Training images/s of one pass over `source` (after a first batch that warms up)."""
    stream = iter(imagenet.from_source(source, "train", batch, image_size=image_size,
                                       num_threads=threads, worker_count=workers,
                                       num_epochs=2))
    next(stream)
    count, start = 0, time.perf_counter()
    for _ in range(len(source) // batch):
        count += len(next(stream)["label"])
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="JPEGs in the source")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4],
                        help="reader-thread counts to time")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="grain worker-process counts to time (0: threads only)")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--image-size", type=int, default=224, help="side of the crops")
    args = parser.parse_args()
    source = JpegSource(args.images)
    kb = np.mean([len(b) for b in source.blobs]) / 1e3
    rows = [{"worker processes": w, "reader threads": t,
             "images/s": f"{images_per_second(source, t, w, args.batch, args.image_size):.0f}"}
            for w in args.workers for t in args.threads]
    print(f"{os.cpu_count()} cores, {args.images} JPEGs of {kb:.0f} kB on average, "
          f"{args.image_size}x{args.image_size} crops, batch {args.batch}")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
