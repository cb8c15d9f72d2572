"""The processes of one sweep, behind one object: :class:`SingleProcess` (one process: every method does nothing)
or :class:`ProcessGroup` (several processes started with ``jax.distributed``; :func:`current` picks).

Process 0 is the leader: it holds the run folder's lock, decides the layout and shares it (:meth:`share` /
:meth:`receive`); every process trains the chunks :meth:`chunks` gives it and writes them to the shared folder;
:meth:`barrier` waits for all. A process that fails posts it (:meth:`fail`), and every wait of the others then
raises :class:`jinit.distributed.ProcessGroupError` naming it (see :class:`jinit.distributed.SweepGroup`).
"""

from __future__ import annotations

import math
from typing import Any

import jax


class SingleProcess:
    """The group of a sweep in one process: the leader, alone; sharing, waiting and failing do nothing."""

    index = 0
    count = 1
    leader = True
    checkpoints = True  # epoch checkpoints are written only by a sweep in one process

    def fail(self, error: BaseException) -> None:
        """Tells the other processes that this one failed (none here)."""

    def share(self, step: str, value: dict[str, Any]) -> None:
        """The leader posts ``value`` for the others (none here)."""

    def receive(self, step: str) -> dict[str, Any]:
        raise RuntimeError("a sweep of one process receives nothing: it is the leader")

    def barrier(self, step: str, *, forever: bool = False) -> None:
        """Waits for every process (only this one here)."""

    def chunks(self, n_chunks: int) -> list[int]:
        """The chunks this process trains: ``c`` with ``c % count == index``."""
        return [c for c in range(n_chunks) if c % self.count == self.index]

    def describe(self, n_chunks: int) -> str:
        return ""


class ProcessGroup(SingleProcess):
    """The processes of a multi-process sweep (``jax.process_count() > 1``), meeting in JAX's coordination service
    through :class:`jinit.distributed.SweepGroup`."""

    checkpoints = False

    def __init__(self):
        from jinit import distributed

        self._group = distributed.SweepGroup()
        self.index, self.count = self._group.pid, self._group.count
        self.leader = self.index == 0

    def fail(self, error: BaseException) -> None:
        self._group.fail(error)

    def share(self, step: str, value: dict[str, Any]) -> None:
        self._group.share(step, value)

    def receive(self, step: str) -> dict[str, Any]:
        return self._group.receive(step)

    def barrier(self, step: str, *, forever: bool = False) -> None:
        """Waits for every process; ``forever``: no time limit (while others train; a dead process still ends
        the wait through JAX's heartbeats)."""
        self._group.barrier(step, timeout=math.inf if forever else None)

    def describe(self, n_chunks: int) -> str:
        return f" (of the chunks of process {self.index}; {n_chunks} in all)"


def current(out: Any) -> SingleProcess:
    """The group of a sweep started now in this process: a :class:`ProcessGroup` when JAX runs several
    processes (then ``out``, a folder every process shares, is required), else a :class:`SingleProcess`."""
    if jax.process_count() == 1:
        return SingleProcess()
    if out is None:
        raise ValueError(
            f"a sweep of {jax.process_count()} processes needs out= (--out): a run folder on a filesystem that "
            "every process shares"
        )
    return ProcessGroup()
