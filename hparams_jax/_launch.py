"""A multi-process run from the command line (`train`, `experiment run`): the options that name
its processes, and joining them through `jax.distributed.initialize()` before JAX starts (the
one multi-host path, TPU pods and GPU clusters alike)."""

from __future__ import annotations

import argparse
import os

from hparams_jax.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that trains full runs: `--distributed`, or the processes of a
    multi-process run."""
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host TPU/GPU)")
    parser.add_argument("--coordinator", metavar="HOST:PORT", help="multi-process: process 0's")
    parser.add_argument("--num-processes", type=int, help="multi-process: how many processes")
    parser.add_argument("--process-id", type=int, help="multi-process: this one's, 0 to N-1")


def join_cluster(args: argparse.Namespace) -> None:
    """Joins a multi-process run before JAX starts: the processes named by --coordinator,
    --num-processes and --process-id (CPU processes talk through gloo collectives), or, with
    --distributed alone, the cluster `jax.distributed.initialize()` detects (a TPU VM's)."""
    explicit = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
                "--process-id": args.process_id}
    given = [name for name, value in explicit.items() if value is not None]
    if not given and not args.distributed:
        return
    import jax

    if not given:
        jax.distributed.initialize()
        return
    if len(given) < 3:
        missing = ", ".join(name for name in explicit if name not in given)
        raise ConfigError(f"{', '.join(given)} given without {missing}: a multi-process run "
                          "needs all three of --coordinator, --num-processes and --process-id.")
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--coordinator {args.coordinator!r} is not allowed: --coordinator "
                          "must be HOST:PORT, e.g. 10.0.0.1:1234.")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise ConfigError(f"--num-processes {args.num_processes} --process-id "
                          f"{args.process_id}: --num-processes must be >= 1 and --process-id "
                          f"in [0, {args.num_processes}).")
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:  # the user's choice stands
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
