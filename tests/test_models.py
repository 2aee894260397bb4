"""Model zoo: registry and errors; output shapes; parameter counts against closed forms written
here from the architecture descriptions (prototxts / papers) and against published numbers;
Caffe pooling; the two layer forms (plain Flax and XLA:CPU) against each other; train/eval
behaviour of batch norm and dropout; gradients; optimiser metadata.

Kept cheap: real forwards only for the small CIFAR nets (jit, batch 2); the deep ones and the
ImageNet nets are checked with `jax.eval_shape`.
"""

import functools
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hparams_jax import models
from hparams_jax.models import layers, xla_cpu

FORMS = {"plain": models.PLAIN_LAYERS, "xla_cpu": models.XLA_CPU_LAYERS}

NAMES = ["cifar3", "densenet40", "inception_resnet_v2", "lenet", "resnet110", "resnet20",
         "resnet50", "resnet56", "wide_resnet32_4"]


def n_params(model) -> int:
    return models.count_params(nnx.state(model, nnx.Param))


@functools.lru_cache(maxsize=None)
def abstract(name, num_classes):
    """The model with ShapeDtypeStruct leaves (no RNG work); read-only, so cached."""
    return nnx.eval_shape(lambda: models.create(name, num_classes=num_classes,
                                                rngs=nnx.Rngs(params=0, dropout=1)))


def output_shape(model, x_shape):
    """Shape/dtype of the eval-mode forward, traced but not compiled."""
    graphdef, state = nnx.split(model)

    def forward(state, x):
        m = nnx.merge(graphdef, state)
        m.eval()
        return m(x)

    return jax.eval_shape(forward, state, jax.ShapeDtypeStruct(x_shape, jnp.float32))


