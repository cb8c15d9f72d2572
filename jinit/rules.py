"""Per-layer schemes and your own schemes: parameter-path rules, labelled functions.

Three ways to bring an initialization of your own to a sweep, each a *scheme* like ``"he_normal"``:

- :func:`rules` maps parameter-path patterns to initializers, first match wins:
  ``jinit.rules({"Dense_2/kernel": "zeros", "kernel": "he_normal"})`` draws every kernel from He normal except
  the one of ``Dense_2``, which starts at zero. Parameters that no rule matches keep what the model builds them
  with (see :class:`Rules`).
- :func:`scheme` gives any function ``(key, shape, dtype) -> array`` (a ``jax.nn.initializers`` callable, your
  own) the label a sweep's results are keyed by: ``jinit.scheme(jax.nn.initializers.he_normal(), label="jax_he")``.
  A bare function is refused as a scheme, since the results would have no name.
- :func:`jinit.register` (in :mod:`jinit.registry`) gives a factory of either a name that ``jinit.get``, the CLI's
  ``--schemes`` and ``jinit schemes`` know.

Patterns: a pattern is an :mod:`fnmatch` glob (case-sensitive; ``*`` also crosses ``/``) over the ``/``-joined path
of a parameter inside the ``params`` collection, e.g. ``Dense_0/kernel`` or ``Block_1/Dense_0/bias``. It matches a
parameter when it matches the whole path **or any tail of it that starts after a** ``/``, as a Flax user reads
names: ``"kernel"`` matches every kernel, ``"Dense_2/kernel"`` matches ``Dense_2/kernel`` and
``Block_0/Dense_2/kernel``, ``"*/kernel"``, ``"*bias"`` and ``"Conv_*/kernel"`` work as written. A pattern that
matches no parameter of the model, or only parameters an earlier pattern already took, is an error.

Keys (with the sweep's ``root = PRNGKey(config.seed)`` and seed number ``s``, ``s -> 0`` unless ``vary`` includes
init): the model is first built by ``module.init`` with the scheme's key of DESIGN.md,
``fold_in(fold_in(fold_in(root, 0), stable_hash(label)), s)``; that key serves the parameters no rule matches and
every other collection. A parameter a rule matches is then drawn by its initializer with its **own** key,
``fold_in(fold_in(fold_in(root, 0), stable_hash(path)), s)``: the same derivation with the parameter's path in place
of the scheme label. So a matched parameter's values depend on the root seed, the seed number, its path and its
initializer only: adding a rule for one layer (which changes the label) leaves every other matched layer bitwise
equal, and two rules schemes that draw a layer alike share that layer's draw.

Example:
    >>> import jinit
    >>> r = jinit.rules({"Dense_2/kernel": "zeros", "kernel": "HeNormal"})
    >>> r
    rules(Dense_2/kernel=zeros, kernel=he_normal)
    >>> r.config()["rules"][1]
    ['kernel', {'name': 'he_normal', 'scale': 2.0, 'mode': 'fan_in', 'distribution': 'truncated_normal', \
'in_axis': -2, 'out_axis': -1, 'batch_axis': []}]
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from jinit import initializers as _init
from jinit import keys
from jinit import registry as _registry
from jinit.initializers import Initializer
from jinit.labelled import Scheme

__all__ = ["Rules", "Scheme", "param_paths", "rules", "scheme"]


def _is_catalogue_name(label: str) -> bool:
    try:
        _registry.canonical_name(label)
    except (ValueError, TypeError):
        return False
    return True


def _check_label(label: Any, what: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise TypeError(f"{what} label must be a non-empty str, got {label!r}")
    if label.strip().lower() in ("all", "lsuv"):
        raise ValueError(f"{what} label {label!r} is reserved; choose another")
    return label.strip()


def scheme(fn: Callable[..., Any], *, label: str) -> Scheme:
    """Makes a function ``(key, shape, dtype) -> array`` a sweep scheme with a label.

    Args:
      fn: any ``jax.nn.initializers`` callable or your own function of ``(key, shape, dtype)``.
      label: the scheme's name in results (not a catalogue name such as ``"he_normal"``, which means that
        scheme; not ``"all"`` or ``"lsuv"``).

    Returns:
      A :class:`Scheme`: pass it in ``SweepConfig(schemes=...)`` or as an initializer in :func:`rules`.

    Raises:
      TypeError: ``fn`` is not callable or the label is not a non-empty str.
      ValueError: the label is a catalogue name or reserved.

    Example:
      >>> import jax, jinit
      >>> s = jinit.scheme(jax.nn.initializers.he_normal(), label="jax_he")
      >>> s, s(jax.random.key(0), (3, 2)).shape
      (jax_he, (3, 2))
    """
    if not callable(fn) or isinstance(fn, Rules):
        raise TypeError(f"scheme: fn must be a function (key, shape, dtype) -> array, got {fn!r}")
    label = _check_label(label, "scheme")
    if _is_catalogue_name(label):
        raise ValueError(
            f"scheme label {label!r} is the name of a catalogue scheme ({_registry.canonical_name(label)}); "
            "choose another label"
        )
    return Scheme(label, fn)


def _init_label(init: Any) -> str:
    if isinstance(init, Initializer):
        try:
            default = _registry.get(init.name)
        except (ValueError, TypeError):
            default = None
        return init.name if init == default else repr(init)
    return repr(init)


def _rule_init(pattern: str, spec: Any) -> Any:
    if isinstance(spec, Scheme):
        return spec
    if isinstance(spec, Rules):
        raise TypeError(f"rule {pattern!r}: a rules scheme cannot be nested in another")
    if isinstance(spec, str | Mapping | Initializer):
        try:
            return _registry.get(spec)
        except (ValueError, TypeError) as e:
            raise type(e)(f"rule {pattern!r}: {e}") from None
    if callable(spec):
        raise TypeError(
            f"rule {pattern!r}: a function needs a label, since results are keyed by it: "
            f"jinit.scheme(fn, label='my_init')"
        )
    raise TypeError(
        f"rule {pattern!r}: expected an initializer name, config dict, Initializer or jinit.scheme(...), "
        f"got {spec!r}"
    )


@dataclasses.dataclass(frozen=True, repr=False)
class Rules:
    """A per-layer scheme: parameter-path patterns to initializers, first match wins (build with :func:`rules`).

    Unmatched parameters keep what the model builds them with: a factory ``(kernel_init, bias_init)`` gets
    ``kernel_init`` = Flax's own default for ``nn.Dense`` / ``nn.Conv`` kernels (:func:`jinit.flax_default`,
    LeCun normal) and the sweep's ``bias_init``; a factory that ignores them, or takes no arguments, keeps its own.

    Attributes:
      rules: ``(pattern, initializer)`` pairs in match order.
      label: the scheme's name in results (``repr`` is the label).
    """

    rules: tuple[tuple[str, Any], ...]
    label: str

    def relabelled(self, label: str) -> Rules:
        """The same rules under another label (a registered factory's name and arguments)."""
        return dataclasses.replace(self, label=label)

    @property
    def name(self) -> str:
        """The label (what ``resolve_schemes`` reads as a scheme's name)."""
        return self.label

    @property
    def kernel_init(self) -> Initializer:
        """The kernel initializer the sweep builds the model with before the rules apply (Flax's default)."""
        return _init.flax_default()

    def __repr__(self) -> str:
        return self.label

    def config(self) -> dict[str, Any]:
        """A JSON-able ``{"name": "rules", "label": ..., "rules": [[pattern, init config], ...]}``."""
        return {
            "name": "rules",
            "label": self.label,
            "rules": [[p, init.config()] for p, init in self.rules],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Rules:
        """Inverse of :meth:`config` (for initializers that are catalogue or registered schemes)."""
        return rules(dict((p, spec) for p, spec in config["rules"]), label=config.get("label"))

    def assign(self, paths: Sequence[str]) -> list[int | None]:
        """The index of the rule serving each path (first match wins), or None where no rule matches."""
        return [
            next((i for i, (p, _) in enumerate(self.rules) if _matches(p, path)), None)
            for path in paths
        ]

    def apply(self, params: Any, key_for: Callable[[str], jax.Array]) -> Any:
        """Redraws the parameters a rule matches.

        Args:
          params: the ``params`` collection (a pytree of arrays or shape/dtype structs).
          key_for: the key of a parameter from its ``/``-joined path.

        Returns:
          ``params`` with every matched leaf drawn by its rule's initializer with ``key_for(path)``.
        """
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [path_str(p) for p, _ in leaves]
        out = []
        for path, (_, leaf), i in zip(paths, leaves, self.assign(paths), strict=True):
            if i is None:
                out.append(leaf)
            else:
                out.append(self.rules[i][1](key_for(path), tuple(leaf.shape), leaf.dtype))
        return jax.tree_util.tree_unflatten(treedef, out)

    def init(self, module: Any, key: jax.Array, *args: Any, **kwargs: Any) -> Any:
        """``module.init(key, *args, **kwargs)``, then each matched parameter drawn with ``fold_in(key,
        stable_hash(path))`` (outside a sweep; the sweep derives the keys as in the module doc)."""
        variables = module.init(key, *args, **kwargs)
        return _replace_params(
            variables, self.apply(variables["params"], lambda p: keys.named_key(key, p))
        )


def _replace_params(variables: Any, params: Any) -> Any:
    if hasattr(variables, "copy") and not isinstance(variables, dict):  # FrozenDict
        return variables.copy({"params": params})
    return {**variables, "params": params}


def rules(
    mapping: Mapping[str, Any] | Sequence[tuple[str, Any]], *, label: str | None = None
) -> Rules:
    """A per-layer scheme: parameter-path patterns to initializers, first match wins.

    Args:
      mapping: ``{pattern: initializer}`` in match order (or a sequence of pairs). A pattern is an fnmatch glob
        matched against a parameter's ``/``-joined path or any tail of it (see the module doc: ``"kernel"``,
        ``"Dense_2/kernel"``, ``"*/kernel"``, ``"*bias"``). An initializer is a spec in any registry spelling
        (``"HeNormal"``, ``"normal(stddev=0.01)"``, a config dict), an Initializer, or a labelled function from
        :func:`scheme`.
      label: the scheme's name in results; default a canonical string of the rules,
        ``rules(Dense_2/kernel=zeros, kernel=he_normal)``.

    Returns:
      A frozen, hashable :class:`Rules` value with :meth:`Rules.config`.

    Raises:
      ValueError: no rules, an empty or repeated pattern, an unknown initializer name (naming the pattern and the
        valid names) or a bad label. Patterns that match nothing in a model, and initializers that cannot serve a
        matched parameter's shape, are reported by the sweep before anything is compiled.
      TypeError: an unlabelled function or a value of another type.

    Example:
      >>> import jinit
      >>> from jinit import sweep
      >>> cfg = sweep.SweepConfig(schemes=(jinit.rules({"Dense_2/kernel": "zeros", "kernel": "he_normal"}),
      ...                                  "he_normal"))
    """
    items = list(mapping.items()) if isinstance(mapping, Mapping) else list(mapping)
    if not items:
        raise ValueError("rules: give at least one (pattern, initializer) rule")
    out, seen = [], set()
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(f"rules: expected (pattern, initializer) pairs, got {item!r}")
        pattern, spec = item
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError(f"rules: a pattern must be a non-empty str, got {pattern!r}")
        pattern = pattern.strip().strip("/")
        if pattern in seen:
            raise ValueError(f"rules: pattern {pattern!r} is given twice")
        seen.add(pattern)
        out.append((pattern, _rule_init(pattern, spec)))
    if label is None:
        label = "rules(" + ", ".join(f"{p}={_init_label(i)}" for p, i in out) + ")"
    else:
        label = _check_label(label, "rules")
        if _is_catalogue_name(label):
            raise ValueError(
                f"rules label {label!r} is the name of a catalogue scheme; choose another"
            )
    return Rules(tuple(out), label)


def _matches(pattern: str, path: str) -> bool:
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern) for i in range(len(parts)))


