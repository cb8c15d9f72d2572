"""Flax linen models whose initializers are arguments.

Every model takes ``kernel_init`` and ``bias_init`` (any ``jax.nn.initializers.Initializer``, e.g. a jinit
initializer) and applies them to *every* Dense/Conv layer, as the classic Keras initializer tutorials do. The sweep
engine needs only a factory ``make_model(kernel_init, bias_init) -> nn.Module``; :func:`factory` builds one from a
model name, and a user may pass their own.

Every model also takes ``dtype`` (Flax's: the dtype of its activations and matmuls, e.g. ``jnp.bfloat16``; None,
the default, computes in the dtype of the inputs and parameters, float32). The parameters are float32 whatever it
is (``param_dtype``); the sweep's ``compute_dtype`` sets it (:mod:`jinit.sweep.precision`).

Each hidden layer records its pre-activation and activation with ``Module.sow`` in the ``"intermediates"``
collection (``pre_0, act_0, pre_1, ...``). Sowing costs nothing unless that collection is made mutable, which is how
:mod:`jinit.propagation` reads per-layer statistics.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jinit import models
    >>> model = models.MLP(hidden=(128, 64), num_classes=10, activation="relu")
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    >>> model.apply(params, jnp.zeros((4, 28, 28, 1))).shape
    (4, 10)
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]
MakeModel = Callable[[Initializer, Initializer], nn.Module]

_default_kernel_init = jax.nn.initializers.lecun_normal()
_default_bias_init = jax.nn.initializers.zeros


def _linear(x):
    return x


def _in(x, dtype):
    """``x`` in the model's ``dtype`` (a float32 scalar parameter added to bfloat16 activations would promote them
    back to float32); as it is when the model has no dtype."""
    return x if dtype is None else x.astype(dtype)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "selu": nn.selu,
    "leaky_relu": nn.leaky_relu,
    "linear": _linear,
}


def _closest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Valid choices: {', '.join(choices)}."


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the activation function called ``name``.

    Args:
      name: one of ``relu, tanh, sigmoid, gelu, selu, leaky_relu, linear``.

    Returns:
      An elementwise function (``leaky_relu`` uses Flax's default slope 0.01).

    Raises:
      ValueError: for an unknown name, listing the valid ones.
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}.{_closest(name, list(ACTIVATIONS))}"
        ) from None


class MLP(nn.Module):
    """A multilayer perceptron: ``Dense -> activation`` per hidden width, then a linear output layer.

    The default is the classic Keras-tutorial model 784-128-64-10 with ReLU. Inputs of any trailing shape are
    flattened (the leading axis is the batch). Use ``hidden=(width,) * depth`` (or :func:`deep_mlp`) for the deep
    networks of signal-propagation studies.

    Attributes:
      hidden: widths of the hidden layers.
      num_classes: width of the output layer (logits).
      activation: activation name (see :data:`ACTIVATIONS`).
      kernel_init: initializer of every kernel, output layer included.
      bias_init: initializer of every bias.
      dtype: the dtype of the activations and matmuls (None: float32); the parameters are float32.
    """

    hidden: Sequence[int] = (128, 64)
    num_classes: int = 10
    activation: str = "relu"
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = nn.Dense(
                width,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                dtype=self.dtype,
                name=f"Dense_{i}",
            )(x)
            self.sow("intermediates", f"pre_{i}", x)
            x = act(x)
            self.sow("intermediates", f"act_{i}", x)
        return nn.Dense(
            self.num_classes,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            name=f"Dense_{len(self.hidden)}",
        )(x)


class CNN(nn.Module):
    """A small convolutional network: ``[Conv 3x3 -> activation -> max-pool 2x2]`` per channel count, then
    ``Dense(dense) -> activation -> Dense(num_classes)``.

    Inputs are NHWC images (e.g. ``(N, 28, 28, 1)``); kernels use Flax's HWIO layout.

    Attributes:
      channels: output channels of the convolution blocks.
      dense: width of the hidden dense layer.
      num_classes: number of logits.
      activation: activation name.
      kernel_init: initializer of every kernel.
      bias_init: initializer of every bias.
      dtype: the dtype of the activations and matmuls (None: float32); the parameters are float32.
    """

    channels: Sequence[int] = (32, 64)
    dense: int = 128
    num_classes: int = 10
    activation: str = "relu"
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        if x.ndim != 4:
            raise ValueError(f"CNN expects NHWC images of rank 4, got shape {x.shape}")
        i = 0
        for i, ch in enumerate(self.channels):
            x = nn.Conv(
                ch,
                (3, 3),
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                dtype=self.dtype,
                name=f"Conv_{i}",
            )(x)
            self.sow("intermediates", f"pre_{i}", x)
            x = act(x)
            self.sow("intermediates", f"act_{i}", x)
            if x.shape[1] >= 2 and x.shape[2] >= 2:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(
            self.dense,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            name="Dense_0",
        )(x)
        self.sow("intermediates", f"pre_{i + 1}", x)
        x = act(x)
        self.sow("intermediates", f"act_{i + 1}", x)
        return nn.Dense(
            self.num_classes,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            name="Dense_1",
        )(x)


def deep_mlp(
    depth: int, width: int, *, num_classes: int = 10, activation: str = "tanh", **kwargs
) -> MLP:
    """An MLP with ``depth`` hidden layers of equal ``width`` (for signal-propagation studies).

    Args:
      depth: number of hidden layers (>= 1).
      width: width of every hidden layer (>= 1).
      num_classes: output width.
      activation: activation name.
      **kwargs: ``kernel_init`` / ``bias_init``.

    Returns:
      An :class:`MLP`.
    """
    if int(depth) < 1 or int(width) < 1:
        raise ValueError(
            f"deep_mlp needs depth >= 1 and width >= 1, got depth={depth}, width={width}"
        )
    return MLP(
        hidden=(int(width),) * int(depth), num_classes=num_classes, activation=activation, **kwargs
    )


def _check_choice(field: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(
            f"{field}={value!r} is not valid; choose one of {', '.join(repr(c) for c in choices)}"
        )


NORMS = (None, "layer", "batch")
GATES = (None, "scalar")


class ResidualBlock(nn.Module):
    """One residual block of :class:`ResidualMLP`: ``x -> act(x + branch_multiplier * gate * branch(x) + bias_out)``.

    ``branch`` is ``[+bias_ja] -> dense_j -> [norm_j] -> [+bias_jb] -> act`` for ``j < branch_layers - 1`` and
    ``[+bias_ma] -> dense_m -> [norm_m]`` for the last layer ``m`` (bracketed pieces are optional, see
    :class:`ResidualMLP`). With ``preact=True`` the block is the pre-activation one, ``x -> x + branch_multiplier *
    gate * branch(x)`` with ``branch = [act -> dense_j -> norm_j]`` for every ``j`` (no activation after the sum).
    """

    width: int
    branch_layers: int = 2
    norm: str | None = None
    gate: str | None = None
    scalar_bias: bool = False
    activation: str = "relu"
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init
    branch_multiplier: float = 1.0
    preact: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        zero = jax.nn.initializers.zeros
        dt = self.dtype
        m = int(self.branch_layers)
        h = x
        for j in range(m):
            if self.preact:
                h = act(h)
            if self.scalar_bias:
                h = h + _in(self.param(f"bias_{j}a", zero, ()), dt)
            h = nn.Dense(
                self.width,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                dtype=dt,
                name=f"dense_{j}",
            )(h)
            if self.norm == "layer":
                h = nn.LayerNorm(dtype=dt, name=f"norm_{j}")(h)
            elif self.norm == "batch":
                h = nn.BatchNorm(use_running_average=False, dtype=dt, name=f"norm_{j}")(h)
            if j < m - 1 and not self.preact:
                if self.scalar_bias:
                    h = h + _in(self.param(f"bias_{j}b", zero, ()), dt)
                h = act(h)
        if self.gate == "scalar":
            h = h * _in(self.param("gate", jax.nn.initializers.ones, ()), dt)
        if self.branch_multiplier != 1.0:  # a constant, not a parameter (Depth-muP's 1/sqrt(L))
            h = h * self.branch_multiplier
        if self.scalar_bias:
            h = h + _in(self.param("bias_out", zero, ()), dt)
        return x + h if self.preact else act(x + h)


class ResidualMLP(nn.Module):
    """A residual MLP: a ``stem`` Dense, ``depth`` residual blocks of ``branch_layers`` Dense layers, a ``head``.

    Each block is the ResNet v1 basic block in Dense layers, ``x <- act(x + branch(x))`` (:class:`ResidualBlock`).
    The optional pieces are those the residual schemes of :mod:`jinit.modern` name:

    - ``norm="layer"`` / ``"batch"``: a norm after each branch Dense (``block_i/norm_j/scale``); zero-gamma zeroes
      the last one of each block. ``"batch"`` normalizes with batch statistics (training mode) and keeps a
      ``batch_stats`` collection. With ``norm=None`` the network has no normalization at all (Fixup, ReZero).
    - ``gate="scalar"``: a learnable scalar multiplier ``block_i/gate`` on the branch, built as 1 (the plain
      block); SkipInit / ReZero set it to 0; Fixup keeps it as its scalar multiplier (init 1).
    - ``scalar_bias=True``: Fixup's scalar biases, built as 0: ``block_i/bias_ja`` before each branch Dense,
      ``block_i/bias_jb`` before each branch activation and ``block_i/bias_out`` after the multiplier.
    - ``branch_multiplier``: a constant (not a parameter) multiplying every branch's output; Depth-muP's
      ``a / sqrt(depth)`` (Yang et al. 2023, Tensor Programs VI; Bordelon et al. 2023). 1.0 leaves the block as is.
    - ``preact=True``: the pre-activation block (He et al. 2016, "Identity mappings"), ``x <- x +
      branch_multiplier * branch(x)`` with ``branch = act -> dense_0 -> [norm_0] -> act -> dense_1 ...``: the stem
      has no activation, nothing follows the sum, and the head reads ``act(x)``; the residual stream is never
      passed through the activation, as in the Depth-muP papers (``branch_layers=1``: ``x + m W act(x)``).
      Not with ``scalar_bias`` (Fixup's biases belong to the post-activation block).

    Parameter paths (``branch_layers=2``, ``norm="layer"``, ``gate="scalar"``): ``stem/{kernel,bias}``,
    ``block_i/dense_0/{kernel,bias}``, ``block_i/norm_0/{scale,bias}``, ``block_i/dense_1/...``,
    ``block_i/norm_1/...``, ``block_i/gate``, ``head/{kernel,bias}``. The stem's activation and every block's
    output are sown in ``"intermediates"`` as ``stem_out`` and ``block_i_out``.

    Attributes:
      width: width of the stem and of every block.
      depth: number of residual blocks (>= 1).
      num_classes: width of ``head`` (logits).
      branch_layers: Dense layers per branch (>= 1).
      norm: ``None``, ``"layer"`` or ``"batch"``.
      gate: ``None`` or ``"scalar"``.
      scalar_bias: add Fixup's scalar biases.
      activation: activation name (see :data:`ACTIVATIONS`).
      kernel_init: initializer of every Dense kernel (stem, branches, head).
      bias_init: initializer of every Dense bias.
      branch_multiplier: constant multiplier of every branch's output (> 0; default 1.0).
      preact: pre-activation blocks (default False: the post-activation ResNet v1 block).
      dtype: the dtype of the activations and matmuls (None: float32); the parameters are float32.

    References:
      He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016.
      He, Zhang, Ren, Sun. Identity mappings in deep residual networks. ECCV 2016 (pre-activation).
      Yang, Yu, Zhu, Hayou. Tensor Programs VI: feature learning in infinite-depth neural networks.
      arXiv:2310.02244, 2023 (branch multiplier a / sqrt(L)).
    """

    width: int = 64
    depth: int = 4
    num_classes: int = 10
    branch_layers: int = 2
    norm: str | None = None
    gate: str | None = None
    scalar_bias: bool = False
    activation: str = "relu"
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init
    branch_multiplier: float = 1.0
    preact: bool = False
    dtype: Any = None

    def __post_init__(self):
        _check_choice("norm", self.norm, NORMS)
        _check_choice("gate", self.gate, GATES)
        for field in ("width", "depth", "num_classes", "branch_layers"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"ResidualMLP: {field} must be >= 1, got {getattr(self, field)}")
        m = self.branch_multiplier
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 < m < float("inf"):
            raise ValueError(f"ResidualMLP: branch_multiplier must be a number > 0, got {m!r}")
        if self.preact and self.scalar_bias:
            raise ValueError(
                "ResidualMLP: scalar_bias (Fixup's biases) needs the post-activation block; use preact=False"
            )
        activation(self.activation)
        super().__post_init__()

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(
            self.width,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            name="stem",
        )(x)
        if not self.preact:
            x = act(x)
        self.sow("intermediates", "stem_out", x)
        for i in range(int(self.depth)):
            x = ResidualBlock(
                self.width,
                branch_layers=self.branch_layers,
                norm=self.norm,
                gate=self.gate,
                scalar_bias=self.scalar_bias,
                activation=self.activation,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                branch_multiplier=float(self.branch_multiplier),
                preact=self.preact,
                dtype=self.dtype,
                name=f"block_{i}",
            )(x)
            self.sow("intermediates", f"block_{i}_out", x)
        if self.preact:
            x = act(x)
        return nn.Dense(
            self.num_classes,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            name="head",
        )(x)


_gpt_init = jax.nn.initializers.normal(0.02)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention with a fused ``qkv`` projection and a residual output projection ``out``.

    ``qkv/kernel`` has shape ``(d_model, 3 * d_model)``: the query, key and value columns in that order, each
    ``d_model`` wide (heads contiguous inside each). The logits are scaled by ``1 / sqrt(d_head)``
    (``attention_scale="sqrt"``) or by muP's ``1 / d_head`` (``"mup"``, Yang et al. 2022, sec. 4). With
    ``qk_norm`` the queries and keys pass through a LayerNorm over each head's ``d_head`` features (``q_norm``,
    ``k_norm``: one scale and bias of ``d_head`` values, shared by the heads) before the dot product: qk-layernorm
    (Dehghani et al. 2023; Wortsman et al. 2023, sec. 3.1), which bounds the attention logits.
    """

    d_model: int
    n_heads: int
    attention_scale: str = "sqrt"
    kernel_init: Initializer = _gpt_init
    bias_init: Initializer = _default_bias_init
    qk_norm: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        b, t, d = x.shape
        hd = d // self.n_heads
        kw = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
        qkv = nn.Dense(3 * d, name="qkv", **kw)(x)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        q, k, v = (a.reshape(b, t, self.n_heads, hd) for a in (q, k, v))
        if self.qk_norm:
            q = nn.LayerNorm(dtype=self.dtype, name="q_norm")(q)
            k = nn.LayerNorm(dtype=self.dtype, name="k_norm")(k)
        scale = 1.0 / hd if self.attention_scale == "mup" else 1.0 / jnp.sqrt(hd)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
        mask = jnp.tril(jnp.ones((t, t), bool))
        if (
            self.dtype is not None
        ):  # the softmax in float32, as mixed-precision transformers compute it
            logits = logits.astype(jnp.float32)
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = _in(jax.nn.softmax(logits, axis=-1), self.dtype)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, d)
        return nn.Dense(d, name="out", **kw)(y)