def normal(seed, shape):
    """Test inputs from NumPy (a jax.random draw compiles a threefry program per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


@nnx.jit
def forward(model, x):
    return model(x)


# --- closed-form parameter counts, from the architecture descriptions ------------------------

def conv(k, cin, cout, bias=False):
    kh, kw = (k, k) if isinstance(k, int) else k
    return kh * kw * cin * cout + (cout if bias else 0)


def bn(c):  # BN scale + bias (Caffe BatchNorm + Scale(bias_term)); running stats not counted
    return 2 * c


def fc(cin, cout):
    return cin * cout + cout


def lenet_count(nc):
    return conv(5, 1, 20, True) + conv(5, 20, 50, True) + fc(4 * 4 * 50, 500) + fc(500, nc)


def cifar3_count(nc):
    # conv 5x5 32/32/64 with biases; three ceil-mode 3x3/2 pools: 32 -> 16 -> 8 -> 4
    return (conv(5, 3, 32, True) + conv(5, 32, 32, True) + conv(5, 32, 64, True)
            + fc(4 * 4 * 64, nc))


def plain_block(c):  # conv3-BN-ReLU-conv3-BN, identity shortcut
    return 2 * (conv(3, c, c) + bn(c))


def down_block(cin, cout):  # first conv stride 2, 2x2/2 projection + BN on the shortcut
    return (conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + bn(cout)
            + conv(2, cin, cout) + bn(cout))


def author_resnet56_count(nc):
    # gResnet56.prototxt, in its own grouping: group0 = 8 plain + block8 (16->32),
    # group1 = 8 plain + block8 (32->64), group2 = 8 plain; then global pool, fc.
    first = conv(3, 3, 16) + bn(16)
    return (first + 8 * plain_block(16) + down_block(16, 32) + 8 * plain_block(32)
            + down_block(32, 64) + 8 * plain_block(64) + fc(64, nc))


def author_style_resnet_count(n, nc):
    # He et al.'s (n, n, n) blocks per width, projection shortcuts as in the author's blocks.
    return (conv(3, 3, 16) + bn(16) + n * plain_block(16) + down_block(16, 32)
            + (n - 1) * plain_block(32) + down_block(32, 64) + (n - 1) * plain_block(64)
            + fc(64, nc))


def he_option_a_count(n, nc=10):
    # He et al. 2016 Sec. 4.2: 6n+2 layers, identity (zero-padding) shortcuts: no projections.
    def first_of_stage(cin, cout):
        return conv(3, cin, cout) + conv(3, cout, cout) + 2 * bn(cout)
    return (conv(3, 3, 16) + bn(16) + n * plain_block(16) + first_of_stage(16, 32)
            + (n - 1) * plain_block(32) + first_of_stage(32, 64) + (n - 1) * plain_block(64)
            + fc(64, nc))


def wide32_count(nc):
    # wide32cifar.prototxt: 5 blocks at 16, 5 at 64, 5 at 256; first block of groups 1, 2
    # downsamples with a 2x2/2 projection.
    return (conv(3, 3, 16) + bn(16) + 5 * plain_block(16) + down_block(16, 64)
            + 4 * plain_block(64) + down_block(64, 256) + 4 * plain_block(256) + fc(256, nc))


def densenet40_count(nc, k=12):
    # genDensenet40.prototxt: conv 16; 3 x 12 x [BN, conv3x3 k]; transitions [BN, conv1x1];
    # final BN; fc. No conv biases.
    total, c = conv(3, 3, 16), 16
    for block in range(3):
        for _ in range(12):
            total += bn(c) + conv(3, c, k)
            c += k
        if block < 2:
            total += bn(c) + conv(1, c, c)
    assert c == 448
    return total + bn(c) + fc(c, nc)


def resnet50_count(nc):
    # He et al. 2016 Table 1: conv1 7x7 64; stages of [1x1 w, 3x3 w, 1x1 4w] x 3, 4, 6, 3 for
    # w = 64, 128, 256, 512; a 1x1 projection in each stage's first block; fc.
    total, cin = conv(7, 3, 64) + bn(64), 64
    for w, n in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for j in range(n):
            total += conv(1, cin, w) + conv(3, w, w) + conv(1, w, 4 * w) + bn(w) * 2 + bn(4 * w)
            if j == 0:
                total += conv(1, cin, 4 * w) + bn(4 * w)
            cin = 4 * w
    return total + fc(2048, nc)


def inception_resnet_v2_count(nc):
    # inception-resnet-v2.prototxt: every conv but the "up" projections is conv + BN + Scale.
    def cbn(k, cin, cout):
        return conv(k, cin, cout) + bn(cout)
    stem = (cbn(3, 3, 32) + cbn(3, 32, 32) + cbn(3, 32, 64) + cbn(1, 64, 80) + cbn(3, 80, 192)
            + cbn(1, 192, 96) + cbn(1, 192, 48) + cbn(5, 48, 64) + cbn(1, 192, 64)
            + cbn(3, 64, 96) + cbn(3, 96, 96) + cbn(1, 192, 64))
    block_a = (cbn(1, 320, 32) + cbn(1, 320, 32) + cbn(3, 32, 32) + cbn(1, 320, 32)
               + cbn(3, 32, 48) + cbn(3, 48, 64) + conv(1, 128, 320, bias=True))
    red_a = cbn(3, 320, 384) + cbn(1, 320, 256) + cbn(3, 256, 256) + cbn(3, 256, 384)
    block_b = (cbn(1, 1088, 192) + cbn(1, 1088, 128) + cbn((1, 7), 128, 160)
               + cbn((7, 1), 160, 192) + conv(1, 384, 1088, bias=True))
    red_b = (cbn(1, 1088, 256) + cbn(3, 256, 384) + cbn(1, 1088, 256) + cbn(3, 256, 288)
             + cbn(1, 1088, 256) + cbn(3, 256, 288) + cbn(3, 288, 320))
    block_c = (cbn(1, 2080, 192) + cbn(1, 2080, 192) + cbn((1, 3), 192, 224)
               + cbn((3, 1), 224, 256) + conv(1, 448, 2080, bias=True))
    return (stem + 10 * block_a + red_a + 20 * block_b + red_b + 10 * block_c
            + cbn(1, 2080, 1536) + fc(1536, nc))


CLOSED_FORM = {
    "lenet": (lenet_count, 10),
    "cifar3": (cifar3_count, 10),
    "resnet20": (lambda nc: author_style_resnet_count(3, nc), 10),
    "resnet56": (author_resnet56_count, 10),
    "resnet110": (lambda nc: author_style_resnet_count(18, nc), 10),
    "wide_resnet32_4": (wide32_count, 10),
    "densenet40": (densenet40_count, 10),
    "resnet50": (resnet50_count, 1000),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
@pytest.mark.parametrize("num_classes", [None, 100])
def test_param_count_matches_closed_form(name, num_classes):
    formula, default = CLOSED_FORM[name]
    nc = num_classes or default
    assert n_params(abstract(name, nc)) == formula(nc)


@pytest.fixture(scope="module")
def irv2():
    # A real init: nnx.eval_shape of this 700-variable net is slower here (13 s) than
    # initialising it (5 s), because of quadratic tracer look-ups in nnx.Rngs.
    return models.create("inception_resnet_v2", num_classes=1000,
                         rngs=nnx.Rngs(params=0, dropout=1))


def test_inception_resnet_v2_count_and_shapes(irv2):
    assert n_params(irv2) == inception_resnet_v2_count(1000) == 55_843_464
    stats = models.count_params(nnx.state(irv2, nnx.BatchStat))
    # Keras' InceptionResNetV2: 55,873,736 incl. BN statistics (mean, variance: 2 per BN
    # channel); its BNs have no scale, so it has one parameter per BN channel fewer.
    assert stats == 60_544
    assert n_params(irv2) - stats // 2 + stats == 55_873_736
    assert abs(n_params(irv2) / 55.8e6 - 1) < 0.01
    for size in (299, 75, 229):
        out = output_shape(irv2, (2, size, size, 3))
        assert out.shape == (2, 1000) and out.dtype == jnp.float32
    # a valid conv and a ceil-mode pool of an even map disagree at the reductions' concat
    with pytest.raises(ValueError, match="299"):
        output_shape(irv2, (1, 224, 224, 3))


def test_published_counts():
    # He et al. 2016 Table 6 "0.85M" / "1.7M" are option-A nets (853,018 / 1,727,962 exactly);
    # the author's blocks add 2x2 projections (and his ResNet-56 drops one 16-wide block).
    assert he_option_a_count(9) == 853_018 and he_option_a_count(18) == 1_727_962
    r56 = n_params(abstract("resnet56", 10))
    r110 = n_params(abstract("resnet110", 10))
    assert r56 == 858_778 and abs(r56 / he_option_a_count(9) - 1) < 0.01
    assert abs(r110 / he_option_a_count(18) - 1) < 0.01
    # torchvision's resnet50: 25,557,032.
    assert n_params(abstract("resnet50", 1000)) == 25_557_032
    # Huang et al. 2017 Table 2: DenseNet (L=40, k=12) "1.0M".
    assert abs(n_params(abstract("densenet40", 10)) / 1.0e6 - 1) < 0.05
    assert n_params(abstract("lenet", 10)) == 431_080


# --- registry and errors ---------------------------------------------------------------------

def test_available():
    assert models.available() == NAMES


@pytest.mark.parametrize("bad", ["resnet", "ResNet56", "", None, 56])
def test_unknown_name(bad):
    with pytest.raises(ValueError) as err:
        models.create(bad, num_classes=10, rngs=nnx.Rngs(0))
    msg = str(err.value)
    assert repr(bad) in msg and "resnet56" in msg and "densenet40" in msg


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10", None])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        models.create("lenet", num_classes=bad, rngs=nnx.Rngs(0))


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="rngs"):
        models.create("lenet", num_classes=10, rngs=0)
    with pytest.raises(ValueError, match="bn_momentum"):
        models.create("resnet20", num_classes=10, rngs=nnx.Rngs(0), bn_momentum=1.0)
    with pytest.raises(ValueError, match="depth"):
        models.create("densenet40", num_classes=10, rngs=nnx.Rngs(0), depth=41)
    model = models.create("cifar3", num_classes=10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        model(jnp.zeros((2, 3, 32, 32)))  # NCHW
    with pytest.raises(ValueError, match="H = W = 32"):
        model(jnp.zeros((2, 28, 28, 3)))


def test_a_keyword_the_network_does_not_take_is_refused_naming_those_it_takes():
    with pytest.raises(ValueError, match=r"model='lenet' takes no keyword 'in_channels': the "
                                         r"keywords it takes are input_size, dtype, layers\."):
        models.create("lenet", num_classes=10, rngs=nnx.Rngs(0), in_channels=1)
    with pytest.raises(ValueError, match=r"model='resnet20' takes no keywords 'depht', 'widht'"):
        models.create("resnet20", num_classes=10, rngs=nnx.Rngs(0), depht=3, widht=2)
    model = models.create("cifar3", num_classes=10, rngs=nnx.Rngs(0), in_channels=1,
                          input_size=28)  # the --set model_options example
    assert model(jnp.zeros((2, 28, 28, 1))).shape == (2, 10)


# --- forward passes ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,shape", [
    ("lenet", (2, 28, 28, 1)), ("cifar3", (2, 32, 32, 3)), ("resnet20", (2, 32, 32, 3)),
    ("resnet56", (2, 32, 32, 3)), ("wide_resnet32_4", (2, 32, 32, 3))])
def test_forward(name, shape):
    model = models.create(name, num_classes=7, rngs=nnx.Rngs(params=0, dropout=1))
    model.eval()
    y = forward(model, normal(0, shape))
    assert y.shape == (2, 7) and y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y)))


def test_bfloat16_compute():
    model = models.create("cifar3", num_classes=10, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    assert model.conv1.kernel[...].dtype == jnp.float32  # parameters stay float32
    y = forward(model, normal(0, (2, 32, 32, 3)))
    assert y.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("name,shape,nc", [
    ("resnet110", (2, 32, 32, 3), 10), ("densenet40", (2, 32, 32, 3), 100),
    ("resnet50", (2, 64, 64, 3), 1000), ("resnet50", (1, 224, 224, 3), 1000)])
def test_output_shape(name, shape, nc):
    out = output_shape(abstract(name, nc), shape)
    assert out.shape == (shape[0], nc) and out.dtype == jnp.float32


# --- Caffe pooling and LRN against brute force -----------------------------------------------

def caffe_pool_reference(x, k, s, p, op):
    n, h, w, c = x.shape
    out_h = int(math.ceil((h + 2 * p - k) / s)) + 1
    out_w = int(math.ceil((w + 2 * p - k) / s)) + 1
    if p > 0:
        out_h -= (out_h - 1) * s >= h + p
        out_w -= (out_w - 1) * s >= w + p
    y = np.zeros((n, out_h, out_w, c), np.float32)
    for i in range(out_h):
        for j in range(out_w):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            size = (he - hs) * (we - ws)  # Caffe's AVE divisor: includes the pad
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, hs:he, ws:we, :]
            y[:, i, j] = win.max(axis=(1, 2)) if op == "max" else win.sum(axis=(1, 2)) / size
    return y


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("h,k,s,p", [(32, 3, 2, 0), (16, 3, 2, 0), (8, 3, 2, 0), (7, 3, 2, 0),
                                     (112, 3, 2, 0), (8, 2, 2, 0), (9, 3, 1, 1), (10, 3, 2, 1)])
def test_caffe_pooling(h, k, s, p, form):
    ops = FORMS[form]
    x = np.asarray(normal(h, (2, h, h + 1, 3)))
    np.testing.assert_allclose(ops.max_pool(jnp.asarray(x), k, s, p),
                               caffe_pool_reference(x, k, s, p, "max"), rtol=1e-6)
    np.testing.assert_allclose(ops.avg_pool(jnp.asarray(x), k, s, p),
                               caffe_pool_reference(x, k, s, p, "ave"), rtol=1e-5, atol=1e-6)
    assert layers.pooled_size(h, k, s, p) == caffe_pool_reference(x, k, s, p, "max").shape[1]


@pytest.mark.parametrize("h,k,s,p", [(7, 3, 2, 0), (9, 3, 1, 1), (8, 2, 2, 0)])
def test_pooling_gradients_agree_between_forms(h, k, s, p):
    """The strided-slice pooling of the XLA:CPU form has the gradient of lax.reduce_window
    (ties broken alike: the inputs are distinct, so each window has one maximum)."""
    x = normal(h, (2, h, h + 1, 3))
    dy = normal(h + 1, (2, layers.pooled_size(h, k, s, p), layers.pooled_size(h + 1, k, s, p),
                        3))
    grads = {}
    for form, ops in FORMS.items():
        def loss(x):
            return jnp.sum(dy * ops.max_pool(x, k, s, p)) + jnp.sum(dy * ops.avg_pool(x, k, s, p))
        grads[form] = jax.grad(loss)(x)
    np.testing.assert_allclose(grads["xla_cpu"], grads["plain"], rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(grads["plain"]).max()) > 0


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("k,stride,pad", [(1, 1, 0), (1, 2, 0), (3, 2, 1), (2, 2, 0)])
def test_conv_matches_lax(k, stride, pad, form):
    conv = FORMS[form].conv(8, 5, k, strides=stride, pad=pad, use_bias=True, rngs=nnx.Rngs(0))
    x = normal(0, (2, 7, 9, 8))
    expected = jax.lax.conv_general_dilated(
        x, conv.kernel[...], (stride, stride), layers.pad2d(pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv.bias[...]
    np.testing.assert_allclose(conv(x), expected, rtol=1e-5, atol=1e-5)
    prims = {e.primitive.name for e in jax.make_jaxpr(conv)(x).jaxpr.eqns}
    # the XLA:CPU form runs 1x1 convs as a GEMM; the plain form is lax's convolution
    assert ("dot_general" in prims) == (k == 1 and form == "xla_cpu")
    assert ("conv_general_dilated" in prims) == (k != 1 or form == "plain")


@pytest.mark.parametrize("form", FORMS)
def test_lrn_within_channel(form):
    from hparams_jax.models.cifar3 import lrn_within_channel
    x = np.asarray(normal(1, (1, 5, 6, 2))) * 30
    padded = np.pad(x ** 2, ((0, 0), (1, 1), (1, 1), (0, 0)))
    mean = sum(padded[:, i:i + 5, j:j + 6] for i in range(3) for j in range(3)) / 9
    expected = x / (1 + 5e-5 * mean) ** 0.75
    np.testing.assert_allclose(lrn_within_channel(jnp.asarray(x), layers=FORMS[form]),
                               expected, rtol=1e-5)


# --- the two layer forms: the same variables, values and gradients ------------------------

def variable_tree(model):
    """(path, variable type, shape, dtype) of every variable of a module."""
    return [(path, type(var).__name__, var.shape, var.dtype)
            for path, var in nnx.to_flat_state(nnx.state(model))]


# every network's kinds of layers, at depths that build quickly (the variable tree of a deeper
# network only repeats these blocks)
SHALLOW = {"lenet": {}, "cifar3": {}, "resnet20": {},
           "wide_resnet32_4": {"blocks": (1, 1, 1)}, "densenet40": {"depth": 7},
           "resnet50": {"blocks": (1, 1, 1, 1)}, "inception_resnet_v2": {"blocks": (1, 1, 2)}}
SMALL = {  # networks with every XLA:CPU layer form, sized to compile quickly
    "cifar3": ({}, (2, 32, 32, 3)),  # ceil-mode max- and avg-pools with overhang, LRN
    "wide_resnet32_4": ({"blocks": (1, 1, 1), "widths": (8, 16, 32)},
                        (4, 16, 16, 3)),  # batch norm, strided 2x2 projections
    "densenet40": ({"depth": 7, "growth_rate": 4, "dropout_rate": 0.0},
                   (4, 16, 16, 3)),  # batch norm, 1x1 transitions, 2x2 avg-pool
}


@pytest.mark.parametrize("name", SHALLOW)
def test_layer_forms_build_the_same_variables(name):
    """Checkpoints move between the plans: the XLA:CPU form of every network has the plain
    form's variable tree, and the plain form is Flax's own layers (no XLA:CPU code)."""
    build = lambda ops: nnx.eval_shape(lambda: models.create(
        name, num_classes=10, layers=ops, rngs=nnx.Rngs(params=0, dropout=1), **SHALLOW[name]))
    plain, cpu = build(models.PLAIN_LAYERS), build(models.XLA_CPU_LAYERS)
    assert variable_tree(cpu) == variable_tree(plain)
    norms = lambda model: {type(m) for _, m in nnx.iter_graph(model)
                           if isinstance(m, nnx.BatchNorm)}
    assert norms(plain) <= {nnx.BatchNorm}
    assert norms(cpu) == ({xla_cpu.BatchNorm} if norms(plain) else set())
    convs = [m for _, m in nnx.iter_graph(plain) if isinstance(m, nnx.Conv)]
    assert convs and all(c.conv_general_dilated is jax.lax.conv_general_dilated for c in convs)


@pytest.mark.parametrize("name", SMALL)
def test_layer_forms_compute_the_same_values_and_gradients(name):
    """One training-mode forward and backward of each form from the same initialisation:
    logits, updated batch-norm statistics and parameter gradients agree to float32 rounding
    of differently ordered sums (rtol 1e-4 of each tensor's largest entry)."""
    options, shape = SMALL[name]
    x = 2.0 + normal(7, shape)
    labels = jnp.arange(shape[0]) % 10
    out = {}
    for form, ops in FORMS.items():
        model = models.create(name, num_classes=10, layers=ops,
                              rngs=nnx.Rngs(params=0, dropout=1), **options)
        graph, params, rest = nnx.split(model, nnx.Param, ...)

        @jax.jit
        def step(params, rest):
            def loss(params):
                m = nnx.merge(graph, params, rest, copy=True)
                logits = m(x)
                ce = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(shape[0]), labels])
                return ce, (logits, nnx.state(m, nnx.BatchStat))
            (_, aux), grads = jax.value_and_grad(loss, has_aux=True)(params)
            return aux, grads

        out[form] = step(params, rest)
    assert_trees_close(out["xla_cpu"], out["plain"], rtol=1e-4)
    grads = jax.tree.leaves(out["plain"][1])
    assert grads and all(float(jnp.abs(g).max()) > 0 for g in grads)