def path_str(path: Sequence[Any]) -> str:
    """A pytree path (``jax.tree_util`` keys) as the ``/``-joined name rules patterns match (``Dense_0/kernel``)."""
    names = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
        else:
            names.append(str(k))
    return "/".join(names)


def param_paths(params: Any) -> list[str]:
    """The ``/``-joined paths of a ``params`` pytree's leaves, the strings rule patterns match."""
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


# ----------------------------------------------------------------------------------------------------------------
# What the sweep engine calls (jinit.sweep keeps only a few lines for these).


def as_scheme(spec: Any) -> Any:
    """A :class:`Rules` or :class:`Scheme` for such a spec (or a ``Rules.config()`` dict); None for any other
    spec, which the catalogue resolves. A bare function is refused: a scheme needs a label."""
    if isinstance(spec, Rules | Scheme):
        return spec
    if isinstance(spec, Mapping) and spec.get("name") == "rules":
        return Rules.from_config(spec)
    if isinstance(spec, Mapping) and spec.get("name") == "scheme":
        raise ValueError(
            f"scheme {spec.get('label')!r} is a Python function given to jinit.scheme(); it cannot be rebuilt "
            "from its config: pass the jinit.scheme(...) value (or jinit.register it and use its name)"
        )
    if callable(spec) and not isinstance(spec, Initializer | str | type):
        raise TypeError(
            f"a function as a scheme needs a label, since results are keyed by it: "
            f"jinit.scheme(fn, label='my_init') (got {spec!r})"
        )
    return None


