"""Orbax checkpoints of the train state: atomic saves every N steps, the last K kept, and a
restore that falls back to an older checkpoint when the newest cannot be read."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

logging.getLogger("absl").setLevel(logging.WARNING)


class Checkpointer:
    def __init__(self, directory: str | Path, *, keep: int):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=False),
        )

    def save(self, step: int, state: Any) -> None:
        """Writes `state` at `step` (to a temporary folder renamed into place when complete)."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def restore_latest(self, target: Any) -> tuple[int, Any] | None:
        """The newest readable checkpoint as `(step, state)` shaped like `target`, or None.

        A checkpoint that fails to restore (corrupt or partial files) is skipped with a
        warning and the previous one is tried; the unreadable ones are deleted once an older
        one has been read (or none could be), so that training writes them anew.
        """
        unreadable = []
        self.manager.reload()
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state = self.manager.restore(step, args=ocp.args.StandardRestore(target))
            except Exception as err:  # orbax raises many kinds for damaged files
                warnings.warn(f"checkpoint at step {step} in {self.directory} could not be "
                              f"read ({type(err).__name__}: {str(err)[:200]}); trying an older "
                              "one.", RuntimeWarning, stacklevel=2)
                unreadable.append(step)
                continue
            self._delete(unreadable)
            return step, state
        self._delete(unreadable)
        return None

    def _delete(self, steps) -> None:
        for step in steps:
            self.manager.delete(step)

    @property
    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def close(self) -> None:
        self.manager.close()
