"""Names for initializers: Keras, torch and JAX spellings, config round-trip, ``get``, ``names``.

:func:`get` turns a *spec* into an :class:`~jinit.initializers.Initializer` value. A spec is

- a name in any common spelling: ``"he_normal"``, ``"HeNormal"``, ``"GlorotUniform"``,
  ``"RandomNormal"``, ``"random_normal"``, ``"eye"``, ``"kaiming_normal_"``, ``"xavier_uniform"``, ... (case,
  CamelCase, ``-`` vs ``_`` and a trailing ``_`` do not matter). A name means what it means in the framework it
  is spelled from: torch's ``kaiming_normal(_)`` and ``xavier_normal(_)`` are torch's untruncated normals
  (Keras/JAX ``he_normal`` / ``glorot_normal`` are truncated), and the torch spellings ``normal_``, ``uniform_``,
  ``trunc_normal_``, whose torch defaults differ from jinit's Keras ones, are refused with what to write instead;
- a call with literal hyperparameters, e.g. ``"normal(stddev=0.01)"`` or
  ``"variance_scaling(scale=2.0, mode='fan_in', distribution='normal')"``: parsed with
  :mod:`ast`, literals only, never evaluated, so ``get(repr(init)) == init``;
- a config dict ``{"name": ..., **hyperparameters}`` as returned by ``init.config()``;
- an Initializer, returned as is (or rebuilt with the overrides applied).

Keyword overrides replace hyperparameters: ``get("he_normal", distribution="normal")``.

Example:
    >>> import jinit
    >>> jinit.get("HeNormal") == jinit.he_normal()
    True
    >>> init = jinit.get("normal(stddev=0.01)")
    >>> jinit.get(repr(init)) == jinit.get(init.config()) == init
    True
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from jinit import initializers as _init
from jinit.initializers import Initializer
from jinit.labelled import registered


class SchemeInfo(NamedTuple):
    """One row of the catalogue (see :func:`catalog`).

    Attributes:
      name: canonical name (``jinit.<name>`` is the factory).
      aliases: other accepted names (snake_case; CamelCase / trailing ``_`` forms work too).
      distribution: the distribution drawn from.
      variance: the variance of the entries as a formula in fan_in / fan_out / hyperparameters.
      defaults: the factory's hyperparameters and defaults, as text.
      applies_to: which kernels the scheme serves: ``"any"`` (any kernel of >= 2 dimensions),
        ``"2d"`` (2-D matrices only) or ``"conv"`` (3-D to 5-D conv kernels only).
    """

    name: str
    aliases: tuple[str, ...]
    distribution: str
    variance: str
    defaults: str
    applies_to: str


class _Entry(NamedTuple):
    factory: Callable[..., Initializer]
    aliases: tuple[str, ...]
    distribution: str
    variance: str
    applies_to: str
    listed: bool = True  # in names() / catalog(); unlisted entries are still accepted by get()
    custom: bool = False  # added by register(): get() labels what the factory returns with the name


_VS_PER_DIST = "per distribution="
_TRUNC = "truncated normal (+-2 sd)"
_UNIF = "uniform"

_ENTRIES: dict[str, _Entry] = {
    "zeros": _Entry(_init.zeros, (), "constant 0", "0", "any"),
    "ones": _Entry(_init.ones, (), "constant 1", "0", "any"),
    "constant": _Entry(_init.constant, (), "constant value", "0", "any"),
    "normal": _Entry(_init.normal, ("random_normal",), "normal", "stddev^2", "any"),
    "uniform": _Entry(_init.uniform, ("random_uniform",), _UNIF, "(maxval-minval)^2/12", "any"),
    "truncated_normal": _Entry(_init.truncated_normal, (), _TRUNC, "(0.8796*stddev)^2", "any"),
    "variance_scaling": _Entry(
        _init.variance_scaling,
        (),
        _VS_PER_DIST,
        "scale/n, n per mode: fan_in, fan_out, fan_avg, fan_geo_avg",
        "any",
    ),
    "glorot_normal": _Entry(_init.glorot_normal, (), _TRUNC, "2/(fan_in+fan_out)", "any"),
    "glorot_uniform": _Entry(
        _init.glorot_uniform,
        (),
        _UNIF,
        "2/(fan_in+fan_out); limit sqrt(6/(fan_in+fan_out))",
        "any",
    ),
    "he_normal": _Entry(_init.he_normal, (), _TRUNC, "2/fan_in", "any"),
    "he_uniform": _Entry(_init.he_uniform, (), _UNIF, "2/fan_in; limit sqrt(6/fan_in)", "any"),
    "lecun_normal": _Entry(_init.lecun_normal, (), _TRUNC, "1/fan_in", "any"),
    "lecun_uniform": _Entry(
        _init.lecun_uniform, (), _UNIF, "1/fan_in; limit sqrt(3/fan_in)", "any"
    ),
    "orthogonal": _Entry(
        _init.orthogonal,
        ("orthogonal_initializer",),
        "Haar (semi-)orthogonal",
        "gain^2/max(rows,cols); W^T W = gain^2 I",
        "any",
    ),
    "delta_orthogonal": _Entry(
        _init.delta_orthogonal,
        (),
        "orthogonal center tap",
        "gain^2/out at the center tap, else 0",
        "conv",
    ),
    "identity": _Entry(
        _init.identity,
        ("eye", "identity_initializer"),
        "deterministic gain * I",
        "gain^2 on the diagonal, else 0",
        "2d",
    ),
    "dirac": _Entry(
        _init.dirac,
        (),
        "deterministic identity conv",
        "1 at (center, d, d) per group, else 0",
        "conv",
    ),
    "sparse": _Entry(
        _init.sparse,
        (),
        "normal, ceil(sparsity*rows) zeros/column",
        "(1-ceil(sparsity*rows)/rows)*stddev^2",
        "2d",
    ),
    "torch_default": _Entry(
        _init.torch_default,
        (),
        _UNIF,
        "1/(3 fan_in); limit 1/sqrt(fan_in)",
        "any",
    ),
    "keras_default": _Entry(
        _init.keras_default,
        (),
        _UNIF,
        "2/(fan_in+fan_out); limit sqrt(6/(fan_in+fan_out))",
        "any",
    ),
    "flax_default": _Entry(_init.flax_default, (), _TRUNC, "1/fan_in", "any"),
    # torch.nn.init's names, with torch's distributions and defaults (the normals are untruncated).
    "kaiming_normal": _Entry(
        _init.kaiming_normal, (), "normal (torch)", "gain(nonlinearity, a)^2/fan", "any"
    ),
    "kaiming_uniform": _Entry(
        _init.kaiming_uniform,
        (),
        _UNIF + " (torch)",
        "gain(nonlinearity, a)^2/fan; limit gain*sqrt(3/fan)",
        "any",
    ),
    "xavier_normal": _Entry(
        _init.xavier_normal, (), "normal (torch)", "gain^2*2/(fan_in+fan_out)", "any"
    ),
    "xavier_uniform": _Entry(
        _init.xavier_uniform,
        (),
        _UNIF + " (torch)",
        "gain^2*2/(fan_in+fan_out); limit gain*sqrt(6/(fan_in+fan_out))",
        "any",
    ),
    # A bias initializer (needs fan_in, serves 1-D shapes): accepted by get() so that its
    # config round-trips, but not a kernel scheme, so not in names() / catalog().
    "torch_default_bias": _Entry(
        _init.torch_default_bias,
        (),
        _UNIF,
        "1/(3 fan_in); limit 1/sqrt(fan_in)",
        "any",
        listed=False,
    ),
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _normalize(name: str) -> str:
    """'HeNormal' -> 'he_normal'; 'kaiming_normal_' -> 'kaiming_normal'; 'he-normal' -> ..."""
    name = _CAMEL.sub("_", name.strip()).lower().replace("-", "_")
    return name.rstrip("_")


_LOOKUP: dict[str, str] = {}
for _name, _entry in _ENTRIES.items():
    for _spelling in (_name, *_entry.aliases):
        _LOOKUP[_normalize(_spelling)] = _name


def names() -> list[str]:
    """The canonical scheme names, in catalogue order (aliases are accepted by :func:`get`).

    Returns:
      A list of names; ``jinit.get(name)`` builds each with its default hyperparameters, except
      ``constant`` (needs ``value``) and ``sparse`` (needs ``sparsity``).
    """
    return [name for name, entry in _ENTRIES.items() if entry.listed]


def _defaults_text(factory: Callable[..., Initializer], show_axes: bool) -> str:
    parts = []
    for p in inspect.signature(factory).parameters.values():
        # The fan axes (in_axis=-2, out_axis=-1, batch_axis=()) are left out of the table.
        if p.name in ("in_axis", "out_axis", "batch_axis") and not show_axes:
            continue
        if p.default is inspect.Parameter.empty:
            parts.append(f"{p.name} (required)")
        else:
            default = p.default
            if isinstance(default, float) and len(repr(default)) > 8:
                default = float(f"{default:.4g}")
            parts.append(f"{p.name}={default!r}")
    return ", ".join(parts) if parts else "-"


def catalog() -> list[SchemeInfo]:
    """One :class:`SchemeInfo` per canonical scheme, in the order of :func:`names`.

    ``applies_to`` tells a sweep which schemes serve which layers: ``"any"`` schemes serve Dense
    and conv kernels, ``"2d"`` only 2-D matrices (``identity``, ``sparse``), ``"conv"`` only
    conv kernels (``dirac``, ``delta_orthogonal``).

    Returns:
      A list of SchemeInfo named tuples.
    """
    return [
        SchemeInfo(
            name=name,
            aliases=entry.aliases,
            distribution=entry.distribution,
            variance=entry.variance,
            defaults=_defaults_text(entry.factory, False),
            applies_to=entry.applies_to,
        )
        for name, entry in _ENTRIES.items()
        if entry.listed
    ]


#: torch.nn.init names whose torch defaults differ from the jinit (Keras) scheme of the same base name: refused,
#: with what to write instead, rather than silently drawing another distribution.
TORCH_REFUSED = {
    "normal": "torch.nn.init.normal_ draws N(0, 1) by default, jinit's normal N(0, 0.05^2) (Keras): write "
    "'normal(stddev=1.0)' for torch's default or 'normal' for Keras'",
    "uniform": "torch.nn.init.uniform_ draws U(0, 1) by default, jinit's uniform U(-0.05, 0.05) (Keras): write "
    "'uniform(minval=0.0, maxval=1.0)' for torch's default or 'uniform' for Keras'",
    "trunc_normal": "torch.nn.init.trunc_normal_ cuts N(0, 1) at -2 and 2 (absolute values), jinit's "
    "truncated_normal cuts N(0, 0.05^2) at 2 standard deviations and rescales (Keras): use 'truncated_normal' "
    "for Keras'; jinit has no absolute-bounds truncated normal",
}


#: Schemes that are another name for a distribution (a framework preset, the generic variance_scaling, torch's
#: names): where two schemes draw the same distribution, the other one is kept (see :func:`distinct_schemes`).
PRESETS = (
    "variance_scaling",
    "keras_default",
    "flax_default",
    "torch_default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
)


def distribution_key(init: Initializer) -> tuple:
    """What an initializer draws, without its name: equal keys draw the same arrays from the same key.

    ``keras_default()``, ``glorot_uniform()`` and ``xavier_uniform()`` have the same key; so have
    ``flax_default()``, ``lecun_normal()`` and ``variance_scaling()``.
    """
    if not isinstance(
        init, Initializer
    ):  # a registered custom scheme or rules: only equal to itself
        return ("custom", repr(init))
    if isinstance(init, _init.TorchVarianceScaling):
        init = init.as_variance_scaling()
    if isinstance(init, _init.VarianceScaling):
        hp = init.hyperparameters()
        return ("variance_scaling", *(repr(hp[k]) for k in sorted(hp)))
    return (type(init).__name__, *(f"{k}={v!r}" for k, v in init.hyperparameters().items()))


def distinct_schemes(schemes: list[str]) -> tuple[list[str], dict[str, str]]:
    """Each distribution once: the schemes of ``schemes`` (canonical names, default hyperparameters) that draw a
    distribution no other kept one draws, preferring a named scheme to a :data:`PRESETS` one.

    Returns:
      ``(kept, aliases)``: the kept names in the given order, and ``{left-out name: the kept name it equals}``.
    """
    order = sorted(schemes, key=lambda n: n in PRESETS)  # stable: named schemes first
    first: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    for name in order:
        key = distribution_key(get(name))
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return [n for n in schemes if n not in aliases], aliases


def canonical_name(name: str) -> str:
    """The canonical name of any accepted spelling, e.g. ``"HeNormal"`` -> ``"he_normal"``.

    A torch name means torch's scheme (``"kaiming_normal_"`` -> ``"kaiming_normal"``, an untruncated normal);
    the torch spellings whose defaults differ from jinit's scheme of the same name (``normal_``, ``uniform_``,
    ``trunc_normal_``, :data:`TORCH_REFUSED`) are refused with what to write instead.

    Raises:
      ValueError: unknown or refused name; the message names the closest valid names or the alternative.
    """
    if not isinstance(name, str):
        raise TypeError(f"initializer name must be a str, got {name!r}")
    key = _normalize(name)
    if key in TORCH_REFUSED and (name.strip().endswith("_") or key == "trunc_normal"):
        raise ValueError(f"initializer {name!r} is ambiguous: {TORCH_REFUSED[key]}")
    if key in _LOOKUP:
        return _LOOKUP[key]
    close = difflib.get_close_matches(key, list(_LOOKUP), n=3, cutoff=0.5)
    close = list(dict.fromkeys(close))
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(f"unknown initializer {name!r}; {hint}valid names: {', '.join(names())}")


def parse_call(spec: str) -> tuple[str, list[Any], dict[str, Any]]:
    """Parses ``"name"`` or ``"name(arg, key=literal, ...)"`` without evaluating anything."""
    text = spec.strip()
    if "(" not in text:
        return text, [], {}
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"cannot parse initializer spec {spec!r}: {e.msg}") from None
    except (MemoryError, RecursionError):  # nested too deeply for the parser
        raise ValueError(
            f"cannot parse initializer spec {spec[:40]!r}...: nested too deeply"
        ) from None
    if not isinstance(node, ast.Call):
        raise ValueError(
            f"initializer spec {spec!r} is not a name or a call like 'normal(stddev=0.01)'"
        )
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        func_name = func.attr  # allow "jinit.he_normal()"
    elif isinstance(func, ast.Name):
        func_name = func.id
    else:
        raise ValueError(f"initializer spec {spec!r}: expected a scheme name before '('")
    if any(kw.arg is None for kw in node.keywords):
        raise ValueError(f"initializer spec {spec!r}: '**' is not supported")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(
            f"initializer spec {spec!r}: hyperparameters must be literals "
            "(numbers, strings, tuples, lists)"
        ) from None
    return func_name, args, kwargs


def _build(name: str, args: list[Any], kwargs: Mapping[str, Any]) -> Initializer:
    canonical = canonical_name(name)
    factory = _ENTRIES[canonical].factory
    signature = inspect.signature(factory)
    unknown = [k for k in kwargs if k not in signature.parameters]
    if unknown:
        valid = ", ".join(signature.parameters) or "none"
        raise TypeError(
            f"{canonical}: unknown hyperparameter(s) {', '.join(unknown)}; valid: {valid}"
        )
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(
            f"{canonical}: {e}; hyperparameters: {_defaults_text(factory, True)}"
        ) from None
    if _ENTRIES[canonical].custom:
        arguments = dict(signature.bind(*args, **kwargs).arguments)
        return registered(canonical, arguments, _call_registered(canonical, factory, args, kwargs))
    try:
        return factory(*args, **kwargs)
    except OverflowError as e:  # e.g. stddev=10**400, which no float holds
        raise ValueError(f"{canonical}: a hyperparameter is out of range ({e})") from None


def _call_registered(name: str, factory: Callable[..., Any], args: list, kwargs: Mapping) -> Any:
    """What the factory registered as ``name`` returns; any error of it becomes a ValueError of one line naming the
    scheme, the call and the error (the factory's traceback is its ``__cause__``)."""
    try:
        return factory(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the user's factory may raise anything
        call = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        text = " ".join(str(e).split())
        what = f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__
        raise ValueError(
            f"the factory registered as {name!r} raised {what} when called as {name}({call}); fix the "
            f"factory or its hyperparameters (jinit.register({name!r}, ..., overwrite=True) replaces it)"
        ) from e


#: The longest initializer spec string :func:`get` parses (a call with a few hyperparameters is ~60 characters).
MAX_SPEC_LENGTH = 1000


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def register(
    name: str,
    factory: Callable[..., Any],
    *,
    overwrite: bool = False,
    distribution: str = "custom",
    variance: str = "-",
    applies_to: str = "custom",
) -> None:
    """Adds a named scheme that :func:`get`, :func:`names`, :func:`catalog`, ``jinit schemes`` and the CLI's
    ``--schemes`` know.

    ``factory(**hyperparameters)`` returns an initializer (a jinit Initializer, a ``jax.nn.initializers``
    callable or any function ``(key, shape, dtype) -> array``) or a :func:`jinit.rules` scheme. ``get(name)``
    calls it (``get("name(scale=3.0)")`` with literal hyperparameters, checked against its signature) and labels
    the result with the name (``"name(scale=3.0)"`` with arguments): that label keys a sweep's results.

    Args:
      name: a snake_case identifier, e.g. ``"my_init"``.
      factory: the function building the scheme.
      overwrite: replace a scheme already registered under ``name`` (or a catalogue scheme of that name).
      distribution: the ``distribution`` column of :func:`catalog`.
      variance: the ``variance`` column of :func:`catalog`.
      applies_to: ``"custom"`` (default: not part of ``schemes="all"``), or ``"any"`` / ``"2d"`` / ``"conv"`` to
        put the scheme into ``"all"`` for the models it serves.

    Raises:
      ValueError: ``name`` is not a snake_case identifier, or is taken (a scheme or an alias of one) and
        ``overwrite`` is False; a bad ``applies_to``.
      TypeError: ``factory`` is not callable.

    Example:
      >>> import jax, jinit
      >>> jinit.register("jax_he", lambda: jax.nn.initializers.he_normal())
      >>> jinit.get("jax_he")
      jax_he
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or name.endswith("_"):
        raise ValueError(
            f"register: name must be a snake_case identifier such as 'my_init', got {name!r}"
        )
    if name in ("all", "lsuv", "rules", "scheme"):
        raise ValueError(f"register: {name!r} is reserved; choose another name")
    if not callable(factory):
        raise TypeError(f"register: factory must be callable, got {factory!r}")
    if applies_to not in ("custom", "any", "2d", "conv"):
        raise ValueError(
            f"register: unknown applies_to {applies_to!r}; valid: custom, any, 2d, conv"
        )
    taken = _LOOKUP.get(name)
    if taken is not None and taken != name:
        raise ValueError(
            f"register: {name!r} is an alias of the scheme {taken!r}; choose another name"
        )
    if taken is not None and not overwrite:
        raise ValueError(
            f"register: a scheme named {name!r} exists already; pass overwrite=True to replace it"
        )
    if taken is not None:  # the old entry's aliases no longer name it
        for spelling in [k for k, v in _LOOKUP.items() if v == name and k != name]:
            del _LOOKUP[spelling]
    _ENTRIES[name] = _Entry(factory, (), distribution, variance, applies_to, custom=True)
    _LOOKUP[name] = name


def get(spec: str | Mapping[str, Any] | Initializer, **overrides: Any) -> Initializer:
    """Returns the Initializer a spec names, with ``overrides`` applied.

    Args:
      spec: a name in Keras / torch / JAX spelling (``"he_normal"``, ``"HeNormal"``,
        ``"kaiming_normal"`` (torch's), ``"GlorotUniform"``, ``"random_normal"``, ``"eye"``, ...); a call
        string with literal hyperparameters (``"normal(stddev=0.01)"``, e.g. ``repr(init)``); a
        config dict ``{"name": ..., **hyperparameters}`` (``init.config()``); or an Initializer.
      **overrides: hyperparameters that replace those of the spec.

    Returns:
      An Initializer. An Initializer spec without overrides is returned as is. A name added by
      :func:`register` gives what its factory returns, labelled with the name (a
      :class:`jinit.rules.Scheme` or :class:`jinit.rules.Rules`).

    Raises:
      ValueError: unknown name (the message names the closest valid ones) or bad value (also a value whose
        draws would overflow float32); a registered factory that raises (the message names the call).
      TypeError: a spec of another type, or unknown hyperparameters.

    Example:
      >>> jinit.get("he_normal", distribution="normal")
      he_normal(scale=2.0, mode='fan_in', distribution='normal')
      >>> jinit.get("kaiming_normal_(mode='fan_out', nonlinearity='relu')")
      kaiming_normal(a=0.0, mode='fan_out', nonlinearity='relu')
    """
    if isinstance(spec, Initializer):
        if not overrides:
            return spec
        return _build(spec.name, [], {**spec.hyperparameters(), **overrides})
    if isinstance(spec, Mapping):
        params = dict(spec)
        if "name" not in params:
            raise ValueError(f"initializer config {spec!r} has no 'name' key")
        name = params.pop("name")
        return _build(name, [], {**params, **overrides})
    if isinstance(spec, str):
        if len(spec) > MAX_SPEC_LENGTH:
            raise ValueError(
                f"initializer spec {spec[:40]!r}... is {len(spec)} characters long; at most "
                f"{MAX_SPEC_LENGTH} are parsed"
            )
        name, args, kwargs = parse_call(spec)
        return _build(name, args, {**kwargs, **overrides})
    raise TypeError(
        f"expected an initializer name, config dict or jinit Initializer, got {spec!r} "
        f"of type {type(spec).__name__}"
    )


def format_catalog(rows: list[SchemeInfo] | None = None) -> str:
    """The catalogue as a plain-text table (what ``jinit schemes`` prints).

    Args:
      rows: the rows to show; default :func:`catalog`.

    Returns:
      The table, one scheme per line after a header and a rule.
    """
    rows = catalog() if rows is None else rows
    header = ("name", "aliases", "distribution", "variance", "defaults", "applies_to")
    return format_table(
        header,
        [
            (
                r.name,
                ", ".join(r.aliases) or "-",
                r.distribution,
                r.variance,
                r.defaults,
                r.applies_to,
            )
            for r in rows
        ],
    )


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows of text as a plain table: columns padded to their widest cell, a rule under the header."""
    cells = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cut(value: Any, n: int = 80) -> str:
    """``repr(value)``, cut to ``n`` characters (a 100,000-character spec is not repeated in a message)."""
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


def parse_schemes(text: str) -> tuple[str, ...]:
    """Splits a comma-separated scheme list, keeping commas inside parentheses.

    ``"zeros,normal(stddev=0.1, mean=0.0),he_normal"`` -> ``("zeros", "normal(stddev=0.1, mean=0.0)",
    "he_normal")``. ``"all"`` stays ``("all",)`` (expanded by :func:`resolve_schemes`).

    Raises:
      ValueError: for an empty list, an empty item (``"a,,b"``, a trailing comma) or unbalanced parentheses.
    """
    if not isinstance(text, str):
        raise TypeError(f"schemes must be a string or a sequence of strings, got {_cut(text)}")
    items, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in scheme list {_cut(text)}")
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in scheme list {_cut(text)}")
    items.append("".join(cur).strip())
    if any(not item for item in items):
        raise ValueError(
            f"empty scheme name in scheme list {_cut(text)} (check for ',,' or a trailing comma)"
        )
    return tuple(items)