def to_json(spec: Any) -> Any:
    """What ``config.json`` records for a scheme spec: the config of a Rules / Scheme value, else the spec."""
    return spec.config() if isinstance(spec, Rules | Scheme) else spec


def takes_init_args(factory: Callable) -> bool:
    """Whether a model factory takes ``(kernel_init, bias_init)`` (else it builds its model with no arguments)."""
    import flax.linen as nn

    module_class = isinstance(factory, type) and issubclass(factory, nn.Module)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    try:
        bound = sig.bind(None, None)
    except TypeError:
        pass
    else:  # a Module class takes them when its first two fields are not Flax's parent / name
        return not (module_class and {"parent", "name"} & set(bound.arguments))
    try:
        sig.bind()
    except TypeError:
        return True
    return False


def model_factory(factory: Callable) -> Callable:
    """``factory`` itself, or, for a model factory that takes no arguments (a Module class, ``lambda: Net()``),
    a ``(kernel_init, bias_init) -> module`` wrapper that ignores them (only rules schemes can then initialize
    it, see :func:`check_fit`)."""
    if takes_init_args(factory):
        return factory

    def no_init_args(kernel_init, bias_init):
        del kernel_init, bias_init
        return factory()

    no_init_args.jinit_no_init_args = True
    return no_init_args


