"""Certified hyperparameter transfer: does the best learning rate carry across width and depth?

A coordinate check (:func:`jinit.coordinate_check`) is a proxy measured a few steps into training; transfer is a
claim about the optimum after training, and it needs seeds and intervals. :func:`check` trains, for every shape
(width, and depth when given), the learning-rate grid x seeds in ONE compiled program (the sweep's learning-rate
axis), finds each shape's best learning rate on the validation loss, fits ``log2(best lr)`` against
``log2(width)`` (and ``log2(depth)``), and gives a verdict per axis with a bootstrap interval over seeds:

- ``"transfers"``: the slope's interval lies inside the tolerance band ``[-tolerance, +tolerance]`` around 0
  (a practical-equivalence test, as the "region of practical equivalence" of Kruschke 2018) and every optimum is
  inside the grid;
- ``"drifts"``: the interval lies outside the band: the optimum moves, by ``2**slope`` per doubling;
- ``"inconclusive"``: neither, with the seeds that would settle it (from the measured spread), or an optimum on
  the grid's edge that could change the answer, or fewer than :data:`MIN_SEEDS` seeds.

The parameterization is a value (:class:`Parameterization`: the init, the per-layer Adam learning rates and, for
residual networks, a branch multiplier, each a function of the shape's :class:`Layout`): :func:`sp`,
:func:`mup`, :func:`sp_per_layer_lr` and :func:`depth_mup` build the four named ones (``parameterization="sp"``,
...), and a user builds their own the same way (the studies build a deliberately broken muP).

How the numbers are computed (all in :func:`analyze`, pure numpy, tested on synthetic optima):

- a shape's optimum is the vertex of the parabola through the mean loss (over seeds) at the best grid learning
  rate and its two neighbours, in log2 units (a continuous estimate inside one grid step; at the grid's edge it
  is the edge, flagged); a learning rate where any seed diverged is never the optimum;
- the slope is the least-squares fit of the optima against ``log2(width)`` (and ``log2(depth)``; both at once
  on a grid of shapes);
- its interval resamples the seeds (with replacement, the same seeds for every shape and learning rate: seed
  ``s`` shares its batches across learning rates and shapes, so the seed is the unit) and takes the expanded
  percentile interval (Hesterberg 2015: the percentiles at ``alpha'`` with ``z_{alpha'/2} = sqrt(n/(n-1))
  t_{alpha/2, n-1}``), which corrects the plain percentile interval's under-coverage at few seeds;
- the confidence set of learning rates not distinguishable from a shape's best is :func:`jinit.metrics.best_set`
  (paired by seed), and :func:`jinit.metrics.lr_sensitivity_summary` gives the learning-rate sensitivity.

Example:
    >>> from jinit import models, transfer
    >>> result = transfer.check(lambda w: models.factory("mlp", hidden=(w, w)), widths=(16, 32, 64),
    ...                         learning_rates=(1e-3, 3e-3, 1e-2, 3e-2), seeds=2, epochs=1)  # doctest: +SKIP
    >>> result.verdict["width"].verdict  # doctest: +SKIP
    'inconclusive'

References:
    Yang et al. Tensor Programs V: tuning large neural networks via zero-shot hyperparameter transfer.
    arXiv:2203.03466, 2022.
    Yang, Yu, Zhu, Hayou. Tensor Programs VI: feature learning in infinite-depth neural networks.
    arXiv:2310.02244, 2023.
    Bordelon, Noci, Li, Hanin, Pehlevan. Depthwise hyperparameter transfer in residual networks: dynamics and
    scaling limit. arXiv:2309.16620, 2023.
    Everett et al. Scaling exponents across parameterizations and optimizers. ICML 2024 (arXiv:2407.05872).
    Wortsman et al. Small-scale proxies for large-scale Transformer training instabilities. arXiv:2309.14322, 2023.
    Hesterberg. What teachers should know about the bootstrap. The American Statistician 69 (2015).
    Kruschke. Rejecting or accepting parameter values in Bayesian estimation. AMPPS 1 (2018).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
import pandas as pd
from scipy import stats

from jinit import files, metrics, modern, propagation, registry, sweep
from jinit import initializers as init_lib
from jinit.rules import Rules, param_paths

__all__ = [
    "DEFAULT_TOLERANCE",
    "MIN_SEEDS",
    "PARAMETERIZATIONS",
    "VERDICTS",
    "Layout",
    "Parameterization",
    "TransferResult",
    "Verdict",
    "analyze",
    "check",
    "depth_multipliers",
    "depth_mup",
    "expanded_percentiles",
    "layout",
    "load",
    "mup",
    "optimizer_factory",
    "parabolic_optimum",
    "parameterization",
    "sp",
    "sp_per_layer_lr",
    "verdict",
]

#: The named parameterizations ``check(parameterization=...)`` takes.
PARAMETERIZATIONS = ("sp", "mup", "sp_per_layer_lr", "depth_mup")
#: The three answers of a verdict.
VERDICTS = ("transfers", "drifts", "inconclusive")
#: Below this many seeds the bootstrap of an optimum has too few distinct resamples (126 at 5) for an interval.
MIN_SEEDS = 5
#: The default half-width of the band of slopes that count as "transfers": 2**0.25 = x1.19 per doubling.
DEFAULT_TOLERANCE = 0.25
#: What the optimum is chosen on.
METRICS = ("val_loss", "train_loss")
#: Adam-style optimizers the parameterizations are written for (adamw: optax's default decay 1e-4).
OPTIMIZERS = {"adam": 0.0, "adamw": 1e-4}


# ---------------------------------------------------------------------------------------------- layouts


class Layout(NamedTuple):
    """What a parameterization needs to know about one shape of the model.

    Attributes:
      width: the shape's width.
      depth: its depth (None when the check varies width only).
      base_width: the width at which every parameterization here equals SP (the narrowest width).
      base_depth: likewise for depth (None without depths).
      params: the parameter shapes at ``(width, depth)`` (``jax.eval_shape`` of the ``params`` collection).
      base_params: the parameter shapes at ``(base_width, depth)`` (what :func:`jinit.mup_multipliers` compares).
      inputs: paths of the input layers' kernels (fan-in fixed, fan-out the width; embeddings).
      readout: path of the readout kernel (fan-in the width, fan-out fixed).
      blocks: paths of the parameters repeated per residual block (their number grows with depth).
    """

    width: int
    depth: int | None
    base_width: int
    base_depth: int | None
    params: Any
    base_params: Any
    inputs: tuple[str, ...]
    readout: str
    blocks: tuple[str, ...]


def _module(make_model: Callable, width: int, depth: int | None) -> Any:
    """``make_model(width[, depth])(kernel_init, bias_init)``: the linen module of one shape."""
    factory = make_model(width) if depth is None else make_model(width, depth)
    if not callable(factory):
        raise TypeError(
            f"make_model({width}{'' if depth is None else f', {depth}'}) must return a model factory "
            f"(kernel_init, bias_init) -> flax.linen.Module, e.g. models.factory('mlp', hidden=(w, w)); "
            f"got {type(factory).__name__}"
        )
    module = factory(init_lib.lecun_normal(), init_lib.zeros())
    if not hasattr(module, "init") or not hasattr(module, "clone"):
        raise TypeError(
            f"transfer.check needs a flax.linen model factory (kernel_init, bias_init) -> nn.Module; "
            f"the factory built a {type(module).__name__}"
        )
    return module


def _shapes(make_model: Callable, width: int, depth: int | None, x1: Any) -> Any:
    module = _module(make_model, width, depth)
    return jax.eval_shape(module.init, jax.random.key(0), x1)["params"]


def _shape_table(params: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_leaves(params)
    return {
        p: tuple(int(d) for d in leaf.shape)
        for p, leaf in zip(param_paths(params), leaves, strict=True)
    }


def _roles(at: dict, other: dict) -> tuple[list[str], list[str], list[str]]:
    """``(inputs, readouts, hidden)`` kernels: which of a kernel's fan-in / fan-out change with the width."""
    inputs, readouts, hidden = [], [], []
    for path, shape in at.items():
        if len(shape) < 2 or path not in other or len(other[path]) != len(shape):
            continue
        fan_in_inf = shape[-2] != other[path][-2]
        fan_out_inf = shape[-1] != other[path][-1]
        if fan_out_inf and not fan_in_inf:
            inputs.append(path)
        elif fan_in_inf and not fan_out_inf:
            readouts.append(path)
        elif fan_in_inf and fan_out_inf:
            hidden.append(path)
    return inputs, readouts, hidden


def _template(path: str) -> str:
    return re.sub(r"\d+", "*", path)


def _block_paths(at: dict, deeper: dict, exclude: Sequence[str]) -> list[str]:
    """Parameters whose kind (path with the numbers blanked) occurs more often in the deeper model."""
    count = lambda t: {k: sum(_template(p) == k for p in t) for k in {_template(p) for p in t}}  # noqa: E731
    n_at, n_deep = count(at), count(deeper)
    grows = {k for k in n_at if n_deep.get(k, 0) > n_at[k]}
    parents = {p.rsplit("/", 1)[0] for p in exclude}
    return [p for p in at if _template(p) in grows and p.rsplit("/", 1)[0] not in parents]


