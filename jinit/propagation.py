"""Signal propagation at initialization, the input-output Jacobian spectrum, and LSUV.

Why does an init fail at depth 50? :func:`measure` answers with per-layer statistics of a deep MLP at
initialization, for many schemes x seeds in one jit-compiled, vmapped pass over a fixed batch: the mean and std
of every hidden layer's pre-activations and activations, the fraction of dead units (zero on every example), and
the norm of the gradient of the softmax cross-entropy w.r.t. each layer's kernel (vanishing / exploding
gradients). :func:`jacobian_singular_values` gives the singular values of the input-to-last-hidden-layer
Jacobian (dynamical isometry), and :func:`plot` draws a statistic per layer (log scale, one line per scheme, a
band over seeds).

:func:`lsuv` is layer-sequential unit-variance initialization (Mishkin & Matas 2015): starting from orthogonal
weights, rescale each Dense/Conv kernel in execution order until its layer's output has the target std on a batch
of data. It is a pure function of (params, batch), jittable and vmappable over seeds; :func:`lsuv_init` does
orthogonal init + LSUV for a model and a key. :class:`LSUVScheme` (``"lsuv"``, ``"lsuv(tol=0.1)"``) is the same as a
sweep scheme: ``jinit sweep --schemes he_normal,lsuv`` rescales each LSUV model on a fixed batch of training data.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jinit import propagation
    >>> df = propagation.measure(["normal(stddev=0.01)", "lecun_normal"], depth=4, width=64,
    ...                          activation="tanh", seeds=2, batch=32)
    >>> sorted(df.columns[:3])
    ['layer', 'scheme', 'seed']

References:
    Glorot & Bengio. Understanding the difficulty of training deep feedforward neural networks. AISTATS 2010.
    He et al. Delving deep into rectifiers. ICCV 2015.
    Saxe, McClelland, Ganguli. Exact solutions to the nonlinear dynamics of learning in deep linear networks.
    ICLR 2014.
    Pennington, Schoenholz, Ganguli. Resurrecting the sigmoid in deep learning through dynamical isometry.
    NeurIPS 2017.
    Mishkin & Matas. All you need is a good init. ICLR 2016 (arXiv:1511.06422, 2015).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from jinit import keys
from jinit import models as _models
from jinit import registry as _registry
from jinit.initializers import Initializer
from jinit.keys import stable_hash

__all__ = [
    "STATS",
    "LSUVScheme",
    "coordinate_check",
    "is_lsuv_spec",
    "jacobian_singular_values",
    "jacobian_summary",
    "lsuv",
    "lsuv_init",
    "lsuv_scheme",
    "measure",
    "plot",
    "table",
]

#: Per-layer statistics returned by :func:`measure`, with their meaning.
STATS: dict[str, str] = {
    "pre_mean": "mean of the layer's pre-activations (Dense output) over examples and units",
    "pre_std": "standard deviation of the pre-activations over examples and units",
    "act_mean": "mean of the activations (NaN for the linear output layer)",
    "act_std": "standard deviation of the activations (NaN for the output layer)",
    "dead_fraction": "fraction of units whose activation is exactly 0 on every example of the batch",
    "grad_norm": "Frobenius norm of d(mean softmax cross-entropy)/d(kernel) of the layer",
}

SchemeSpecs = Sequence[str | Initializer | Mapping[str, Any]] | Mapping[str, Any]


# ---------------------------------------------------------------------------------------------- helpers


def _resolve(schemes: SchemeSpecs) -> dict[str, Initializer]:
    """Scheme name -> Initializer, validating every spec before any compilation."""
    if isinstance(schemes, str):
        schemes = _registry.parse_schemes(schemes)
    if isinstance(schemes, Mapping):
        items = [(str(k), v) for k, v in schemes.items()]
    else:
        items = []
        for spec in schemes:
            name = spec if isinstance(spec, str) else repr(_registry.get(spec))
            items.append((name, spec))
    if not items:
        raise ValueError("schemes is empty; give at least one initializer, e.g. ['he_normal']")
    out: dict[str, Initializer] = {}
    for name, spec in items:
        if name in out:
            raise ValueError(f"scheme {name!r} given twice")
        out[name] = _registry.get(spec)
    return out


def _stable_hash(name: str) -> np.uint32:
    """The sweep's hash of a scheme label (:func:`jinit.keys.stable_hash`), so a (scheme, seed) measured here is the
    sweep's model at init."""
    return np.uint32(stable_hash(name))


def _label(init: Initializer) -> str:
    """The sweep's label of an initializer (:func:`jinit.sweep.resolve_schemes`): its canonical name when it has
    that name's defaults, else its ``repr``; so ``"HeNormal"`` and ``"he_normal"`` are the same scheme here too."""
    try:
        default = _registry.get(init.name)
    except (ValueError, TypeError):
        default = None
    return init.name if init == default else repr(init)


def _init_key(root: jax.Array, init: Initializer, seed: int) -> jax.Array:
    """The sweep's init key of (scheme, seed) with ``vary="init"``."""
    return keys.init_key(root, _stable_hash(_label(init)), seed)


def _check_positive(**values: Any) -> None:
    for k, v in values.items():
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")


