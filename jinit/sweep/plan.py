"""The plan of a sweep: everything decided before anything compiles, as one value (:class:`Plan`).

:func:`make_plan` validates the config, resolves the data, task, model, schemes and optimizer
(:func:`jinit.sweep.inputs.resolve`), builds the grid (:class:`GridModel` rows: ``compute_dtype x state_dtype x
scheme x learning_rate x weight_decay x init_scale x seed``: one block per precision, each scheme-major, the seed
fastest), what each precision trains with (:class:`Training`: its model and optimizer) and the layout
(:class:`Layout`: models per device, chunk size, devices; :mod:`jinit.sweep.layout`; a chunk never spans two
precisions). It reads the data and does no other I/O. A resumed sweep keeps the layout of its first start
(:meth:`Plan.with_layout`).

:func:`fingerprint` is the sweep's identity in its run folder: the config, the grid's labels, what each scheme
draws, the parameter shapes, the model, optimizer and task (what they compute, for your own), and the data bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jinit import keys
from jinit import train as train_lib
from jinit.sweep import hyper, layout, precision
from jinit.sweep.config import LOCATION_FIELDS, SweepConfig, check_int, recorded
from jinit.sweep.inputs import (
    Inputs,
    abstract_model,
    check_optimizer,
    compute_model,
    describe,
    make_optimizer,
    resolve,
    with_compute,
)
from jinit.sweep.precision import Precision


class GridModel(NamedTuple):
    """One model of the grid: its scheme (label and value), seed number, hyperparameter values and precision."""

    label: str
    scheme: Any
    seed: int
    hyper: hyper.Hyper  # with the optimizer's default weight decay filled in (hyper.effective)
    precision: Precision = precision.FLOAT32


class Training(NamedTuple):
    """What the models of one precision train with: the model (computing in the precision's compute dtype) and the
    optimizer (its state in the state dtype), each with its key (what it computes: the cache key of the compiled
    program)."""

    precision: Precision
    make_model: Callable
    model_key: Any
    tx: optax.GradientTransformation
    optimizer_key: Any


class Layout(NamedTuple):
    """Where the models train: every compiled program trains ``models_per_device`` models on one device (part of
    a model's arithmetic); a chunk is ``chunk_size`` models, ``chunk_size // models_per_device`` groups, each on its
    own device (at most ``devices`` of this process)."""

    models_per_device: int
    chunk_size: int
    n_chunks: int
    devices: int
    platform: str
    bytes_per_model: int  # the largest of the precisions'
    budget: int
    bytes_by_precision: tuple[
        int, ...
    ] = ()  # each precision's estimate, in the order of Plan.trainings


@dataclasses.dataclass(frozen=True)
class Plan:
    """A sweep, decided: config, inputs, grid, optimizer and layout (see the module doc).

    Attributes:
      config: the config as the run records it (your own model and data recorded as such).
      inputs: the data, task, model and schemes (:class:`jinit.sweep.inputs.Inputs`).
      grid: one :class:`GridModel` per model, in grid order.
      tx: the optimizer of the first precision (injected form: each model's learning rate and weight decay live in
        its state).
      optimizer_key: what that optimizer computes (the cache key of the compiled program).
      optimizer_meta: what the run folder records of the optimizer.
      hyper_names: ``{axis: key in opt_state.hyperparams}``.
      layout: the :class:`Layout`.
      custom_model: whether the model is the user's.
      trainings: one :class:`Training` per precision, in grid order (the blocks of the grid).
    """

    config: SweepConfig
    inputs: Inputs
    grid: tuple[GridModel, ...]
    tx: optax.GradientTransformation
    optimizer_key: tuple
    optimizer_meta: dict
    hyper_names: dict
    layout: Layout
    custom_model: bool = False
    trainings: tuple[Training, ...] = ()

    @property
    def schemes(self) -> list:
        return self.inputs.schemes

    @property
    def precisions(self) -> list[Precision]:
        """The precisions of the grid, in grid order (one block of models and one compiled program each)."""
        return [t.precision for t in self.trainings]

    def training(self, p: Precision) -> Training:
        """The :class:`Training` of precision ``p``."""
        for t in self.trainings:
            if t.precision == p:
                return t
        raise ValueError(f"the sweep has no precision {p}")

    def chunk_precision(self, c: int) -> Precision:
        """The precision of the models of chunk ``c`` (a chunk holds one)."""
        return self.grid[self.chunk(c)[0]].precision

    @property
    def vary_init(self) -> bool:
        return keys.varies(self.config.vary)[0]

    @property
    def vary_data(self) -> bool:
        return keys.varies(self.config.vary)[1]

    @property
    def steps_per_epoch(self) -> int:
        return self.inputs.x_train.shape[0] // self.config.batch_size

    @property
    def eval_batch_size(self) -> int:
        return min(self.config.eval_batch_size, self.inputs.x_test.shape[0])

    @property
    def n_models(self) -> int:
        return len(self.grid)

    def chunk(self, c: int) -> list[int]:
        """The grid indices of the models of chunk ``c`` (the chunks of each precision's block follow each other:
        :func:`jinit.sweep.precision.chunk_models`)."""
        return precision.chunk_models(c, self.n_models, len(self.trainings), self.layout.chunk_size)

    def with_layout(
        self, models_per_device: int, chunk_size: int, devices: int | None = None
    ) -> Plan:
        """The plan with another models per device and chunk size (a resumed sweep keeps its first start's; the
        processes of a multi-process sweep take process 0's)."""
        k, size = int(models_per_device), int(chunk_size)
        devices = min(self.layout.devices if devices is None else devices, max(1, size // k))
        new = self.layout._replace(
            models_per_device=k,
            chunk_size=size,
            n_chunks=precision.n_chunks(self.n_models, len(self.trainings), size),
            devices=devices,
        )
        return dataclasses.replace(self, layout=new)


def _grid(schemes: Sequence[tuple[str, Any]], config: SweepConfig) -> tuple[GridModel, ...]:
    return tuple(
        GridModel(label, init, s, hyper.effective(h, config), p)
        for p in precision.combos(config)
        for label, init in schemes
        for h in hyper.combos(config)
        for s in range(config.seeds)
    )


def _trainings(config: SweepConfig, inputs: Inputs, optimizer: Any) -> tuple[Training, ...]:
    """Each precision's model and optimizer (an optimizer built once per state dtype)."""
    txs = {
        dt: make_optimizer(config, optimizer, inputs, dt)
        for dt in precision.values(config, "state_dtype")
    }
    out = []
    for p in precision.combos(config):
        mm, key = compute_model(inputs, p.compute_dtype)
        out.append(Training(p, mm, key, *txs[p.state_dtype]))
    return tuple(out)


def _data_bytes(inputs: Inputs) -> int:
    arrays = (
        inputs.x_train,
        inputs.y_train,
        inputs.x_test,
        inputs.y_test,
        inputs.x_val,
        inputs.y_val,
    )
    return sum(a.nbytes for a in arrays if a is not None)


def _layout(
    config: SweepConfig,
    inputs: Inputs,
    trainings: Sequence[Training],
    state_tx,
    n_models: int,
    devices: Sequence[Any],
) -> Layout:
    """Models per device and chunks (:mod:`jinit.sweep.layout`), refusing a model that alone exceeds the budget.
    The models per device depend on the model and the device kind only, never on the precisions of the grid:
    ``state_tx`` is the optimizer with its state in float32; the memory estimate is the largest precision's."""
    by_precision = tuple(
        layout.bytes_per_model(config, with_compute(inputs, t.precision.compute_dtype), t.tx)
        for t in trainings
    )
    per_model = max(by_precision)
    data_bytes = _data_bytes(inputs)
    budget = layout.memory_budget(config, devices[0])
    if per_model + data_bytes > budget:
        raise ValueError(
            f"one model needs about {layout.gigabytes(per_model)} (parameters, optimizer state, activations of a "
            f"batch) and the data {layout.gigabytes(data_bytes)}, more than the memory budget of "
            f"{layout.gigabytes(budget)} per device (--max-memory, the device's memory, or the memory this process "
            "may use); use a smaller model or batch size"
        )
    k = layout.models_per_device(
        config,
        devices[0].platform,
        state_bytes=layout.state_bytes_per_model(inputs, state_tx),
        per_model=per_model,
        budget=budget - data_bytes,
    )
    n_blocks = len(trainings)
    size, used = layout.chunk_plan(
        n_models // n_blocks, k, len(devices), config.max_models_per_chunk
    )
    n_chunks = precision.n_chunks(n_models, n_blocks, size)
    return Layout(k, size, n_chunks, used, devices[0].platform, per_model, budget, by_precision)


def make_plan(
    config: SweepConfig | None = None,
    *,
    model: Callable | None = None,
    data: Any = None,
    task: Any = None,
    optimizer: Any = None,
    max_devices: int | None = None,
) -> Plan:
    """Plans a sweep (see the module doc): every check that needs no compilation, the grid and the layout.

    Args:
      config: the sweep (default ``SweepConfig()``).
      model, data, task, optimizer: your own, as for :func:`jinit.sweep.run`.
      max_devices: use at most this many local devices.

    Raises:
      ValueError, TypeError: anything that would not train, named, before anything compiles.
    """
    config = SweepConfig() if config is None else config
    if not isinstance(config, SweepConfig):
        raise TypeError(f"config must be a SweepConfig, got {type(config).__name__}")
    config.validate()
    if max_devices is not None:
        check_int("max_devices", max_devices, minimum=1)
    check_optimizer(optimizer)
    inputs = resolve(config, model, data, task)
    if data is not None:  # the config records the data the sweep trained on
        config = dataclasses.replace(config, dataset=inputs.data_name, data_dir=None)
    if model is not None:  # the run records the real model, not the built-in models' unused fields
        config = recorded(config, inputs.model_info)
    trainings = _trainings(config, inputs, optimizer)
    tx, optimizer_key = trainings[0].tx, trainings[0].optimizer_key
    state_tx = next((t.tx for t in trainings if t.precision.state_dtype == "float32"), None)
    if state_tx is None:  # the models per device are chosen as for a float32 state (see _layout)
        state_tx = make_optimizer(config, optimizer, inputs)[0]
    _, hyper_names = hyper.optimizer(config, optimizer)
    steps = inputs.x_train.shape[0] // config.batch_size
    groups = len(inputs.schemes) * len(hyper.combos(config)) * len(trainings)
    layout.check_grid_fits(config, groups, steps, inputs.x_test.shape[0])
    grid = _grid(inputs.schemes, config)
    devices = jax.local_devices()[:max_devices]
    return Plan(
        config=config,
        inputs=inputs,
        grid=grid,
        tx=tx,
        optimizer_key=optimizer_key,
        optimizer_meta=(
            {"name": config.optimizer, "learning_rate": config.learning_rate}
            if optimizer is None
            else {"custom": describe(optimizer, object_ids=False), "sha256": optimizer_key[1]}
        ),
        hyper_names=hyper_names,
        layout=_layout(config, inputs, trainings, state_tx, len(grid), devices),
        custom_model=model is not None,
        trainings=trainings,
    )


def fingerprint(plan: Plan, scheme_keys: dict[str, str]) -> str:
    """A SHA-256 of what decides the sweep's numbers: the config, the grid's labels, what each scheme draws
    (``scheme_keys``: label -> the SHA-256 of its lowered init program, :class:`jinit.sweep.program.InitProgram`),
    the parameter shapes, the model, optimizer and task (what they compute, for your own; and for each precision,
    the model and optimizer it trains with), and the data. Chunk files, parameter files and checkpoints carry it;
    resuming requires it."""
    inputs = plan.inputs
    shapes = abstract_model(inputs)[2]
    desc = {
        "config": {k: v for k, v in plan.config.to_dict().items() if k not in LOCATION_FIELDS},
        "model": str(inputs.model_key),
        "optimizer": str(plan.optimizer_key),
        "task": str(inputs.task_key),
        "schemes": {label: scheme_keys[label] for label, _ in plan.schemes},
        "grid": [[m.label, int(m.seed)] for m in plan.grid],
        "precisions": [
            [t.precision.label, str(t.model_key), str(t.optimizer_key)] for t in plan.trainings
        ],
        "params": [
            [jax.tree_util.keystr(path), list(x.shape), str(x.dtype)]
            for path, x in jax.tree_util.tree_flatten_with_path(shapes)[0]
        ],
        "num_classes": inputs.num_classes,
    }
    arrays = [inputs.x_train, inputs.y_train, inputs.x_test, inputs.y_test]
    if inputs.x_val is not None:
        arrays += [inputs.x_val, inputs.y_val]
    desc["data"] = [[list(a.shape), str(a.dtype)] for a in arrays]
    h = hashlib.sha256(json.dumps(desc, sort_keys=True).encode("utf-8"))
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
    return h.hexdigest()


def describe_plan(plan: Plan) -> dict[str, Any]:
    """What the run folder's ``meta`` records of the plan: data, task, model, optimizer, schemes, axes, layout."""
    inputs, lay = plan.inputs, plan.layout
    task = inputs.task or train_lib.classification()
    out: dict[str, Any] = {
        "dataset": inputs.data_name,
        "data_source": inputs.data_source,
        "n_train": int(inputs.x_train.shape[0]),
        "n_test": int(inputs.x_test.shape[0]),
        "num_classes": inputs.num_classes,
        "steps_per_epoch": plan.steps_per_epoch,
        "task": {
            "name": task.name,
            "metrics": list(task.metric_names),
            "primary": task.primary,
            "higher_is_better": bool(task.higher_is_better),
        },
        "n_models": plan.n_models,
        "models_per_device": lay.models_per_device,
        "chunk_size": lay.chunk_size,
        "n_chunks": lay.n_chunks,
        "bytes_per_model_estimate": lay.bytes_per_model,
        "custom_model": plan.custom_model,
        "model": None if inputs.model_info is None else inputs.model_info._asdict(),
        "optimizer": plan.optimizer_meta,
        "schemes": [label for label, _ in plan.schemes],
    }
    if inputs.x_val is not None:
        out["n_val"] = int(inputs.x_val.shape[0])
    swept = hyper.swept(plan.config)
    if swept:
        out["axes"] = {name: list(hyper.values(plan.config, name)) for name in swept}
    dims = precision.swept(plan.config)
    if dims:  # one block and one compiled program per precision
        out["precision_dimensions"] = {
            name: list(precision.values(plan.config, name)) for name in dims
        }
        out["bytes_per_model_by_precision"] = {
            t.precision.label: int(b)
            for t, b in zip(plan.trainings, lay.bytes_by_precision, strict=True)
        }
    return out