# --- train / eval ---------------------------------------------------------------------------

def test_batch_norm_train_eval():
    model = models.create("resnet20", num_classes=10, rngs=nnx.Rngs(0))
    x = 3.0 + 2.0 * normal(1, (4, 32, 32, 3))
    stats0 = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    model.eval()
    y1, y2 = forward(model, x), forward(model, x)
    np.testing.assert_array_equal(y1, y2)
    chex_equal = jax.tree.map(np.array_equal, stats0, nnx.state(model, nnx.BatchStat))
    assert all(jax.tree.leaves(chex_equal)), "eval mode must not update running statistics"
    model.train()
    y_train = forward(model, x)
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), stats0,
                           nnx.state(model, nnx.BatchStat))
    assert all(jax.tree.leaves(changed)), "train mode must update every running statistic"
    # the stem's running mean moved 10% (momentum 0.9) of the way to the batch mean
    stem_out = model.stem.conv(x)
    np.testing.assert_allclose(model.stem.bn.mean[...], 0.1 * stem_out.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-6)
    assert not np.allclose(y_train, y1)  # batch statistics differ from the initial ones
    model.eval()
    assert not np.allclose(forward(model, x), y1)  # ... and the running averages moved


def batch_norm_pair(c, seed=0):
    """`xla_cpu.BatchNorm` and ``nnx.BatchNorm`` with the same (non-trivial) variables."""
    ours = xla_cpu.LAYERS.batch_norm(c, layers.BatchNormSpec(momentum=0.9), rngs=nnx.Rngs(0))
    assert type(ours) is xla_cpu.BatchNorm
    ref = nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    for bn in (ours, ref):
        bn.scale[...] = 1.0 + 0.5 * normal(seed + 1, (c,))
        bn.bias[...] = normal(seed + 2, (c,))
        bn.mean[...], bn.var[...] = normal(seed + 3, (c,)), 1.0 + normal(seed + 4, (c,)) ** 2
    return ours, ref


