"""LeNet on MNIST: the author's LeNet protocol (Caffe's `lenet_solver.prototxt` and the paper's
Table 1, MNIST rows), exactly as `fashion_mnist_lenet.py` runs it (see its docstring for which
values are the author's and which are inferred); only the dataset differs. MNIST is read from
tfds files (`hparams_jax.data.sources`), not from the offline Fashion-MNIST IDX files.
"""

from hparams_jax.experiment import Experiment
from hparams_jax.experiment.protocols import lenet_protocol

EXPERIMENT = Experiment(
    name="mnist_lenet",
    title="LeNet, MNIST",
    section="Sec. 3, 4.1-4.4; Table 1 (MNIST rows)",
    **lenet_protocol("mnist", steps_per_epoch=60_000 // 512),
    eval_every_epochs=0.25,
    notes=("The author's logs hold no MNIST run: no paper number is shown for any row. A "
           "public Keras reproduction of this protocol reports, means of 5 runs: inv 85 "
           "epochs 98.92%, 1cycle 12 epochs 99.05%.",),
)