def check_fit(
    variables_shape: Callable,
    label: str,
    spec: Any,
    bias_init: Any,
    x1: Any,
    *,
    no_init_args: bool = False,
) -> bool:
    """Checks, abstractly (``jax.eval_shape``, nothing compiled), that the scheme ``spec`` can initialize the
    model; returns True when it did the whole check (a rules scheme), False when the caller's check applies.

    Args:
      variables_shape: ``variables_shape(kernel_init, bias_init, key, x) -> variables`` of the model built with
        those initializers (the sweep gives its :mod:`jinit.adapters` ``init``; called under ``jax.eval_shape``).
      label: the scheme's label (for messages).
      spec: the scheme.
      bias_init: the sweep's bias initializer.
      x1: an example input (a ``jax.ShapeDtypeStruct`` is enough).
      no_init_args: the model's factory takes no kernel_init/bias_init arguments (only rules can initialize it).

    Raises:
      ValueError: one line naming the scheme, the pattern or initializer at fault and the valid choices: a
        non-rules scheme for a model without init arguments, a pattern that matches no parameter (or only
        parameters earlier patterns take), an initializer that cannot serve a matched parameter's shape.
    """
    if not isinstance(spec, Rules):
        if no_init_args:
            raise ValueError(
                f"scheme {label!r} cannot initialize this model: its factory takes no kernel_init/bias_init "
                f"arguments; use a per-layer scheme, e.g. jinit.rules({{'kernel': {label!r}}})"
            )
        return False
    key = jax.random.PRNGKey(0)
    try:
        shapes = jax.eval_shape(
            lambda k, x: variables_shape(spec.kernel_init, bias_init, k, x), key, x1
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"scheme {label!r}: the model cannot be initialized: {e}") from None
    params = shapes.get("params", {}) if hasattr(shapes, "get") else {}
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [path_str(p) for p, _ in leaves]
    taken = spec.assign(paths)
    for i, (pattern, _) in enumerate(spec.rules):
        if i in taken:
            continue
        matched = [p for p in paths if _matches(pattern, p)]
        if not matched:
            raise ValueError(
                f"scheme {label!r}: pattern {pattern!r} matches no parameter of this model; "
                f"its parameters: {', '.join(paths) or 'none'}"
            )
        earlier = [spec.rules[taken[paths.index(p)]][0] for p in matched]
        raise ValueError(
            f"scheme {label!r}: pattern {pattern!r} serves no parameter: {', '.join(matched)} "
            f"{'is' if len(matched) == 1 else 'are'} taken by the earlier pattern(s) "
            f"{', '.join(repr(e) for e in dict.fromkeys(earlier))} (first match wins: put the more specific "
            "pattern first)"
        )
    for path, (_, leaf), i in zip(paths, leaves, taken, strict=True):
        if i is None:
            continue
        pattern, init = spec.rules[i]
        shape, dtype = tuple(leaf.shape), leaf.dtype
        try:
            out = jax.eval_shape(lambda k, i=init, sh=shape, dt=dtype: i(k, sh, dt), key)
            if tuple(out.shape) != shape:
                raise ValueError(f"it returned shape {tuple(out.shape)}")
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"scheme {label!r}: rule {pattern!r} -> {_init_label(init)} cannot initialize parameter {path} "
                f"of shape {shape}: {str(e).strip()}; catalogue schemes that serve this shape: "
                f"{', '.join(_serving(shape, dtype)) or 'none'}"
            ) from None
    return True


