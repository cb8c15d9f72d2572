"""Experiment trackers: one tracker run per model of a sweep, written while the models train.

A sweep trains many models in one vmapped program; a tracker shows each of them as a run of its own, as if it had
been trained alone (the workaround elsewhere is one seed per script). A tracker is a trainer
:class:`~jinit.sweep.trainer.Callback`: at the end of every epoch of a chunk it turns the chunk's epoch logs into
per-model records (:class:`Record`: the global step, the epoch and the scalars of one evaluation point) and hands
them, with each model's description (:class:`ModelRun`), to three methods a tracker implements:

* ``start(run) -> handle``: open the run of one model (the first time one of its records arrives);
* ``log(handle, record)``: write one evaluation point;
* ``finish(handle)``: close it (when the model's chunk is trained).

The scalars are the curves of ``results.csv`` under ``<split>/<name>`` tags: ``train/loss``, ``train/accuracy``
(running means over the steps since the previous point), ``test/loss``, ``test/accuracy`` (or the task's metrics:
``test/r2``, ``test/rmse``), ``val/...`` with a validation set; the test and validation values of the models at
initialization are written at step 0. They are the values ``results.csv`` holds, at the same steps.

The three methods run in one background thread of the tracker, so writing never holds up the devices; a failure
there stops the sweep at the next epoch's end. :class:`TensorBoard` and :class:`WandB` are the two trackers of
:func:`jinit.sweep.run` (``tensorboard=DIR``, ``wandb=PROJECT``); subclass :class:`Tracker` for another (MLflow, a
database, your own files) and pass it in ``run(..., callbacks=[...])``.

Example (a tracker that prints every model's final test accuracy)::

    class Final(trackers.Tracker):
        def start(self, run):
            return {"name": run.name}
        def log(self, handle, record):
            handle["acc"] = record.scalars["test/accuracy"]
        def finish(self, handle):
            print(handle["name"], handle["acc"])

    sweep.run(config, callbacks=[Final()])

Resumed sweeps: a chunk read back from the run folder is not trained again, so its models are not written again;
a chunk restarted from a checkpoint writes the epochs it trains. In a multi-process sweep every process writes the
models it trains.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jinit.sweep import hyper
from jinit.sweep.assemble import curve_sources
from jinit.sweep.trainer import Callback, EpochEnd

__all__ = [
    "ModelRun",
    "Record",
    "TensorBoard",
    "Tracker",
    "WandB",
    "from_arguments",
    "model_runs",
    "records",
    "tag",
]

#: Short names of the axes in run names (``he_normal/lr=0.001/seed_0``).
AXIS_SHORT = {"learning_rate": "lr", "weight_decay": "wd", "init_scale": "init_scale"}

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,()+-]+")


class ModelRun(NamedTuple):
    """One model of the grid as a tracker run.

    Attributes:
      index: its row in ``models.csv`` (its index in the grid).
      scheme: the scheme's label.
      seed: the seed number.
      axes: the values of the swept hyperparameter axes (``{"learning_rate": 0.001}``; empty without axes).
      name: ``<scheme>/<axis values>/seed_<s>`` (no axis part without axes), each part safe as a folder name.
      group: the sweep's name (the run folder's name, or the tracker's ``group``).
      config: the sweep's config (``SweepConfig.to_dict()``) with this model's ``scheme``, ``seed`` and
        hyperparameter values.
    """

    index: int
    scheme: str
    seed: int
    axes: dict[str, float]
    name: str
    group: str
    config: dict[str, Any]


class Record(NamedTuple):
    """One evaluation point of one model: the global ``step`` (0: at initialization), the ``epoch`` (fractional
    with ``eval_every``) and the scalars by tag (``train/loss``, ``test/accuracy``, ...)."""

    step: int
    epoch: float
    scalars: dict[str, float]


def tag(column: str) -> str:
    """The tracker tag of a ``results.csv`` column: ``test_accuracy`` -> ``test/accuracy``."""
    split, _, name = column.partition("_")
    return f"{split}/{name}"


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "_"


def _value(v: float) -> str:
    return f"{float(v):g}"


def model_runs(plan: Any, group: str) -> list[ModelRun]:
    """The :class:`ModelRun` of every model of ``plan`` (a :class:`jinit.sweep.plan.Plan`), in grid order. Two
    scheme labels that are the same folder name once made safe get a short hash each."""
    config = plan.config
    base = config.to_dict()
    swept = hyper.swept(config)
    labels = list(dict.fromkeys(m.label for m in plan.grid))
    folders = {label: _safe(label) for label in labels}
    clash = {f for f in folders.values() if list(folders.values()).count(f) > 1}
    for label in labels:
        if folders[label] in clash:
            from jinit.keys import stable_hash

            folders[label] += f"-{stable_hash(label):08x}"
    runs = []
    for i, m in enumerate(plan.grid):
        axes = {a: float(getattr(m.hyper, a)) for a in swept}
        parts = [folders[m.label]]
        if axes:
            parts.append(",".join(f"{AXIS_SHORT[a]}={_value(v)}" for a, v in axes.items()))
        parts.append(f"seed_{m.seed}")
        values = {a: getattr(m.hyper, a) for a in hyper.AXES}
        own = {"scheme": m.label, "seed": int(m.seed), **values}
        runs.append(
            ModelRun(i, m.label, int(m.seed), axes, "/".join(parts), group, {**base, **own})
        )
    return runs


def records(
    sources: Mapping[str, str], logs: Mapping[str, Any], steps_per_epoch: int, first: bool
) -> list[list[Record]]:
    """The records of each model (row) of one epoch's flat logs of a chunk (:func:`jinit.sweep.chunks.flat_logs`).

    Args:
      sources: ``results.csv`` column -> log field (:func:`jinit.sweep.assemble.curve_sources`).
      logs: the flat logs of one epoch of a chunk (a leading model axis).
      steps_per_epoch: the sweep's steps per epoch (for the epoch of a point).
      first: whether this is the chunk's first epoch: then the point at initialization (step 0) comes first,
        with the test and validation columns (the training ones have no value before a step).

    Returns:
      One list of records per row of ``logs``, in step order.
    """
    tags = [tag(c) for c in sources]
    steps = np.asarray(logs["step"]).tolist()
    values = [np.asarray(logs[s]).tolist() for s in sources.values()]
    held = [i for i, c in enumerate(sources) if not c.startswith("train_")]
    fields = list(sources.values())
    at_init = {i: np.asarray(logs[f"init_{fields[i]}"]).tolist() for i in held} if first else {}
    out = []
    for row, row_steps in enumerate(steps):
        recs = [Record(0, 0.0, {tags[i]: at_init[i][row] for i in held})] if first else []
        for p, step in enumerate(row_steps):
            scalars = {t: v[row][p] for t, v in zip(tags, values, strict=True)}
            recs.append(Record(int(step), step / steps_per_epoch, scalars))
        out.append(recs)
    return out


class Tracker(Callback):
    """A tracker: one run per model (see the module doc). Subclass it and define :meth:`start`, :meth:`log` and
    :meth:`finish` (and :meth:`close`, called once after the last run finished).

    Args:
      group: the sweep's name in :attr:`ModelRun.group` (default: the run folder's name when
        :func:`jinit.sweep.run` makes the tracker, else ``sweep-<date>-<time>``).
    """

    def __init__(self, *, group: str | None = None):
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise TypeError(f"group must be a non-empty str, got {group!r}")
        self.group = group
        self.runs: list[ModelRun] = []
        self._handles: dict[int, Any] = {}
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        #: CPU seconds the tracker's thread spent turning logs into records and writing them
        self.cpu_seconds = 0.0

    # -- what a tracker defines ------------------------------------------------------------------------------

    def start(self, run: ModelRun) -> Any:
        """Opens the run of one model; returns the handle :meth:`log` and :meth:`finish` get."""
        raise NotImplementedError

    def log(self, handle: Any, record: Record) -> None:
        """Writes one evaluation point of a model."""
        raise NotImplementedError

    def finish(self, handle: Any) -> None:
        """Closes a model's run."""

    def close(self) -> None:
        """Called once, after the last run finished."""

    # -- the trainer's callback ------------------------------------------------------------------------------

    def sweep_start(self, plan: Any) -> None:
        if self.group is None:
            self.group = time.strftime("sweep-%Y%m%d-%H%M%S")
        self.runs = model_runs(plan, self.group)
        self._sources = curve_sources(plan.inputs, plan.inputs.x_val is not None)
        self._steps = plan.steps_per_epoch
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="jinit-tracker", daemon=True)
        self._thread.start()

    def epoch_end(self, event: EpochEnd) -> None:
        self._submit(self._write, event.models, event.logs[-1], event.epoch == 1)

    def chunk_end(self, chunk, models, arrays, variables) -> None:
        self._submit(self._finish, list(models))

    def sweep_end(self) -> None:
        self._submit(self._close)
        self._submit(None)
        self._thread.join()
        self._raise()

    # -- the background thread -------------------------------------------------------------------------------

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(
                f"the tracker {type(self).__name__} failed: {type(error).__name__}: {error}"
            ) from error

    def _submit(self, fn, *args) -> None:
        self._raise()
        self._queue.put(None if fn is None else (fn, args))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # after a failure: drain, the sweep stops at its next callback
            fn, args = item
            t = time.thread_time()
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the sweep's thread
                self._error = e
            self.cpu_seconds += time.thread_time() - t

    def _write(self, models: list[int], logs: dict[str, Any], first: bool) -> None:
        for i, recs in zip(models, records(self._sources, logs, self._steps, first), strict=False):
            if i not in self._handles:
                self._handles[i] = self.start(self.runs[i])
            for record in recs:
                self.log(self._handles[i], record)

    def _finish(self, models: list[int]) -> None:
        for i in models:
            handle = self._handles.pop(i, None)
            if handle is not None:
                self.finish(handle)

    def _close(self) -> None:
        self._finish(list(self._handles))
        self.close()


