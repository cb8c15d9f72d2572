""":func:`check_determinism`: trains a few models of a grid twice, alone and in another layout, and compares hashes."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jinit import train as train_lib
from jinit.keys import model_keys
from jinit.sweep import hyper, precision
from jinit.sweep.config import SweepConfig, check_int
from jinit.sweep.driver import run
from jinit.sweep.inputs import model_fns
from jinit.sweep.plan import make_plan
from jinit.sweep.program import ProgramCache, initial_variables, split_variables, state_variables
from jinit.sweep.schemes import resolve_schemes

_log = logging.getLogger("jinit.sweep")


class DeterminismReport(NamedTuple):
    """What :func:`check_determinism` found.

    Attributes:
      models: the ``(scheme label, seed number)`` pairs checked, in grid order.
      bitwise_identical: whether the two sweeps gave every model the same final parameters, bit for bit.
      sha256_first: :func:`jinit.metrics.param_sha256` of each model's final parameters in the first sweep.
      sha256_second: the same for the second sweep.
      max_abs_diff_alone: the largest ``|a - b|`` over the final parameters of the models, ``a`` trained in the
        vmapped sweep and ``b`` trained alone by :func:`jinit.train.train_plain` (same keys and data order);
        ``inf`` where one is NaN and the other not.
      epochs: epochs trained.
      layout_identical: whether the same models trained in another layout (inside a larger grid, in another
        order, on another number of devices) have the same final parameters, bit for bit.
      sha256_layout: the hashes of the models in that other layout.
      layouts: the two layouts compared, in words.
    """

    models: tuple[tuple[str, int], ...]
    bitwise_identical: bool
    sha256_first: tuple[str, ...]
    sha256_second: tuple[str, ...]
    max_abs_diff_alone: float
    epochs: int
    layout_identical: bool = False
    sha256_layout: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()


def _max_abs_diff(a, b) -> float:
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        nan_x, nan_y = np.isnan(x), np.isnan(y)
        if (nan_x != nan_y).any():
            return math.inf
        d = np.abs(np.where(nan_x, 0.0, x - y))
        if d.size:
            worst = max(worst, float(np.max(d)))
    return worst


def _alone(sub: SweepConfig, params: Any, make_model: Any, optimizer: Any) -> tuple[list, float]:
    """The models of ``sub`` (grid order), and the largest difference between their final variables
    ``params`` (stacked) and those of each model trained alone by :func:`jinit.train.train_plain`."""
    plan = make_plan(sub, model=make_model, optimizer=optimizer)
    inits = ProgramCache().inits(plan)
    inputs, training = plan.inputs, plan.trainings[0]  # sub has one precision
    models, worst = [], 0.0
    for k, m in enumerate(plan.grid):
        variables = jax.tree.map(lambda a: a[0], initial_variables(plan, inits, [m]))
        keys = model_keys(sub.seed, m.label, m.seed, sub.vary)
        trained, model_state = split_variables(variables)
        alone = train_lib.train_plain(
            model_fns(training.make_model, m.scheme, inputs.bias_init),
            trained,
            training.tx,
            inputs.x_train,
            inputs.y_train,
            inputs.x_test,
            inputs.y_test,
            batch_size=sub.batch_size,
            epochs=sub.epochs,
            data_key=keys.data,
            dropout_key=keys.dropout,
            eval_batch_size=sub.eval_batch_size,
            model_state=model_state,
        )
        vmapped = jax.tree.map(lambda a, k=k: a[k], params)
        worst = max(worst, _max_abs_diff(vmapped, state_variables(alone.state)))
        models.append((m.label, m.seed))
    return models, worst


def check_determinism(
    config: SweepConfig | None = None,
    *,
    n_models: int = 2,
    make_model: Callable | None = None,
    model: Callable | None = None,
    optimizer: Any = None,
) -> DeterminismReport:
    """Trains the first ``n_models`` models of a sweep's grid twice, in another layout, and alone, and compares the
    final parameters.

    The models are those of a smaller sweep with the first scheme(s) and seed numbers of ``config`` (a model's
    keys do not depend on the rest of the grid, so they are the models of the full sweep as far as the keys go;
    the chunk holds only them). The second sweep is compiled afresh. A third trains them inside a larger grid
    (another scheme first, one more seed) on another number of devices (one if the first used several), which
    must not change them (the reproducibility contract). Each model is also trained alone by
    :func:`jinit.train.train_plain`, a Python loop over steps with the same keys and data order; that one is
    another program, so it agrees to float round-off, not bitwise.

    Args:
      config: the sweep (default ``SweepConfig()``); its epochs, data and optimizer are used as they are, each
        hyperparameter axis at its first value.
      n_models: how many models (at least; rounded up to whole schemes when ``seeds < n_models``).
      make_model: your own model's factory, as ``model`` for :func:`run`.
      model: the same (``make_model`` is its older name).
      optimizer: your own optimizer, as for :func:`run`.

    Returns:
      A :class:`DeterminismReport`.
    """
    config = SweepConfig() if config is None else config
    if not isinstance(config, SweepConfig):
        raise TypeError(f"config must be a SweepConfig, got {type(config).__name__}")
    config.validate()
    if model is not None:
        if make_model is not None:
            raise TypeError("pass the model factory once: model= (make_model= is its older name)")
        make_model = model
    check_int("n_models", n_models, minimum=1)
    model = None if make_model else config.model
    labels = [label for label, _ in resolve_schemes(config.schemes, model=model)]
    # the specs as given, or the labels when "all" expanded them
    specs = labels if len(labels) != len(config.schemes) else list(config.schemes)
    if config.seeds >= n_models:
        schemes, seeds = specs[:1], n_models
    else:
        schemes, seeds = specs[: math.ceil(n_models / config.seeds)], config.seeds
    # at the first value of each hyperparameter axis and precision dimension (a model's numbers do not depend on
    # the other values)
    first_values = {name: hyper.values(config, name)[0] for name in hyper.swept(config)}
    first_values.update(
        {name: precision.values(config, name)[0] for name in precision.swept(config)}
    )
    sub = dataclasses.replace(config, schemes=tuple(schemes), seeds=seeds, **first_values)

    first = run(sub, progress=False, keep_params=True, model=make_model, optimizer=optimizer)
    # compiled again: a cache of its own, and not from JAX's persistent compilation cache
    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        second = run(
            sub, progress=False, model=make_model, optimizer=optimizer, programs=ProgramCache()
        )
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
    sha1 = tuple(first.models["param_sha256"])
    sha2 = tuple(second.models["param_sha256"])

    # Another layout: the models after another scheme's, one seed more each (so the chunks hold other
    # neighbours at other positions), on one device if the first used several, else on all.
    extra = "lecun_normal" if "lecun_normal" not in schemes else "glorot_uniform"
    wide = dataclasses.replace(sub, schemes=(extra, *schemes), seeds=sub.seeds + 1)
    n_first = int(first.meta["device_count"])
    other_devices = 1 if n_first > 1 else None
    third = run(
        wide, progress=False, model=make_model, max_devices=other_devices, optimizer=optimizer
    )
    by_model = {
        (scheme, int(s)): h
        for scheme, s, h in zip(
            third.models["scheme"], third.models["seed"], third.models["param_sha256"], strict=True
        )
    }
    sha3 = tuple(
        by_model[(scheme, int(s))]
        for scheme, s in zip(first.models["scheme"], first.models["seed"], strict=True)
    )
    layouts = (
        f"{len(first.models)} models, chunks of {first.meta['chunk_size']}, {n_first} device(s)",
        f"{len(third.models)} models (another scheme first, one more seed), chunks of "
        f"{third.meta['chunk_size']}, {third.meta['device_count']} device(s)",
    )

    models, worst = _alone(sub, first.params, make_model, optimizer)
    return DeterminismReport(
        models=tuple(models),
        bitwise_identical=sha1 == sha2,
        sha256_first=sha1,
        sha256_second=sha2,
        max_abs_diff_alone=worst,
        epochs=sub.epochs,
        layout_identical=sha1 == sha3,
        sha256_layout=sha3,
        layouts=layouts,
    )