class FeedForward(nn.Module):
    """The transformer MLP ``fc (d -> 4d) -> gelu -> proj (4d -> d)``; ``proj`` is the residual output."""

    d_model: int
    mlp_ratio: int = 4
    kernel_init: Initializer = _gpt_init
    bias_init: Initializer = _default_bias_init
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        kw = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
        h = nn.Dense(self.mlp_ratio * self.d_model, name="fc", **kw)(x)
        h = nn.gelu(h)
        return nn.Dense(self.d_model, name="proj", **kw)(h)


class TransformerBlock(nn.Module):
    """Pre-LN block ``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))``; with ``deepnorm_alpha`` the post-LN DeepNorm block
    ``ln_1(alpha * x + attn(x))``, ``ln_2(alpha * x + mlp(x))`` (Wang et al. 2022)."""

    d_model: int
    n_heads: int
    mlp_ratio: int = 4
    attention_scale: str = "sqrt"
    deepnorm_alpha: float | None = None
    kernel_init: Initializer = _gpt_init
    bias_init: Initializer = _default_bias_init
    qk_norm: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        kw = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
        attn = SelfAttention(
            self.d_model,
            self.n_heads,
            attention_scale=self.attention_scale,
            qk_norm=self.qk_norm,
            name="attn",
            **kw,
        )
        mlp = FeedForward(self.d_model, self.mlp_ratio, name="mlp", **kw)
        ln_1 = nn.LayerNorm(dtype=self.dtype, name="ln_1")
        ln_2 = nn.LayerNorm(dtype=self.dtype, name="ln_2")
        if self.deepnorm_alpha is None:
            x = x + attn(ln_1(x))
            return x + mlp(ln_2(x))
        a = self.deepnorm_alpha
        x = ln_1(a * x + attn(x))
        return ln_2(a * x + mlp(x))


