"""Orbax checkpoints of the train state: atomic saves every N steps, the last K kept, and a
restore that never destroys what it cannot read.

A checkpoint is orbax's folder `checkpoints/STEP/`: `_CHECKPOINT_METADATA` and the state as the
single item `default/` (its tree in `_METADATA`, its arrays in an OCDBT database under
`manifest.ocdbt`). Orbax writes a save into `STEP.orbax-checkpoint-tmp` and renames it when
complete; a leftover of a killed save is not a checkpoint, and orbax replaces it when it saves
that step again.

`restore_latest` reads the newest checkpoint that fits the state, newest first:

- a step folder that is recognisably damaged (a file of that layout missing, empty or
  unreadable: an empty `320/`, a checkpoint whose `default/` is gone, truncated arrays) is
  moved to `checkpoints/damaged/STEP` with a warning that says so, and the previous one is
  tried;
- a checkpoint whose tree of arrays differs from the state's (a changed network, a package
  version that shapes the optimizer state differently) stops the restore with
  `CheckpointMismatchError` before anything is moved;
- entries whose names are not step numbers are not checkpoints and are left alone.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from hparams_jax.errors import ConfigError

DAMAGED = "damaged"
# The files every complete checkpoint of this layout has, each non-empty.
REQUIRED_FILES = ("_CHECKPOINT_METADATA", "default/_METADATA", "default/manifest.ocdbt")


class CheckpointMismatchError(ConfigError):
    """A workdir's checkpoints hold a different train state than the program builds (a
    `ConfigError`: the workdir does not fit this program; the command line exits 2)."""


class Checkpointer:
    """The checkpoints of one run in `directory`; `primary` is the process that moves damaged
    ones aside (process 0 of a multi-process run)."""

    def __init__(self, directory: str | Path, *, keep: int, primary: bool = True):
        self.directory = Path(directory).absolute()
        self.primary = primary
        # One unnamed item: orbax then never infers the layout from a (possibly damaged) folder.
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=False),
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    def save(self, step: int, state: Any) -> None:
        """Writes `state` at `step` (to a temporary folder renamed into place when complete)."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def restore_latest(self, target: Any) -> tuple[int, Any] | None:
        """The newest readable checkpoint as `(step, state)` shaped like `target`, or None.

        Damaged checkpoints newer than it are moved aside (see the module docstring); raises
        `CheckpointMismatchError`, having moved nothing, when the newest checkpoint that is not
        damaged holds a differently structured state.
        """
        self.manager.reload()
        damaged, found = [], None
        for step in sorted(self.manager.all_steps(), reverse=True):
            metadata, problem = self._inspect(step)
            if problem is None:
                difference = _difference(metadata, target)
                if difference:
                    raise CheckpointMismatchError(
                        f"workdir={str(self.directory.parent)!r}: the checkpoint of step {step} "
                        f"holds a differently structured train state ({difference}), as after a "
                        "change of network or package version; nothing was changed. Resume "
                        "with the code that wrote it, or use a new workdir.")
                try:
                    found = step, self.manager.restore(step,
                                                       args=ocp.args.StandardRestore(target))
                    break
                except (MemoryError, RuntimeError):  # out of (device) memory: not the files
                    raise
                except Exception as err:  # tensorstore raises plain Exceptions for bad data
                    problem = f"its arrays cannot be read ({type(err).__name__}: " \
                              f"{str(err)[:160]})"
            damaged.append((step, problem))
        self._set_aside(damaged, found[0] if found else None)
        return found

    def _inspect(self, step: int) -> tuple[Any, str | None]:
        """The saved tree's metadata of `step`, or why its folder is not a whole checkpoint."""
        path = self.directory / str(step)
        if not path.is_dir():
            return None, "not a folder"
        missing = [f for f in REQUIRED_FILES
                   if not (path / f).is_file() or (path / f).stat().st_size == 0]
        if missing:
            return None, f"{', '.join(missing)} missing or empty"
        try:
            return self.manager.item_metadata(step), None
        except Exception as err:  # a truncated or garbled _METADATA or manifest
            return None, f"its metadata cannot be read ({type(err).__name__}: {str(err)[:160]})"

    def _set_aside(self, damaged: list[tuple[int, str]], resumed: int | None) -> None:
        if not damaged:
            return
        then = f"resuming from step {resumed}" if resumed is not None else "starting afresh"
        for step, problem in damaged:
            target = _free_name(self.directory / DAMAGED / str(step))
            if self.primary:
                target.parent.mkdir(exist_ok=True)
                (self.directory / str(step)).rename(target)
            warnings.warn(f"checkpoint step {step} in {self.directory} is damaged ({problem}): "
                          f"moved it to {target}; {then}.", RuntimeWarning, stacklevel=3)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("hparams_jax: damaged checkpoints set aside")
        self.manager.reload()

    @property
    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def close(self) -> None:
        self.manager.close()


def _free_name(path: Path) -> Path:
    """`path`, or `path-1`, `path-2`, ... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _difference(metadata: Any, target: Any) -> str:
    """How the saved tree of arrays differs from `target`'s (keys, then shapes); "" if not."""
    saved = ocp.tree.to_flat_dict(getattr(metadata, "tree", metadata))
    wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(target, keep_empty_nodes=True))
    name = ".".join
    parts = []
    for keys, where in ((saved.keys() - wanted.keys(), "only in the checkpoint"),
                        (wanted.keys() - saved.keys(), "only in this program")):
        if keys:  # the shortest paths first: the parameters before their optimizer state
            paths = sorted(keys, key=lambda k: (len(k), k))
            parts.append(f"{where}: {_some([name(k) for k in paths])}")
    shapes = [f"{name(k)} {tuple(saved[k].shape)} saved, {tuple(np.shape(wanted[k]))} now"
              for k in sorted(saved.keys() & wanted.keys())
              if hasattr(saved[k], "shape") and hasattr(wanted[k], "shape")
              and tuple(saved[k].shape) != tuple(np.shape(wanted[k]))]
    if shapes:
        parts.append(f"shapes differ: {_some(shapes)}")
    return "; ".join(parts)


def _some(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more
