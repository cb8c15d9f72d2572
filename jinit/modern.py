"""Initialization of residual networks and transformers: schemes that depend on a layer's place, depth and width.

Every scheme here is a :func:`jinit.rules` value (a :class:`jinit.Rules`), usable in a sweep like any scheme and
written for the parameter paths of :class:`jinit.models.ResidualMLP` and :class:`jinit.models.Transformer`:

- :func:`gpt2`: normal(0.02) everywhere, residual output projections 0.02 / sqrt(2 L) (Transformer);
- :func:`deepnet`: Xavier normal, gain beta on the ffn / value / output projections, DeepNorm (Transformer);
- :func:`zero_gamma`: the last norm scale of every residual branch starts at 0 (ResidualMLP with a norm);
- :func:`skipinit`, :func:`rezero`: the scalar gate of every residual branch starts at 0 (ResidualMLP);
- :func:`fixup`: last branch layer and classifier 0, other branch layers He x L^(-1/(2m-2)) (ResidualMLP);
- :func:`mup`: muP's init, input and hidden Var 1/fan_in, readout Var ~ 1/fan_in^2 or zero (any model).

:func:`mup_optimizer` is muP's other half, the per-layer learning rates of ``mup.MuAdam`` as an optax
transformation, and :func:`mup_multipliers` the table it uses; :func:`per_layer_adam` is the same Adam with any
table of per-layer multipliers. The coordinate check that tests a parametrization is
:func:`jinit.propagation.coordinate_check` (plot: :func:`jinit.plots.coordinate_check`).

Example:
    >>> import jax, jax.numpy as jnp, jinit
    >>> from jinit import models
    >>> model = models.Transformer(vocab=16, d_model=32, n_layers=12, n_heads=2)
    >>> v = jinit.gpt2(12).init(model, jax.random.key(0), jnp.zeros((1, 8), int))
    >>> round(float(v["params"]["block_3"]["attn"]["out"]["kernel"].std()), 4)
    0.0041
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jinit import initializers as _init
from jinit.rules import Rules, Scheme, path_str, rules

__all__ = [
    "deepnet",
    "deepnet_constants",
    "fixup",
    "gpt2",
    "mup",
    "mup_multipliers",
    "mup_optimizer",
    "per_layer_adam",
    "rezero",
    "skipinit",
    "zero_gamma",
]


def _positive_int(name: str, value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or int(value) != value
        or value < 1
    ):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def gpt2(n_layers: int, std: float = 0.02) -> Rules:
    """GPT-2's init: ``N(0, std^2)`` for every kernel and embedding, ``std / sqrt(2 n_layers)`` for the residual
    output projections (``attn/out`` and ``mlp/proj``), zero biases.

    Each block adds two residual branches, so after ``n_layers`` blocks the residual stream sums ``2 n_layers``
    branch outputs; scaling their last layer by ``1 / sqrt(2 n_layers)`` keeps its variance independent of depth.
    For 12 layers and std 0.02 the projections get ``0.02 / sqrt(24) = 0.004082``.

    Args:
      n_layers: number of transformer blocks L (>= 1).
      std: the base standard deviation (GPT-2: 0.02).

    Returns:
      A :class:`jinit.Rules` for :class:`jinit.models.Transformer` labelled ``gpt2(n_layers=L, std=...)``.

    References:
      Radford et al. Language models are unsupervised multitask learners. 2019, sec. 2.3.
      Karpathy. nanoGPT, model.py (``c_proj.weight`` std ``0.02 / sqrt(2 * n_layer)``). 2022.
    """
    n = _positive_int("gpt2: n_layers", n_layers)
    std = _positive("gpt2: std", std)
    proj = _init.normal(stddev=std / math.sqrt(2 * n))
    return rules(
        {
            "attn/out/kernel": proj,
            "mlp/proj/kernel": proj,
            "kernel": _init.normal(stddev=std),
            "embedding": _init.normal(stddev=std),
            "bias": "zeros",
        },
        label=f"gpt2(n_layers={n}, std={_fmt(std)})",
    )


def zero_gamma(branch_layers: int = 2, base: Any = "he_normal") -> Rules:
    """Zero-gamma: the scale of the last norm in every residual branch starts at 0, so each block starts as the
    identity (the network as a shallow one); the kernels are drawn by ``base``.

    Args:
      branch_layers: Dense layers per branch m of the :class:`jinit.models.ResidualMLP` (its last norm is
        ``block_i/norm_{m-1}/scale``); the model needs ``norm="batch"`` or ``"layer"``.
      base: initializer of every kernel (default He normal, for ReLU).

    Returns:
      A :class:`jinit.Rules` labelled ``zero_gamma``.

    References:
      Goyal et al. Accurate, large minibatch SGD: training ImageNet in 1 hour. arXiv:1706.02677, 2017, sec. 5.1.
    """
    m = _positive_int("zero_gamma: branch_layers", branch_layers)
    return rules(
        {f"block_*/norm_{m - 1}/scale": "zeros", "kernel": base},
        label="zero_gamma" if base == "he_normal" else f"zero_gamma(base={base})",
    )


def skipinit(base: Any = "he_normal") -> Rules:
    """SkipInit: a learnable scalar multiplier on every residual branch, initialized at 0 (the block starts as the
    identity); the kernels are drawn by ``base``. De & Smith (2020) propose it for residual networks **without**
    normalization: the zero gate does what batch normalization does at init (it biases each block towards the
    identity), so that deep unnormalized ResNets train (they add a bias and dropout, not a norm layer).

    Args:
      base: initializer of every kernel (default He normal).

    Returns:
      A :class:`jinit.Rules` for :class:`jinit.models.ResidualMLP` with ``gate="scalar"`` (``block_i/gate``).

    References:
      De & Smith. Batch normalization biases residual blocks towards the identity function in deep networks.
      NeurIPS 2020.
    """
    return rules(
        {"block_*/gate": "zeros", "kernel": base},
        label="skipinit" if base == "he_normal" else f"skipinit(base={base})",
    )


def rezero(base: Any = "he_normal") -> Rules:
    """ReZero: ``x + alpha F(x)`` with the scalar ``alpha`` initialized at 0, in a network **without**
    normalization; the same rules as :func:`skipinit` (a zero ``block_i/gate``) under its own label.

    Args:
      base: initializer of every kernel (default He normal).

    Returns:
      A :class:`jinit.Rules` for :class:`jinit.models.ResidualMLP` with ``gate="scalar"``, ``norm=None``.

    References:
      Bachlechner et al. ReZero is all you need: fast convergence at large depth. UAI 2021.
    """
    return rules(
        {"block_*/gate": "zeros", "kernel": base},
        label="rezero" if base == "he_normal" else f"rezero(base={base})",
    )


def fixup(n_blocks: int, m: int = 2) -> Rules:
    """Fixup: the last layer of every residual branch and the classifier start at 0; the other branch layers are
    He normal scaled by ``L^(-1/(2m-2))``; the stem is He normal.

    With L residual branches of m layers each, scaling the branch weights by ``L^(-1/(2m-2))`` bounds the size of
    the first gradient step's change to the network output independently of depth. The paper's scalar multiplier
    (init 1) and scalar biases (init 0) are the model's ``gate="scalar"`` and ``scalar_bias=True`` parameters
    (:class:`jinit.models.ResidualMLP`), which these rules leave as the model builds them. For m = 1 there are
    no layers to scale (only the zero last layer).

    Args:
      n_blocks: number of residual branches L (>= 1).
      m: layers per branch (``branch_layers`` of the model, >= 1; the paper's ResNets: 2).

    Returns:
      A :class:`jinit.Rules` labelled ``fixup(n_blocks=L, m=m)``. The scaled layers' variance is
      ``2 L^(-1/(m-1)) / fan_in``, drawn from a normal distribution (as torch's ``normal_`` in the paper's code).

    References:
      Zhang, Dauphin, Ma. Fixup initialization: residual learning without normalization. ICLR 2019, sec. 3.
    """
    n = _positive_int("fixup: n_blocks", n_blocks)
    m = _positive_int("fixup: m", m)
    he = _init.variance_scaling(2.0, "fan_in", "normal")
    table: dict[str, Any] = {
        f"block_*/dense_{m - 1}/kernel": "zeros",
        "head/kernel": "zeros",
        "head/bias": "zeros",
    }
    if m > 1:
        table["block_*/dense_*/kernel"] = _init.variance_scaling(
            2.0 * n ** (-1.0 / (m - 1)), "fan_in", "normal"
        )
    table["kernel"] = he
    return rules(table, label=f"fixup(n_blocks={n}, m={m})")


def deepnet_constants(n_layers: int, decoder: bool = False) -> tuple[float, float]:
    """DeepNet's ``(alpha, beta)`` for an encoder-only or a decoder-only stack of ``n_layers`` blocks.

    ===============  ====================  =====================
    architecture     alpha                 beta
    ===============  ====================  =====================
    encoder-only     ``(2N)^(1/4)``        ``(8N)^(-1/4)``
    decoder-only     ``(2M)^(1/4)``        ``(8M)^(-1/4)``
    ===============  ====================  =====================

    (the paper's Table 1; the two rows are the same formula in the stack's depth, N encoder or M decoder layers).
    Alpha multiplies the residual stream inside DeepNorm, ``x <- LN(alpha x + G(x))``
    (:class:`jinit.models.Transformer` with ``deepnorm_alpha``); beta is the gain of the init (:func:`deepnet`).
    The encoder-decoder row (``alpha = 0.81 (N^4 M)^(1/16)``, ``beta = 0.87 (N^4 M)^(-1/16)`` for the encoder) is
    not implemented: jinit's transformer is one stack.

    Args:
      n_layers: the number of blocks N (encoder) or M (decoder), >= 1.
      decoder: whether the stack is a decoder (same numbers; recorded in the label of :func:`deepnet`).

    Returns:
      ``(alpha, beta)``.

    References:
      Wang et al. DeepNet: scaling transformers to 1,000 layers. arXiv:2203.00555, 2022, Table 1 / Figure 2.
    """
    n = _positive_int("deepnet: n_layers", n_layers)
    if not isinstance(decoder, bool):
        raise TypeError(f"deepnet: decoder must be True or False, got {decoder!r}")
    return (2.0 * n) ** 0.25, (8.0 * n) ** -0.25


def _xavier_normal(gain: float) -> Any:
    return _init.variance_scaling(gain * gain, "fan_avg", "normal")


def deepnet(n_layers: int, decoder: bool = False, std: float = 0.02) -> Rules:
    """DeepNet's init (DeepNorm): Xavier normal with gain beta for the ffn, value and output projections and gain
    1 for the query and key projections, with beta from :func:`deepnet_constants`.

    The fused ``attn/qkv/kernel`` of :class:`jinit.models.Transformer` is drawn per ``d_model x d_model`` slice:
    query and key with gain 1, value with gain beta (each slice's Xavier fans are its own). ``attn/out``,
    ``mlp/fc`` and ``mlp/proj`` get gain beta. The paper leaves the embeddings and the output head at their
    usual init; here they are ``normal(std)`` as in GPT-2. Pair it with ``Transformer(deepnorm_alpha=alpha)``:
    the alpha of DeepNorm is a forward-pass constant, not an initializer.

    Args:
      n_layers: number of blocks (>= 1).
      decoder: decoder-only (True) or encoder-only (False) stack (same constants, see :func:`deepnet_constants`).
      std: standard deviation of the embeddings and the head.

    Returns:
      A :class:`jinit.Rules` labelled ``deepnet(n_layers=N, decoder=...)``.

    References:
      Wang et al. DeepNet: scaling transformers to 1,000 layers. arXiv:2203.00555, 2022, Figure 2.
    """
    _, beta = deepnet_constants(n_layers, decoder)
    std = _positive("deepnet: std", std)
    q_k, v = _xavier_normal(1.0), _xavier_normal(beta)

    def qkv(key, shape, dtype=jnp.float32):
        if len(shape) != 2 or shape[1] != 3 * shape[0]:
            raise ValueError(f"expected a fused qkv kernel of shape (d, 3d), got {shape}")
        d = shape[0]
        kq, kk, kv = jax.random.split(key, 3)
        return jnp.concatenate(
            [q_k(kq, (d, d), dtype), q_k(kk, (d, d), dtype), v(kv, (d, d), dtype)], axis=1
        )

    return rules(
        {
            "attn/qkv/kernel": Scheme(f"deepnet_qkv(beta={_fmt(beta)})", qkv),
            "attn/out/kernel": _xavier_normal(beta),
            "mlp/fc/kernel": _xavier_normal(beta),
            "mlp/proj/kernel": _xavier_normal(beta),
            "head/kernel": _init.normal(stddev=std),
            "embedding": _init.normal(stddev=std),
            "bias": "zeros",
        },
        label=f"deepnet(n_layers={int(n_layers)}, decoder={decoder})",
    )


def mup(
    base_width: int,
    *,
    readout: str = "head/kernel",
    inputs: Sequence[str] = ("stem/kernel",),
    readout_zero: bool = False,
    scale: float = 2.0,
    std: float | None = None,
) -> Rules:
    """muP (maximal update parametrization) init, the rules of the ``mup`` package without output multiplier.

    muP makes every layer's update after a step of Adam Theta(1) per coordinate at any width. Its init, relative
    to the standard parametrization (SP) at ``base_width`` (where both coincide, as ``mup.set_base_shapes`` makes
    them):

    - input layers (``inputs``: fan-in fixed, fan-out the width): SP's init, unchanged;
    - hidden layers (both fans grow with width): ``Var = scale / fan_in`` (SP's fan-in init already is muP);
      with a constant ``std`` instead, ``mup.init.normal_``: ``Var = std^2 * base_width / fan_in``;
    - the readout (``readout``: fan-in the width, fan-out fixed): with the fan-in init, SP's variance times
      ``base_width / fan_in``, i.e. ``scale * base_width / fan_in^2`` (``MuReadout`` rescales the weight by
      ``sqrt(width_mult)`` and divides its input by ``width_mult``); with a constant ``std``, the standard deviation
      ``std * base_width / fan_in`` (``mup.init.normal_`` draws a readout weight, one infinite dimension, at ``std``
      whatever the width, and ``MuReadout`` divides its input by ``width_mult = fan_in / base_width``), i.e.
      ``Var = std^2 * (base_width / fan_in)^2``; or zero with ``readout_zero`` (``MuReadout(readout_zero_init=True)``);
    - biases, norms, gates: left as the model builds them.

    ``mup.MuReadout`` multiplies the readout's input by ``1 / width_mult`` in the forward pass and rescales its
    init by ``sqrt(width_mult)``; jinit's models have no multiplier, so the equivalent parametrization without it
    is used (Yang et al. 2022, Table 8: readout init ``Var ~ 1/fan_in^2``, Adam lr ``~ 1/fan_in``): the same
    function and the same training dynamics under Adam (up to Adam's ``eps``), if the optimizer is
    :func:`mup_optimizer`.

    Args:
      base_width: the width at which muP equals SP (``mup``'s base shapes).
      readout: pattern of the readout kernel.
      inputs: patterns of the input-layer parameters (with ``std``: drawn ``N(0, std^2)``; else fan-in scaled).
        For :class:`jinit.models.Transformer` use ``inputs=("embedding",)``.
      readout_zero: zero readout (``mup``'s ``readout_zero_init``).
      scale: SP variance scale of the fan-in init (2 for ReLU: He; 1: LeCun).
      std: a constant SP standard deviation (e.g. GPT-2's 0.02) in place of the fan-in init.

    Returns:
      A :class:`jinit.Rules`, labelled ``mup(base_width=..., scale=...)`` (or ``std=...``), with the
      ``readout_zero`` flag and non-default patterns appended.

    References:
      Yang et al. Tensor Programs V: tuning large neural networks via zero-shot hyperparameter transfer.
      arXiv:2203.03466, 2022, Tables 3 and 8; the ``mup`` package (github.com/microsoft/mup): ``mup/init.py``,
      ``mup/layer.py`` (``MuReadout``), ``mup/optim.py`` (``MuAdam``).
    """
    base = _positive_int("mup: base_width", base_width)
    scale = _positive("mup: scale", scale)
    if std is not None:
        std = _positive("mup: std", std)
    if isinstance(inputs, str):
        inputs = (inputs,)

    def readout_init(key, shape, dtype=jnp.float32):
        fan_in = _init.compute_fans(shape)[0]
        if std is not None:
            # mup.init.normal_ draws std at any width; MuReadout divides the input by fan_in / base
            return std * (base / fan_in) * jax.random.normal(key, shape, dtype)
        return math.sqrt(scale / fan_in * base / fan_in) * jax.random.normal(key, shape, dtype)

    def hidden_init(key, shape, dtype=jnp.float32):
        fan_in = _init.compute_fans(shape)[0]
        return math.sqrt(std * std * base / fan_in) * jax.random.normal(key, shape, dtype)

    fan_in_init = _init.variance_scaling(scale, "fan_in", "normal")
    sp = f"std={_fmt(std)}" if std is not None else f"scale={_fmt(scale)}"
    table: dict[str, Any] = {
        readout: "zeros"
        if readout_zero
        else Scheme(f"mup_readout(base_width={base}, {sp})", readout_init)
    }
    for pattern in inputs:
        table[pattern] = _init.normal(stddev=std) if std is not None else fan_in_init
    table["kernel"] = (
        Scheme(f"mup_hidden(base_width={base}, {sp})", hidden_init)
        if std is not None
        else fan_in_init
    )
    extra = ", readout_zero=True" if readout_zero else ""
    if readout != "head/kernel":
        extra += f", readout={readout}"
    if tuple(inputs) != ("stem/kernel",):
        extra += f", inputs={','.join(inputs)}"
    return rules(table, label=f"mup(base_width={base}, {sp}{extra})")


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_str(p): tuple(int(d) for d in jnp.shape(x)) for p, x in leaves}


def mup_multipliers(params: Any, base_params: Any) -> dict[str, float]:
    """The Adam learning-rate multiplier of every parameter under muP (``mup.MuAdam`` without output multiplier).

    A dimension of a parameter is *infinite* when it differs from the same parameter's dimension in
    ``base_params`` (the model at the base width), as in ``mup.set_base_shapes``. With Flax's kernel layout
    ``(..., fan_in, fan_out)``:

    - two infinite dims (hidden matrices): ``base_fan_in / fan_in`` (``MuAdam``: ``lr /= width_mult``);
    - the fan-in alone infinite (the readout): ``base_fan_in / fan_in`` (``MuReadout``'s ``1/width_mult``
      output multiplier, folded into the learning rate);
    - otherwise (input layers, biases, norms, embeddings, gates, anything at the base width): 1.

    Args:
      params: the model's parameters at its width (arrays or shape structs; the ``params`` collection).
      base_params: the same model's parameters at the base width (e.g. ``jax.eval_shape(model.init, ...)``).

    Returns:
      ``{path: multiplier}`` over the ``/``-joined parameter paths.

    Raises:
      ValueError: the two trees have different parameters or ranks, or a parameter with more than two infinite
        dimensions (as ``mup``).
    """
    shapes, base = _shapes(params), _shapes(base_params)
    if set(shapes) != set(base):
        diff = sorted(set(shapes) ^ set(base))
        raise ValueError(f"mup: params and base_params differ in parameters: {', '.join(diff[:6])}")
    out = {}
    for path, shape in shapes.items():
        b = base[path]
        if len(b) != len(shape):
            raise ValueError(f"mup: parameter {path} has shape {shape} but base shape {b}")
        inf = [i for i, (d, e) in enumerate(zip(shape, b, strict=True)) if d != e]
        if len(inf) > 2:
            raise ValueError(
                f"mup: parameter {path} has {len(inf)} infinite dimensions (at most 2 supported)"
            )
        mult = 1.0
        if len(shape) >= 2 and (len(shape) - 2) in inf:
            mult = b[-2] / shape[-2]
        out[path] = mult
    return out


class ScaleByTreeState(NamedTuple):
    """:func:`mup_optimizer`'s multiplier step has no state."""


def _scale_by_path(mults: Mapping[str, float]) -> optax.GradientTransformation:
    def init_fn(params):
        del params
        return ScaleByTreeState()

    def update_fn(updates, state, params=None):
        del params
        leaves, treedef = jax.tree_util.tree_flatten_with_path(updates)
        out = []
        for p, u in leaves:
            path = path_str(p)
            if path not in mults:
                raise ValueError(f"mup_optimizer: no multiplier for parameter {path}")
            out.append(u * mults[path])
        return jax.tree_util.tree_unflatten(treedef, out), state

    return optax.GradientTransformation(init_fn, update_fn)


def _check_mup_learning_rate(learning_rate: Any) -> None:
    """``mup_optimizer``'s learning rate is a finite number > 0, a JAX array (a hyperparameter injected by
    ``optax.inject_hyperparams``: a sweep's learning-rate axis) or a schedule ``step -> number``. An optax
    transformation or an optimizer factory (``optax.adam``) in its place is one TypeError saying what to pass."""
    from jinit.checks import describe, is_transformation

    where = "mup_optimizer: learning_rate"
    if isinstance(learning_rate, jax.Array):
        return
    if is_transformation(learning_rate):
        raise TypeError(
            f"{where} must be a number > 0 or an optax schedule, got {describe(learning_rate)}; "
            "mup_optimizer is itself the optimizer (Adam with muP's per-layer "
            "learning rates): pass its learning rate, and chain other transformations with it, "
            "optax.chain(optax.clip_by_global_norm(1.0), mup_optimizer(...))"
        )
    if callable(learning_rate):  # a schedule: its learning rate at step 0 must be a number
        name = getattr(learning_rate, "__name__", type(learning_rate).__name__)
        try:
            probe = learning_rate(0)
        except Exception as e:  # noqa: BLE001 - any failure of the user's function
            raise TypeError(
                f"{where}: {name} is not a schedule step -> learning rate: {name}(0) raised "
                f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            ) from None
        if is_transformation(probe):
            raise TypeError(
                f"{where}: {name} is an optimizer factory ({name}(0) is an optax transformation), not a "
                "schedule; mup_optimizer is itself the optimizer (Adam): pass a number or a schedule such as "
                "optax.cosine_decay_schedule(1e-3, 1000)"
            )
        if jnp.ndim(probe) != 0 or not jnp.issubdtype(jnp.result_type(probe), jnp.number):
            raise TypeError(
                f"{where}: the schedule {name} returned {describe(probe, 60)} at step 0; a schedule returns "
                "one number per step"
            )
        return
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(
            f"{where} must be a number > 0 or an optax schedule, got {describe(learning_rate)}"
        )
    try:
        value = float(learning_rate)
    except OverflowError:  # an int beyond every float, 10**400
        value = math.inf
    if not 0 < value < math.inf:
        raise ValueError(f"{where} must be a finite number > 0, got {describe(learning_rate, 40)}")


def mup_optimizer(
    learning_rate: float | optax.Schedule,
    params: Any,
    base_params: Any,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Adam with muP's per-layer learning rates: ``learning_rate * mup_multipliers(params, base_params)[path]``.

    ``optax.chain(scale_by_adam, add_decayed_weights, scale by the multiplier, scale_by_learning_rate)``: hidden
    matrices and the readout learn at ``learning_rate * base_width / width``, everything else at
    ``learning_rate``. Weight decay (AdamW's, decoupled) is scaled with the learning rate, as ``MuAdamW``'s
    ``decoupled_wd=True``. At the base width this is ``optax.adamw(learning_rate, ...)`` exactly.

    Args:
      learning_rate: the base learning rate (tuned at the base width), or an optax schedule; a JAX array
        too, so that ``optax.inject_hyperparams(lambda learning_rate: mup_optimizer(learning_rate, ...))``
        (what a sweep's learning-rate axis builds from a factory) works.
      params: the parameters the optimizer will update (or their shapes), unstacked.
      base_params: the parameters at the base width (or their shapes).
      b1, b2, eps: Adam's hyperparameters.
      weight_decay: decoupled weight decay (0: Adam).

    Returns:
      An ``optax.GradientTransformation``.

    References:
      Yang et al. Tensor Programs V. arXiv:2203.03466, 2022, Table 3; ``mup/optim.py`` (``MuAdam``).
    """
    _check_mup_learning_rate(learning_rate)
    mults = mup_multipliers(params, base_params)
    steps = [optax.scale_by_adam(b1=b1, b2=b2, eps=eps)]
    if weight_decay:
        steps.append(optax.add_decayed_weights(weight_decay))
    steps += [_scale_by_path(mults), optax.scale_by_learning_rate(learning_rate)]
    return optax.chain(*steps)


def per_layer_adam(
    learning_rate: float | optax.Schedule,
    multipliers: Mapping[str, float],
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Adam whose learning rate is ``learning_rate * multipliers[path]`` for the parameter at ``path``.

    The same transformation as :func:`mup_optimizer` (``optax.chain(scale_by_adam, add_decayed_weights, scale by
    the multiplier, scale_by_learning_rate)``), with the multipliers given instead of derived from base shapes:
    ``per_layer_adam(lr, mup_multipliers(params, base_params))`` updates bit for bit as
    ``mup_optimizer(lr, params, base_params)``. It is how per-layer learning-rate prescriptions other than muP's
    are written: SP with muP's per-layer rates (Everett et al. 2024), Depth-muP's ``1 / sqrt(depth)`` on the
    residual blocks (Yang et al. 2023), or a deliberately broken one.

    Args:
      learning_rate: the base learning rate, an optax schedule, or a JAX array (what
        ``optax.inject_hyperparams`` passes: a sweep's learning-rate axis).
      multipliers: ``{path: multiplier}`` over the ``/``-joined parameter paths (``"Dense_0/kernel"``); every
        parameter needs one (:func:`mup_multipliers` makes such a table).
      b1, b2, eps: Adam's hyperparameters.
      weight_decay: decoupled weight decay (0: Adam), scaled with the learning rate and the multiplier.

    Returns:
      An ``optax.GradientTransformation``; an update of a parameter without a multiplier raises ValueError
      naming it.

    Raises:
      ValueError: a multiplier that is not a finite number >= 0, or a learning rate that is not > 0.

    References:
      Kingma & Ba. Adam: a method for stochastic optimization. ICLR 2015.
      Yang et al. Tensor Programs V. arXiv:2203.03466, 2022, Table 3 (per-layer Adam learning rates).
    """
    mults = {}
    for path, m in dict(multipliers).items():
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m < math.inf:
            raise ValueError(
                f"per_layer_adam: the multiplier of {path} must be a finite number >= 0, got {m!r}"
            )
        mults[str(path)] = float(m)
    if not callable(learning_rate) and not isinstance(learning_rate, jax.Array):
        _positive("per_layer_adam: learning_rate", learning_rate)
    steps = [optax.scale_by_adam(b1=b1, b2=b2, eps=eps)]
    if weight_decay:
        steps.append(optax.add_decayed_weights(weight_decay))
    steps += [_scale_by_table(mults), optax.scale_by_learning_rate(learning_rate)]
    return optax.chain(*steps)


def _scale_by_table(mults: Mapping[str, float]) -> optax.GradientTransformation:
    """Each update times its path's multiplier (:func:`per_layer_adam`'s step; a missing path is named)."""

    def init_fn(params):
        del params
        return ScaleByTreeState()

    from jinit.rules import param_paths  # the rules' '/'-joined paths, leaf by leaf

    def update_fn(updates, state, params=None):
        del params
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        paths = param_paths(updates)
        missing = [p for p in paths if p not in mults]
        if missing:
            raise ValueError(
                f"per_layer_adam: no multiplier for parameter(s) {', '.join(missing[:4])}; the table has "
                f"{', '.join(list(mults)[:4])}{' ...' if len(mults) > 4 else ''}"
            )
        out = [u * mults[p] for p, u in zip(paths, leaves, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, out), state

    return optax.GradientTransformation(init_fn, update_fn)