class Transformer(nn.Module):
    """A small decoder-only transformer (GPT-2 layout, pre-LN) over integer tokens, for CPU-sized studies.

    ``tokens (B, T) -> embed + pos_embed -> n_layers x TransformerBlock -> ln_f -> head -> logits (B, T, vocab)``.
    Stable parameter paths: ``embed/embedding``, ``pos_embed/embedding``, ``block_i/ln_1``,
    ``block_i/attn/qkv/{kernel,bias}``, ``block_i/attn/out/...`` (residual output projection), ``block_i/ln_2``,
    ``block_i/mlp/fc/...``, ``block_i/mlp/proj/...`` (residual output projection), ``ln_f``, ``head/{kernel,bias}``.
    Every block's output is sown in ``"intermediates"`` as ``block_i_out``.

    Attributes:
      vocab: number of token ids (and of logits).
      d_model: width.
      n_layers: number of blocks (>= 1).
      n_heads: attention heads (must divide ``d_model``).
      max_len: longest sequence (rows of ``pos_embed``).
      mlp_ratio: hidden width of the MLP over ``d_model``.
      attention_scale: ``"sqrt"`` (``1/sqrt(d_head)``) or ``"mup"`` (``1/d_head``).
      deepnorm_alpha: None (pre-LN), or DeepNorm's alpha (post-LN ``LN(alpha x + f(x))``; see
        :func:`jinit.deepnet_constants`).
      kernel_init: initializer of every Dense kernel (default GPT-2's normal(0.02)).
      bias_init: initializer of every Dense bias.
      embed_init: initializer of both embeddings (default normal(0.02)).
      qk_norm: LayerNorm on the queries and keys of every block (``block_i/attn/q_norm``, ``k_norm``; see
        :class:`SelfAttention`).
      z_loss: the coefficient ``c`` of the z-loss (PaLM; Wortsman et al. 2023, sec. 3.2: ``1e-4``), 0 for none.
        It is added to the *gradient* at the logits (:func:`z_loss_gradient`: the forward pass is unchanged), as
        if the training loss had the term ``c * mean over the logits' rows of log(Z)^2``, ``Z`` the softmax
        normalizer; the reported losses stay the cross-entropy, so runs with and without it compare on the same
        loss. It assumes the training loss is a mean over the logits' rows (as jinit's tasks are).
      dtype: the dtype of the activations and matmuls (None: float32); the parameters are float32.

    References:
      Radford et al. Language models are unsupervised multitask learners. 2019 (GPT-2).
      Xiong et al. On layer normalization in the transformer architecture. ICML 2020 (pre-LN).
      Wortsman et al. Small-scale proxies for large-scale Transformer training instabilities. arXiv:2309.14322,
      2023 (qk-layernorm, z-loss).
    """

    vocab: int = 16
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 16
    mlp_ratio: int = 4
    attention_scale: str = "sqrt"
    deepnorm_alpha: float | None = None
    kernel_init: Initializer = _gpt_init
    bias_init: Initializer = _default_bias_init
    embed_init: Initializer = _gpt_init
    qk_norm: bool = False
    z_loss: float = 0.0
    dtype: Any = None

    def __post_init__(self):
        for field in ("vocab", "d_model", "n_layers", "n_heads", "max_len", "mlp_ratio"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"Transformer: {field} must be >= 1, got {getattr(self, field)}")
        z = self.z_loss
        if isinstance(z, bool) or not isinstance(z, int | float) or not 0 <= z < float("inf"):
            raise ValueError(f"Transformer: z_loss must be a number >= 0, got {z!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"Transformer: n_heads={self.n_heads} must divide d_model={self.d_model}"
            )
        _check_choice("attention_scale", self.attention_scale, ("sqrt", "mup"))
        super().__post_init__()

    @nn.compact
    def __call__(self, tokens):
        if tokens.ndim != 2:
            raise ValueError(
                f"Transformer expects token ids of shape (batch, time), got {tokens.shape}"
            )
        if jnp.issubdtype(
            tokens.dtype, jnp.floating
        ):  # token ids stored as floats (the sweep's float32 inputs)
            tokens = tokens.astype(jnp.int32)
        t = tokens.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={self.max_len}")
        emb = dict(embedding_init=self.embed_init, dtype=self.dtype)
        x = nn.Embed(self.vocab, self.d_model, name="embed", **emb)(tokens)
        pos = nn.Embed(self.max_len, self.d_model, name="pos_embed", **emb)
        x = x + pos(jnp.arange(t))[None]
        for i in range(int(self.n_layers)):
            x = TransformerBlock(
                self.d_model,
                self.n_heads,
                mlp_ratio=self.mlp_ratio,
                attention_scale=self.attention_scale,
                deepnorm_alpha=self.deepnorm_alpha,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                qk_norm=self.qk_norm,
                dtype=self.dtype,
                name=f"block_{i}",
            )(x)
            self.sow("intermediates", f"block_{i}_out", x)
        x = nn.LayerNorm(dtype=self.dtype, name="ln_f")(x)
        logits = nn.Dense(
            self.vocab,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            name="head",
        )(x)
        return z_loss_gradient(logits, float(self.z_loss)) if self.z_loss else logits


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def z_loss_gradient(logits: jax.Array, coef: float) -> jax.Array:
    """The identity on ``logits``, whose gradient adds that of the z-loss ``coef * mean_rows(log(Z)^2)``.

    ``Z = sum(exp(logits), axis=-1)`` is the softmax normalizer of each row (a row: all axes but the last). The
    z-loss pulls ``log Z`` towards 0, so the logits cannot drift to large values where the softmax saturates
    (PaLM, sec. 5; Wortsman et al. 2023, sec. 3.2, ``coef = 1e-4``). Written as a gradient at the logits
    (``d/dlogits = 2 coef log(Z) softmax(logits) / rows``), the term reaches the parameters without changing
    the loss a task computes, so the model works with any sweep and the reported loss stays the cross-entropy.

    Args:
      logits: ``[..., classes]``.
      coef: the z-loss coefficient (a Python float).

    Returns:
      ``logits`` unchanged.

    References:
      Chowdhery et al. PaLM: scaling language modeling with pathways. arXiv:2204.02311, 2022, sec. 5.
      Wortsman et al. Small-scale proxies for large-scale Transformer training instabilities. arXiv:2309.14322.
    """
    return logits