def batch_norm_vjp(graph, params, stats, x, dy):
    """Train-mode output, updated running statistics and gradients (scale and bias, input)."""
    def apply(params, x):
        model = nnx.merge(graph, params, stats, copy=True)
        return model(x), nnx.state(model, nnx.BatchStat)

    (y, new_stats), vjp = jax.vjp(apply, params, x)
    return y, new_stats, vjp((dy, jax.tree.map(jnp.zeros_like, new_stats)))


def split_bn(bn):
    graph, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)
    return functools.partial(batch_norm_vjp, graph), params, stats


def assert_trees_close(a, b, rtol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol * float(np.abs(v).max()))


@pytest.mark.parametrize("shape", [(8, 8, 8, 16), (4, 8, 8, 52), (2, 2, 2, 256),
                                   (3, 5, 5, 12)])  # the last one has no lane-dense view
def test_batch_norm_matches_nnx(shape):
    ours, ref = batch_norm_pair(shape[-1])
    x = 3.0 + 2.0 * normal(5, shape)
    dy = normal(6, shape)
    (f_ours, *state_ours), (f_ref, *state_ref) = split_bn(ours), split_bn(ref)
    assert_trees_close(jax.jit(f_ours)(*state_ours, x, dy), jax.jit(f_ref)(*state_ref, x, dy),
                       rtol=1e-4)
    lanes = math.lcm(shape[-1], 128)
    reshapes = [e.params["new_sizes"] for e in jax.make_jaxpr(f_ours)(*state_ours, x, dy).eqns
                if e.primitive.name == "reshape"]
    lane_dense = math.prod(shape[1:]) % lanes == 0
    assert any(sizes[-1] == lanes for sizes in reshapes) == lane_dense
    ours.eval(), ref.eval()
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)


