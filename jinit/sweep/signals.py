"""Stopping a sweep cleanly: SIGINT/SIGTERM handling (:class:`SignalGuard`), :class:`SweepInterrupted` and the
:class:`Status` it reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

_log = logging.getLogger("jinit.sweep")


@dataclasses.dataclass
class Status:
    """What a running sweep has saved so far (for the message of :class:`SweepInterrupted`)."""

    path: Path | None
    n_chunks: int | None = None
    epochs: int | None = None
    chunks_done: int = 0
    chunks_reused: int = 0
    checkpoint: tuple[int, int] | None = None  # (chunk, epochs done) of the chunk in progress


class SweepInterrupted(KeyboardInterrupt):
    """Raised by :func:`run` when SIGINT (Ctrl-C) or SIGTERM stops it; ``str(e)`` says what was saved.

    A subclass of ``KeyboardInterrupt``, so code that handles Ctrl-C handles it. Rerunning the same sweep with the
    same ``out`` continues from what was saved.

    Attributes:
      signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
      exit_code: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), what the command line exits with.
      path: the run folder, or None when the sweep had none (then nothing was saved).
      chunks_done: chunks whose results are in the run folder.
      n_chunks: chunks of the sweep (None when it was stopped before they were planned).
      checkpoint: ``(chunk, epochs done)`` of the epoch checkpoint of the chunk that was training, or None.
    """

    def __init__(self, signum: int, status: Status):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        self.path = status.path
        self.chunks_done = status.chunks_done
        self.n_chunks = status.n_chunks
        self.checkpoint = status.checkpoint
        self.epochs = status.epochs
        super().__init__(self._message())

    def _message(self) -> str:
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        if self.path is None:
            return f"interrupted by {name}: nothing was saved (the sweep had no run folder)"
        if self.n_chunks is None:
            return f"interrupted by {name} before training started: nothing new was saved in {self.path}"
        saved = f"{self.chunks_done} of {self.n_chunks} chunk(s) complete"
        if self.checkpoint is not None:
            c, e = self.checkpoint
            saved += f", chunk {c} checkpointed after epoch {e} of {self.epochs}"
        return f"interrupted by {name}; saved in {self.path}: {saved} (the epoch that was running is lost)"


class _Interrupt(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: How long the main thread has to act on SIGTERM / SIGINT before :class:`SignalGuard`'s watchdog ends the process.
SIGNAL_GRACE_SECONDS = 10.0


class SignalGuard:
    """While active in the main thread, SIGINT and SIGTERM raise :class:`_Interrupt` (a ``KeyboardInterrupt``) at
    once -- also while the main thread waits for the device -- except inside :meth:`critical` sections (file
    writes), which finish first; the signal is raised at their end. Signals that were ignored or had a handler of
    the caller's keep it.

    A watchdog thread sees the signals too (``signal.set_wakeup_fd``, where nothing else uses it): when the main
    thread has not acted on a SIGTERM (or SIGINT) within :data:`SIGNAL_GRACE_SECONDS` because it is stuck in native
    code that never returns (seen: every XLA thread waiting under an address-space limit), and no file write is in
    progress, it prints why and ends the process with 128 + the signal number, as the signal's default action
    would have. Every file on disk is then complete or a temporary file, which the next sweep removes."""

    #: The guard whose handlers are installed (a guard entered inside it, e.g. ``jinit sweep``'s around
    #: :func:`jinit.sweep.run`'s, shares its critical sections).
    _active: SignalGuard | None = None

    def __init__(self):
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}
        self._handled = 0
        self._wakeup: tuple[int, int] | None = None
        self._outer: SignalGuard | None = None

    def __enter__(self) -> SignalGuard:
        if SignalGuard._active is not None:  # nested: the outer guard's handlers act
            self._outer = SignalGuard._active
            return self
        if threading.current_thread() is threading.main_thread():
            for sig, default in (
                (signal.SIGINT, signal.default_int_handler),
                (signal.SIGTERM, signal.SIG_DFL),
            ):
                if signal.getsignal(sig) is default:
                    self._previous[sig] = default
                    signal.signal(sig, self._handle)
            if signal.SIGTERM in self._previous:
                self._start_watchdog()
            if self._previous:
                SignalGuard._active = self
        return self

    def __exit__(self, *exc) -> None:
        if self._outer is not None:
            self._outer = None
            return
        if SignalGuard._active is self:
            SignalGuard._active = None
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._wakeup is not None:
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup[1])  # the watchdog reads the end of the pipe and stops
            self._wakeup = None

    def _start_watchdog(self) -> None:
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            old = None
        if old != -1:  # someone else (an event loop) uses the wakeup fd: leave it to them
            if old is not None:
                signal.set_wakeup_fd(old)
            os.close(r)
            os.close(w)
            return
        self._wakeup = (r, w)
        threading.Thread(
            target=self._watch, args=(r,), name="jinit-signal-watchdog", daemon=True
        ).start()

    def _watch(self, r: int) -> None:
        try:
            while True:
                handled = self._handled  # the main thread's handler calls so far
                data = os.read(r, 64)
                if not data:
                    return
                signums = [b for b in data if b in (signal.SIGINT, signal.SIGTERM)]
                if not signums:
                    continue
                deadline = time.monotonic() + SIGNAL_GRACE_SECONDS
                while self._handled == handled and self._wakeup is not None:
                    time.sleep(0.05)
                    if self._depth:  # a file write in progress: it finishes first
                        deadline = time.monotonic() + SIGNAL_GRACE_SECONDS
                    elif time.monotonic() > deadline:
                        name = signal.Signals(signums[-1]).name
                        os.write(
                            2,
                            f"jinit: {name}: the sweep was blocked in a computation that did not return within "
                            f"{SIGNAL_GRACE_SECONDS:g} s; exiting now (the files written are complete: rerun the "
                            "same command to resume)\n".encode(),
                        )
                        os._exit(128 + signums[-1])
        finally:
            os.close(r)

    def _handle(self, signum, frame) -> None:
        self._handled += 1
        if self._depth:
            self._pending = signum
            return
        raise _Interrupt(signum)

    @contextlib.contextmanager
    def critical(self, *, complete: bool = False):
        """A section that signals do not interrupt; with ``complete``, the work is done when it ends without an
        error, so a signal that arrived meanwhile is reported as a notice instead of interrupting."""
        if self._outer is not None:
            with self._outer.critical(complete=complete):
                yield
            return
        self._depth += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                if not (complete and ok):
                    raise _Interrupt(signum)
                _log.warning(
                    "%s arrived while the finished sweep was being written; it is complete",
                    signal.Signals(signum).name,
                )
