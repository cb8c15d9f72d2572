"""The residual MLP and the transformer of :mod:`jinit.models` as sweep models by name, with the schemes of
:mod:`jinit.modern` by name: what ``jinit sweep --model resmlp|transformer`` trains (the command line only parses
its flags and calls :func:`preset`).

* ``resmlp``: :class:`jinit.models.ResidualMLP` (``--depth`` blocks of ``--width`` units, 2 Dense layers per
  branch) with a scalar gate on every branch (built as 1: the plain block, which ReZero and SkipInit set to 0) and,
  without a norm, Fixup's scalar biases (built as 0); ``--norm layer|batch`` puts a norm after each branch layer
  (zero-gamma's). On the dataset of the sweep (default ``digits``).
* ``transformer``: :class:`jinit.models.LastTokenTransformer` (pre-LN, ``--depth`` blocks of width ``--width``, 2
  heads) on associative recall (:func:`jinit.data.associative_recall`: 2000 training and 500 test sequences of 4
  key-value pairs over 32 tokens, offline and seeded), classified from the last position.

A modern scheme's name becomes its :class:`jinit.Rules` for that model (:func:`jinit.modern.named`: ``fixup`` is
``jinit.fixup(depth)``); the other names are the catalogue's. :func:`preset` also says what a combination means
(:attr:`Preset.notes`): Fixup on a network with normalization, ReZero and SkipInit in one sweep (the same draws),
muP's init without muP's learning rates, DeepNet's init without DeepNorm.

Example:
    >>> from jinit import presets, sweep
    >>> p = presets.preset("resmlp", ["fixup", "he_normal"], depth=4)
    >>> [str(s) for s in p.schemes]
    ['fixup(n_blocks=4, m=2)', 'he_normal']
    >>> result = sweep.run(sweep.SweepConfig(schemes=p.schemes, seeds=2, epochs=1), model=p.model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from jinit import models as models_lib
from jinit import modern
from jinit.registry import parse_schemes

__all__ = ["DEFAULTS", "MODELS", "NORMS", "Preset", "preset"]

#: The models :func:`preset` builds.
MODELS = ("resmlp", "transformer")

#: ``--norm`` choices of ``resmlp``.
NORMS = ("none", "layer", "batch")

#: Depth and width of each model when not given.
DEFAULTS = {"resmlp": {"depth": 4, "width": 64}, "transformer": {"depth": 2, "width": 32}}

#: The associative-recall data of ``transformer``.
RECALL = {"n_train": 2000, "n_test": 500, "vocab": 32, "n_pairs": 4}

_BRANCH_LAYERS = 2


class Preset(NamedTuple):
    """A model and its schemes, ready for :func:`jinit.sweep.run`.

    Attributes:
      model: the factory ``(kernel_init, bias_init) -> nn.Module`` (``run(..., model=)``).
      schemes: the scheme specs, modern names made :class:`jinit.Rules` (``SweepConfig(schemes=)``).
      data: the :class:`jinit.data.Dataset` to pass as ``run(..., data=)`` (the transformer's associative recall),
        or None: the config's dataset (``resmlp``).
      notes: what the combination of model and schemes means, one line each (empty when nothing needs saying).
    """

    model: Callable
    schemes: tuple
    data: Any
    notes: tuple[str, ...]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _notes(model: str, names: list[str], norm: str) -> list[str]:
    out = []
    if "fixup" in names and norm != "none":
        out.append(
            f"fixup is the init of residual networks WITHOUT normalization (Fixup's point is to train them "
            f"without it); this network has a {norm} norm after each branch layer, so fixup here is not "
            "the paper's setting (drop --norm)"
        )
    if "rezero" in names and "skipinit" in names:
        out.append(
            "rezero and skipinit draw the same initial values on this model (every branch's scalar gate at 0, "
            "the kernels he_normal): their models are identical, seed for seed; the two papers differ in the "
            "networks they propose it for, not in the init"
        )
    for name in ("rezero", "skipinit"):
        if name in names and norm != "none":
            out.append(
                f"{name} is proposed for residual networks without normalization; this one has a {norm} norm"
            )
    if "mup" in names:
        out.append(
            "mup here is muP's init only: muP's per-layer learning rates are jinit.mup_optimizer, given in "
            "Python as sweep.run(..., optimizer=lambda lr: jinit.mup_optimizer(lr, params, base_params))"
        )
    if model == "transformer" and "deepnet" in names:
        out.append(
            "deepnet here is DeepNet's init in a pre-LN transformer; the paper's network is post-LN with "
            "DeepNorm's alpha (Python: models.Transformer(deepnorm_alpha=jinit.deepnet_constants(L)[0]))"
        )
    return out


def _network(model: str, depth: int, width: int, norm: str, num_classes: int) -> Callable:
    if model == "resmlp":
        return models_lib.factory(
            "resmlp",
            width=width,
            depth=depth,
            num_classes=num_classes,
            branch_layers=_BRANCH_LAYERS,
            norm=None if norm == "none" else norm,
            gate="scalar",
            scalar_bias=norm == "none",
        )
    if width % 2:
        raise ValueError(f"the transformer's width must be even (2 heads), got {width}")
    return models_lib.factory(
        "last_token_transformer",
        vocab=RECALL["vocab"],
        d_model=width,
        n_layers=depth,
        n_heads=2,
        max_len=2 * RECALL["n_pairs"] + 1,
    )


def _data(model: str, dataset: str | None, data_dir: Any, seed: int) -> tuple[Any, int]:
    """The data :func:`jinit.sweep.run` must be given (None: the config's dataset) and the number of classes."""
    from jinit import data as data_lib

    if model == "transformer":
        if dataset not in (None, "associative_recall"):
            raise ValueError(
                f"--model transformer trains on token sequences (associative_recall), not on {dataset!r}: drop "
                "--dataset"
            )
        ds = data_lib.associative_recall(seed=seed, **RECALL)
        return ds, int(ds.num_classes)
    return None, int(data_lib.load(dataset or "digits", data_dir=data_dir).num_classes)


def preset(
    model: str,
    schemes: str | Sequence[Any],
    *,
    depth: int | None = None,
    width: int | None = None,
    norm: str | None = None,
    base_width: int | None = None,
    dataset: str | None = None,
    data_dir: Any = None,
    seed: int = 0,
) -> Preset:
    """The model ``model`` (``"resmlp"`` or ``"transformer"``, see the module doc) and ``schemes`` for it.

    Args:
      model: ``"resmlp"`` or ``"transformer"``.
      schemes: scheme specs (a comma-separated string or a list): catalogue names and calls, and the names of
        :data:`jinit.modern.MODERN` (``fixup``, ``rezero``, ``skipinit``, ``zero_gamma``, ``gpt2``, ``deepnet``,
        ``mup``), made for this model.
      depth: residual blocks (default 4 for resmlp, 2 for transformer).
      width: units per block (resmlp, default 64) or ``d_model`` (transformer, default 32).
      norm: ``"none"`` (default), ``"layer"`` or ``"batch"`` (resmlp only).
      base_width: muP's base width (needed by ``mup``).
      dataset: the dataset of ``resmlp`` (default ``digits``: the sweep's config must name the same one; read here
        for its number of classes); ``transformer`` trains on associative recall.
      data_dir: where the dataset's files are (:func:`jinit.data.load`).
      seed: the seed of the associative-recall data (the sweep's root seed).

    Returns:
      A :class:`Preset`.

    Raises:
      ValueError: an unknown model or norm, a bad size, a scheme written for the other model, ``zero_gamma``
        without a norm, ``mup`` without a base width, ``--norm`` for the transformer, a dataset of images for the
        transformer.
    """
    if model not in MODELS:
        raise ValueError(f"unknown preset model {model!r}; valid: {', '.join(MODELS)}")
    depth = _positive("depth", DEFAULTS[model]["depth"] if depth is None else depth)
    width = _positive("width", DEFAULTS[model]["width"] if width is None else width)
    if norm is not None and model != "resmlp":
        raise ValueError(f"--norm applies to --model resmlp, not {model}")
    norm = "none" if norm is None else norm
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if base_width is not None:
        _positive("base_width", base_width)
    specs = parse_schemes(schemes) if isinstance(schemes, str) else tuple(schemes)
    names = [s.strip().lower() for s in specs if isinstance(s, str)]
    if "zero_gamma" in names and norm == "none":
        raise ValueError(
            "zero_gamma zeroes the scale of each branch's last norm: give the network a norm, --norm layer or "
            "--norm batch"
        )
    out = tuple(
        modern.named(
            s.strip().lower(),
            model=model,
            depth=depth,
            branch_layers=_BRANCH_LAYERS,
            base_width=base_width,
        )
        if isinstance(s, str) and s.strip().lower() in modern.MODERN
        else s
        for s in specs
    )
    data, num_classes = _data(model, dataset, data_dir, seed)
    factory = _network(model, depth, width, norm, num_classes)
    return Preset(factory, out, data, tuple(_notes(model, names, norm)))
