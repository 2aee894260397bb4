"""hparams_jax: Smith's disciplined approach to neural-network hyper-parameters in JAX.

Smith, *A disciplined approach to neural network hyper-parameters: Part 1* (2018,
arXiv:1803.09820): cyclical learning rates, the LR range test, the 1cycle policy, cyclical
momentum and weight decay, as optax building blocks and a jit training loop.
"""

from hparams_jax.errors import ConfigError

__version__ = "0.1.0"
__all__ = ["ConfigError", "__version__"]
