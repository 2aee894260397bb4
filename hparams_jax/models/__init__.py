"""The networks of Smith 2018 as Flax NNX modules (NHWC, float32 by default).

``create(name, num_classes=..., rngs=nnx.Rngs(params=0, dropout=1))`` builds one of
`available()`:

======================= ========================================= ========= ==========
name                    source                                    input     parameters
======================= ========================================= ========= ==========
``lenet``               Caffe ``examples/mnist`` LeNet            28x28x1   431,080
``cifar3``              ``cifar3.prototxt`` (3 convs, LRN)        32x32x3   89,578
``resnet20``            author's block style, 3/3/3 blocks        32x32x3   280,154
``resnet56``            ``gResnet56.prototxt`` (26 blocks)        32x32x3   858,778
``resnet110``           author's block style, 18/18/18 blocks     32x32x3   1,738,394
``wide_resnet32_4``     ``wide32cifar.prototxt`` (16/64/256)      32x32x3   5,899,930
``densenet40``          ``genDensenet40.prototxt`` (k=12)         32x32x3   1,019,722
``resnet50``            ``resnet50.prototxt`` (v1)                224x224x3 25,557,032
``inception_resnet_v2`` ``inception-resnet-v2.prototxt``          299x299x3 55,843,464
======================= ========================================= ========= ==========

(parameter counts for 10 classes on CIFAR/MNIST, 1000 on ImageNet; ``nnx.Param`` scalars --
weights, biases, BN scale and bias -- not BN running statistics.) Prototxts are those of
``lnsmith54/hyperParam1``; each module's docstring lists its deviations from them. Shared
Caffe conventions (initialisers, padding, ceil-mode pooling, BN settings) are in `layers`.

Layers: every network takes ``layers=``, the implementations of its convolutions, batch norms
and poolings: ``PLAIN_LAYERS`` (plain Flax, the default) or ``XLA_CPU_LAYERS`` (the same
functions and variables in forms XLA:CPU runs faster; see `xla_cpu`). The training engine picks
one from its execution plan (`hparams_jax.train.plan`).

Modes: ``model.train()`` (the state after construction) uses batch statistics and updates
the BN running averages, and applies dropout; ``model.eval()`` uses the running averages and
no dropout. Dropout masks come from the ``dropout`` stream of the ``nnx.Rngs`` given at
construction. Per-parameter Caffe ``decay_mult`` / ``lr_mult`` (e.g. ``cifar3``'s 250x weight
decay on its last layer) are available as ``model.weight_decay_multipliers()`` /
``model.lr_multipliers()``.
"""

from hparams_jax import _extras

try:
    from hparams_jax.models.cifar3 import Cifar3
    from hparams_jax.models.densenet import DenseNet
    from hparams_jax.models.inception_resnet_v2 import InceptionResNetV2
    from hparams_jax.models.layers import PLAIN as PLAIN_LAYERS
    from hparams_jax.models.layers import Layers, count_params, param_multipliers
    from hparams_jax.models.lenet import LeNet
    from hparams_jax.models.registry import available, create
    from hparams_jax.models.resnet50 import ResNet50
    from hparams_jax.models.resnet_cifar import CifarResNet
    from hparams_jax.models.xla_cpu import LAYERS as XLA_CPU_LAYERS
except ModuleNotFoundError as _err:  # Flax comes with the train extra
    _extras.reraise(_err, "hparams_jax.models")

__all__ = [
    "available", "create", "count_params", "param_multipliers",
    "Layers", "PLAIN_LAYERS", "XLA_CPU_LAYERS",
    "LeNet", "Cifar3", "CifarResNet", "DenseNet", "ResNet50", "InceptionResNetV2",
]