def test_batch_norm_matches_nnx_under_vmap():
    members = [batch_norm_pair(16, seed) for seed in (0, 10)]
    x = jnp.stack([3.0 + normal(s, (4, 8, 8, 16)) for s in (5, 15)])
    dy = jnp.stack([normal(s, (4, 8, 8, 16)) for s in (6, 16)])

    def vmapped(which):
        splits = [split_bn(pair[which]) for pair in members]
        stack = lambda i: jax.tree.map(lambda *a: jnp.stack(a), *(s[i] for s in splits))
        return jax.jit(jax.vmap(splits[0][0]))(stack(1), stack(2), x, dy)

    assert_trees_close(vmapped(0), vmapped(1), rtol=1e-4)


SHARDED_BATCH_NORM = """
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from hparams_jax.models import layers, xla_cpu
bn = xla_cpu.LAYERS.batch_norm(16, layers.BatchNormSpec(), rngs=nnx.Rngs(0))
graph, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)

def loss(params, stats, x):
    model = nnx.merge(graph, params, stats, copy=True)
    return jnp.sum(jnp.sin(model(x))), nnx.state(model, nnx.BatchStat)

x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 8, 8, 16), np.float32)) + 1.0
step = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
single = step(params, stats, x)
# the engine's mesh (automatic axes) and jax.make_mesh's (explicit axes)
for mesh in (Mesh(np.asarray(jax.devices()), ("data",)), jax.make_mesh((4,), ("data",))):
    sharded = step(params, stats, jax.device_put(x, NamedSharding(mesh, P("data"))))
    assert sharded[1][1].sharding.spec[0] == "data", sharded[1][1].sharding
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))
print("ok")
"""