def _require(module: str, extra: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"{what} needs the {module} package, which is not installed: pip install 'jinit[{extra}]'"
        )


def _hparams(run: ModelRun) -> dict[str, Any]:
    """What the TensorBoard HParams dashboard shows of a model: its scheme, seed and hyperparameters, and the
    sweep's settings that tell sweeps apart."""
    c = run.config
    keys = ("dataset", "model", "optimizer", "batch_size", "epochs", "vary", "bias_init")
    out: dict[str, Any] = {"scheme": run.scheme, "seed": run.seed}
    out.update({a: c[a] for a in hyper.AXES if c.get(a) is not None})
    out.update(
        {k: c[k] if isinstance(c[k], int | float | str) else str(c[k]) for k in keys if k in c}
    )
    return out


class _EventFile:
    """One TensorBoard run's event file, written synchronously (the tracker's thread is the background)."""

    def __init__(self, folder: Path, flush_secs: float):
        from tensorboardX.event_file_writer import EventsWriter

        folder.mkdir(parents=True, exist_ok=True)
        self.writer = EventsWriter(str(folder / "events"))
        self.flush_secs = flush_secs
        self.flushed = time.monotonic()

    def write(self, summary: Any, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self.writer.write_event(Event(wall_time=time.time(), step=step, summary=summary))
        if time.monotonic() - self.flushed > self.flush_secs:
            self.writer.flush()
            self.flushed = time.monotonic()


class TensorBoard(Tracker):
    """One TensorBoard run per model under ``logdir``: ``logdir/<scheme>/<axis values>/seed_<s>/`` (see
    :class:`ModelRun`), with the scalars of every evaluation point (one event per point), the model's config as
    text (``config``) and its hyperparameters for the HParams dashboard. The event files are written with
    ``tensorboardX``'s event writer (no TensorFlow needed: ``pip install 'jinit[tensorboard]'``); read them with
    ``tensorboard --logdir DIR``.

    Args:
      logdir: the folder of the runs.
      flush_secs: how often a run's events reach the disk while it trains (and when it finishes).
      group: see :class:`Tracker`.
    """

    def __init__(
        self, logdir: str | os.PathLike, *, flush_secs: float = 10.0, group: str | None = None
    ):
        super().__init__(group=group)
        if not isinstance(logdir, str | os.PathLike) or not str(logdir).strip():
            raise TypeError(f"tensorboard: logdir must be a folder name, got {logdir!r}")
        _require("tensorboardX", "tensorboard", "tensorboard=")
        self.logdir = Path(logdir)
        self.flush_secs = flush_secs

    def start(self, run: ModelRun) -> Any:
        from tensorboardX.summary import hparams, text

        events = _EventFile(self.logdir / run.name, self.flush_secs)
        config = json.dumps(run.config, indent=1, sort_keys=True)
        events.write(text("config", "```\n" + config + "\n```"), 0)
        metrics = [t for t in (tag(c) for c in self._sources) if not t.startswith("train/")]
        for summary in hparams(_hparams(run), dict.fromkeys(metrics, 0.0)):
            events.write(summary, 0)
        return events

    def log(self, handle: Any, record: Record) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=k, simple_value=v) for k, v in record.scalars.items()]
        handle.write(Summary(value=values), record.step)

    def finish(self, handle: Any) -> None:
        handle.writer.close()