def layout(
    make_model: Callable,
    width: int,
    depth: int | None = None,
    *,
    base_width: int,
    base_depth: int | None = None,
    x: Any,
    readout: str | None = None,
    inputs: Sequence[str] | None = None,
    blocks: str | Sequence[str] | None = None,
) -> Layout:
    """The :class:`Layout` of one shape, its layers' roles found from the parameter shapes.

    A kernel whose fan-out changes with the width and fan-in does not is an input layer (its fan-in is the data's
    features, or a vocabulary); fan-in changing and fan-out not, the readout (its fan-out is the outputs); both,
    a hidden layer (``mup.set_base_shapes``'s "infinite" dimensions). The widths compared are ``width`` and
    ``base_width`` (or ``2 * width`` at the base). A parameter is in a residual block when the number of
    parameters of its kind (its path with the numbers blanked: ``block_*/dense_*/kernel``) grows from ``depth`` to
    ``depth + 1``; the input and readout layers' modules are never blocks.

    Args:
      make_model: ``width -> factory`` or ``(width, depth) -> factory`` (a linen ``(kernel_init, bias_init) ->
        nn.Module``), as :func:`check` takes it.
      width, depth: the shape (``depth`` None: ``make_model`` takes the width only).
      base_width, base_depth: the base shape.
      x: one input example with its batch axis (``x_train[:1]``).
      readout: the readout kernel's path, instead of finding it.
      inputs: the input kernels' paths, instead of finding them.
      blocks: a glob pattern (or several) of the block parameters, matching a path or its leading names
        (``"block_*"``), instead of finding them.

    Returns:
      A :class:`Layout`.

    Raises:
      ValueError: no readout, or several, found (pass ``readout=``); a given path that is not a parameter.
    """
    at = _shapes(make_model, width, depth, x)
    other_w = base_width if width != base_width else 2 * width
    table = _shape_table(at)
    found_in, found_out, _ = _roles(table, _shape_table(_shapes(make_model, other_w, depth, x)))
    for name, given in (("readout", [readout] if readout else []), ("inputs", inputs or [])):
        bad = [p for p in given if p not in table]
        if bad:
            raise ValueError(
                f"{name}: {', '.join(bad)} is not a parameter of the model; its kernels: "
                f"{', '.join(p for p, s in table.items() if len(s) >= 2)}"
            )
    if readout is None:
        if len(found_out) != 1:
            raise ValueError(
                f"found {len(found_out)} readout layers (kernels whose fan-in changes with the width and fan-out "
                f"does not): {found_out or 'none'}; pass readout='path/kernel'"
            )
        readout = found_out[0]
    ins = tuple(inputs) if inputs is not None else tuple(found_in)
    if depth is None:
        block_paths: list[str] = []
    elif blocks is not None:
        pats = (blocks,) if isinstance(blocks, str) else tuple(blocks)
        block_paths = [p for p in table if any(_leading_match(g, p) for g in pats)]
    else:
        deeper = _shape_table(_shapes(make_model, width, depth + 1, x))
        block_paths = _block_paths(table, deeper, (*ins, readout))
    base = at if width == base_width else _shapes(make_model, base_width, depth, x)
    return Layout(width, depth, base_width, base_depth, at, base, ins, readout, tuple(block_paths))


def _leading_match(pattern: str, path: str) -> bool:
    """Whether the glob ``pattern`` matches ``path`` or its leading names (``block_*`` matches
    ``block_3/dense_0/kernel``)."""
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


# ---------------------------------------------------------------------------------------------- parameterizations


class Parameterization(NamedTuple):
    """A rule for how a model's init and learning rates change with its shape.

    Attributes:
      name: its label in tables and run folders.
      init: ``layout -> scheme``: what the sweep initializes the kernels with (an initializer, a name, or a
        :func:`jinit.rules` value such as :func:`jinit.mup`).
      optimizer: ``layout -> (learning_rate -> optax.GradientTransformation)``: the optimizer of the shape as a
        factory of the base learning rate (the sweep's learning-rate axis injects it).
      branch_multiplier: ``layout -> float`` or None: a constant the model multiplies every residual branch by
        (its ``branch_multiplier`` field, e.g. :class:`jinit.models.ResidualMLP`); None leaves the model as built.

    Example (muP with an unscaled readout, by hand):
      >>> import jinit
      >>> from jinit import transfer
      >>> def no_readout_scaling(lay):
      ...     mults = jinit.mup_multipliers(lay.params, lay.base_params)
      ...     mults[lay.readout] = 1.0
      ...     return lambda lr: jinit.per_layer_adam(lr, mults)
      >>> broken = transfer.Parameterization("mup_readout_unscaled", transfer.sp().init, no_readout_scaling)
    """

    name: str
    init: Callable[[Layout], Any]
    optimizer: Callable[[Layout], Callable[[Any], optax.GradientTransformation]]
    branch_multiplier: Callable[[Layout], float] | None = None


def _check_scale(where: str, scale: Any, std: Any, weight_decay: Any) -> None:
    for name, v, lo in (("scale", scale, 0.0), ("weight_decay", weight_decay, None)):
        ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
        if not ok or (v <= lo if lo is not None else v < 0):
            rule = "> 0" if lo is not None else ">= 0"
            raise ValueError(f"{where}: {name} must be a finite number {rule}, got {v!r}")
    if std is not None and (
        isinstance(std, bool) or not isinstance(std, int | float) or not std > 0
    ):
        raise ValueError(f"{where}: std must be None or a number > 0, got {std!r}")


def _sp_scheme(scale: float, std: float | None) -> Any:
    """SP's init: the fan-in init muP keeps for its input and hidden layers (so both agree at the base width)."""
    if std is not None:
        return init_lib.normal(stddev=float(std))
    return init_lib.variance_scaling(float(scale), "fan_in", "normal")


def _adam(multipliers: Callable[[Layout], dict], weight_decay: float) -> Callable:
    def make(lay: Layout) -> Callable[[Any], optax.GradientTransformation]:
        mults = multipliers(lay)

        def factory(learning_rate):  # one argument: the learning rate the sweep injects
            return modern.per_layer_adam(learning_rate, mults, weight_decay=weight_decay)

        return factory

    return make


def _ones(lay: Layout) -> dict[str, float]:
    return dict.fromkeys(param_paths(lay.params), 1.0)


def _mup_mults(lay: Layout) -> dict[str, float]:
    return modern.mup_multipliers(lay.params, lay.base_params)


def sp(scale: float = 2.0, std: float | None = None, weight_decay: float = 0.0) -> Parameterization:
    """The standard parameterization: a fan-in init at every width and one Adam learning rate for every layer.

    Init ``Var = scale / fan_in`` (``scale=2``: He, for ReLU), or ``N(0, std^2)``; Adam with
    ``learning_rate`` for every parameter (:func:`jinit.per_layer_adam` with all multipliers 1, which is
    ``optax.adam`` / ``optax.adamw``). At the base width it equals every other parameterization here.

    Args:
      scale: variance scale of the fan-in init.
      std: a constant standard deviation instead (GPT-2's 0.02).
      weight_decay: decoupled weight decay (AdamW's); 0 for Adam.

    Returns:
      A :class:`Parameterization` named ``"sp"``.

    References:
      He et al. Delving deep into rectifiers. ICCV 2015. Yang et al. 2022 (Tensor Programs V), Table 3 ("SP").
    """
    _check_scale("sp", scale, std, weight_decay)
    scheme = _sp_scheme(scale, std)
    return Parameterization("sp", lambda lay: scheme, _adam(_ones, float(weight_decay)))


def mup(
    scale: float = 2.0,
    std: float | None = None,
    weight_decay: float = 0.0,
    readout_zero: bool = False,
) -> Parameterization:
    """muP: :func:`jinit.mup`'s init and :func:`jinit.mup_optimizer`'s per-layer Adam learning rates.

    Relative to SP at the base width ``n0`` (Yang et al. 2022, Table 8, the formulation without an output
    multiplier): input layers keep SP's init and learning rate; hidden layers keep SP's init
    (``Var = scale / fan_in``) and learn at ``lr * n0 / fan_in``; the readout is drawn with
    ``Var = scale * n0 / fan_in^2`` (or zero) and learns at ``lr * n0 / fan_in``. This is ``mup.MuAdam`` with
    ``MuReadout``'s ``1 / width_mult`` folded into the readout's init and learning rate (``mup/optim.py``:
    ``group['lr'] /= width_mult`` for matrix-like parameters; ``mup/layer.py``).

    Args:
      scale, std: SP's init (see :func:`sp`).
      weight_decay: decoupled weight decay, scaled with each layer's learning rate (``MuAdamW``).
      readout_zero: start the readout at zero (``MuReadout(readout_zero_init=True)``).

    Returns:
      A :class:`Parameterization` named ``"mup"``; ``layout -> jinit.mup(base_width, readout=..., inputs=...)``
      and ``layout -> lr -> jinit.per_layer_adam(lr, jinit.mup_multipliers(params, base_params))``.

    References:
      Yang et al. Tensor Programs V. arXiv:2203.03466, 2022, Tables 3 and 8; github.com/microsoft/mup.
    """
    _check_scale("mup", scale, std, weight_decay)
    if not isinstance(readout_zero, bool):
        raise TypeError(f"mup: readout_zero must be True or False, got {readout_zero!r}")

    def scheme(lay: Layout) -> Rules:
        return modern.mup(
            lay.base_width,
            readout=lay.readout,
            inputs=lay.inputs,
            scale=float(scale),
            std=std,
            readout_zero=readout_zero,
        )

    return Parameterization("mup", scheme, _adam(_mup_mults, float(weight_decay)))


