"""Scheme specs resolved into labelled initializers: names in any spelling, calls such as ``"normal(stddev=0.1)"``,
``"all"``, the data-dependent ``"lsuv"``, :func:`jinit.rules` and :func:`jinit.scheme` values
(:func:`resolve_schemes`), and which catalogue schemes apply to a model (:func:`applicable_schemes`).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from jinit.registry import parse_schemes

_log = logging.getLogger("jinit.sweep")


def short_repr(value: Any, n: int = 80) -> str:
    """``repr(value)``, cut to ``n`` characters (a 100,000-character spec is not repeated in a message)."""
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


def initializer(spec: Any, what: str):
    """``jinit.get(spec)``; a bad spec raises ValueError/TypeError saying it is the ``what`` (``"scheme"``,
    ``"bias_init"``)."""
    import jinit

    try:
        return jinit.get(spec)
    except (ValueError, TypeError) as e:
        raise type(e)(f"bad {what} {short_repr(spec)}: {e}") from None


def applicable_schemes(model: str | None = "mlp", *, distinct: bool = True) -> tuple[str, ...]:
    """Every catalogue scheme that applies to every kernel of ``model`` (what ``--schemes all`` trains): the
    ``"any"`` schemes, plus the ``"2d"`` ones (identity, ...) for an MLP, whose kernels are all 2-D. A CNN has
    Dense kernels besides its convolutions, so the conv-only schemes (dirac, delta_orthogonal) do not apply to it,
    nor do the 2-D-only ones; ``None`` (a custom model) gets the ``"any"`` ones. Schemes that need a
    hyperparameter without default (``constant``) are left out. With ``distinct`` (the default) each distribution
    is trained once: a scheme that draws the same arrays as another (``keras_default`` = ``glorot_uniform``,
    ``flax_default`` = ``variance_scaling`` = ``lecun_normal``, torch's ``xavier_uniform`` / ``kaiming_uniform``
    = ``glorot_uniform`` / ``he_uniform``) is left out (:func:`jinit.registry.distinct_schemes`)."""
    from jinit import registry

    out = _applicable(model)
    return tuple(registry.distinct_schemes(out)[0]) if distinct else out


def schemes_left_out_of_all(model: str | None = "mlp") -> dict[str, str]:
    """The schemes ``--schemes all`` leaves out because they draw the same distribution as one it keeps:
    ``{left out: kept}``, e.g. ``{"keras_default": "glorot_uniform", ...}``."""
    from jinit import registry

    return registry.distinct_schemes(list(_applicable(model)))[1]


def _applicable(model: str | None) -> tuple[str, ...]:
    from jinit import registry

    kinds = {"any"} | ({"2d"} if model == "mlp" else set())
    out = []
    for row in registry.catalog():
        if row.applies_to not in kinds:
            continue
        try:
            registry.get(row.name)
        except (
            ValueError,
            TypeError,
        ):  # needs a hyperparameter without default (e.g. constant's value)
            continue
        out.append(row.name)
    return tuple(out)


def resolve_schemes(
    schemes: Sequence[Any], *, model: str | None = "mlp", quiet: bool = False
) -> list[tuple[str, Any]]:
    """Turns scheme specs into ``(label, Initializer)`` pairs.

    The label is the canonical name (``jinit.get(spec).name``) when the initializer equals that name's default
    (so ``"he_normal"``, ``"HeNormal"`` and ``jinit.he_normal()`` are all the scheme ``"he_normal"``; torch's
    ``"kaiming_normal_"`` is the scheme ``"kaiming_normal"``), else the initializer's ``repr``
    (``"normal(stddev=0.1, mean=0.0)"``). ``"all"`` expands to :func:`applicable_schemes` (each distribution
    once; the aliases it leaves out are logged, unless ``quiet``). A :func:`jinit.rules` or :func:`jinit.scheme`
    value is labelled by its ``label``.

    Raises:
      ValueError: for an empty list, an unknown scheme (with the closest names) or two specs naming the same scheme.
    """

    if isinstance(schemes, str):
        schemes = parse_schemes(schemes)
    schemes = list(schemes)
    if any(isinstance(s, str) and s.strip().lower() == "all" for s in schemes):
        if len(schemes) != 1:
            raise ValueError(f"'all' cannot be combined with other schemes: {schemes!r}")
        schemes = list(applicable_schemes(model))
        same = ", ".join(f"{a} = {b}" for a, b in schemes_left_out_of_all(model).items())
        (_log.debug if quiet else _log.info)(
            f"schemes 'all': {len(schemes)} distinct distributions; left out as the same distribution as a "
            f"kept scheme: {same}"
        )
    if not schemes:
        raise ValueError("schemes is empty; give at least one initializer name")
    out, seen = [], {}
    for spec in schemes:
        init = resolve_scheme(spec)
        try:
            default = resolve_scheme(init.name)
        except (ValueError, TypeError):
            default = None
        label = init.name if init == default else repr(init)
        if label in seen:
            raise ValueError(f"schemes {seen[label]!r} and {spec!r} are the same scheme {label!r}")
        seen[label] = spec
        out.append((label, init))
    return out


def resolve_scheme(spec: Any):
    """An Initializer, or a :class:`jinit.propagation.LSUVScheme` for ``"lsuv"`` specs."""
    from jinit import propagation
    from jinit.rules import as_scheme

    # jinit.rules(...) / jinit.scheme(...) values; a bare function is refused
    custom = as_scheme(spec)
    if custom is not None:
        return custom
    if propagation.is_lsuv_spec(spec):
        try:
            return propagation.lsuv_scheme(spec)
        except (ValueError, TypeError) as e:
            raise type(e)(f"bad scheme {short_repr(spec)}: {e}") from None
    try:
        return initializer(spec, "scheme")
    except ValueError as e:
        from jinit.modern import unknown_name_hint

        hint = unknown_name_hint(spec)
        if hint is not None:
            raise ValueError(f"bad scheme {short_repr(spec)}: {hint}") from None
        if isinstance(spec, str) and difflib.get_close_matches(
            spec.split("(")[0], ["lsuv"], cutoff=0.6
        ):
            raise ValueError(f"{e} (or the data-dependent scheme 'lsuv')") from None
        raise


def is_recorded_function(spec: Any) -> bool:
    """Whether ``spec`` is what ``config.json`` records of a :func:`jinit.scheme` function (``{"name": "scheme",
    "label": ...}``), or of :func:`jinit.rules` that use one: a label, which names the scheme in a loaded run
    folder but cannot be built again (training it needs the scheme itself)."""
    if not isinstance(spec, Mapping):
        return False
    if spec.get("name") == "scheme":
        return True
    rules = spec.get("rules") if spec.get("name") == "rules" else None
    return isinstance(rules, list) and any(
        isinstance(r, list | tuple) and len(r) == 2 and is_recorded_function(r[1]) for r in rules
    )


def kernel_init_of(scheme: Any):
    """The kernel initializer a model of ``scheme`` is built with (LSUV starts from its ``kernel_init``)."""
    return getattr(scheme, "kernel_init", scheme)


def is_lsuv(scheme: Any) -> bool:
    """Whether ``scheme`` is the data-dependent LSUV scheme (:class:`jinit.propagation.LSUVScheme`)."""
    from jinit import propagation

    return isinstance(scheme, propagation.LSUVScheme)