def _check_seed(seed: Any) -> None:
    """A root seed: an int in ``0 .. 2**63 - 1`` (what ``jax.random.PRNGKey`` takes)."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in 0 .. 2**63 - 1, got {seed!r}")


def _inputs(
    key: jax.Array, batch: int, in_dim: int, num_classes: int, x: Any, y: Any
) -> tuple[jax.Array, jax.Array]:
    kx, ky = jax.random.split(key)
    if x is None:
        x = jax.random.normal(kx, (batch, in_dim), jnp.float32)
    else:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim < 2:
            raise ValueError(f"x must have a leading batch axis, got shape {x.shape}")
    if y is None:
        y = jax.random.randint(ky, (x.shape[0],), 0, num_classes)
    else:
        y = jnp.asarray(y)
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    return x, y


def _stacked_params(model: nn.Module, inits: dict[str, Initializer], bias_init, root, seeds, x):
    """Initial params of every (scheme, seed), stacked along a leading model axis (scheme-major)."""
    stacks = []
    for init in inits.values():
        m = model.clone(kernel_init=init, bias_init=bias_init)
        keys = jnp.stack([_init_key(root, init, s) for s in range(seeds)])
        # Eager vmap, not jit: each random primitive compiles once per shape and is cached across layers
        # and schemes, which is several times faster than compiling a fresh init program per scheme.
        stacks.append(jax.vmap(lambda k, m=m: m.init(k, x[:1])["params"])(keys))
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *stacks)


# ---------------------------------------------------------------------------------------------- measure


def _layer_stats(model: nn.Module, depth: int):
    def one(params, x, y):
        def loss_fn(p):
            logits, state = model.apply({"params": p}, x, mutable=["intermediates"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, (logits, state["intermediates"])

        grads, (logits, inter) = jax.grad(loss_fn, has_aux=True)(params)
        pre = [inter[f"pre_{i}"][0] for i in range(depth)] + [logits]
        act = [inter[f"act_{i}"][0] for i in range(depth)]
        nan = jnp.full((), jnp.nan, jnp.float32)
        return {
            "pre_mean": jnp.stack([p.mean() for p in pre]),
            "pre_std": jnp.stack([p.std() for p in pre]),
            "act_mean": jnp.stack([a.mean() for a in act] + [nan]),
            "act_std": jnp.stack([a.std() for a in act] + [nan]),
            "dead_fraction": jnp.stack([jnp.all(a == 0, axis=0).mean() for a in act] + [nan]),
            "grad_norm": jnp.stack(
                [jnp.linalg.norm(grads[f"Dense_{i}"]["kernel"]) for i in range(depth + 1)]
            ),
        }

    return one


@functools.lru_cache(maxsize=16)
def _stats_program(depth: int, width: int, activation: str, num_classes: int):
    """The jitted, vmapped measurement of one network shape (cached: repeated calls do not recompile)."""
    model = _models.deep_mlp(depth, width, activation=activation, num_classes=num_classes)
    return jax.jit(jax.vmap(_layer_stats(model, depth), in_axes=(0, None, None)))


def measure(
    schemes: SchemeSpecs,
    *,
    depth: int,
    width: int,
    activation: str = "tanh",
    seeds: int = 3,
    batch: int = 256,
    in_dim: int | None = None,
    num_classes: int = 10,
    bias_init: Any = "zeros",
    x: Any = None,
    y: Any = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-layer statistics of a deep MLP at initialization, for every scheme x seed.

    The network is :func:`jinit.models.deep_mlp` (``depth`` hidden layers of ``width`` units, then a linear
    output layer of ``num_classes`` units). The initial parameters of all ``len(schemes) * seeds`` models are
    stacked and measured in ONE jit-compiled ``vmap`` over the same fixed batch: by default ``x ~ N(0, 1)`` of
    shape ``[batch, in_dim]`` with uniformly random labels, both drawn from ``seed``. Init keys follow the
    sweep's rule ``fold_in(fold_in(fold_in(PRNGKey(seed), 0), stable_hash(scheme)), s)``.

    Args:
      schemes: initializer specs (names such as ``"glorot_normal"``, calls such as ``"normal(stddev=0.01)"``,
        Initializer values, config dicts), a comma-separated string of them, or a mapping display-name -> spec.
      depth: number of hidden layers.
      width: units per hidden layer.
      activation: activation name (see :data:`jinit.models.ACTIVATIONS`).
      seeds: number of seeds per scheme (``0 .. seeds-1``).
      batch: number of examples in the generated batch (ignored when ``x`` is given).
      in_dim: input dimension of the generated batch (default ``width``).
      num_classes: number of logits / label classes.
      bias_init: spec of the bias initializer (default zeros).
      x: optional input batch ``[examples, ...]`` (e.g. real images) instead of Gaussian inputs.
      y: optional integer labels ``[examples]`` for the loss (random by default).
      seed: root seed of the init keys and of the generated batch.

    Returns:
      A tidy DataFrame with one row per (scheme, seed, layer) and columns ``scheme, seed, layer`` and the
      statistics of :data:`STATS`. Layers ``0 .. depth-1`` are the hidden layers; layer ``depth`` is the output
      layer (its ``pre_*`` describe the logits, its activation columns are NaN).

    Raises:
      ValueError: for an unknown scheme or activation, or non-positive sizes (before any compilation).
    """
    _check_positive(depth=depth, width=width, seeds=seeds, batch=batch, num_classes=num_classes)
    _check_seed(seed)
    if in_dim is not None:
        _check_positive(in_dim=in_dim)
    _models.activation(activation)
    inits = _resolve(schemes)
    bias = _registry.get(bias_init)
    root = jax.random.PRNGKey(seed)
    xb, yb = _inputs(keys.batch_key(root), batch, in_dim or width, num_classes, x, y)
    model = _models.deep_mlp(depth, width, activation=activation, num_classes=num_classes)
    params = _stacked_params(model, inits, bias, root, seeds, xb)
    out = _stats_program(depth, width, activation, num_classes)(params, xb, yb)
    out = {k: np.asarray(v) for k, v in out.items()}  # [models, layers]
    n_models, n_layers = out["grad_norm"].shape
    names = np.repeat(np.asarray(list(inits), dtype=object), seeds)
    frame = pd.DataFrame(
        {
            "scheme": np.repeat(names, n_layers),
            "seed": np.repeat(np.tile(np.arange(seeds), len(inits)), n_layers),
            "layer": np.tile(np.arange(n_layers), n_models),
            **{k: out[k].reshape(-1).astype(np.float64) for k in STATS},
        }
    )
    return frame