def sp_per_layer_lr(
    scale: float = 2.0, std: float | None = None, weight_decay: float = 0.0
) -> Parameterization:
    """SP's init with muP's per-layer Adam learning rates (Everett et al. 2024).

    Everett et al. (Table 1, standard parameterization, Adam, "full alignment": learning-rate exponents
    ``c = 0`` for the embedding (input) layers, ``c = 1`` for hidden and readout layers, ``lr_l ~ n^-c_l``) found
    it as good as muP, or better, at transfer: every layer keeps SP's init (the readout too, ``Var = scale /
    fan_in``), the input layers learn at ``lr``, hidden layers and the readout at ``lr * n0 / fan_in``
    (:func:`jinit.mup_multipliers`' table). It differs from :func:`mup` in the readout's init only. Everett et
    al. also tune a constant per layer; here the one base learning rate is swept.

    Args:
      scale, std: SP's init (see :func:`sp`).
      weight_decay: decoupled weight decay, scaled with each layer's learning rate.

    Returns:
      A :class:`Parameterization` named ``"sp_per_layer_lr"``.

    References:
      Everett et al. Scaling exponents across parameterizations and optimizers. ICML 2024 (arXiv:2407.05872),
      Table 1.
    """
    _check_scale("sp_per_layer_lr", scale, std, weight_decay)
    scheme = _sp_scheme(scale, std)
    return Parameterization(
        "sp_per_layer_lr", lambda lay: scheme, _adam(_mup_mults, float(weight_decay))
    )


def depth_multipliers(lay: Layout) -> dict[str, float]:
    """Depth-muP's Adam learning-rate multipliers: muP's (width), times ``sqrt(base_depth / depth)`` for every
    parameter of a residual block (:attr:`Layout.blocks`: kernels, biases and norms of the branches)."""
    mults = _mup_mults(lay)
    if lay.depth is None or lay.base_depth is None:
        return mults
    f = math.sqrt(lay.base_depth / lay.depth)
    blocks = set(lay.blocks)
    return {p: m * f if p in blocks else m for p, m in mults.items()}


def _depth_branch(lay: Layout) -> float:
    if lay.depth is None or lay.base_depth is None:
        return 1.0
    return math.sqrt(lay.base_depth / lay.depth)


def depth_mup(
    scale: float = 2.0, std: float | None = None, weight_decay: float = 0.0
) -> Parameterization:
    """Depth-muP for residual networks: muP in width, and in depth a branch multiplier ``1 / sqrt(depth)`` with
    Adam learning rates ``1 / sqrt(depth)`` for the blocks' parameters.

    Yang et al. (2023, Tensor Programs VI) write a residual network as ``x_l = x_{l-1} + a L^(-alpha) W_l
    phi(x_{l-1})`` with block learning rate ``eta L^(-gamma)``; Depth-muP is ``alpha = 1/2`` with ``gamma = 0``
    for SGD and ``gamma = 1/2`` for Adam (Bordelon et al. 2023 scale the branches by
    ``1/sqrt(L)`` the same way). Relative to the base depth ``L0``: every branch is multiplied by
    ``sqrt(L0 / L)`` (the model's ``branch_multiplier``) and every parameter of a block learns at
    ``sqrt(L0 / L)`` times its muP learning rate; the stem, the head and the final norm are not scaled in depth
    (as CompleteP's reference code with ``depth_alpha_exp = 1/2``: hidden learning rate ``depth_mult^(alpha - 1)``,
    residual scaling ``depth_mult^-alpha``). The init is muP's (Depth-muP keeps the init's variance; the
    multiplier does the scaling). Adam's ``eps`` is not scaled (CompleteP scales it too; at these sizes
    gradients stay far above 1e-8). TP6 derives Depth-muP for blocks of one layer; for deeper blocks (a
    transformer's) it shows that no depthwise parameterization is optimal, and Depth-muP is a heuristic there.

    Args:
      scale, std: the init (see :func:`mup`).
      weight_decay: decoupled weight decay, scaled with each parameter's learning rate.

    Returns:
      A :class:`Parameterization` named ``"depth_mup"``; its model needs a ``branch_multiplier`` field
      (:class:`jinit.models.ResidualMLP`, best with ``preact=True, branch_layers=1``, the papers' block).

    References:
      Yang, Yu, Zhu, Hayou. Tensor Programs VI: feature learning in infinite-depth neural networks.
      arXiv:2310.02244, 2023.
      Bordelon, Noci, Li, Hanin, Pehlevan. Depthwise hyperparameter transfer in residual networks: dynamics and
      scaling limit. arXiv:2309.16620, 2023.
      Dey et al. Don't be lazy: CompleteP enables compute-efficient deep transformers. arXiv:2505.01618, 2025.
    """
    _check_scale("depth_mup", scale, std, weight_decay)
    width = mup(scale, std, weight_decay)
    return Parameterization(
        "depth_mup", width.init, _adam(depth_multipliers, float(weight_decay)), _depth_branch
    )


def parameterization(spec: Any, *, weight_decay: float = 0.0) -> Parameterization:
    """A :class:`Parameterization` from a name (:data:`PARAMETERIZATIONS`) or as given.

    Raises:
      ValueError: an unknown name, listing the valid ones. TypeError: anything else.
    """
    if isinstance(spec, Parameterization):
        return spec
    makers = {"sp": sp, "mup": mup, "sp_per_layer_lr": sp_per_layer_lr, "depth_mup": depth_mup}
    if isinstance(spec, str):
        if spec not in makers:
            raise ValueError(
                f"unknown parameterization {spec!r}; valid: {', '.join(PARAMETERIZATIONS)} "
                "(or a transfer.Parameterization value)"
            )
        return makers[spec](weight_decay=weight_decay)
    raise TypeError(
        f"parameterization must be one of {', '.join(PARAMETERIZATIONS)} or a transfer.Parameterization, "
        f"got {spec!r}"
    )


# ---------------------------------------------------------------------------------------------- statistics


