"""Flax linen models whose initializers are arguments.

Every model takes ``kernel_init`` and ``bias_init`` (any ``jax.nn.initializers.Initializer``, e.g. a jinit
initializer) and applies them to *every* Dense/Conv layer, as the classic Keras initializer tutorials do. The sweep
engine needs only a factory ``make_model(kernel_init, bias_init) -> nn.Module``; :func:`factory` builds one from a
model name, and a user may pass their own.

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
    """

    hidden: Sequence[int] = (128, 64)
    num_classes: int = 10
    activation: str = "relu"
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = nn.Dense(
                width, kernel_init=self.kernel_init, bias_init=self.bias_init, name=f"Dense_{i}"
            )(x)
            self.sow("intermediates", f"pre_{i}", x)
            x = act(x)
            self.sow("intermediates", f"act_{i}", x)
        return nn.Dense(
            self.num_classes,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
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
    """

    channels: Sequence[int] = (32, 64)
    dense: int = 128
    num_classes: int = 10
    activation: str = "relu"
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        if x.ndim != 4:
            raise ValueError(f"CNN expects NHWC images of rank 4, got shape {x.shape}")
        i = 0
        for i, ch in enumerate(self.channels):
            x = nn.Conv(
                ch, (3, 3), kernel_init=self.kernel_init, bias_init=self.bias_init, name=f"Conv_{i}"
            )(x)
            self.sow("intermediates", f"pre_{i}", x)
            x = act(x)
            self.sow("intermediates", f"act_{i}", x)
            if x.shape[1] >= 2 and x.shape[2] >= 2:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(
            self.dense, kernel_init=self.kernel_init, bias_init=self.bias_init, name="Dense_0"
        )(x)
        self.sow("intermediates", f"pre_{i + 1}", x)
        x = act(x)
        self.sow("intermediates", f"act_{i + 1}", x)
        return nn.Dense(
            self.num_classes, kernel_init=self.kernel_init, bias_init=self.bias_init, name="Dense_1"
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


MODELS = ("mlp", "cnn")


def factory(name: str = "mlp", **kwargs: Any) -> MakeModel:
    """Returns ``make_model(kernel_init, bias_init) -> nn.Module`` for a model name.

    Args:
      name: ``"mlp"`` or ``"cnn"``.
      **kwargs: the model's other attributes (``hidden``, ``activation``, ``num_classes``, ``channels``, ...).

    Returns:
      A function building the module with the given initializers, as the sweep engine expects.

    Raises:
      ValueError: for an unknown model name or activation.
    """
    classes = {"mlp": MLP, "cnn": CNN}
    if name not in classes:
        raise ValueError(f"unknown model {name!r}.{_closest(name, MODELS)}")
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


def _build(cls, items, kernel_init, bias_init):
    return cls(kernel_init=kernel_init, bias_init=bias_init, **dict(items))