def test_batch_norm_sharded_over_four_devices():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED_BATCH_NORM], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_dropout_train_eval():
    # DenseNet's dropout on a 7-layer variant of densenet40 (same class, cheap to compile).
    def make(seed):
        return models.create("densenet40", num_classes=10, depth=7,
                             rngs=nnx.Rngs(params=0, dropout=seed))
    a, b = make(1), make(2)
    np.testing.assert_array_equal(a.fc.kernel[...], b.fc.kernel[...])
    x = normal(3, (2, 32, 32, 3))
    a.eval(), b.eval()
    assert all(d.deterministic for d in [a.transitions[0].dropout, a.blocks[0][0].dropout])
    ea = forward(a, x)
    np.testing.assert_array_equal(ea, forward(a, x))  # eval: deterministic, dropout off
    np.testing.assert_array_equal(ea, forward(b, x))  # ... whatever the dropout stream
    a.train(), b.train()
    ya, yb = forward(a, x), forward(b, x)
    assert not np.allclose(ya, yb), "train mode: different dropout rngs, different outputs"
    assert not np.allclose(ya, forward(a, x)), "train mode: the dropout stream advances"


@pytest.mark.parametrize("name", ["resnet20", "cifar3"])
def test_gradients_finite(name):
    model = models.create(name, num_classes=10, rngs=nnx.Rngs(0))
    x = normal(1, (4, 32, 32, 3))
    labels = jnp.array([0, 1, 2, 3])

    @nnx.jit
    def loss_and_grads(model):
        def loss_fn(model):
            logits = model(x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])
        return nnx.value_and_grad(loss_fn)(model)

    loss, grads = loss_and_grads(model)
    leaves = jax.tree.leaves(grads)
    assert np.isfinite(float(loss))
    assert len(leaves) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


