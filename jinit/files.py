"""Files written atomically: every write goes to a temporary file in the same folder, which is then renamed, so a
reader (or a crash) never sees half a file. JSON, CSV, ``.npz``, text and PNG figures.

Example:
    >>> import tempfile, pathlib
    >>> from jinit import files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> files.write_json(d / "x.json", {"a": 1})
    >>> files.read_json(d / "x.json")
    {'a': 1}
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def link_message(path: str | os.PathLike) -> str:
    """Why jinit refuses to write or delete ``path``: it is a symbolic link jinit did not create."""
    return (
        f"{path} is a symbolic link; jinit never writes or deletes through a link it did not create: replace the "
        "link with a real folder or file, or choose another --out"
    )


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Writes a file atomically: ``write(f)`` fills a temporary file in the same folder, then it is renamed.

    Args:
      path: destination (never a symbolic link: ValueError).
      write: called with a binary file object open for writing.
    """
    path = Path(path)
    if path.is_symlink():  # replacing it would delete a link jinit did not create
        raise ValueError(link_message(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 minus the umask), so run folders on a
        # shared filesystem stay readable by the group as the user's umask says.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (``os.umask`` sets it to read it, which
    races with threads that create files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON values: ``to_dict()`` of objects that have one (a SweepConfig), dataclasses as
    dicts, tuples as lists, numpy scalars as Python numbers, non-finite floats as None."""
    if callable(getattr(value, "to_dict", None)) and not isinstance(value, type):
        return value.to_dict()  # a SweepConfig: rules / custom schemes as their config()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically (tuples become lists, non-finite floats ``null``)."""
    write_text(path, json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file.

    Raises:
      ValueError: for a file that is not JSON, or nested too deeply to be read (no jinit file is).
    """
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except RecursionError:
            raise ValueError(f"{path} is nested too deeply to be a jinit file") from None


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Writes a DataFrame as CSV atomically (no index; floats in shortest round-trip form, so reading it back
    gives the same float64 values bit for bit)."""
    write_text(path, df.to_csv(index=False))


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Writes arrays as an ``.npz`` atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` into a dict."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_figure(path: str | os.PathLike, fig: Any, **kwargs: Any) -> None:
    """Saves a matplotlib figure as PNG atomically."""
    kwargs.setdefault("dpi", 120)
    kwargs.setdefault("bbox_inches", "tight")
    atomic_write(path, lambda f: fig.savefig(f, format="png", **kwargs))