def table(df: pd.DataFrame, *, every: int = 1, stats: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-layer table of :func:`measure` results, averaged over seeds: one row per layer, one column per
    (statistic, scheme).

    Args:
      df: output of :func:`measure`.
      every: keep every ``every``-th layer (the output layer is always kept).
      stats: statistics to show (default ``act_std``, ``grad_norm`` and, when any unit is dead, ``dead_fraction``).

    Returns:
      A wide DataFrame indexed by layer.
    """
    _check_positive(every=every)
    if stats is None:
        stats = ["act_std", "grad_norm"] + (
            ["dead_fraction"] if df["dead_fraction"].fillna(0).any() else []
        )
    bad = [s for s in stats if s not in STATS]
    if bad:
        raise ValueError(f"unknown statistic(s) {bad}; valid: {', '.join(STATS)}")
    last = df["layer"].max()
    keep = df[(df["layer"] % every == 0) | (df["layer"] == last)]
    schemes = list(dict.fromkeys(df["scheme"]))
    wide = keep.groupby(["layer", "scheme"], sort=False)[list(stats)].mean().unstack("scheme")
    return wide.reindex(columns=pd.MultiIndex.from_product([list(stats), schemes])).sort_index()


def plot(
    df: pd.DataFrame, stat: str | Sequence[str] = "act_std", *, ax: Any = None, logy: bool = True
) -> Any:
    """Plots statistics of :func:`measure` per layer: one line per scheme (median over seeds), a band from the
    smallest to the largest seed.

    Args:
      df: output of :func:`measure`.
      stat: one of :data:`STATS`, or several (one panel each, side by side).
      ax: a matplotlib Axes to draw on, for a single ``stat`` (a new figure when omitted).
      logy: log-scale y axis (non-positive values are not drawn).

    Returns:
      The matplotlib Figure.
    """
    stats = [stat] if isinstance(stat, str) else list(stat)
    bad = [s for s in stats if s not in STATS]
    if bad or not stats:
        raise ValueError(f"unknown statistic(s) {bad or stats}; valid: {', '.join(STATS)}")
    if ax is not None and len(stats) != 1:
        raise ValueError(f"ax draws one statistic, got {len(stats)}")
    import matplotlib.pyplot as plt  # the caller's backend: none is chosen here (see jinit.plots)

    if ax is None:
        fig, axes = plt.subplots(1, len(stats), figsize=(6.5 * len(stats), 4.5), squeeze=False)
        axes = axes[0]
    else:
        fig, axes = ax.figure, [ax]
    for a, st in zip(axes, stats, strict=True):
        for scheme in dict.fromkeys(df["scheme"]):
            g = df[df["scheme"] == scheme].groupby("layer")[st]
            med, lo, hi = g.median(), g.min(), g.max()
            if med.isna().all():
                continue
            (line,) = a.plot(med.index, med.to_numpy(), marker=".", label=str(scheme))
            a.fill_between(
                med.index, lo.to_numpy(), hi.to_numpy(), color=line.get_color(), alpha=0.2
            )
        if logy:
            a.set_yscale("log")
        a.set_xlabel("layer")
        a.set_ylabel(st)
        a.set_title(f"{st} per layer at initialization")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------- Jacobian


def jacobian_singular_values(
    schemes: SchemeSpecs,
    *,
    depth: int,
    width: int,
    activation: str = "tanh",
    seeds: int = 3,
    examples: int = 4,
    bias_init: Any = "zeros",
    x: Any = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Singular values of the input-output Jacobian ``d act_{depth-1} / d x`` of a deep MLP at initialization.

    The Jacobian of the last hidden layer's activations w.r.t. the input (``width x in_dim`` with
    ``in_dim = width``), computed with ``jax.jacfwd`` per example and decomposed with ``jnp.linalg.svd``, in one
    jitted ``vmap`` over models and examples. Dynamical isometry (Pennington et al. 2017) is all singular values
    near 1: orthogonal weights on tanh at criticality get close, Gaussian weights on ReLU cannot.

    Args:
      schemes: initializer specs, as in :func:`measure`.
      depth: number of hidden layers.
      width: units per hidden layer (and input dimension).
      activation: activation name.
      seeds: seeds per scheme.
      examples: number of Gaussian input examples (ignored when ``x`` is given).
      bias_init: spec of the bias initializer.
      x: optional inputs ``[examples, width]``.
      seed: root seed (same keys as :func:`measure`, so the models are the same).

    Returns:
      A tidy DataFrame with columns ``scheme, seed, example, index, singular_value`` (``index`` 0 is the
      largest).
    """
    _check_positive(depth=depth, width=width, seeds=seeds, examples=examples)
    _check_seed(seed)
    _models.activation(activation)
    inits = _resolve(schemes)
    bias = _registry.get(bias_init)
    root = jax.random.PRNGKey(seed)
    xb, _ = _inputs(keys.batch_key(root), examples, width, 10, x, None)
    if xb.ndim != 2 or xb.shape[1] != width:
        raise ValueError(f"x must have shape [examples, {width}], got {xb.shape}")
    model = _models.deep_mlp(depth, width, activation=activation)
    params = _stacked_params(model, inits, bias, root, seeds, xb)

    def features(p, xi):
        _, state = model.apply({"params": p}, xi[None], mutable=["intermediates"])
        return state["intermediates"][f"act_{depth - 1}"][0][0]

    def svals(p, xi):
        return jnp.linalg.svd(jax.jacfwd(features, argnums=1)(p, xi), compute_uv=False)

    sv = jax.jit(jax.vmap(jax.vmap(svals, in_axes=(None, 0)), in_axes=(0, None)))(params, xb)
    sv = np.asarray(sv, np.float64)  # [models, examples, k]
    m, e, k = sv.shape
    names = np.repeat(np.asarray(list(inits), dtype=object), seeds)
    return pd.DataFrame(
        {
            "scheme": np.repeat(names, e * k),
            "seed": np.repeat(np.tile(np.arange(seeds), len(inits)), e * k),
            "example": np.tile(np.repeat(np.arange(e), k), m),
            "index": np.tile(np.arange(k), m * e),
            "singular_value": sv.reshape(-1),
        }
    )


def jacobian_summary(sv: pd.DataFrame) -> pd.DataFrame:
    """Per-scheme summary of :func:`jacobian_singular_values` (over seeds, examples and singular values).

    Returns:
      One row per scheme with ``mean, std, min, median, max`` of the singular values and ``log10_spread`` (the
      std of their log10: 0 for perfect isometry).
    """
    g = sv.assign(log10=np.log10(np.maximum(sv["singular_value"], 1e-300))).groupby(
        "scheme", sort=False
    )
    out = g["singular_value"].agg(["mean", "std", "min", "median", "max"])
    out["log10_spread"] = g["log10"].std()
    return out


# ---------------------------------------------------------------------------------------------- LSUV


def _is_layer(mdl: nn.Module, method_name: str) -> bool:
    return method_name == "__call__" and isinstance(mdl, nn.Dense | nn.Conv)


def _layer_outputs(
    tree: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    """(module path, first output) of every captured Dense/Conv call, in call (insertion) order."""
    out = []
    for k, v in tree.items():
        if k == "__call__":
            out.append((prefix, v[0]))
        elif isinstance(v, Mapping):
            out.extend(_layer_outputs(v, (*prefix, k)))
    return out


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def _set_kernel(tree: Mapping[str, Any], path: tuple[str, ...], kernel: Any) -> dict[str, Any]:
    tree = dict(tree)
    if len(path) == 0:
        tree["kernel"] = kernel
        return tree
    tree[path[0]] = _set_kernel(tree[path[0]], path[1:], kernel)
    return tree


def _layer_order(
    model: nn.Module, params: Any, batch: jax.Array, rest: Mapping[str, Any]
) -> list[tuple[str, ...]]:
    """Paths of the model's Dense/Conv layers in execution order (found by tracing one abstract call)."""
    order: list[tuple[str, ...]] = []

    def trace(p, x):
        _, state = model.apply(
            {**rest, "params": p}, x, capture_intermediates=_is_layer, mutable=["intermediates"]
        )
        order.extend(path for path, _ in _layer_outputs(state.get("intermediates", {})))
        return 0

    jax.eval_shape(trace, params, batch)
    seen, unique = set(), []
    for path in order:  # a shared module called twice is rescaled once, at its first call
        if path not in seen:
            seen.add(path)
            unique.append(path)
    return unique


def _linen_model(model: Any, where: str) -> None:
    """LSUV finds a model's layers by running a flax.linen ``apply`` with ``capture_intermediates``: anything else
    (a flax.nnx module, a function) is one TypeError naming it and the fix."""
    if isinstance(model, nn.Module):
        return
    from flax import nnx

    from jinit.checks import describe

    if isinstance(model, nnx.Module):
        raise TypeError(
            f"{where}: {type(model).__name__} is a flax.nnx module; LSUV rescales the outputs of flax.linen "
            "nn.Dense / nn.Conv layers (found with linen's capture_intermediates, which NNX modules have not): "
            "write the model with flax.linen, or use another scheme for NNX models"
        )
    raise TypeError(f"{where}: model must be a flax.linen Module, got {describe(model)}")


def lsuv(
    model: nn.Module,
    params: Any,
    batch: Any,
    *,
    target_std: float = 1.0,
    tol: float = 0.05,
    max_iters: int = 10,
) -> Any:
    """Layer-sequential unit-variance (LSUV) rescaling of a model's Dense/Conv kernels (Mishkin & Matas 2015).

    Visits every ``nn.Dense`` / ``nn.Conv`` layer of ``model`` in execution order (found from the param tree and
    ``capture_intermediates``, so any linen module built from those layers works) and, as in the paper's
    Algorithm 1, repeatedly divides the layer's kernel by ``std(output) / target_std`` -- the std of the layer's
    output (its pre-activation) over the whole batch -- until ``|std - target_std| <= tol`` or ``max_iters``
    rescalings were made. Earlier layers are fixed before later ones are measured. Biases are left unchanged (with
    zero biases one rescaling is exact). A layer whose output is constant (std 0) is left as it is.

    The loop is a ``lax.while_loop`` per layer with no Python-side data-dependent control flow, so ``lsuv`` can
    be wrapped in ``jax.jit`` and ``jax.vmap`` (e.g. over a seed axis of ``params``).

    Args:
      model: a linen module whose learnable layers are ``nn.Dense`` / ``nn.Conv``.
      params: its variables ``{"params": ...}`` (as returned by ``model.init``) or the params tree itself;
        the paper starts from orthogonal kernels (see :func:`lsuv_init`).
      batch: a batch of inputs (e.g. a fixed mini-batch of training data).
      target_std: the desired std of every layer's output.
      tol: tolerance on the std.
      max_iters: maximal number of rescalings per layer.

    Returns:
      The same structure as ``params`` with rescaled kernels.

    Raises:
      ValueError: for non-positive ``target_std`` / negative ``tol`` or ``max_iters``, or when the model has no
        Dense/Conv layer.
      TypeError: a model that is not a flax.linen Module (a flax.nnx one: LSUV needs linen's
        ``capture_intermediates``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jinit import models, propagation
      >>> import jinit
      >>> model = models.deep_mlp(12, 64, activation="tanh", kernel_init=jinit.orthogonal())
      >>> x = jax.random.normal(jax.random.key(1), (128, 64))
      >>> variables = propagation.lsuv(model, model.init(jax.random.key(0), x), x)

    References:
      Mishkin & Matas. All you need is a good init. ICLR 2016 (arXiv:1511.06422).
    """
    _linen_model(model, "lsuv")
    if not float(target_std) > 0:
        raise ValueError(f"target_std must be > 0, got {target_std}")
    if not float(tol) >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if isinstance(max_iters, bool) or not isinstance(max_iters, int | np.integer) or max_iters < 0:
        raise ValueError(f"max_iters must be a non-negative integer, got {max_iters!r}")
    wrapped = isinstance(params, Mapping) and "params" in params
    p = dict(params["params"]) if wrapped else dict(params)
    rest = {k: v for k, v in params.items() if k != "params"} if wrapped else {}
    x = jnp.asarray(batch)
    order = _layer_order(model, p, x, rest)
    if not order:
        raise ValueError(
            f"{type(model).__name__} has no nn.Dense / nn.Conv layer for LSUV to rescale"
        )
    target, tol, max_iters = float(target_std), float(tol), int(max_iters)

    for path in order:

        def out_std(kernel, p=p, path=path):
            q = _set_kernel(p, path, kernel)
            _, state = model.apply(
                {**rest, "params": q}, x, capture_intermediates=_is_layer, mutable=["intermediates"]
            )
            # Layers after `path` do not feed this output: XLA drops them from the loop body.
            return _get(state["intermediates"], path)["__call__"][0].std()

        def cond(carry):
            _, it, done = carry
            return jnp.logical_and(it < max_iters, jnp.logical_not(done))

        def body(carry, out_std=out_std):
            kernel, it, _ = carry
            std = out_std(kernel)
            done = jnp.abs(std - target) <= tol
            ok = std > 0
            scale = jnp.where(ok & ~done, target / jnp.where(ok, std, 1.0), 1.0)
            return kernel * scale.astype(kernel.dtype), it + 1, done | ~ok

        kernel0 = _get(p, path)["kernel"]
        kernel, _, _ = jax.lax.while_loop(cond, body, (kernel0, jnp.int32(0), jnp.bool_(False)))
        p = _set_kernel(p, path, kernel)

    if wrapped:
        return {**params, "params": p}
    return p


def lsuv_init(
    model: nn.Module | Callable[[Any, Any], nn.Module],
    key: jax.Array,
    batch: Any,
    *,
    kernel_init: Any = "orthogonal",
    bias_init: Any = "zeros",
    target_std: float = 1.0,
    tol: float = 0.05,
    max_iters: int = 10,
) -> dict[str, Any]:
    """Orthogonal initialization followed by :func:`lsuv`: the full LSUV scheme for a model and a key.

    Args:
      model: a ``make_model(kernel_init, bias_init) -> nn.Module`` factory (as the sweep engine uses, e.g.
        :func:`jinit.models.factory`), or a module; a module with ``kernel_init`` / ``bias_init`` attributes is
        rebuilt with the given initializers, any other module is initialized as it is.
      key: the init key (a PRNG key; vmap over a stack of keys for many seeds).
      batch: a fixed batch of training inputs.
      kernel_init: spec of the starting kernel initializer (the paper's orthogonal by default).
      bias_init: spec of the bias initializer.
      target_std: see :func:`lsuv`.
      tol: see :func:`lsuv`.
      max_iters: see :func:`lsuv`.

    Returns:
      The variables ``{"params": ...}`` after LSUV.

    Example:
      >>> import jax
      >>> from jinit import models, propagation
      >>> make = models.factory("mlp", hidden=(32, 32))
      >>> x = jax.random.normal(jax.random.key(1), (64, 784))
      >>> variables = jax.jit(lambda k: propagation.lsuv_init(make, k, x))(jax.random.key(0))
      >>> variables["params"]["Dense_0"]["kernel"].shape
      (784, 32)

      Many seeds at once: initialize eagerly, ``variables = jax.vmap(lambda k: model.init(k, x[:1]))(keys)``
      (``model`` built with the orthogonal ``kernel_init``), then rescale in one compiled call,
      ``jax.jit(jax.vmap(lambda v: lsuv(model, v, x)))(variables)``. Avoid ``jit(vmap(...))`` of the orthogonal
      init itself: its batched QR can hang XLA:CPU in jax 0.10 (the sweep initializes model by model for that
      reason).
    """
    from flax import nnx

    kinit, binit = _registry.get(kernel_init), _registry.get(bias_init)
    if isinstance(model, nnx.Module):  # callable, but a module, not a factory
        _linen_model(model, "lsuv_init")
    if isinstance(model, nn.Module):
        fields = getattr(model, "__dataclass_fields__", {})
        if "kernel_init" in fields and "bias_init" in fields:
            model = model.clone(kernel_init=kinit, bias_init=binit)
    elif callable(model):
        model = model(kinit, binit)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"make_model must return a flax.linen Module, got {type(model).__name__}"
                " (LSUV needs linen's capture_intermediates)"
            )
    else:
        raise TypeError(
            f"model must be a linen Module or a make_model factory, got {type(model).__name__}"
        )
    x = jnp.asarray(batch)
    variables = model.init(key, x[:1])
    return lsuv(model, variables, x, target_std=target_std, tol=tol, max_iters=max_iters)


# ---------------------------------------------------------------------------------------------- LSUV as a scheme


@dataclasses.dataclass(frozen=True, repr=False)
class LSUVScheme:
    """LSUV as a sweep scheme: ``kernel_init`` (orthogonal), then :func:`lsuv` on a fixed batch of training data.

    LSUV is data-dependent, so it is not an ``(key, shape, dtype)`` initializer: the sweep engine initializes a
    model of this scheme with ``kernel_init`` and the model's init key, then rescales its kernels with
    :func:`lsuv` on ``batch_size`` training examples drawn once per sweep (from the root seed, the same batch
    for every seed, so the seeds differ in their initialization only). Like an Initializer it is a frozen value
    with a ``name``, a readable ``repr`` and a JSON-able :meth:`config`.

    Attributes:
      kernel_init: the starting kernel initializer (the paper's orthogonal).
      target_std: the std every Dense/Conv output should have on the batch.
      tol: tolerance on that std.
      max_iters: maximal number of rescalings per layer.
      batch_size: number of training examples in the LSUV batch.

    Example:
      >>> from jinit import propagation
      >>> propagation.lsuv_scheme(tol=0.1)
      lsuv(kernel_init='orthogonal', target_std=1.0, tol=0.1, max_iters=10, batch_size=256)
      >>> propagation.lsuv_scheme("lsuv(batch_size=64)").batch_size
      64

    References:
      Mishkin & Matas. All you need is a good init. ICLR 2016 (arXiv:1511.06422).
    """

    kernel_init: Initializer = dataclasses.field(
        default_factory=lambda: _registry.get("orthogonal")
    )
    target_std: float = 1.0
    tol: float = 0.05
    max_iters: int = 10
    batch_size: int = 256

    name: ClassVar[str] = "lsuv"

    def __post_init__(self):
        object.__setattr__(self, "kernel_init", _registry.get(self.kernel_init))
        for field, minimum in (("target_std", None), ("tol", 0.0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise TypeError(f"lsuv: {field} must be a number, got {value!r}")
            if not np.isfinite(value) or (value <= 0 if minimum is None else value < minimum):
                rule = "> 0" if minimum is None else ">= 0"
                raise ValueError(f"lsuv: {field} must be finite and {rule}, got {value!r}")
            object.__setattr__(self, field, float(value))
        for field, minimum in (("max_iters", 0), ("batch_size", 2)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"lsuv: {field} must be an int, got {value!r}")
            if value < minimum:
                raise ValueError(f"lsuv: {field} must be >= {minimum}, got {value!r}")
            object.__setattr__(self, field, int(value))

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters as a dict (field order); ``kernel_init`` as its label."""
        kinit = self.kernel_init
        label = kinit.name if kinit == _registry.get(kinit.name) else repr(kinit)
        return {
            "kernel_init": label,
            "target_std": self.target_std,
            "tol": self.tol,
            "max_iters": self.max_iters,
            "batch_size": self.batch_size,
        }

    def config(self) -> dict[str, Any]:
        """A JSON-able dict ``{"name": "lsuv", ...}``; :func:`lsuv_scheme` inverts it."""
        return {"name": self.name, **self.hyperparameters()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{self.name}({args})"

    def init(self, module: nn.Module, key: jax.Array, x: Any, batch: Any) -> Any:
        """Initializes ``module`` (built with ``kernel_init``) with ``key`` on input ``x``, then applies
        :func:`lsuv` on ``batch``. Pure: jittable and vmappable over ``key``."""
        variables = module.init(key, x)
        return lsuv(
            module,
            variables,
            batch,
            target_std=self.target_std,
            tol=self.tol,
            max_iters=self.max_iters,
        )


def is_lsuv_spec(spec: Any) -> bool:
    """Whether ``spec`` names the LSUV scheme: ``"lsuv"``, ``"LSUV(tol=0.1)"``, ``{"name": "lsuv", ...}`` or an
    :class:`LSUVScheme`."""
    if isinstance(spec, LSUVScheme):
        return True
    if isinstance(spec, Mapping):
        name = spec.get("name")
    elif isinstance(spec, str):
        name = spec.split("(", 1)[0]
    else:
        return False
    return isinstance(name, str) and name.strip().lower().replace("-", "_") == "lsuv"


def lsuv_scheme(spec: Any = "lsuv", **overrides: Any) -> LSUVScheme:
    """Builds the LSUV sweep scheme from a spec (``"lsuv"``, ``"lsuv(tol=0.1, batch_size=512)"``, a
    :meth:`LSUVScheme.config` dict or an :class:`LSUVScheme`) with ``overrides`` applied.

    Raises:
      ValueError: if ``spec`` does not name LSUV, or for a bad hyperparameter value.
      TypeError: for an unknown hyperparameter.
    """
    if isinstance(spec, LSUVScheme):
        return dataclasses.replace(spec, **overrides) if overrides else spec
    if not is_lsuv_spec(spec):
        raise ValueError(f"{spec!r} is not an LSUV scheme spec (e.g. 'lsuv' or 'lsuv(tol=0.1)')")
    if isinstance(spec, Mapping):
        kwargs = {k: v for k, v in spec.items() if k != "name"}
    else:
        _, args, kwargs = _registry.parse_call(spec)
        if args:
            raise TypeError(f"lsuv takes keyword hyperparameters only, got {spec!r}")
    kwargs = {**kwargs, **overrides}
    valid = [f.name for f in dataclasses.fields(LSUVScheme)]
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise TypeError(
            f"lsuv: unknown hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    return LSUVScheme(**kwargs)


# ---------------------------------------------------------------------------------------------- coordinate check


def _check_widths(widths: Any) -> list[int]:
    try:
        out = [int(w) for w in widths]
    except (TypeError, ValueError):
        raise ValueError(
            f"coordinate_check: widths must be a sequence of ints >= 1, got {widths!r}"
        ) from None
    if not out or any(w < 1 for w in out) or any(w != v for w, v in zip(out, widths, strict=True)):
        raise ValueError(
            f"coordinate_check: widths must be a non-empty sequence of ints >= 1, got {widths!r}"
        )
    return out


def coordinate_check(
    make_model: Callable[[int], nn.Module],
    widths: Sequence[int],
    data: tuple[Any, Any],
    *,
    optimizer: Any,
    scheme: Any = None,
    steps: int = 3,
    seeds: int | Sequence[int] = 3,
) -> pd.DataFrame:
    """The coordinate check of muP: the mean absolute activation of every layer against width, after t = 0, 1, ...,
    ``steps`` optimizer steps.

    Under a parametrization whose training is width-stable (muP), every curve is flat in width; a curve that grows
    with width (the standard parametrization under Adam: hidden activations after a step grow ~ width) blows up at
    scale. As ``mup.coord_check.get_coord_data``, each model is trained from its init on ``data`` for ``steps``
    steps, recording ``mean(|x|)`` of each layer's output on the same batch before every step and after the last.

    Args:
      make_model: ``width -> flax module``; the module's sown ``"intermediates"`` are the layers recorded (e.g.
        ``stem_out`` and ``block_i_out`` of :class:`jinit.models.ResidualMLP`), plus ``output`` (the logits).
      widths: the widths to compare (ints >= 1).
      data: ``(x, y)``: one batch of inputs and integer labels (``y`` of the logits' shape without its last axis,
        as ``optax.softmax_cross_entropy_with_integer_labels`` takes; tokens work for a language model).
      optimizer: an ``optax.GradientTransformation``, or ``(width, params) -> GradientTransformation`` (e.g.
        ``lambda w, p: jinit.mup_optimizer(lr, p, base_params)``), called once per width with the first seed's
        parameters.
      scheme: None (the model's own init), a :class:`jinit.Rules` (e.g. :func:`jinit.mup`), a scheme in any
        spelling jinit takes (``"he_normal"``, ``"normal(stddev=0.02)"``, an Initializer: every kernel drawn by
        it), or a function of the width returning one of these.
      steps: number of optimizer steps (>= 0).
      seeds: number of seeds (``0..seeds-1``) or the seeds; seed ``s`` initializes with ``PRNGKey(s)``.

    Returns:
      A DataFrame with columns ``width, seed, t, layer, l1, delta``, one row per width x seed x step x layer:
      ``l1`` is the mean absolute value of the layer's output over the batch and the units (``mup``'s statistic),
      ``delta`` the mean absolute change from its value at t = 0 (what muP keeps Theta(1) in width: under SP with
      Adam it grows ~ width, and ``l1`` shows it only once the change dominates the init).

    Raises:
      ValueError: bad widths, steps or seeds, before anything is compiled.

    References:
      Yang et al. Tensor Programs V. arXiv:2203.03466, 2022, sec. D.1 (coordinate check); the ``mup`` package,
      ``mup/coord_check.py``.
    """

    widths = _check_widths(widths)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"coordinate_check: steps must be an int >= 0, got {steps!r}")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"coordinate_check: seeds must be >= 1, got {seeds}")
        seed_list = list(range(seeds))
    else:
        seed_list = list(seeds)
        for s in seed_list:
            _check_seed(s)
        if not seed_list:
            raise ValueError("coordinate_check: give at least one seed")
    if not (isinstance(optimizer, optax.GradientTransformation) or callable(optimizer)):
        raise TypeError(
            f"coordinate_check: optimizer must be an optax.GradientTransformation or (width, params) -> one, "
            f"got {optimizer!r}"
        )
    fixed = _coord_scheme(scheme)  # a name, an Initializer or Rules: checked before anything runs
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    rows = []
    for width in widths:
        model = make_model(width)
        spec = _coord_scheme(scheme(width)) if fixed is _PER_WIDTH else fixed

        def forward(params, rest, model=model):
            out, state = model.apply(
                {"params": params, **rest}, x, mutable=["intermediates", *rest.keys()]
            )
            inter = state.pop("intermediates", {})
            acts = {
                "/".join(_path_str_keys(p)): v
                for p, v in jax.tree_util.tree_flatten_with_path(inter)[0]
            }
            acts["output"] = out
            loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
            return loss, (acts, state)

        grad_fn = jax.value_and_grad(forward, has_aux=True)
        init = jax.jit(functools.partial(spec.init, model) if spec is not None else model.init)
        tx = None
        for seed in seed_list:
            variables = dict(init(jax.random.PRNGKey(int(seed)), x))
            params = variables.pop("params")
            rest = {k: v for k, v in variables.items() if k != "intermediates"}
            if tx is None:  # once per width: its multipliers depend on the shapes only
                tx = (
                    optimizer
                    if isinstance(optimizer, optax.GradientTransformation)
                    else optimizer(width, params)
                )
                step = jax.jit(functools.partial(_coord_step, grad_fn, tx))
            opt_state = tx.init(params)
            first = None
            for t in range(steps + 1):
                acts, params, opt_state, rest = step(params, opt_state, rest)
                first = acts if first is None else first
                for layer, value in acts.items():
                    l1 = float(jnp.mean(jnp.abs(value)))
                    delta = float(jnp.mean(jnp.abs(value - first[layer])))
                    rows.append((width, int(seed), t, layer, l1, delta))
    return pd.DataFrame(rows, columns=["width", "seed", "t", "layer", "l1", "delta"])


_PER_WIDTH = object()


def _coord_scheme(scheme: Any) -> Any:
    """The scheme of a coordinate check: None, a :class:`jinit.Rules` as is, a scheme in any spelling jinit takes
    (``"he_normal"``, ``"normal(stddev=0.02)"``, an Initializer, a :func:`jinit.scheme` value) as the rules that
    draw every kernel with it; :data:`_PER_WIDTH` for a function ``width -> scheme``."""
    from jinit.labelled import Scheme
    from jinit.rules import Rules, rules

    if scheme is None or isinstance(scheme, Rules):
        return scheme
    if isinstance(scheme, str | Mapping | Initializer | Scheme):
        try:
            init = scheme if isinstance(scheme, Scheme) else _registry.get(scheme)
        except (ValueError, TypeError) as e:
            raise type(e)(f"coordinate_check: bad scheme {scheme!r}: {e}") from None
        if isinstance(init, Rules):  # a registered name of a rules scheme
            return init
        return rules({"kernel": init}, label=f"kernel={getattr(init, 'name', init)!r}")
    if callable(scheme):
        return _PER_WIDTH
    raise TypeError(
        "coordinate_check: scheme must be None, a scheme name or Initializer, jinit.Rules or width -> one of "
        f"them, got {scheme!r}"
    )


def _coord_step(grad_fn, tx, params, opt_state, rest):
    (_, (acts, state)), grads = grad_fn(params, rest)
    updates, opt_state = tx.update(grads, opt_state, params)
    rest = {k: state.get(k, v) for k, v in rest.items()}
    return acts, optax.apply_updates(params, updates), opt_state, rest


def _path_str_keys(path: Sequence[Any]) -> list[str]:
    names = []
    for k in path:
        name = getattr(k, "key", getattr(k, "name", None))
        if name is not None:
            names.append(str(name))
    return names
