"""The lock of a run folder: one sweep per folder, a lock left by a killed sweep taken over atomically, a file
named ``lock`` that jinit did not write never touched (:func:`acquire_lock`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

_log = logging.getLogger("jinit.sweep")

#: The lock file's name in a run folder.
LOCK_FILE = "lock"


class RunFolderInUse(OSError):
    """Another sweep that is still running holds the run folder's lock."""


def _proc_start(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process from /proc (Linux), or None where that is not readable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _is_own_lock(info: Any) -> bool:
    """Whether a lock's content is one jinit writes (pid, host, start time and token of a sweep)."""
    if not isinstance(info, dict):
        return False
    pid = info.get("pid")
    return (
        _is_pid(pid)
        and isinstance(info.get("host"), str)
        and isinstance(info.get("token"), str)
        and isinstance(info.get("started"), str)
    )


def _is_pid(pid: Any) -> bool:
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31


def _lock_alive(info: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock may still be running (True when that cannot be told)."""
    if info.get("host") != socket.gethostname():
        return True  # another machine sharing the filesystem: its pids mean nothing here
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    pid = info.get("pid")
    if not _is_pid(pid):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    proc = _proc_start(pid)
    if proc is not None:
        state, start = proc
        if state in ("Z", "X"):  # killed, not yet reaped by its parent
            return False
        if info.get("proc_start") is not None and info["proc_start"] != start:
            return False  # the pid was reused by another process
    return True


def _describe_lock(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"


@dataclasses.dataclass
class RunLock:
    """The lock of a run folder held by this process (see :func:`acquire_lock`).

    Attributes:
      path: the lock file.
      token: a random id written into it (release removes the file only while it still holds this id).
      taken_over: the content of a stale lock this one replaced, else None.
    """

    path: Path
    token: str
    taken_over: dict[str, Any] | None = None

    def release(self) -> None:
        """Removes the lock file if it is still ours (idempotent)."""
        with _takeover_mutex(self.path.parent):
            info = _read_lock(self.path)
            if info is not None and info.get("token") == self.token:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's content; ``{}`` for one that is not a JSON object (or a link, or unreadable), None when there is
    no lock."""
    try:
        if path.is_symlink():
            return {}
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(
                1 << 16
            )  # a lock is ~200 bytes; never read a large file someone named lock
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


@contextlib.contextmanager
def _takeover_mutex(folder: Path):
    """Serializes the compare-and-remove of a lock between processes: an exclusive ``flock`` on the folder itself
    (released by the kernel when a process dies), or, where the filesystem has no ``flock``, an ``O_EXCL`` guard
    file ``.lock-takeover`` (held for microseconds; one older than 30 s is a crashed holder's and is removed)."""
    fd = None
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
            fd = None
    if fd is not None:
        try:
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the flock
        return
    guard = folder / ".lock-takeover"
    deadline = time.monotonic() + 30
    while True:
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > 30:
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise RunFolderInUse(
                    f"could not take the lock of {folder}: {guard} stays"
                ) from None
            time.sleep(0.001)
    try:
        yield
    finally:
        guard.unlink(missing_ok=True)


def _create_lock(path: Path, info: dict[str, Any]) -> bool:
    """Creates the lock file with its whole content at once (written to a temporary file, then ``os.link``-ed to
    ``lock``, which fails when it exists), so no reader ever sees a half-written lock of a live sweep; where the
    filesystem has no hard links, ``O_CREAT | O_EXCL`` and a write. Returns False when the lock exists."""
    data = (json.dumps(info) + "\n").encode("utf-8")
    tmp = path.with_name(f".{path.name}.{info['token']}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network / FAT filesystems)
            pass
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def acquire_lock(folder: str | os.PathLike) -> RunLock:
    """Creates ``folder`` (and its parents) and takes its lock: ``folder/lock`` is created atomically with its
    content (this process's pid, host, start time and a random token), and fails when it exists.

    A lock that jinit wrote (a JSON object with pid, host, start time and token) whose process is gone (same host,
    pid no longer running, or reused by another process) is stale: it is taken over, with a warning. Take-over is
    atomic: the check that the lock is still the stale one and its removal happen under a mutex between processes
    (:func:`_takeover_mutex`), so of many processes taking over one stale lock at once exactly one gets it. A file
    named ``lock`` that jinit did not write (not such a JSON object, or a link) is never removed or taken over.

    Raises:
      RunFolderInUse: when a sweep that is still running (or on another host) holds the lock, or ``lock`` is a
        file jinit did not write.
      OSError: when the folder or the lock file cannot be created.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    taken_over = None
    for _ in range(100):
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "proc_start": (_proc_start(os.getpid()) or (None, None))[1],
            "token": uuid.uuid4().hex,
        }
        if not path.is_symlink() and _create_lock(path, info):
            if taken_over is not None:
                _log.warning(
                    "took over the lock of %s: the sweep that held it (%s) is no longer running",
                    folder,
                    _describe_lock(taken_over),
                )
            return RunLock(path, info["token"], taken_over)
        old = _read_lock(path)
        if old is None:  # released in the meantime
            continue
        if not _is_own_lock(old):
            try:  # a jinit lock written without hard links can be caught half-written: give its writer time
                young = not path.is_symlink() and time.time() - path.stat().st_mtime < 2
            except FileNotFoundError:
                continue
            if young and path.stat().st_size < 4096:
                time.sleep(0.05)
                continue
            raise RunFolderInUse(
                f"{path} is not a lock written by jinit (not a jinit lock record{', a link' if path.is_symlink() else ''}); "
                "jinit never removes it: if no sweep is running there, move that file away, or choose another --out"
            )
        if _lock_alive(old):
            raise RunFolderInUse(
                f"the run folder {folder} is in use by another sweep ({_describe_lock(old)}); wait for it to "
                f"finish or choose another --out (if no sweep is running there, delete {path})"
            )
        with _takeover_mutex(folder):
            if (
                _read_lock(path) == old
            ):  # still the stale one: remove it (atomic with the check) and retry
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                taken_over = old
    raise RunFolderInUse(f"could not take the lock {path}: other processes keep changing it")
