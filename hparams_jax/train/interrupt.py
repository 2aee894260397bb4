"""Stopping a run cleanly on SIGINT (Ctrl-C, a notebook's "interrupt") or SIGTERM (a job
scheduler's stop or preemption notice).

`stop_on_signals()` installs handlers for the duration of a `with` block only (and only in the
main thread, the one Python delivers signals to), restoring the previous handlers afterwards.
The first signal is recorded, not raised: the training loop reads `StopRequest.requested()`
between chunks of steps, saves a checkpoint of the last completed step and raises
`TrainingInterrupted`. The first signal also puts the previous handler back, so a second Ctrl-C
stops at once as it would have without the block.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import jax
import numpy as np

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving its last completed step; run again to resume.

    A `KeyboardInterrupt`, so that code which stops on Ctrl-C stops here too. `exit_code` is the
    shell's convention for death by that signal: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """Whether a stop signal arrived (`signum`, None until one does)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        del frame
        if self.signum is None:
            self.signum = signum
        signal.signal(signum, _handler(self._previous[signum]))  # a second one acts at once

    def requested(self) -> bool:
        """True once any process of the run got a stop signal (all processes agree, so that
        they save the same step together)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            seen = multihost_utils.process_allgather(np.int32(self.signum or 0))
            self.signum = self.signum or int(np.max(seen)) or None
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "no signal"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Records SIGINT/SIGTERM in the yielded `StopRequest` for the duration of the block."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # signal handlers can only be set from the main thread
        return
    request._previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, request._handle)
    try:
        yield request
    finally:
        for s, previous in request._previous.items():
            signal.signal(s, _handler(previous))


def _handler(previous):
    """A handler `signal.signal` accepts back: None (one set outside Python) is the default."""
    return signal.SIG_DFL if previous is None else previous
