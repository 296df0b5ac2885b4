"""Run ``text4vis`` in a real process that meets a fault at a chosen moment (used by tests).

    python tests/fault_driver.py train CONFIG ...   (or under torchrun)

Environment:
    FAULT_SIGNAL_AT_STEP: before the optimizer step with this number (1-based, counted in this
        process), the process sends itself ``FAULT_SIGNAL`` (default SIGTERM): a real signal,
        delivered in the middle of a step.
    FAULT_SIGNAL_RANK: only this rank signals itself (default: every rank).
    FAULT_SIGNAL_DURING_SAVE: send another ``FAULT_SIGNAL`` after the first 64 KiB of every
        checkpoint write, while the file is being written.
"""

from __future__ import annotations

import os
import signal
import sys


class FileWrapper:
    """A file object whose ``write`` calls :meth:`before_write` first (faults in file writes)."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.written = 0

    def before_write(self, data) -> None:
        """Called with each chunk before it is written (``written`` bytes are already out)."""

    def write(self, data) -> int:
        self.before_write(data)
        self.written += len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)


def _install() -> None:
    import text4vis.engine.train as train

    at = int(os.environ.get("FAULT_SIGNAL_AT_STEP", "0"))
    signum = getattr(signal, os.environ.get("FAULT_SIGNAL", "SIGTERM"))
    rank = os.environ.get("FAULT_SIGNAL_RANK")
    if at and (rank is None or os.environ.get("RANK", "0") == rank):
        real_set_lr = train.set_lr
        calls = [0]

        def set_lr(optimizer, lr):  # called once per optimizer step, before the update
            calls[0] += 1
            if calls[0] == at:
                os.kill(os.getpid(), signum)
            return real_set_lr(optimizer, lr)

        train.set_lr = set_lr

    if os.environ.get("FAULT_SIGNAL_DURING_SAVE"):
        real_fdopen = os.fdopen

        class SignallingWriter(FileWrapper):
            """A file whose writes signal the process once 64 KiB are written."""

            signalled = False

            def before_write(self, data):
                if self.written + len(data) > 65536 and not self.signalled:
                    self.signalled = True
                    os.kill(os.getpid(), signum)

        def fdopen(fd, mode="r", *args, **kwargs):
            handle = real_fdopen(fd, mode, *args, **kwargs)
            return SignallingWriter(handle) if "w" in mode else handle

        import text4vis.engine.checkpoint as checkpoint

        checkpoint.os.fdopen = fdopen


if __name__ == "__main__":
    _install()
    from text4vis.cli import main

    sys.exit(main(sys.argv[1:]))