def parabolic_optimum(x: Any, mean_losses: Any) -> tuple[np.ndarray, np.ndarray]:
    """The minimum of a loss curve on a grid, refined to the vertex of the parabola through its three lowest-cost
    neighbours.

    For each row of ``mean_losses`` (non-finite values count as +inf: diverged), the grid argmin ``i``; when
    ``0 < i < K - 1`` and both neighbours are finite, the vertex of the parabola through ``(x[i-1], m[i-1]),
    (x[i], m[i]), (x[i+1], m[i+1])`` (Brent's parabolic step), which lies within half a grid step of ``x[i]``;
    else ``x[i]`` itself.

    Args:
      x: ``[K]`` ascending grid (log2 learning rates).
      mean_losses: ``[..., K]``.

    Returns:
      ``(x_opt, index)``: ``[...]`` each; ``x_opt`` NaN (and ``index`` -1) where every value is non-finite.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(mean_losses, dtype=np.float64)
    m = np.where(np.isfinite(m), m, np.inf)
    k = x.size
    idx = np.argmin(m, axis=-1)
    none = ~np.isfinite(np.take_along_axis(m, idx[..., None], -1)[..., 0])
    i0, i2 = np.clip(idx - 1, 0, k - 1), np.clip(idx + 1, 0, k - 1)
    y0, y1, y2 = (np.take_along_axis(m, i[..., None], -1)[..., 0] for i in (i0, idx, i2))
    x0, x1, x2 = x[i0], x[idx], x[i2]
    with np.errstate(invalid="ignore", divide="ignore"):
        num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
        den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        vertex = x1 - 0.5 * num / den
    ok = (idx > 0) & (idx < k - 1) & np.isfinite(y0) & np.isfinite(y2) & (den != 0)
    out = np.where(ok, vertex, x1)
    return np.where(none, np.nan, out), np.where(none, -1, idx)


def expanded_percentiles(n: int, level: float = 0.95) -> tuple[float, float]:
    """The percentiles of the expanded percentile bootstrap interval for ``n`` resampled units.

    The plain percentile interval is too narrow at small ``n`` (its spread is the plug-in ``sqrt((n-1)/n)`` of
    the true one, and it uses normal instead of t quantiles). Hesterberg's fix takes the percentiles at
    ``alpha'/2, 1 - alpha'/2`` with ``z_{1 - alpha'/2} = sqrt(n / (n - 1)) t_{1 - alpha/2, n - 1}``.

    Returns:
      ``(low, high)`` in percent (e.g. ``(0.57, 99.43)`` at n = 8, level 0.95); ``(0, 100)`` for n < 2.

    References:
      Hesterberg. What teachers should know about the bootstrap. The American Statistician 69 (2015), sec. 5.
    """
    if n < 2:
        return 0.0, 100.0
    z = math.sqrt(n / (n - 1)) * stats.t.ppf(0.5 + level / 2, n - 1)
    tail = float(stats.norm.sf(z))
    return 100.0 * tail, 100.0 * (1.0 - tail)


class Verdict(NamedTuple):
    """The answer for one axis: does the best learning rate transfer along it?

    Attributes:
      axis: ``"width"`` or ``"depth"``.
      verdict: ``"transfers"``, ``"drifts"`` or ``"inconclusive"`` (:data:`VERDICTS`).
      slope: the fitted slope of ``log2(best lr)`` per ``log2(size)`` (0: transfer; -1: the best learning rate
        halves when the size doubles).
      ci_low, ci_high: its interval.
      tolerance: the band ``[-tolerance, tolerance]`` that counts as transfer.
      seeds: seeds per learning rate.
      seeds_needed: for ``"inconclusive"``, about how many seeds would make the interval fit inside or outside
        the band, from the measured spread (the interval narrowing as ``1 / sqrt(seeds)``); NaN otherwise or when
        no number of seeds would (a slope on the band's edge), and for an edge optimum (a grid problem).
      reason: one sentence, with the numbers.
    """

    axis: str
    verdict: str
    slope: float
    ci_low: float
    ci_high: float
    tolerance: float
    seeds: int
    seeds_needed: float
    reason: str


def _seeds_needed(slope: float, low: float, high: float, tolerance: float, n: int) -> float:
    half = (high - low) / 2
    margin = abs(abs(slope) - tolerance)
    if not np.isfinite(half) or margin == 0:
        return float("inf")
    return float(max(MIN_SEEDS, math.ceil(n * (half / margin) ** 2 - 1e-9)))  # 32.000000001 is 32


def _edge_text(edges: Sequence[tuple[Any, str, float]], axis: str) -> str:
    return "; ".join(f"the {side} end at {axis} {size}" for size, side, _ in edges)


def verdict(
    slope: float,
    ci_low: float,
    ci_high: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    seeds: int,
    axis: str = "width",
    edges: Sequence[tuple[Any, str, float]] = (),
    level: float = 0.95,
) -> Verdict:
    """The verdict for one axis from its slope and interval (a practical-equivalence decision).

    ``"transfers"`` when ``[ci_low, ci_high]`` lies inside ``[-tolerance, tolerance]`` and no optimum is on the
    grid's edge; ``"drifts"`` when it lies entirely outside, and every edge optimum could only make the drift
    larger; else ``"inconclusive"``: fewer than :data:`MIN_SEEDS` seeds, an interval that straddles the band's
    edge (with the seeds that would settle it), an edge optimum that could change the answer, or no slope.

    Args:
      slope, ci_low, ci_high: the fitted slope and its interval (log2 learning rate per log2 size).
      tolerance: half-width of the band (> 0).
      seeds: seeds behind the interval.
      axis: the axis' name, for the reason.
      edges: the shapes whose optimum sits on the grid's edge: ``(size, "low" | "high", weight)``, with ``weight``
        the shape's coefficient in the least-squares slope (the slope moves by ``weight * delta`` when that shape's
        optimum moves by ``delta``; an optimum at the high edge can only be higher, at the low edge only lower).
      level: the interval's level, for the reason.

    Returns:
      A :class:`Verdict`.
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    pct = f"{100 * level:g}%"
    interval = f"{pct} interval [{ci_low:+.2f}, {ci_high:+.2f}]"
    base = dict(
        axis=axis, slope=slope, ci_low=ci_low, ci_high=ci_high, tolerance=tolerance, seeds=seeds
    )
    nan = float("nan")
    if not all(np.isfinite([slope, ci_low, ci_high])):
        return Verdict(
            verdict="inconclusive", seeds_needed=nan, **base,
            reason=f"no slope: a {axis} had no learning rate that trained without diverging",
        )  # fmt: skip
    need = _seeds_needed(slope, ci_low, ci_high, tolerance, seeds)
    if seeds < MIN_SEEDS:
        return Verdict(
            verdict="inconclusive", seeds_needed=need, **base,
            reason=f"{seeds} seeds: an interval needs at least {MIN_SEEDS}; about {need:.0f} seeds would settle "
            f"it from the measured spread (slope {slope:+.2f}, {interval})",
        )  # fmt: skip
    inside = -tolerance <= ci_low and ci_high <= tolerance
    outside = ci_low > tolerance or ci_high < -tolerance
    sign = 1.0 if slope > 0 else -1.0
    harmless = all((w * sign >= 0) if side == "high" else (w * sign <= 0) for _, side, w in edges)
    per = f"x{2**slope:.3g} per doubling of the {axis}"
    if inside and not edges:
        return Verdict(
            verdict="transfers", seeds_needed=nan, **base,
            reason=f"slope {slope:+.2f}, {interval} inside ±{tolerance:g}: the best learning rate moves by at most "
            f"x{2 ** max(abs(ci_low), abs(ci_high)):.3g} per doubling of the {axis}",
        )  # fmt: skip
    if outside and harmless:
        way = "falls" if slope < 0 else "rises"
        note = f" (the optimum is on the grid's edge at {_edge_text(edges, axis)}: the drift is at least this)"
        return Verdict(
            verdict="drifts", seeds_needed=nan, **base,
            reason=f"slope {slope:+.2f}, {interval} outside ±{tolerance:g}: the best learning rate {way} {per} "
            f"(x{2**ci_low:.3g} to x{2**ci_high:.3g}){note if edges else ''}",
        )  # fmt: skip
    if edges:
        return Verdict(
            verdict="inconclusive", seeds_needed=nan, **base,
            reason=f"slope {slope:+.2f}, {interval}, but the optimum sits on the grid's edge at "
            f"{_edge_text(edges, axis)}: extend the learning rates beyond it",
        )  # fmt: skip
    return Verdict(
        verdict="inconclusive", seeds_needed=need, **base,
        reason=f"slope {slope:+.2f}, {interval} overlaps the band ±{tolerance:g} without lying inside or outside "
        f"it; about {need:.0f} seeds would settle it (from the measured spread)",
    )  # fmt: skip


def _design(sizes: dict[str, Sequence[float]]) -> tuple[np.ndarray, list[str]]:
    """The least-squares design ``[1, log2 size per varying axis]`` over the shapes, and those axes."""
    axes = [a for a, v in sizes.items() if len(set(v)) > 1]
    n = len(next(iter(sizes.values())))
    cols = [np.ones(n)] + [np.log2(np.asarray(sizes[a], dtype=np.float64)) for a in axes]
    return np.stack(cols, axis=1), axes


def analyze(
    losses: Any,
    log2_lrs: Any,
    sizes: dict[str, Sequence[float]],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    level: float = 0.95,
    n_boot: int = 4000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Verdict]]:
    """Optima, slopes and verdicts from the final losses of every shape, learning rate and seed.

    Args:
      losses: ``[shapes, seeds, learning_rates]`` (NaN or inf: diverged); seed ``i`` of every shape is the same
        seed number (the bootstrap resamples seeds jointly).
      log2_lrs: ``[learning_rates]``, ascending.
      sizes: ``{axis: [size of each shape]}`` (``"width"``, ``"depth"``); an axis whose sizes are all equal is not
        fitted.
      tolerance: the band of slopes that count as transfer (see :func:`verdict`).
      level: the intervals' confidence level.
      n_boot: bootstrap resamples.
      seed: seed of the resampling.

    Returns:
      ``(optima, slope, verdicts)``: ``optima`` one row per shape (the ``sizes`` columns, ``best_lr`` the best
      grid value, ``optimum_lr`` the parabolic optimum with ``optimum_ci_low`` / ``optimum_ci_high``, ``at_edge``
      ``"low"`` / ``"high"`` / ``""``, ``loss_at_best``, ``diverged`` runs); ``slope`` one row per fitted axis
      (``slope``, ``ci_low``, ``ci_high``, ``per_doubling`` ``2**slope`` and its interval, ``seeds``,
      ``tolerance``); ``verdicts`` ``{axis: Verdict}``.

    Raises:
      ValueError: mismatched shapes, fewer than 3 learning rates, or no axis with two sizes.
    """
    L = np.asarray(losses, dtype=np.float64)
    x = np.asarray(log2_lrs, dtype=np.float64)
    if L.ndim != 3 or L.shape[2] != x.size or x.size < 3:
        raise ValueError(
            f"losses must be [shapes, seeds, learning_rates] with >= 3 learning rates matching log2_lrs; got "
            f"{L.shape} and {x.size} learning rates"
        )
    if np.any(np.diff(x) <= 0):
        raise ValueError("log2_lrs must be strictly ascending")
    if any(len(v) != L.shape[0] for v in sizes.values()):
        raise ValueError(f"every sizes entry needs {L.shape[0]} values (one per shape)")
    design, axes = _design(sizes)
    if not axes:
        raise ValueError("no axis has two different sizes: give at least two widths (or depths)")
    L = np.where(np.isfinite(L), L, np.inf)
    n = L.shape[1]
    with np.errstate(invalid="ignore"):
        mean = L.mean(axis=1)
    opt, idx = parabolic_optimum(x, mean)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(int(n_boot), n))
    with np.errstate(invalid="ignore"):
        boot_mean = L[:, draws].mean(axis=2)  # [shapes, boot, lrs]
    boot, _ = parabolic_optimum(x, boot_mean)  # [shapes, boot]
    lo_pct, hi_pct = expanded_percentiles(n, level)
    pinv = np.linalg.pinv(design)  # [1 + axes, shapes]
    coef = pinv @ np.where(np.isfinite(opt), opt, np.nan)
    boot_coef = pinv @ boot  # NaN propagates from a shape without optimum
    k = x.size
    edge = np.where(idx == 0, "low", np.where(idx == k - 1, "high", ""))
    optima = pd.DataFrame({a: list(v) for a, v in sizes.items()})
    optima["best_lr"] = np.where(idx >= 0, 2.0 ** x[np.maximum(idx, 0)], np.nan)
    optima["optimum_lr"] = 2.0**opt
    with np.errstate(invalid="ignore"):
        q = np.nanpercentile(boot, [lo_pct, hi_pct], axis=1) if np.isfinite(boot).any() else None
    optima["optimum_ci_low"] = 2.0 ** q[0] if q is not None else np.nan
    optima["optimum_ci_high"] = 2.0 ** q[1] if q is not None else np.nan
    optima["at_edge"] = np.where(idx >= 0, edge, "")
    optima["loss_at_best"] = np.where(
        idx >= 0, mean[np.arange(len(idx)), np.maximum(idx, 0)], np.nan
    )
    optima["diverged"] = (~np.isfinite(L)).sum(axis=(1, 2))
    rows, verdicts = [], {}
    for j, axis in enumerate(axes, start=1):
        b = boot_coef[j]
        lo, hi = np.percentile(b, [lo_pct, hi_pct]) if np.isfinite(b).all() else (np.nan, np.nan)
        edges = [
            (sizes[axis][s], edge[s], float(pinv[j, s]))
            for s in range(len(idx))
            if edge[s] and idx[s] >= 0
        ]
        v = verdict(float(coef[j]), float(lo), float(hi), tolerance=tolerance, seeds=n, axis=axis,
                    edges=edges, level=level)  # fmt: skip
        verdicts[axis] = v
        rows.append(
            {"axis": axis, "slope": v.slope, "ci_low": v.ci_low, "ci_high": v.ci_high,
             "per_doubling": 2.0**v.slope, "per_doubling_low": 2.0**v.ci_low,
             "per_doubling_high": 2.0**v.ci_high, "seeds": n, "tolerance": tolerance}
        )  # fmt: skip
    return optima, pd.DataFrame(rows), verdicts


