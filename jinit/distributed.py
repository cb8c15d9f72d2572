"""Several processes, one sweep: joining JAX's multi-controller runtime, and how the processes of a sweep meet.

A sweep that outgrows one machine runs as one process per host (or per accelerator) on JAX's own distributed
runtime: every process runs the same ``jinit sweep`` command (or :func:`jinit.sweep.run`) with the same ``--out``
folder on a filesystem they all share. Each process trains its share of the chunks on its local devices and writes
them to the folder; process 0 holds the folder's lock and writes the tables.

:func:`initialize` joins the run (``jax.distributed.initialize`` with a bounded timeout and one-line errors);
:func:`launch_detected` tells whether the process was started as one of several tasks by a launcher JAX knows
(an ``srun`` step, ``mpirun``, a TPU pod slice), where ``jax.distributed.initialize()`` needs no arguments.

The processes of one :func:`jinit.sweep.run` call meet through the key-value store of JAX's coordination service
(:class:`SweepGroup`), not through a device computation: a process that fails posts its error there, and every
process waiting for it raises at once with that error instead of waiting forever; a wait for a process that never
answers ends after a timeout. A process that dies (SIGKILL, a lost host) posts nothing: JAX's coordination service
stops the remaining processes once its heartbeats are missing (``heartbeat_timeout_seconds``, 100 s by default).

References:
  JAX, "Using JAX in multi-host and multi-process environments",
  https://docs.jax.dev/en/latest/multi_process.html
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping

import jax

DEFAULT_TIMEOUT = 300.0
"""Seconds :func:`initialize` waits for the coordinator and all processes (JAX's own default)."""

DEFAULT_HEARTBEAT_TIMEOUT = 100.0
"""Seconds of silence after which JAX's coordination service declares a process dead (JAX's default)."""

# the timeout given to initialize(): also the default wait of a SweepGroup
_timeout = DEFAULT_TIMEOUT


class ProcessGroupError(ConnectionError):
    """Another process of a multi-process sweep failed, or did not answer in time.

    A ``ConnectionError`` (so an ``OSError``): the command line prints it as one line and exits with code 2.
    """


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _int_env(environ: Mapping[str, str], name: str) -> int | None:
    try:
        return int(environ[name])
    except (KeyError, ValueError):
        return None


def _on_cloud_tpu_vm() -> bool:
    """Whether JAX found a Cloud TPU VM when it was imported (its own flag; False where it has none)."""
    try:
        from jax._src import cloud_tpu_init
    except ImportError:  # pragma: no cover - another JAX layout
        return False
    return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def launch_detected(
    environ: Mapping[str, str] | None = None, *, tpu_vm: bool | None = None
) -> str | None:
    """The launcher that started this process as one of several, when JAX can read the rest from it.

    Checked without any network access: an ``srun`` step of more than one task (the variables JAX's Slurm
    detection reads, with ``SLURM_NTASKS > 1``), an Open MPI ``mpirun`` of more than one rank, a TPU pod slice
    (``TPU_WORKER_HOSTNAMES``/``TPU_PROCESS_ADDRESSES`` listing several hosts, or ``MEGASCALE_COORDINATOR_ADDRESS``),
    a Cloud TPU VM (JAX then reads the workers of the slice from the TPU metadata server; a single-host VM makes a
    run of one process), or ``JAX_COORDINATOR_ADDRESS``, which ``jax.distributed.initialize`` reads itself.

    Args:
      environ: the environment (default ``os.environ``).
      tpu_vm: whether this is a Cloud TPU VM (default: what JAX found at import).

    Returns:
      A short description of what was found (``"slurm"``, ``"openmpi"``, ``"tpu"``, ``"JAX_COORDINATOR_ADDRESS"``),
      or None for a single process.
    """
    env = os.environ if environ is None else environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(v in env for v in slurm) and (_int_env(env, "SLURM_NTASKS") or 0) > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in env and (_int_env(env, "OMPI_COMM_WORLD_SIZE") or 0) > 1:
        return "openmpi"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1 or env.get(
        "MEGASCALE_COORDINATOR_ADDRESS"
    ):
        return "tpu"
    if _on_cloud_tpu_vm() if tpu_vm is None else tpu_vm:
        return "tpu"
    return None


def check_coordinator(address: str) -> str:
    """Checks a coordinator address ``HOST:PORT`` (port 1-65535); returns it stripped.

    Raises:
      ValueError: naming the bad address.
    """
    text = str(address).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"the coordinator address must be HOST:PORT (e.g. 10.0.0.1:1234, port 1-65535), got {address!r}"
        )
    return text


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    heartbeat_timeout: float | None = None,
    exit_prefix: str | None = None,
) -> None:
    """Joins a multi-process run: ``jax.distributed.initialize`` with a bounded wait and one-line errors.

    Must run before anything starts JAX's backends (the ``jinit`` command line calls it first thing). What is not
    given is detected by JAX (``JAX_COORDINATOR_ADDRESS``; Slurm, Open MPI, TPU pod slices); process 0 starts the
    coordination service at the coordinator address, and every process then waits until all ``num_processes``
    have connected.

    Args:
      coordinator: ``HOST:PORT`` of process 0, reachable from every process.
      num_processes: how many processes take part.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      timeout: seconds to wait for the coordinator and the other processes (rounded up to whole seconds).
      heartbeat_timeout: seconds after which JAX's coordination service declares a silent process dead and stops
        every other process (default: JAX's, 100 s).
      exit_prefix: for a command line (``"jinit sweep"``): when the run is not joined within ``timeout``, print
        ``"<exit_prefix>: error: <why>"`` (the coordinator unreachable, or processes missing) on stderr and end the
        process with exit code 2. Without it, JAX itself aborts the process (SIGABRT, with its log) once the
        timeout has passed: JAX's client cannot return that error to Python.

    Raises:
      ValueError: for a bad argument, before anything is started.
      RuntimeError: when JAX's backends are already started in this process.
      ConnectionError: when the run could not be joined within ``timeout`` (coordinator unreachable, a process
        missing), or when JAX could not detect what was not given.
    """
    if coordinator is not None:
        coordinator = check_coordinator(coordinator)
    for name, value, low in (("num_processes", num_processes, 1), ("process_id", process_id, 0)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < low
        ):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"process_id must be in 0..{num_processes - 1} for {num_processes} processes, got {process_id}"
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < math.inf
    ):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if heartbeat_timeout is not None and (
        isinstance(heartbeat_timeout, bool)
        or not isinstance(heartbeat_timeout, int | float)
        or not 1 <= heartbeat_timeout < math.inf
    ):
        raise ValueError(
            f"heartbeat_timeout must be a number of seconds >= 1, got {heartbeat_timeout!r}"
        )
    if jax.distributed.is_initialized():
        return
    where = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or "the detected coordinator"
    who = "" if process_id is None else f" as process {process_id}"
    of = "" if num_processes is None else f" of {num_processes}"
    global _timeout
    _timeout = float(timeout)
    watchdog = None
    if exit_prefix is not None:
        address = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")

        def give_up() -> None:
            why = f"not all{of.replace(' of', '')} processes joined the run at {where} within {timeout:g} s"
            if address is not None and process_id != 0 and (reason := _unreachable(address)):
                why = f"could not reach the coordinator {address}{who}{of} within {timeout:g} s ({reason})"
            print(f"{exit_prefix}: error: {why}", file=sys.stderr, flush=True)
            os._exit(2)

        watchdog = threading.Timer(timeout, give_up)
        watchdog.daemon = True
        watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            # with the watchdog, JAX's own deadline (an abort) comes later than ours (a clean exit)
            initialization_timeout=max(1, math.ceil(timeout)) + (60 if watchdog else 0),
            **(
                {}
                if heartbeat_timeout is None
                else {"heartbeat_timeout_seconds": math.ceil(heartbeat_timeout)}
            ),
        )
    except ValueError as e:  # JAX could not detect the arguments that were not given
        raise ConnectionError(
            f"cannot join a multi-process run: {_one_line(e)} (give --coordinator HOST:PORT, "
            "--num-processes N and --process-id I, or launch with srun / mpirun / on a TPU pod slice)"
        ) from None
    except RuntimeError as e:
        if "before any JAX calls" in str(e) or "only be called once" in str(e):
            raise
        raise ConnectionError(
            f"could not join the multi-process run at {where}{who}{of} within {timeout:g} s: {_one_line(e)}"
        ) from None
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _try_get(client, key: str) -> str | None:
    """The value of ``key`` in the coordination service's key-value store, or None while it is not set."""
    try:
        return client.key_value_try_get(key)
    except Exception as e:  # noqa: BLE001 - NOT_FOUND is how the client says "not yet"
        if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
            return None
        raise


