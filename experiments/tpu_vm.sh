#!/usr/bin/env bash
# Run an hparams_jax training job on every host of a Cloud TPU VM slice (e.g. v4-32).
#
# Every host runs the same command; `--distributed` makes each call
# jax.distributed.initialize(), after which the global batch is sharded over all chips of the
# slice and process 0 writes the metrics, summary and (with orbax, from all hosts) the
# checkpoints. The workdir must be on storage every host sees (a GCS bucket mounted with
# gcsfuse, or Filestore); tfds data likewise (TFDS_DATA_DIR).
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b WORKDIR=/mnt/bucket/runs/resnet56 \
#     bash experiments/tpu_vm.sh --model resnet56 --dataset cifar10 --epochs 95 \
#       --batch-size 512 --lr-policy one_cycle --min-lr 0.08 --max-lr 0.8 \
#       --momentum 0.95 --weight-decay 1e-4
#
# Prepare the dataset once beforehand (on any machine with internet access):
#   python -c "import tensorflow_datasets as tfds; tfds.data_source('cifar10', download=True)"
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM's name}"
: "${ZONE:?set ZONE to the TPU VM's zone}"
: "${WORKDIR:?set WORKDIR to a folder all hosts share}"

# Build this checkout into a wheel and install it, with JAX for TPU, on every host.
here="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf "${here}/dist" && python3 -m pip wheel -q --no-deps "${here}" -w "${here}/dist"
wheel="$(ls "${here}"/dist/hparams_jax-*.whl)"
gcloud compute tpus tpu-vm scp "${wheel}" "${TPU_NAME}:/tmp/" --zone "${ZONE}" --worker=all
setup="python3 -m pip install -q 'jax[tpu]' /tmp/$(basename "${wheel}")"
train="hparams-jax train --distributed --no-progress --workdir '${WORKDIR}' $*"

gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone "${ZONE}" --worker=all \
  --command "set -e; ${setup}; ${train}"
