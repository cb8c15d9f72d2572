"""jinit: weight initializers as pure JAX functions, and a vmapped seed-sweep engine.

The public namespace is flat, in the style of optax: every initializer factory, the registry
(`get`, `names`) and the helpers are re-exported here; the larger pieces live in submodules
(`jinit.data`, `jinit.models`, `jinit.sweep`, `jinit.metrics`, `jinit.propagation`, ...).
"""

__version__ = "0.1.0"
