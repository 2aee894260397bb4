#!/usr/bin/env bash
# Run one experiment of the paper's grid (experiments/configs/NAME.py) on every host of a Cloud
# TPU VM slice (e.g. v4-16: 8 chips on 2 hosts).
#
#   TPU_NAME=my-v4-16 ZONE=us-central2-b ROOT=/mnt/bucket/runs TFDS_DATA_DIR=/mnt/bucket/tfds \
#     bash experiments/tpu_vm.sh cifar10_resnet56 --runs 4 [--setting one_cycle ...] [--scale 0.1]
#
# Every host runs `hparams-jax experiment run NAME --distributed ...`: `--distributed` makes
# each process call jax.distributed.initialize(), after which the global batch is sharded over
# all chips of the slice and process 0 writes the metrics and summaries (checkpoints are written
# by all hosts, with orbax). ROOT (where runs/NAME/SETTING go) must be storage every host sees
# at the same path (a GCS bucket mounted with gcsfuse, or Filestore), so that an interrupted
# setting resumes when the same command is run again; so must the tfds data (TFDS_DATA_DIR,
# CIFAR/MNIST prepared in array_record format, see experiments/README.md). Afterwards copy
# ROOT/NAME into runs/ of a checkout and run `hparams-jax experiment report`.
#
# The global batch must be a multiple of the number of chips: the super-convergence rows
# (batch 1000) run on slices of 1, 2, 4 or 8 chips only.
#
# A single training run instead (the `hparams-jax train` command, WORKDIR on shared storage):
#   TPU_NAME=... ZONE=... WORKDIR=/mnt/bucket/runs/resnet56 \
#     bash experiments/tpu_vm.sh train --model resnet56 --dataset cifar10 --epochs 95 \
#       --batch-size 512 --lr-policy one_cycle --min-lr 0.08 --max-lr 0.8 \
#       --momentum 0.95 --weight-decay 1e-4
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM's name}"
: "${ZONE:?set ZONE to the TPU VM's zone}"
if [[ $# -lt 1 ]]; then
  echo "usage: $0 NAME [experiment run options] | $0 train [train options]" >&2
  exit 2
fi

remote=/tmp/hparams_jax_grid
if [[ "$1" == "train" ]]; then
  shift
  : "${WORKDIR:?set WORKDIR to a folder all hosts share}"
  command="hparams-jax train --distributed --no-progress --workdir $(printf '%q' "${WORKDIR}")"
else
  : "${ROOT:?set ROOT to a folder all hosts share (the runs folder)}"
  name="$1"
  shift
  command="hparams-jax experiment run $(printf '%q' "${name}") --distributed --no-progress"
  command+=" --root $(printf '%q' "${ROOT}") --configs ${remote}/configs"
fi
if [[ $# -gt 0 ]]; then
  command+=" $(printf '%q ' "$@")"
fi
env=""
if [[ -n "${TFDS_DATA_DIR:-}" ]]; then
  env="export TFDS_DATA_DIR=$(printf '%q' "${TFDS_DATA_DIR}"); "
fi

# Build this checkout into a wheel; copy it and the experiment configs to every host.
here="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf "${here}/dist" && python3 -m pip wheel -q --no-deps "${here}" -w "${here}/dist"
wheel="$(ls "${here}"/dist/hparams_jax-*.whl)"
configs="${here}/dist/configs.tar.gz"
tar -C "${here}/experiments" -czf "${configs}" configs
gcloud compute tpus tpu-vm scp "${wheel}" "${configs}" "${TPU_NAME}:/tmp/" --zone "${ZONE}" \
  --worker=all
setup="python3 -m pip install -q 'jax[tpu]' /tmp/$(basename "${wheel}")"
unpack="rm -rf ${remote} && mkdir -p ${remote} && tar -C ${remote} -xzf /tmp/configs.tar.gz"

gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone "${ZONE}" --worker=all \
  --command "set -e; ${setup}; ${unpack}; ${env}${command}"
