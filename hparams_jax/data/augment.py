"""Augmentation and normalisation on the device, inside jit, from explicit PRNG keys.

The author's CIFAR runs flip only (his 32-pixel crop of 32x32 images is a no-op); the common
pad-4 random crop is offered beside it (`crop_flip`). Each image draws its own flip and crop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hparams_jax import _validate as v

POLICIES = ("none", "flip", "crop_flip")


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirrors each NHWC image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def random_crop(key: jax.Array, images: jax.Array, *, pad: int = 4) -> jax.Array:
    """Zero-pads each image by `pad` pixels and crops a random window of the original size."""
    n, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[2]))

    return jax.vmap(crop)(padded, offsets)


def augment(key: jax.Array, images: jax.Array, policy: str) -> jax.Array:
    """`policy`: "none", "flip" (the author's CIFAR augmentation) or "crop_flip"."""
    v.one_of("policy", policy, POLICIES)
    if policy == "none":
        return images
    crop_key, flip_key = jax.random.split(key)
    if policy == "crop_flip":
        images = random_crop(crop_key, images)
    return random_flip(flip_key, images)


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """uint8 pixels to float32 with zero mean and unit variance per channel."""
    return (images.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(
        std, jnp.float32)
