"""jinit: weight initializers as pure JAX functions, and a vmapped seed-sweep engine.

The public namespace is flat, in the style of optax: every initializer factory, the registry
(`get`, `names`, `register`), the per-layer `rules`, the labelled `scheme` and the helpers are
re-exported here; the larger pieces live in submodules
(`jinit.adapters`, `jinit.data`, `jinit.models`, `jinit.sweep`, `jinit.metrics`, `jinit.propagation`,
`jinit.transfer`, ...).

The names are loaded on first use (PEP 562), so ``import jinit`` and the command line start without JAX: the
``jinit`` command checks what the process may use (the address-space limit) before it imports JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: name -> (module, attribute in it; None: the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "Initializer": ("jinit.initializers", "Initializer"),
    "Rules": ("jinit.rules", "Rules"),
    "Scheme": ("jinit.labelled", "Scheme"),
    "adapters": ("jinit.adapters", None),
    "catalog": ("jinit.registry", "catalog"),
    "compute_fans": ("jinit.initializers", "compute_fans"),
    "constant": ("jinit.initializers", "constant"),
    "coordinate_check": ("jinit.propagation", "coordinate_check"),
    "deepnet": ("jinit.modern", "deepnet"),
    "deepnet_constants": ("jinit.modern", "deepnet_constants"),
    "delta_orthogonal": ("jinit.initializers", "delta_orthogonal"),
    "dirac": ("jinit.initializers", "dirac"),
    "eye": ("jinit.initializers", "eye"),
    "fixup": ("jinit.modern", "fixup"),
    "flax_default": ("jinit.initializers", "flax_default"),
    "gain": ("jinit.initializers", "gain"),
    "get": ("jinit.registry", "get"),
    "glorot_normal": ("jinit.initializers", "glorot_normal"),
    "glorot_uniform": ("jinit.initializers", "glorot_uniform"),
    "gpt2": ("jinit.modern", "gpt2"),
    "he_normal": ("jinit.initializers", "he_normal"),
    "he_uniform": ("jinit.initializers", "he_uniform"),
    "identity": ("jinit.initializers", "identity"),
    "kaiming_normal": ("jinit.initializers", "kaiming_normal"),
    "kaiming_uniform": ("jinit.initializers", "kaiming_uniform"),
    "keras_default": ("jinit.initializers", "keras_default"),
    "keras_key": ("jinit.initializers", "keras_key"),
    "lecun_normal": ("jinit.initializers", "lecun_normal"),
    "lecun_uniform": ("jinit.initializers", "lecun_uniform"),
    "lsuv": ("jinit.propagation", "lsuv"),
    "mup": ("jinit.modern", "mup"),
    "mup_multipliers": ("jinit.modern", "mup_multipliers"),
    "mup_optimizer": ("jinit.modern", "mup_optimizer"),
    "names": ("jinit.registry", "names"),
    "normal": ("jinit.initializers", "normal"),
    "per_layer_adam": ("jinit.modern", "per_layer_adam"),
    "ones": ("jinit.initializers", "ones"),
    "orthogonal": ("jinit.initializers", "orthogonal"),
    "random_normal": ("jinit.initializers", "random_normal"),
    "random_uniform": ("jinit.initializers", "random_uniform"),
    "register": ("jinit.registry", "register"),
    "rezero": ("jinit.modern", "rezero"),
    "rules": ("jinit.rules", "rules"),
    "scheme": ("jinit.rules", "scheme"),
    "skipinit": ("jinit.modern", "skipinit"),
    "sparse": ("jinit.initializers", "sparse"),
    "torch_default": ("jinit.initializers", "torch_default"),
    "torch_default_bias": ("jinit.initializers", "torch_default_bias"),
    "transfer": ("jinit.transfer", None),
    "truncated_normal": ("jinit.initializers", "truncated_normal"),
    "uniform": ("jinit.initializers", "uniform"),
    "variance_scaling": ("jinit.initializers", "variance_scaling"),
    "xavier_normal": ("jinit.initializers", "xavier_normal"),
    "xavier_uniform": ("jinit.initializers", "xavier_uniform"),
    "zero_gamma": ("jinit.modern", "zero_gamma"),
    "zeros": ("jinit.initializers", "zeros"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jinit' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