def _z_fwd(logits, coef):
    return logits, logits


def _z_bwd(coef, logits, g):
    rows = max(1, logits.size // logits.shape[-1])
    lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    return (g + (2.0 * coef / rows) * lse * jax.nn.softmax(logits, axis=-1),)


z_loss_gradient.defvjp(_z_fwd, _z_bwd)


class LastTokenTransformer(nn.Module):
    """A :class:`Transformer` that classifies a sequence of token ids by its last position's logits (the
    associative-recall task of :func:`jinit.data.associative_recall`; token ids stored as floats are cast).

    Parameter paths are the Transformer's under ``transformer/`` (``transformer/block_0/attn/out/kernel``), which
    the patterns of :func:`jinit.gpt2`, :func:`jinit.deepnet` and :func:`jinit.mup` match; the other fields are the
    Transformer's (``attention_scale``, DeepNorm's ``deepnorm_alpha``, ``qk_norm``).
    """

    vocab: int = 16
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 16
    attention_scale: str = "sqrt"
    deepnorm_alpha: float | None = None
    qk_norm: bool = False
    kernel_init: Initializer = _gpt_init
    bias_init: Initializer = _default_bias_init
    dtype: Any = None

    @nn.compact
    def __call__(self, tokens):
        logits = Transformer(
            vocab=self.vocab,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            max_len=self.max_len,
            attention_scale=self.attention_scale,
            deepnorm_alpha=self.deepnorm_alpha,
            qk_norm=self.qk_norm,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            name="transformer",
        )(tokens)
        return logits[:, -1]


MODELS = ("mlp", "cnn")


def factory(name: str = "mlp", **kwargs: Any) -> MakeModel:
    """Returns ``make_model(kernel_init, bias_init) -> nn.Module`` for a model name.

    Args:
      name: ``"mlp"``, ``"cnn"`` (the sweep's models, :data:`MODELS`), ``"resmlp"`` (:class:`ResidualMLP`),
        ``"transformer"`` (:class:`Transformer`, over integer tokens) or ``"last_token_transformer"``
        (:class:`LastTokenTransformer`: a sequence classifier).
      **kwargs: the model's other attributes (``hidden``, ``activation``, ``num_classes``, ``channels``,
        ``dtype``, ...).

    Returns:
      A function ``(kernel_init, bias_init, dtype=None)`` building the module with the given initializers, as the
      sweep engine expects; its ``dtype`` (the compute dtype, :mod:`jinit.sweep.precision`) overrides the one in
      ``kwargs``.

    Raises:
      ValueError: for an unknown model name or activation.
    """
    classes = {
        "mlp": MLP,
        "cnn": CNN,
        "resmlp": ResidualMLP,
        "transformer": Transformer,
        "last_token_transformer": LastTokenTransformer,
    }
    if name not in classes:
        raise ValueError(f"unknown model {name!r}.{_closest(name, list(classes))}")
    if "activation" in kwargs:
        activation(kwargs["activation"])  # validate early, before any tracing
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(int(h) for h in kwargs["hidden"])
        if any(h < 1 for h in kwargs["hidden"]):
            raise ValueError(f"hidden widths must be >= 1, got {kwargs['hidden']}")
    cls = classes[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name", "kernel_init", "bias_init"}
    unknown = set(kwargs) - fields
    if unknown:
        raise ValueError(f"unknown {name} option(s) {sorted(unknown)}; valid: {sorted(fields)}")
    return functools.partial(_build, cls, tuple(sorted(kwargs.items())))


def _build(cls, items, kernel_init, bias_init, dtype=None):
    kw = dict(items)
    if dtype is not None:
        kw["dtype"] = dtype
    return cls(kernel_init=kernel_init, bias_init=bias_init, **kw)