# ---------------------------------------------------------------------------------------------- the check


def _ints(name: str, values: Any, minimum: int = 1) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of integers >= {minimum}, got {values!r}"
        ) from None
    if (
        not out
        or any(isinstance(v, bool) or v != int(v) for v in values)
        or min(out) < minimum
        or len(set(out)) != len(out)
    ):
        raise ValueError(f"{name} must be distinct integers >= {minimum}, got {values!r}")
    return tuple(sorted(out))


def _learning_rates(values: Any) -> tuple[float, ...]:
    try:
        lrs = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"learning_rates must be a sequence of numbers, got {values!r}") from None
    if (
        len(lrs) < 3
        or not all(math.isfinite(v) and v > 0 for v in lrs)
        or len(set(lrs)) != len(lrs)
    ):
        raise ValueError(
            f"learning_rates must be at least 3 distinct finite numbers > 0 (a grid with interior points), "
            f"got {values!r}"
        )
    return tuple(sorted(lrs))


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


class _Plan(NamedTuple):
    """The checked arguments of :func:`check`."""

    widths: tuple[int, ...]
    depths: tuple[int, ...] | None
    lrs: tuple[float, ...]
    param: Parameterization
    data: Any  # a jinit.data.Dataset
    data_name: str | None  # the dataset's name when given by name (the sweep loads it), else None
    val_fraction: float | None

    @property
    def shapes(self) -> list[tuple[int, int | None]]:
        return [(w, d) for w in self.widths for d in (self.depths or (None,))]


def _plan(make_model, widths, depths, learning_rates, parameterization_, optimizer, data, metric,
          val_fraction, tolerance, seeds, epochs, vary) -> _Plan:  # fmt: skip
    """Checks every argument of :func:`check` before anything is loaded or compiled."""
    from jinit import data as data_lib

    if not callable(make_model):
        raise TypeError(f"make_model must be a function width -> model factory, got {make_model!r}")
    ws = _ints("widths", (widths,) if isinstance(widths, int) else widths)
    ds_ = (
        None
        if depths is None
        else _ints("depths", (depths,) if isinstance(depths, int) else depths)
    )
    if len(ws) < 2 and (ds_ is None or len(ds_) < 2):
        raise ValueError(
            "give at least two widths (or two depths) to see whether the optimum moves"
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(parameterization_, Parameterization) and optimizer != "adam":
        raise ValueError(
            "a Parameterization value carries its own optimizer: build it with weight_decay=... instead of "
            f"optimizer={optimizer!r}"
        )
    param = parameterization(parameterization_, weight_decay=OPTIMIZERS[optimizer])
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not 0 < tolerance < 10
    ):
        raise ValueError(f"tolerance must be a number in (0, 10), got {tolerance!r}")
    _positive_int("seeds", seeds)
    _positive_int("epochs", epochs)
    if vary not in sweep.VARY:
        raise ValueError(f"vary must be one of {', '.join(sweep.VARY)}, got {vary!r}")
    if isinstance(data, str):
        ds, name = data_lib.load(data), data
    elif isinstance(data, data_lib.Dataset):
        ds, name = data, None
    else:
        raise TypeError(
            f"data must be a dataset name or a jinit.data.Dataset, got {type(data).__name__}"
        )
    own_val = getattr(ds, "x_val", None) is not None
    vf = None if own_val else val_fraction
    if metric == "val_loss" and vf is None and not own_val:
        raise ValueError(
            "metric='val_loss' needs a validation set: give val_fraction=0.2 (or a Dataset with x_val), or "
            "metric='train_loss'"
        )
    if vf is not None and not (isinstance(vf, int | float) and 0 < vf < 1):
        raise ValueError(f"val_fraction must be a number in (0, 1) or None, got {val_fraction!r}")
    return _Plan(ws, ds_, _learning_rates(learning_rates), param, ds, name, vf)


def _with_multiplier(factory: Callable, multiplier: float, kernel_init: Any, bias_init: Any) -> Any:
    return factory(kernel_init, bias_init).clone(branch_multiplier=multiplier)


def _factory(make_model: Callable, lay: Layout, param: Parameterization) -> Callable:
    """The shape's model factory, with the parameterization's branch multiplier when it has one."""
    factory = make_model(lay.width) if lay.depth is None else make_model(lay.width, lay.depth)
    if param.branch_multiplier is None:
        return factory
    module = factory(init_lib.lecun_normal(), init_lib.zeros())
    if "branch_multiplier" not in getattr(module, "__dataclass_fields__", {}):
        raise ValueError(
            f"parameterization {param.name!r} scales residual branches: the model needs a branch_multiplier "
            f"field (e.g. jinit.models.ResidualMLP); {type(module).__name__} has none"
        )
    return functools.partial(_with_multiplier, factory, float(param.branch_multiplier(lay)))


def _is_variables(tree: Any) -> bool:
    return isinstance(tree, dict) and set(tree) == {"params"}