# --- optimiser metadata --------------------------------------------------------------------

def test_weight_decay_multipliers_cifar3():
    model = models.create("cifar3", num_classes=100, rngs=nnx.Rngs(0))
    mults = model.weight_decay_multipliers()
    flat = {"/".join(map(str, p)): float(v[...]) for p, v in nnx.to_flat_state(mults)}
    assert flat["fc/kernel"] == 250.0 and flat["fc/bias"] == 0.0
    assert all(v == 1.0 for k, v in flat.items() if not k.startswith("fc/"))
    # same structure as the parameters: usable in a tree_map
    params = nnx.state(model, nnx.Param)
    scaled = jax.tree.map(lambda p, m: m * p, params, mults)
    np.testing.assert_allclose(scaled["fc"]["kernel"][...], 250 * params["fc"]["kernel"][...])
    lr = {"/".join(map(str, p)): float(v[...])
          for p, v in nnx.to_flat_state(model.lr_multipliers())}
    assert lr["conv1/bias"] == lr["fc/bias"] == 2.0 and lr["conv3/bias"] == 1.0


def test_multiplier_patterns(irv2):
    flat = {"/".join(map(str, p)): float(v[...])
            for p, v in nnx.to_flat_state(irv2.weight_decay_multipliers())}
    zero = sorted(k for k, v in flat.items() if v == 0.0)
    assert len(zero) == 41 and "blocks_b/19/up/bias" in zero and "fc/bias" in zero
    with pytest.raises(ValueError, match="match no parameter"):
        models.param_multipliers(irv2, {"fc/nonexistent": 0.0})


def test_initialisation_statistics():
    model = models.create("resnet56", num_classes=10, rngs=nnx.Rngs(0))
    kernel = np.asarray(model.stages[2][3].conv0.conv.kernel[...])  # 3x3x64x64, msra
    assert kernel.std() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.03)
    assert abs(kernel.mean()) < 0.05 * kernel.std()
    np.testing.assert_array_equal(model.stages[0][0].conv0.bn.scale[...], 1.0)
    np.testing.assert_array_equal(model.stages[0][0].conv0.bn.bias[...], 0.0)
    # Caffe xavier: U(+-sqrt(3 / fan_in)), variance 1 / fan_in
    fc = np.asarray(models.create("lenet", num_classes=10, rngs=nnx.Rngs(0)).fc1.kernel[...])
    assert np.abs(fc).max() <= math.sqrt(3 / fc.shape[0])
    assert fc.std() == pytest.approx(math.sqrt(1 / fc.shape[0]), rel=0.01)
