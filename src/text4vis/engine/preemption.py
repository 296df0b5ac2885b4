"""Preemption: stop a training run cleanly on SIGTERM or SIGUSR1.

Clusters stop jobs with a signal ahead of the hard kill: SLURM sends SIGTERM (or, with
``--signal=USR1@SECONDS``, SIGUSR1 before the time limit), and ``torchrun`` forwards the signals it
gets to its workers. The handler installed by :class:`PreemptionHandler` only records the request;
the trainer asks :meth:`PreemptionHandler.should_stop` after every optimizer step, so the step in
flight finishes, ``last.pt`` is written (atomically, see :mod:`text4vis.engine.checkpoint`) and
the process exits with :data:`PREEMPTED_EXIT_STATUS`. ``--resume auto`` then continues exactly.

Under ``torchrun`` the flag is all-reduced (max) every step, so a signal reaching one rank stops
every rank after the same step. Signals that arrive while the checkpoint is being written change
nothing but the flag: the write is never interrupted.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from text4vis import distributed as dist_utils

__all__ = ["PREEMPTED_EXIT_STATUS", "PREEMPTION_SIGNALS", "PreemptionHandler"]

logger = logging.getLogger("text4vis.engine.preemption")

# EX_TEMPFAIL of sysexits.h: "a temporary failure; the user is invited to retry". A job script
# can requeue on it (`[ $? -eq 75 ] && scontrol requeue $SLURM_JOB_ID`).
PREEMPTED_EXIT_STATUS = 75
PREEMPTION_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionHandler:
    """Records SIGTERM / SIGUSR1 while training runs; the trainer polls it between steps.

    Use as a context manager around the training loop: the previous handlers are restored on
    exit, unless the run was stopped (the process is then expected to end; further signals are
    only logged). Installing needs the main thread; elsewhere (a library caller's thread) it does nothing
    and :meth:`should_stop` stays False unless another rank was signalled.

    Attributes:
        received: name of the first signal received in this process (None before any).
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = PREEMPTION_SIGNALS) -> None:
        self.signals = signals
        self.received: str | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._pid = os.getpid()
        self._stopping = False

    def __enter__(self) -> PreemptionHandler:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stopping:
            # The process is ending after a preemption. torchrun sends SIGTERM to the ranks still
            # running once one has exited, and the cluster may repeat its signal: neither must
            # cut the end of this one (the group's barrier, the final log, the summary).
            self._previous.clear()
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Forked DataLoader workers inherit this handler: only the training process stops (its
        # workers are ended by the loader when it stops).
        if os.getpid() != self._pid:
            return
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            # Only a flag here: the handler may run in the middle of a checkpoint write.
            logger.warning("%s received: stopping after the current optimizer step", name)
        else:
            logger.warning(
                "%s received again: already stopping (the save is not interrupted)", name
            )

    def request(self, name: str = "request") -> None:
        """Ask for a stop as a signal would (tests, or a caller's own time limit)."""
        if self.received is None:
            self.received = name

    def should_stop(self) -> bool:
        """Whether any rank has been asked to stop; call it at the same point on every rank.

        One all-reduce of a single number per call under ``torchrun``; none in one process.
        Once True it stays True.
        """
        if self._stopping:
            return True
        local = self.local_request()
        return self.agree(
            dist_utils.all_reduce_sum([local])[0] if dist_utils.is_distributed() else local
        )

    def local_request(self) -> float:
        """1.0 when this process has been asked to stop, else 0.0: the number to sum over ranks
        (a caller that already all-reduces other flags each step sums it with them)."""
        return 1.0 if self.received is not None else 0.0

    def agree(self, requests: float) -> bool:
        """Record the sum of :meth:`local_request` over every rank; True (and from then on) when
        any rank asked to stop."""
        self._stopping = self._stopping or requests > 0
        return self._stopping

    @property
    def reason(self) -> str:
        """What stopped the run: the signal's name, or ``another rank's signal``."""
        return self.received if self.received is not None else "another rank's signal"
