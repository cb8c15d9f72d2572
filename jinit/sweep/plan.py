"""The plan of a sweep: everything decided before anything compiles, as one value (:class:`Plan`).

:func:`make_plan` validates the config, resolves the data, task, model, schemes and optimizer
(:func:`jinit.sweep.inputs.resolve`), builds the grid (:class:`GridModel` rows: ``scheme x learning_rate x
weight_decay x init_scale x seed``, scheme-major, the seed fastest) and the layout (:class:`Layout`: models per
device, chunk size, devices; :mod:`jinit.sweep.layout`). It reads the data and does no other I/O. A resumed sweep
keeps the layout of its first start (:meth:`Plan.with_layout`).

:func:`fingerprint` is the sweep's identity in its run folder: the config, the grid's labels, what each scheme
draws, the parameter shapes, the model, optimizer and task (what they compute, for your own), and the data bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jinit import keys
from jinit import train as train_lib
from jinit.sweep import hyper, layout
from jinit.sweep.config import LOCATION_FIELDS, SweepConfig, check_int, recorded
from jinit.sweep.inputs import (
    Inputs,
    abstract_model,
    check_optimizer,
    describe,
    make_optimizer,
    resolve,
)


class GridModel(NamedTuple):
    """One model of the grid: its scheme (label and value), seed number and hyperparameter values."""

    label: str
    scheme: Any
    seed: int
    hyper: hyper.Hyper  # with the optimizer's default weight decay filled in (hyper.effective)


class Layout(NamedTuple):
    """Where the models train: every compiled program trains ``models_per_device`` models on one device (part of
    a model's arithmetic); a chunk is ``chunk_size`` models, ``chunk_size // models_per_device`` groups, each on its
    own device (at most ``devices`` of this process)."""

    models_per_device: int
    chunk_size: int
    n_chunks: int
    devices: int
    platform: str
    bytes_per_model: int
    budget: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """A sweep, decided: config, inputs, grid, optimizer and layout (see the module doc).

    Attributes:
      config: the config as the run records it (your own model and data recorded as such).
      inputs: the data, task, model and schemes (:class:`jinit.sweep.inputs.Inputs`).
      grid: one :class:`GridModel` per model, in grid order.
      tx: the optimizer (injected form: each model's learning rate and weight decay live in its state).
      optimizer_key: what the optimizer computes (the cache key of the compiled program).
      optimizer_meta: what the run folder records of the optimizer.
      hyper_names: ``{axis: key in opt_state.hyperparams}``.
      layout: the :class:`Layout`.
      custom_optimizer: whether the optimizer is the user's.
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

    @property
    def schemes(self) -> list:
        return self.inputs.schemes

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
        """The grid indices of the models of chunk ``c``."""
        return layout.chunk_index(c, self.layout.chunk_size, self.n_models)

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
            n_chunks=math.ceil(self.n_models / size),
            devices=devices,
        )
        return dataclasses.replace(self, layout=new)


def _grid(schemes: Sequence[tuple[str, Any]], config: SweepConfig) -> tuple[GridModel, ...]:
    return tuple(
        GridModel(label, init, s, hyper.effective(h, config))
        for label, init in schemes
        for h in hyper.combos(config)
        for s in range(config.seeds)
    )


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
    config: SweepConfig, inputs: Inputs, tx, n_models: int, devices: Sequence[Any]
) -> Layout:
    """Models per device and chunks (:mod:`jinit.sweep.layout`), refusing a model that alone exceeds the budget."""
    per_model = layout.bytes_per_model(config, inputs, tx)
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
        state_bytes=layout.state_bytes_per_model(inputs, tx),
        per_model=per_model,
        budget=budget - data_bytes,
    )
    size, used = layout.chunk_plan(n_models, k, len(devices), config.max_models_per_chunk)
    return Layout(k, size, math.ceil(n_models / size), used, devices[0].platform, per_model, budget)


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
    tx, optimizer_key = make_optimizer(config, optimizer, inputs)
    _, hyper_names = hyper.optimizer(config, optimizer)
    steps = inputs.x_train.shape[0] // config.batch_size
    layout.check_grid_fits(
        config, len(inputs.schemes) * len(hyper.combos(config)), steps, inputs.x_test.shape[0]
    )
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
        layout=_layout(config, inputs, tx, len(grid), devices),
        custom_model=model is not None,
    )


def fingerprint(plan: Plan, scheme_keys: dict[str, str]) -> str:
    """A SHA-256 of what decides the sweep's numbers: the config, the grid's labels, what each scheme draws
    (``scheme_keys``: label -> the SHA-256 of its lowered init program, :class:`jinit.sweep.program.InitProgram`),
    the parameter shapes, the model, optimizer and task (what they compute, for your own), and the data. Chunk
    files, parameter files and checkpoints carry it; resuming requires it."""
    inputs = plan.inputs
    shapes = abstract_model(inputs)[2]
    desc = {
        "config": {k: v for k, v in plan.config.to_dict().items() if k not in LOCATION_FIELDS},
        "model": str(inputs.model_key),
        "optimizer": str(plan.optimizer_key),
        "task": str(inputs.task_key),
        "schemes": {label: scheme_keys[label] for label, _ in plan.schemes},
        "grid": [[m.label, int(m.seed)] for m in plan.grid],
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
    return out