def _on_params(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` applied to the ``params`` collection of a ``{"params": ...}`` variables dict (what the sweep's
    optimizer is given), so that the layers' paths are the rules' paths (``Dense_0/kernel``); any other tree is
    passed as is."""

    def init(params):
        return tx.init(params["params"] if _is_variables(params) else params)

    def update(updates, state, params=None):
        if not _is_variables(updates):
            return tx.update(updates, state, params)
        inner = None if params is None else params["params"]
        new, state = tx.update(updates["params"], state, inner)
        return {"params": new}, state

    return optax.GradientTransformation(init, update)


def optimizer_factory(
    param: Parameterization, lay: Layout
) -> Callable[[Any], optax.GradientTransformation]:
    """The optimizer :func:`check` gives the sweep for one shape: ``learning_rate -> param.optimizer(lay)(lr)``
    applied to the ``params`` collection of the variables dict the sweep's optimizer is handed, so that the
    parameterization's per-layer tables are keyed by the rules' paths (``Dense_0/kernel``)."""
    make = param.optimizer(lay)

    def factory(learning_rate):  # one argument: the learning rate the sweep's axis injects
        return _on_params(make(learning_rate))

    return factory


def _folder(width: int, depth: int | None) -> str:
    return f"w{width}" if depth is None else f"w{width}_d{depth}"


def _train(make_model, lay: Layout, plan: _Plan, kw: dict, out: Path | None):
    config = sweep.SweepConfig(
        dataset=plan.data_name or "digits",
        schemes=(plan.param.init(lay),),
        seeds=kw["seeds"],
        seed=kw["seed"],
        epochs=kw["epochs"],
        batch_size=kw["batch_size"],
        learning_rate=plan.lrs,
        vary=kw["vary"],
        val_fraction=plan.val_fraction,
        train_size=kw["train_size"],
    )
    return sweep.run(
        config,
        model=_factory(make_model, lay, plan.param),
        optimizer=optimizer_factory(plan.param, lay),
        data=None if plan.data_name else plan.data,
        task=kw["task"],
        out=None if out is None else out / _folder(lay.width, lay.depth),
        progress=kw["progress"],
        overwrite=kw["overwrite"],
    )


def _tidy_losses(result: Any, metric: str) -> pd.DataFrame:
    """One row per model of a shape's sweep: ``learning_rate, seed, loss`` (+inf when diverged) and, when the
    task has it, ``val_accuracy``."""
    m = result.models
    if metric == "val_loss":
        loss = m["final_val_loss"].to_numpy(np.float64)
    else:  # the last epoch's mean training loss, as Yang et al.'s figure 1
        c = result.curves.sort_values("step", kind="stable")
        last = (
            c.groupby(["learning_rate", "seed"], sort=False)
            .tail(1)
            .set_index(["learning_rate", "seed"])
        )
        loss = last.loc[
            list(zip(m["learning_rate"], m["seed"], strict=True)), "train_loss"
        ].to_numpy()
    bad = m["diverged"].to_numpy(bool) | ~np.isfinite(loss)
    out = pd.DataFrame(
        {
            "learning_rate": m["learning_rate"].to_numpy(np.float64),
            "seed": m["seed"].to_numpy(np.int64),
            "loss": np.where(bad, np.inf, loss),
        }
    )
    if "final_val_accuracy" in m.columns:
        out["val_accuracy"] = np.where(bad, np.nan, m["final_val_accuracy"].to_numpy(np.float64))
    return out


def _matrix(tidy: pd.DataFrame, column: str) -> np.ndarray:
    """``[seeds, learning_rates]`` of one column (seeds and learning rates ascending)."""
    return (
        tidy.pivot(index="seed", columns="learning_rate", values=column)
        .sort_index(axis=1)
        .to_numpy()
    )


def _best_set(lrs: np.ndarray, L: np.ndarray) -> list[float]:
    """The learning rates not distinguishable from the best (paired by seed; those where a seed diverged are left
    out), :func:`jinit.metrics.best_set` on ``-loss``."""
    ok = np.isfinite(L).all(axis=0)
    groups = {float(lr): pd.Series(-L[:, j]) for j, lr in enumerate(lrs) if ok[j]}
    if len(groups) < 2:
        return list(groups)
    table = metrics.best_set(groups, paired=True)
    return [lr for lr in groups if bool(table.loc[lr, "in_best_set"])]


def _shape_extras(result: Any, tidy: pd.DataFrame) -> dict[str, Any]:
    """The per-shape columns :func:`analyze` does not compute: the confidence set of learning rates, the best
    learning rate on validation accuracy, the learning-rate sensitivity."""
    lrs = np.sort(tidy["learning_rate"].unique())
    L = _matrix(tidy, "loss")
    in_set = _best_set(lrs, L)
    row: dict[str, Any] = {
        "best_set": " ".join(f"{v:.3g}" for v in in_set),
        "best_set_low": min(in_set) if in_set else np.nan,
        "best_set_high": max(in_set) if in_set else np.nan,
    }
    if "val_accuracy" in tidy.columns:
        acc = _matrix(tidy, "val_accuracy")
        with np.errstate(invalid="ignore"):
            mean = np.where(np.isfinite(acc).all(axis=0), acc.mean(axis=0), -np.inf)
        j = int(np.argmax(mean))
        row["best_lr_accuracy"] = float(lrs[j]) if np.isfinite(mean[j]) else np.nan
        row["accuracy_at_best"] = float(mean[j]) if np.isfinite(mean[j]) else np.nan
    loss = "val_loss" if "val_loss" in result.curves.columns else "test_loss"
    sens = metrics.lr_sensitivity_summary(result.curves, loss=loss).iloc[0]
    row.update(
        lr_sensitivity=float(sens["lr_sensitivity"]),
        lr_sensitivity_ci_low=float(sens["ci_low"]),
        lr_sensitivity_ci_high=float(sens["ci_high"]),
    )
    return row


def _coord_batch(ds: Any, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(ds.x_train[:n], np.float32), np.asarray(ds.y_train[:n])


def _coordinate_checks(
    make_model, layouts: dict, plan: _Plan, lr: float, seeds: int
) -> pd.DataFrame:
    """:func:`jinit.coordinate_check` along each varying axis (the other at its base), 3 Adam steps at ``lr``."""
    x, y = _coord_batch(plan.data)
    frames = []
    base_w, base_d = plan.widths[0], plan.depths[0] if plan.depths else None
    axes = [("width", [(w, base_d) for w in plan.widths])]
    if plan.depths:
        axes.append(("depth", [(base_w, d) for d in plan.depths]))
    for axis, shapes in axes:
        if len(shapes) < 2:
            continue
        by_size = {sh[0] if axis == "width" else sh[1]: layouts[sh] for sh in shapes}
        sizes = list(by_size)

        def module(size, by_size=by_size):
            lay = by_size[size]
            spec = plan.param.init(lay)
            kinit = init_lib.lecun_normal() if isinstance(spec, Rules) else _initializer(spec)
            return _factory(make_model, lay, plan.param)(kinit, init_lib.zeros())

        def scheme(size, by_size=by_size):
            spec = plan.param.init(by_size[size])
            return spec if isinstance(spec, Rules) else None

        def tx(size, params, by_size=by_size):
            return plan.param.optimizer(by_size[size])(lr)

        df = propagation.coordinate_check(
            module, sizes, (x, y), optimizer=tx, scheme=scheme, steps=3, seeds=seeds
        )
        frames.append(df.rename(columns={"width": "size"}).assign(axis=axis))
    if not frames:
        return pd.DataFrame(columns=["axis", "size", "seed", "t", "layer", "l1", "delta"])
    out = pd.concat(frames, ignore_index=True)
    return out[["axis", "size", "seed", "t", "layer", "l1", "delta"]]


def _initializer(spec: Any) -> Any:
    return registry.get(spec)


def check(
    make_model: Callable,
    *,
    widths: Sequence[int],
    learning_rates: Sequence[float],
    depths: Sequence[int] | None = None,
    parameterization: Any = "mup",
    seeds: int = 8,
    data: Any = "digits",
    epochs: int = 10,
    batch_size: int = 64,
    optimizer: str = "adam",
    task: Any = None,
    out: str | Path | None = None,
    metric: str = "val_loss",
    val_fraction: float | None = 0.2,
    train_size: int | None = None,
    vary: str = "both",
    tolerance: float = DEFAULT_TOLERANCE,
    readout: str | None = None,
    inputs: Sequence[str] | None = None,
    blocks: str | Sequence[str] | None = None,
    coords: bool = True,
    n_boot: int = 4000,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> TransferResult:
    """Does the best learning rate transfer across width (and depth) under ``parameterization``? A verdict with
    statistics.

    For every shape ``(width, depth)``, one sweep trains the learning-rate grid x ``seeds`` in one compiled
    program (:func:`jinit.sweep.run`, the learning-rate axis: the learning rates of a seed share its init and
    batches), then :func:`analyze` finds each shape's best learning rate on ``metric``, fits the slope of
    ``log2(best lr)`` against ``log2(width)`` (and ``log2(depth)``) with a bootstrap interval over seeds, and
    gives a :func:`verdict` per axis. The coordinate check (:func:`jinit.coordinate_check`, 3 Adam steps at the
    base shape's best learning rate) runs at the same widths (and depths), the proxy beside the outcome.

    Args:
      make_model: ``width -> factory`` (or ``(width, depth) -> factory`` with ``depths``), the factory a linen
        ``(kernel_init, bias_init) -> nn.Module`` as :func:`jinit.sweep.run` takes it, e.g.
        ``lambda w: jinit.models.factory("mlp", hidden=(w, w))``.
      widths: at least two widths (or one with two depths); the narrowest is the base width.
      learning_rates: the grid of base learning rates (>= 3; a geometric grid, e.g. powers of 2, is best).
      depths: the depths, for residual networks (the shallowest is the base depth).
      parameterization: a name of :data:`PARAMETERIZATIONS` or a :class:`Parameterization`.
      seeds: seeds per learning rate (at least :data:`MIN_SEEDS` for a verdict other than "inconclusive").
      data: a dataset name (:func:`jinit.data.load`) or a :class:`jinit.data.Dataset`.
      epochs, batch_size: training length and batch size.
      optimizer: ``"adam"`` or ``"adamw"`` (optax's weight decay 1e-4, scaled with each layer's learning rate).
      task: the sweep's task (default: the dataset's).
      out: a folder: one resumable run folder per shape (``w64``, ``w64_d8``), then ``optima.csv``,
        ``verdicts.csv``, ``coords.csv``, ``losses.csv``, ``report.md`` and ``transfer.png``. Rerun with the same
        arguments to resume; finished shapes are read back.
      metric: ``"val_loss"`` (the final validation loss) or ``"train_loss"`` (the last epoch's training loss).
      val_fraction: the fraction of training examples held out for validation (ignored for a Dataset with its own).
      train_size: use only the first ``train_size`` training examples.
      vary: what a seed changes (``"both"``: init and batch order, so the spread is that of whole runs).
      tolerance: slopes within ``[-tolerance, tolerance]`` count as transfer (0.25: x1.19 per doubling).
      readout, inputs, blocks: the layers' roles, when finding them from the shapes fails (see :func:`layout`).
      coords: run the coordinate check.
      n_boot: bootstrap resamples.
      seed: the sweeps' root seed (and the resampling's).
      progress: progress bars. overwrite: replace run folders holding other sweeps.

    Returns:
      A :class:`TransferResult`.

    Raises:
      ValueError, TypeError: bad arguments (one line, naming the value and the choices), before anything is
        compiled.
    """
    t0 = time.perf_counter()
    plan = _plan(make_model, widths, depths, learning_rates, parameterization, optimizer, data, metric,
                 val_fraction, tolerance, seeds, epochs, vary)  # fmt: skip
    x1 = np.asarray(plan.data.x_train[:1], np.float32)
    base_d = plan.depths[0] if plan.depths else None
    layouts = {
        sh: layout(make_model, sh[0], sh[1], base_width=plan.widths[0], base_depth=base_d, x=x1,
                   readout=readout, inputs=inputs, blocks=blocks)
        for sh in plan.shapes
    }  # fmt: skip
    for lay in layouts.values():  # a model without the multiplier field fails here, before training
        _factory(make_model, lay, plan.param)
    out_path = Path(out) if out is not None else None
    kw = dict(seeds=seeds, seed=seed, epochs=epochs, batch_size=batch_size, vary=vary,
              train_size=train_size, task=task, progress=progress, overwrite=overwrite)  # fmt: skip
    runs = {sh: _train(make_model, layouts[sh], plan, kw, out_path) for sh in plan.shapes}
    result = _result(runs, _settings(plan, metric, tolerance, n_boot, seed))
    if coords and _classification(runs):
        base = result.optima.iloc[0]
        lr = float(base["best_lr"]) if np.isfinite(base["best_lr"]) else float(np.median(plan.lrs))
        result.coords = _coordinate_checks(make_model, layouts, plan, lr, min(int(seeds), 3))
        result.settings["coord_lr"] = lr
    result.settings.update(
        optimizer=optimizer, epochs=int(epochs), batch_size=int(batch_size), vary=vary,
        train_size=train_size, wall_seconds=time.perf_counter() - t0,
    )  # fmt: skip
    if out_path is not None:
        result.save(out_path)
    return result


def _classification(runs: dict) -> bool:
    task = next(iter(runs.values())).meta.get("task", {})
    return not isinstance(task, dict) or task.get("name", "classification") == "classification"


def _settings(plan: _Plan, metric: str, tolerance: float, n_boot: int, seed: int) -> dict:
    """What :func:`check` was asked, as ``settings.json`` keeps it (and :func:`load` reads it back)."""
    return {
        "parameterization": plan.param.name,
        "widths": list(plan.widths),
        "depths": list(plan.depths) if plan.depths else None,
        "learning_rates": list(plan.lrs),
        "metric": metric,
        "tolerance": float(tolerance),
        "data": plan.data_name or getattr(plan.data, "name", "data"),
        "val_fraction": plan.val_fraction,
        "n_boot": int(n_boot),
        "seed": int(seed),
    }


def _shapes_of(settings: dict) -> list[tuple[int, int | None]]:
    return [(w, d) for w in settings["widths"] for d in (settings["depths"] or (None,))]


def _result(runs: dict, settings: dict) -> TransferResult:
    """Analyzes the sweeps of every shape into a :class:`TransferResult` (without coordinates)."""
    shapes, metric, name = _shapes_of(settings), settings["metric"], settings["parameterization"]
    tidy = {sh: _tidy_losses(runs[sh], metric) for sh in shapes}
    losses = np.stack([_matrix(tidy[sh], "loss") for sh in shapes])
    sizes = {"width": [w for w, _ in shapes]}
    if settings["depths"]:
        sizes["depth"] = [d for _, d in shapes]
    optima, slope, verdicts = analyze(
        losses, np.log2(settings["learning_rates"]), sizes, tolerance=settings["tolerance"],
        n_boot=settings["n_boot"], seed=settings["seed"],
    )  # fmt: skip
    extras = pd.DataFrame([_shape_extras(runs[sh], tidy[sh]) for sh in shapes])
    optima = pd.concat([optima, extras], axis=1)
    optima.insert(0, "parameterization", name)
    slope.insert(0, "parameterization", name)
    long = pd.concat(
        [
            t.assign(width=sh[0], **({"depth": sh[1]} if settings["depths"] else {}))
            for sh, t in tidy.items()
        ],
        ignore_index=True,
    )
    meta = runs[shapes[0]].meta
    facts = {
        "seeds": int(losses.shape[1]),
        "n_models": int(sum(len(r.models) for r in runs.values())),
        "sweep_seconds": float(sum(float(r.meta.get("wall_seconds", 0.0)) for r in runs.values())),
        "device": f"{meta.get('device_count', '?')} x {meta.get('device_kind', '?')}",
    }
    return TransferResult(name, optima, slope, verdicts, None, runs, long, {**settings, **facts})


def load(folder: str | Path) -> TransferResult:
    """Reads back the folder a :func:`check` with ``out=`` wrote, training nothing.

    The run folder of every shape is read with :func:`jinit.sweep.load` (its tables), the statistics are computed
    again from them with the settings of ``settings.json`` (the same numbers: the bootstrap is seeded), and the
    coordinate check is read from ``coords.csv``. The model and the data are not needed.

    Raises:
      ValueError: ``folder`` has no ``settings.json`` or misses a shape's run folder.
    """
    folder = Path(folder)
    if not (folder / "settings.json").is_file():
        raise ValueError(
            f"{folder} holds no transfer check (no settings.json): run transfer.check(out=...) first"
        )
    settings = {
        "n_boot": 4000,
        "seed": 0,
        **files.read_json(folder / "settings.json"),
    }  # check's defaults
    missing = [_folder(*sh) for sh in _shapes_of(settings) if not (folder / _folder(*sh)).is_dir()]
    if missing:
        raise ValueError(
            f"{folder} misses the run folder(s) {', '.join(missing)}: rerun the check to finish it"
        )
    runs = {sh: sweep.load(folder / _folder(*sh)) for sh in _shapes_of(settings)}
    result = _result(runs, settings)
    result.settings = {
        **settings,
        **{k: v for k, v in result.settings.items() if k not in settings},
    }
    if (folder / "coords.csv").is_file():
        result.coords = pd.read_csv(folder / "coords.csv")
    result.path = folder
    return result


# ---------------------------------------------------------------------------------------------- the result


@dataclasses.dataclass
class TransferResult:
    """What :func:`check` found.

    Attributes:
      parameterization: the parameterization's name.
      optima: one row per shape (``width``, ``depth``): ``best_lr`` (the best grid learning rate on the metric),
        ``optimum_lr`` (parabolic, between grid points) with its bootstrap interval ``optimum_ci_low`` /
        ``optimum_ci_high``, ``at_edge`` (``"low"`` / ``"high"`` when the best is the grid's end), ``loss_at_best``,
        ``diverged`` (runs), ``best_set`` (the learning rates not distinguishable from the best, paired by seed,
        with ``best_set_low`` / ``best_set_high``), ``best_lr_accuracy`` and ``accuracy_at_best`` (on
        validation accuracy), ``lr_sensitivity`` with ``lr_sensitivity_ci_low`` / ``_high`` (Wortsman et al.
        2023, on the validation loss; over seeds).
      slope: one row per fitted axis: ``slope`` (log2 best learning rate per log2 size), ``ci_low``,
        ``ci_high``, ``per_doubling`` (``2**slope``) and its interval, ``seeds``, ``tolerance``.
      verdict: ``{axis: Verdict}``.
      coords: the coordinate check (``axis, size, seed, t, layer, l1, delta``), or None.
      runs: ``{(width, depth): SweepResult}``.
      losses: one row per model: ``learning_rate, seed, loss`` (+inf: diverged), ``val_accuracy``, ``width``
        (``depth``).
      settings: the check's arguments and facts (models, wall time, device).
      path: the folder written, if any.
    """

    parameterization: str
    optima: pd.DataFrame
    slope: pd.DataFrame
    verdict: dict[str, Verdict]
    coords: pd.DataFrame | None
    runs: dict
    losses: pd.DataFrame
    settings: dict
    path: Path | None = None

    def __repr__(self) -> str:
        parts = [f"{a}: {v.verdict} (slope {v.slope:+.2f} [{v.ci_low:+.2f}, {v.ci_high:+.2f}])"
                 for a, v in self.verdict.items()]  # fmt: skip
        return f"TransferResult({self.parameterization}; {'; '.join(parts)})"

    def verdicts(self) -> pd.DataFrame:
        """One row per axis: ``parameterization, axis, slope, slope_ci_low, slope_ci_high, verdict``, then
        ``tolerance, seeds, seeds_needed, reason``."""
        return pd.DataFrame(
            [
                {"parameterization": self.parameterization, "axis": v.axis, "slope": v.slope,
                 "slope_ci_low": v.ci_low, "slope_ci_high": v.ci_high, "verdict": v.verdict,
                 "tolerance": v.tolerance, "seeds": v.seeds, "seeds_needed": v.seeds_needed, "reason": v.reason}
                for v in self.verdict.values()
            ]
        )  # fmt: skip

    def coord_growth(self) -> pd.DataFrame:
        """How much each layer's change after the last coordinate-check step grows from the smallest to the largest
        size (``delta`` and ``l1``, mean over seeds; 1 = flat): the proxy, for the layers every size has. Empty
        without coordinates."""
        if self.coords is None or self.coords.empty:
            return pd.DataFrame(columns=["axis", "layer", "delta_growth", "l1_growth"])
        c = self.coords[self.coords["t"] == self.coords["t"].max()]
        rows = []
        for (axis, layer), g in c.groupby(["axis", "layer"], sort=False):
            sizes = c[c["axis"] == axis]["size"]
            if set(g["size"]) != set(
                sizes
            ):  # a layer the smaller networks do not have (a deeper block)
                continue
            m = g.groupby("size")[["delta", "l1"]].mean().sort_index()
            ratio = m.iloc[-1] / m.iloc[0]
            rows.append({"axis": axis, "layer": layer, "sizes": f"{m.index[0]} -> {m.index[-1]}",
                         "delta_growth": float(ratio["delta"]), "l1_growth": float(ratio["l1"])})  # fmt: skip
        return pd.DataFrame(rows)

    def plot(self, *, axes: Sequence[str] | None = None) -> Any:
        """Per fitted axis: the loss against the learning rate per size (mean and 95% CI over seeds, the optimum
        marked), the optimum against the size with its interval and the fitted slope, and the coordinate check's
        output change against the size. Returns the matplotlib figure."""
        import matplotlib.pyplot as plt

        names = list(axes) if axes is not None else list(self.verdict)
        ncol = 3 if self.coords is not None and not self.coords.empty else 2
        fig, grid = plt.subplots(
            len(names), ncol, figsize=(5.2 * ncol, 3.9 * len(names)), squeeze=False
        )
        for row, axis in zip(grid, names, strict=True):
            _plot_curves(row[0], self, axis)
            _plot_optima(row[1], self, axis)
            if ncol == 3:
                _plot_coords(row[2], self, axis)
        fig.tight_layout()
        return fig

    def report(self, figure: str | None = None) -> str:
        """A Markdown report: the verdicts, the slopes, the optima, the coordinate check, the settings."""
        return _report(self, figure)

    def save(self, folder: str | Path) -> Path:
        """Writes ``optima.csv``, ``slope.csv``, ``verdicts.csv``, ``losses.csv``, ``coords.csv``,
        ``settings.json``, ``transfer.png`` and ``report.md`` into ``folder`` (atomically); returns the report."""
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files.write_csv(folder / "optima.csv", self.optima)
        files.write_csv(folder / "slope.csv", self.slope)
        files.write_csv(folder / "verdicts.csv", self.verdicts())
        files.write_csv(folder / "losses.csv", self.losses)
        if self.coords is not None:
            files.write_csv(folder / "coords.csv", self.coords)
        files.write_json(folder / "settings.json", self.settings)
        fig = self.plot()
        try:
            files.save_figure(folder / "transfer.png", fig, dpi=110)
        finally:
            plt.close(fig)
        self.path = folder
        files.write_text(folder / "report.md", self.report("transfer.png"))
        return folder / "report.md"


def _along(table: pd.DataFrame, settings: dict, axis: str) -> pd.DataFrame:
    """The rows of the shapes along ``axis`` (the other axis at its base size)."""
    if settings.get("depths") is None:
        return table
    other, base = (
        ("depth", settings["depths"][0]) if axis == "width" else ("width", settings["widths"][0])
    )
    return table[table[other] == base]


def _plot_curves(ax: Any, res: TransferResult, axis: str) -> None:
    import matplotlib.pyplot as plt

    rows = _along(res.losses, res.settings, axis)
    opt = _along(res.optima, res.settings, axis).set_index(axis)
    sizes = sorted(rows[axis].unique())
    cmap = plt.get_cmap("viridis")
    for i, size in enumerate(sizes):
        g = rows[rows[axis] == size]
        L = g.pivot(index="seed", columns="learning_rate", values="loss").sort_index(axis=1)
        lrs, v = L.columns.to_numpy(np.float64), L.to_numpy(np.float64)
        ok = np.isfinite(v).all(axis=0)
        mean = np.where(ok, v.mean(axis=0), np.nan)
        n = v.shape[0]
        half = (
            stats.t.ppf(0.975, max(n - 1, 1)) * v.std(axis=0, ddof=1) / math.sqrt(n)
            if n > 1
            else 0 * mean
        )
        color = cmap(i / max(len(sizes) - 1, 1))
        ax.plot(lrs, mean, marker=".", color=color, label=f"{axis} {size}")
        ax.fill_between(lrs, mean - np.where(ok, half, np.nan), mean + np.where(ok, half, np.nan),
                        color=color, alpha=0.18, lw=0)  # fmt: skip
        ax.axvline(float(opt.loc[size, "optimum_lr"]), color=color, ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("base learning rate")
    ax.set_ylabel(res.settings["metric"].replace("_", " ") + " (mean, 95% CI)")
    ax.set_title(f"{res.parameterization}: loss vs learning rate (dotted: optimum)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _plot_optima(ax: Any, res: TransferResult, axis: str) -> None:
    o = _along(res.optima, res.settings, axis).sort_values(axis)
    x = np.asarray(o[axis], np.float64)
    y = np.log2(o["optimum_lr"].to_numpy(np.float64))
    lo = y - np.log2(o["optimum_ci_low"].to_numpy(np.float64))
    hi = np.log2(o["optimum_ci_high"].to_numpy(np.float64)) - y
    ax.errorbar(
        x, y, yerr=[lo, hi], marker="o", capsize=3, ls="none", color="C0", label="optimum (95% CI)"
    )
    v = res.verdict.get(axis)
    if v is not None and np.isfinite(v.slope) and np.isfinite(y).any():
        lx = np.log2(x)
        anchor = float(np.nanmean(y) - v.slope * (np.nanmean(lx) - lx[0]))
        xs = np.linspace(lx[0], lx[-1], 20)
        ax.plot(
            2**xs, anchor + v.slope * (xs - lx[0]), color="C1", label=f"fit: slope {v.slope:+.2f}"
        )
        band = v.tolerance * (xs - lx[0])
        ax.fill_between(2**xs, anchor - band, anchor + band, color="C2", alpha=0.15,
                        label=f"transfer band ±{v.tolerance:g}")  # fmt: skip
        ax.set_title(f"{axis}: {v.verdict} (slope {v.slope:+.2f} [{v.ci_low:+.2f}, {v.ci_high:+.2f}])",
                     fontsize=9)  # fmt: skip
    edge = o["at_edge"].astype(str) != ""
    if edge.any():
        ax.scatter(
            x[edge.to_numpy()],
            y[edge.to_numpy()],
            marker="x",
            color="red",
            zorder=3,
            label="grid edge",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel(axis)
    ax.set_ylabel("log2 best learning rate")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _plot_coords(ax: Any, res: TransferResult, axis: str) -> None:
    c = res.coords[(res.coords["axis"] == axis) & (res.coords["t"] == res.coords["t"].max())]
    if c.empty:
        ax.set_axis_off()
        return
    every = c.groupby("layer", sort=False)["size"].nunique() == c["size"].nunique()
    layers = [layer for layer in dict.fromkeys(c["layer"]) if every[layer]]  # those every size has
    if len(layers) > 4:
        layers = [layers[0], layers[len(layers) // 2], layers[-2], layers[-1]]
    for layer in layers:
        m = c[c["layer"] == layer].groupby("size")["delta"].mean().sort_index()
        ax.plot(m.index, m.to_numpy(), marker="o", label=layer)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel("mean |change| of the layer's output")
    ax.set_title(
        f"coordinate check after {int(c['t'].max())} steps (flat = width-stable)", fontsize=9
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _fmt_lr(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v:.3g}"


def _md(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for _, r in df.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float | np.floating) and np.isfinite(v) else
                 ("-" if isinstance(v, float | np.floating) else str(v)) for v in r]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(res: TransferResult, figure: str | None) -> str:
    s = res.settings
    head = [f"# Learning-rate transfer: {res.parameterization}", ""]
    for v in res.verdict.values():
        head.append(f"- **{v.axis}: {v.verdict}.** {v.reason}.")
    o = res.optima
    sizes = [c for c in ("width", "depth") if c in o.columns]
    view = o[sizes].copy()
    view["best lr"] = o["best_lr"].map(_fmt_lr)
    view["optimum (95% CI)"] = [
        f"{_fmt_lr(r.optimum_lr)} [{_fmt_lr(r.optimum_ci_low)}, {_fmt_lr(r.optimum_ci_high)}]"
        for r in o.itertuples()
    ]
    view["edge"] = o["at_edge"].replace("", "-")
    view["best set"] = [
        f"{_fmt_lr(r.best_set_low)} ... {_fmt_lr(r.best_set_high)}" for r in o.itertuples()
    ]
    view["loss"] = o["loss_at_best"]
    if "best_lr_accuracy" in o.columns:
        view["best lr (accuracy)"] = o["best_lr_accuracy"].map(_fmt_lr)
    view["lr sensitivity (95% CI)"] = [
        f"{r.lr_sensitivity:.3g} [{r.lr_sensitivity_ci_low:.3g}, {r.lr_sensitivity_ci_high:.3g}]"
        for r in o.itertuples()
    ]
    view["diverged"] = o["diverged"]
    slopes = pd.DataFrame(
        [
            {"axis": v.axis, "slope": f"{v.slope:+.3f}", "95% CI": f"[{v.ci_low:+.3f}, {v.ci_high:+.3f}]",
             "per doubling": f"x{2**v.slope:.3g} [x{2**v.ci_low:.3g}, x{2**v.ci_high:.3g}]",
             "verdict": v.verdict, "band": f"±{v.tolerance:g}", "seeds": v.seeds,
             "seeds needed": "-" if not np.isfinite(v.seeds_needed) else f"{v.seeds_needed:.0f}"}
            for v in res.verdict.values()
        ]
    )  # fmt: skip
    parts = ["\n".join(head), "## Slopes\n\n" + _md(slopes), "## Optimum per shape\n\n" + _md(view)]
    growth = res.coord_growth()
    if not growth.empty:
        parts.append(
            f"## Coordinate check (the proxy)\n\nGrowth of each layer's mean |change| after 3 Adam steps at lr "
            f"{s.get('coord_lr', float('nan')):.3g}, smallest to largest size (1 = flat):\n\n"
            + _md(growth)
        )
    if figure:
        parts.append(f"![{figure}]({figure})")
    parts.append(
        f"Settings: data `{s['data']}`, {s['seeds']} seeds, learning rates {_fmt_lr(s['learning_rates'][0])} ... "
        f"{_fmt_lr(s['learning_rates'][-1])} ({len(s['learning_rates'])} values), metric `{s['metric']}`, "
        f"tolerance ±{s['tolerance']:g}, {s.get('epochs', '?')} epochs, batch {s.get('batch_size', '?')}, "
        f"{s.get('optimizer', 'adam')}, vary `{s.get('vary', '?')}`; {s['n_models']} models on {s['device']}, "
        f"{s['sweep_seconds'] / 60:.1f} min in sweeps."
    )
    return "\n\n".join(parts) + "\n"