class PeerWatch:
    """Notices a process of the run that stopped (killed, its host lost) before JAX's coordination service does,
    so that the others end with one line instead of JAX's abort.

    Every process increments its own counter in the coordination service's key-value store every ``every``
    seconds; a process whose counter has not moved for ``grace`` seconds (and that did not say it is done) has
    stopped: ``on_stopped(pid)`` is called once, from the watching thread (it should end the process). A lost
    coordinator (process 0) is reported the same way. Choose ``grace`` below JAX's ``heartbeat_timeout_seconds``:
    after that JAX aborts every process itself.

    Args:
      on_stopped: called with the index of the process that stopped.
      grace: seconds of silence after which a process has stopped.
      every: seconds between two increments (and checks).
    """

    def __init__(self, on_stopped, *, grace: float, every: float = 0.5):
        from jax._src import distributed as jax_distributed

        self.client = jax_distributed.global_state.client
        self.pid, self.count = jax.process_index(), jax.process_count()
        self.on_stopped, self.grace, self.every = on_stopped, float(grace), float(every)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="jinit-peer-watch", daemon=True)

    def start(self) -> PeerWatch:
        self._thread.start()
        return self

    def done(self) -> None:
        """Says this process ends normally (the others do not take its silence for a failure), and stops."""
        self._stop.set()
        try:
            self.client.key_value_set(f"jinit/done/{self.pid}", "1", allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the coordinator may be gone already
            pass

    def _silent_since(self, seen: dict[int, tuple[str | None, float]]) -> int | None:
        """Updates ``seen`` (each peer's last counter and when it moved); the first peer silent too long."""
        now = time.monotonic()
        for p in range(self.count):
            if p == self.pid or self._get(f"jinit/done/{p}") is not None:
                continue
            value = self._get(f"jinit/alive/{p}")
            last, since = seen.get(p, (None, now))
            if value != last:
                seen[p] = (value, now)
            elif now - since > self.grace:
                return p
        return None

    def _get(self, key: str) -> str | None:
        return _try_get(self.client, key)

    def _watch(self) -> None:
        seen: dict[int, tuple[str | None, float]] = {}
        try:
            while not self._stop.is_set():
                self.client.key_value_increment(f"jinit/alive/{self.pid}", 1)
                stopped = self._silent_since(seen)
                if stopped is not None and not self._stop.is_set():
                    self.on_stopped(stopped)
                    return
                self._stop.wait(self.every)
        except Exception:  # noqa: BLE001 - the coordination service is gone: process 0 stopped
            if not self._stop.is_set():
                self.on_stopped(0)


def _unreachable(address: str, seconds: float = 2.0) -> str | None:
    """Why a TCP connection to ``HOST:PORT`` fails (e.g. "Connection refused"), or None when it succeeds."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            return None
    except OSError as e:
        return e.strerror or _one_line(e)
    except ValueError as e:
        return _one_line(e)


class SweepGroup:
    """The processes of one multi-process :func:`jinit.sweep.run` call, meeting in JAX's coordination service.

    Every process creates one, in the same order (each ``run`` call gets the next key prefix). A step is either a
    value process 0 shares (:meth:`share` / :meth:`receive`) or a barrier (:meth:`barrier`); a process that fails
    calls :meth:`fail`, and every wait of every other process then raises :class:`ProcessGroupError` with its
    message.

    Args:
      timeout: default seconds a wait lasts before :class:`ProcessGroupError` (default: the ``timeout`` given to
        :func:`initialize`, else 300; ``math.inf``: no limit, a dead process still ends the wait through JAX's
        heartbeats). A wait's own ``timeout`` overrides it.
    """

    _calls = 0

    def __init__(self, timeout: float | None = None):
        # the client that jax.experimental.multihost_utils and orbax use too
        from jax._src import distributed as jax_distributed

        self.client = jax_distributed.global_state.client
        self.pid, self.count = jax.process_index(), jax.process_count()
        if self.client is None:
            raise ValueError(
                f"this is process {self.pid} of {self.count}, but jax.distributed is not initialized: call "
                "jax.distributed.initialize() (jinit.distributed.initialize) before anything else touches JAX"
            )
        SweepGroup._calls += 1
        self.prefix = f"jinit/sweep/{SweepGroup._calls}"
        self.timeout = _timeout if timeout is None else timeout
        self.failed = False

    def _key(self, step: str, pid: int) -> str:
        return f"{self.prefix}/{step}/{pid}"

    def _post(self, step: str, value: str) -> None:
        self.client.key_value_set(self._key(step, self.pid), value)

    def fail(self, error: BaseException) -> None:
        """Tells the other processes that this one failed (once; errors while telling are ignored)."""
        if self.failed:
            return
        self.failed = True
        what = "interrupted" if isinstance(error, KeyboardInterrupt) else _one_line(error)
        try:
            self._post("failed", what)
        except Exception:  # noqa: BLE001 - the coordinator may be gone; the original error matters more
            pass

    def _wait(self, step: str, pids, timeout: float | None) -> dict[int, str]:
        """The values posted at ``step`` by ``pids``; raises as soon as one of them failed."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None or math.isinf(timeout) else time.monotonic() + timeout
        got: dict[int, str] = {}
        pause = 0.01
        while True:
            for p in pids:
                if p in got:
                    continue
                failed = self._try_get(self._key("failed", p)) if p != self.pid else None
                if failed is not None:
                    raise ProcessGroupError(
                        f"process {p} of {self.count} failed: {failed}"
                        if failed != "interrupted"
                        else f"process {p} of {self.count} was interrupted"
                    )
                value = self._try_get(self._key(step, p))
                if value is not None:
                    got[p] = value
            if len(got) == len(pids):
                return got
            if deadline is not None and time.monotonic() > deadline:
                missing = ", ".join(str(p) for p in pids if p not in got)
                raise ProcessGroupError(
                    f"process(es) {missing} of {self.count} did not reach the step {step!r} of the sweep within "
                    f"{timeout:g} s (process {self.pid} on {socket.gethostname()} waited)"
                )
            time.sleep(pause)
            pause = min(0.25, pause * 2)

    def _try_get(self, key: str) -> str | None:
        try:
            return _try_get(self.client, key)
        except Exception as e:  # noqa: BLE001 - the coordinator is gone
            raise ProcessGroupError(
                f"lost the coordinator of the multi-process run: {_one_line(e)}"
            ) from None

    def share(self, step: str, value: dict) -> None:
        """Process 0 posts ``value`` (JSON) for the others to :meth:`receive`."""
        self._post(step, json.dumps(value))

    def receive(self, step: str, timeout: float | None = None) -> dict:
        """The value process 0 posted at ``step``."""
        return json.loads(self._wait(step, [0], timeout)[0])

    def barrier(self, step: str, timeout: float | None = None) -> None:
        """Waits until every process has reached ``step``."""
        self._post(step, "ok")
        self._wait(step, list(range(self.count)), timeout)