class WandB(Tracker):
    """One Weights & Biases run per model, in ``project``: grouped by sweep (``group``: the run folder's name by
    default) and by scheme (``job_type`` and a tag), named ``<scheme>/<axis values>/seed_<s>``, with the model's
    config and the scalars of every evaluation point (``step``: the global step; ``epoch`` beside them).
    ``pip install 'jinit[wandb]'``. Offline (``mode="offline"`` or ``WANDB_MODE=offline``) the runs are written
    under ``dir`` for ``wandb sync``.

    Args:
      project: the W&B project.
      group: see :class:`Tracker`.
      **init: more arguments of ``wandb.init`` (``entity``, ``mode``, ``dir``, ``tags``, ``settings``, ...).
    """

    def __init__(self, project: str | None = None, *, group: str | None = None, **init: Any):
        super().__init__(group=group)
        if project is not None and (not isinstance(project, str) or not project.strip()):
            raise TypeError(f"wandb: project must be a non-empty str, got {project!r}")
        for name in ("project", "group", "name", "config", "job_type", "reinit"):
            if name in init:
                raise TypeError(f"wandb: {name}= is set by jinit (one run per model)")
        _require("wandb", "wandb", "wandb=")
        self.project = project
        self.init = init

    def start(self, run: ModelRun) -> Any:
        import wandb

        kind = run.scheme[:64]  # W&B's limit for job types and tags
        init = dict(self.init)
        init.setdefault(
            "settings",
            wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False),
        )
        init["tags"] = [*init.get("tags", ()), kind]
        return wandb.init(
            project=self.project,
            group=run.group,
            job_type=kind,
            name=run.name,
            config=run.config,
            reinit="create_new",
            **init,
        )

    def log(self, handle: Any, record: Record) -> None:
        scalars = {k: v for k, v in record.scalars.items() if not math.isnan(v)}
        handle.log({**scalars, "epoch": record.epoch}, step=record.step)

    def finish(self, handle: Any) -> None:
        handle.finish()


def from_arguments(tensorboard: Any, wandb: Any, group: str | None) -> list[Tracker]:
    """The trackers of :func:`jinit.sweep.run`'s ``tensorboard=`` and ``wandb=`` arguments: a folder for
    :class:`TensorBoard`; a project name or a dict of :class:`WandB`'s arguments (``{"project": ..., "mode":
    "offline"}``) for W&B. Checked before anything is loaded or compiled."""
    out: list[Tracker] = []
    if tensorboard is not None:
        out.append(TensorBoard(tensorboard, group=group))
    if wandb is not None:
        if isinstance(wandb, Mapping):
            kw = dict(wandb)
            kw.setdefault("group", group)
            out.append(WandB(**kw))
        elif isinstance(wandb, str):
            out.append(WandB(wandb, group=group))
        else:
            raise TypeError(
                f"wandb must be a project name or a dict of wandb.init arguments, got {wandb!r}"
            )
    return out
