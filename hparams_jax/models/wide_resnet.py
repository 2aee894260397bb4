"""The author's wide ResNet-32: ``Cifar/architectures/wide32cifar.prototxt`` of
``lnsmith54/hyperParam1`` (Smith 2018's "Wide ResNet-32, k=4" runs ``wide32cifar_*`` in
``shared/reference/smith2018_runs.md``; Zagoruyko & Komodakis 2016).

The prototxt: conv3x3 16 -> BN -> ReLU, then three groups of 5 blocks at widths 16, 64 and
256 (the first group is not widened; Zagoruyko & Komodakis' WRN-32-4 would use 64/128/256),
the first block of groups 1 and 2 with stride 2 and a 2x2 stride-2 projection + BN
shortcut, global average pool, fc. Its blocks
are exactly `resnet_cifar.BasicBlock` (conv-BN-ReLU-conv-BN, no ReLU after the addition), so
the network is a `resnet_cifar.CifarResNet` with ``blocks=(5, 5, 5)``,
``widths=(16, 64, 256)``. 15 blocks x 2 + stem + fc = 32 layers (+2 projections).

Initialisation, BN (``moving_average_fraction: 0.9``) and optimiser metadata (fc bias
``lr_mult: 2, decay_mult: 0``) as in `resnet_cifar`; the conv biases the prototxt gives the
convs are omitted (cancelled by the BN).
"""

from __future__ import annotations

from flax import nnx

from hparams_jax.models.resnet_cifar import CifarResNet


def wide_resnet32_4(*, num_classes: int, rngs: nnx.Rngs, **kwargs) -> CifarResNet:
    """The author's WRN-32 (k=4): widths 16/64/256, 5/5/5 blocks."""
    kwargs.setdefault("blocks", (5, 5, 5))
    kwargs.setdefault("widths", (16, 64, 256))
    return CifarResNet(num_classes=num_classes, rngs=rngs, **kwargs)