def _serving(shape: tuple[int, ...], dtype: Any) -> list[str]:
    out = []
    for name in _registry.names():
        try:
            init = _registry.get(name)
            if not isinstance(init, Initializer):
                continue
            jax.eval_shape(lambda k, init=init: init(k, shape, dtype), jax.random.PRNGKey(0))
        except Exception:  # noqa: BLE001 -- any failure means "does not serve this shape"
            continue
        out.append(name)
    return out


def sweep_init(spec: Rules, init: Callable, root: jax.Array, s: Any, key: jax.Array, x: Any) -> Any:
    """One model of a sweep: ``init(key, x)`` (the model's own init, returning its variables) with the scheme's
    key, then each matched parameter drawn with ``fold_in(fold_in(fold_in(root, 0), stable_hash(path)), s)`` (see
    the module doc)."""
    variables = init(key, x)
    return _replace_params(
        variables, spec.apply(variables["params"], lambda path: keys.path_key(root, path, s))
    )


class _RulesModule(types.ModuleType):
    """This module, callable as :func:`rules`: ``jinit.rules`` is the function ``rules`` in jinit's namespace,
    and where the import system has put this module there instead (it does when the module is first imported),
    calling it still calls :func:`rules` (Python's supported way to customize a module object)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Rules:
        return rules(*args, **kwargs)


sys.modules[__name__].__class__ = _RulesModule
