"""The sweep's configuration: :class:`SweepConfig`, frozen and validated when it is made (before anything is
loaded or compiled), and its JSON form (``config.json``).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jinit import files as files_lib
from jinit import models as models_lib
from jinit import train as train_lib
from jinit.registry import parse_schemes
from jinit.sweep import hyper, precision
from jinit.sweep import schemes as schemes_lib

_log = logging.getLogger("jinit.sweep")

#: The schemes of the default sweep: the classic comparison of the Keras initializer tutorials.
DEFAULT_SCHEMES = (
    "zeros",
    "normal",
    "uniform",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "orthogonal",
)


VARY = ("init", "data", "both")

#: Config fields that say where things are, not what the sweep is: never written to ``config.json`` (a run folder
#: carries no absolute path of the machine it was made on) and never compared (the same data in another folder is
#: the same sweep; the sweep's fingerprint hashes the data itself).
LOCATION_FIELDS = ("data_dir",)


MODEL_NAMES = models_lib.MODELS


_AXES = ("learning_rate", "weight_decay", "init_scale")


def _closest(name: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Valid choices: {', '.join(choices)}."


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything that defines a sweep (frozen; written to ``config.json``).

    Attributes:
      dataset: ``digits`` (embedded, offline), ``mnist``, ``fashion_mnist``, ``cifar10``, ``mnist1d``, or any dataset
        tensorflow-datasets has prepared locally (see :func:`jinit.data.load`, which names a bad name). Ignored
        when :func:`run` gets ``data=`` (the run folder then records that dataset's name).
      data_dir: where the dataset's files are (see :func:`jinit.data.load`).
      model: ``"mlp"`` or ``"cnn"`` (ignored when :func:`run` gets ``make_model``).
      hidden: hidden widths of the MLP (the classic Keras tutorial: ``(128, 64)``).
      channels: convolution channels of the CNN.
      activation: ``relu, tanh, sigmoid, gelu, selu, leaky_relu, linear``.
      schemes: initializer specs for the kernels (names in any spelling, calls such as ``"normal(stddev=0.1)"``,
        or ``"all"`` for every catalogue scheme that applies to the model); a comma-separated string is split.
        ``"lsuv"`` (or ``"lsuv(tol=0.1, batch_size=512)"``) is the data-dependent LSUV scheme
        (:class:`jinit.propagation.LSUVScheme`: orthogonal, then rescaled on :func:`lsuv_batch`); it is not part
        of ``"all"``. Per-layer :func:`jinit.rules` values and labelled functions (:func:`jinit.scheme`) are schemes
        too, labelled by their ``label``.
      bias_init: the initializer of every bias (same for all models).
      seeds: number of seeds per scheme (seed numbers ``0 .. seeds - 1``).
      seed: the root seed.
      epochs: training epochs.
      batch_size: training batch size (``n_train // batch_size`` steps per epoch; the remainder is dropped).
      optimizer: ``adam, sgd, momentum, adamw, rmsprop`` (optax).
      learning_rate: the optimizer's step size, or a tuple of step sizes: a grid axis (see below).
      weight_decay: None (the optimizer's default: none; optax's 1e-4 for ``adamw``), a number, or a tuple of
        numbers (an axis). ``adamw``: its decoupled weight decay; ``adam, sgd, momentum, rmsprop``: L2 added to the
        gradient before the optimizer (``optax.add_decayed_weights``, PyTorch's ``weight_decay``).
      init_scale: a multiplier on every kernel's initial values (each parameter named ``kernel``, after the
        scheme's initialization, rules and LSUV included), or a tuple of multipliers (an axis). Default 1.0.
      vary: which randomness changes with the seed: ``"init"`` (default: all models see the same batches),
        ``"data"`` (data order and dropout; the init depends on the scheme only) or ``"both"``.
      eval_every: also evaluate every that many steps within each epoch (``None``: at epoch ends only).
      target_accuracy: accuracy for the steps-to-target columns of the summary.
      train_size: use only the first ``train_size`` training examples (smoke tests).
      test_size: use only the first ``test_size`` test examples.
      val_size: hold out this many training examples (after ``train_size``) as the validation set, evaluated
        beside the test set in the same compiled epoch (``val_*`` columns). The held-out examples are
        ``jinit.data.split_validation(..., seed=seed)``: a fixed permutation drawn from the sweep's root ``seed``,
        the same for every model (and every process and rerun). None (default): no validation split, unless the
        dataset given to :func:`run` has one.
      val_fraction: or hold out this fraction of the training examples (``round(val_fraction * n_train)``).
      max_models_per_chunk: cap on the number of models trained at once (rounded down to a multiple of the
        models per device; at least one device's worth). It changes the layout only, never a model's numbers.
      models_per_device: how many models each compiled program trains at once on one device (``None``: chosen
        from the model's size and the device kind, :func:`models_per_device`). Part of a model's arithmetic, like
        the device kind: the same value gives the same models in any layout.
      max_memory: memory budget in bytes per device for one chunk (default: from the device, see module doc).
      eval_batch_size: test-set batch size of the evaluation.
      compute_dtype: ``"float32"`` (default) or ``"bfloat16"``: the dtype of the models' activations and matmuls
        (Flax's ``dtype``; the parameters stay float32), or a tuple of both (a precision dimension, see below).
      state_dtype: ``"float32"`` (default) or ``"bfloat16"``: the dtype the optimizer's moments are stored in, or
        a tuple of both.

    Grid axes: ``learning_rate``, ``weight_decay`` and ``init_scale`` each take one value or a tuple of values;
    the grid is ``schemes x learning_rate x weight_decay x init_scale x seeds`` (scheme-major, the seed fastest),
    all trained by one compiled program (:mod:`jinit.sweep.hyper`). A value does not enter a model's keys: models
    that differ only in a value start from the same weights and see the same batches (paired comparisons).
    ``config.json`` keeps a single value as a scalar.

    Precision dimensions (:mod:`jinit.sweep.precision`): ``compute_dtype`` and ``state_dtype`` each take one dtype
    or a tuple of dtypes. A dtype changes the program, so each precision is its own block of the grid (``compute_dtype
    x state_dtype x`` the grid above), trained by its own compiled program; a precision does not enter the keys and
    every model starts from the weights the float32 model draws, so models that differ only in their precision are
    paired by seed like the values of an axis.

    Every field is checked when the config is made (:meth:`validate`): a bad value raises ValueError/TypeError
    naming it, before anything is loaded or compiled.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] = (128, 64)
    channels: tuple[int, ...] = (32, 64)
    activation: str = "relu"
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    bias_init: str = "zeros"
    seeds: int = 5
    seed: int = 0
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float | tuple[float, ...] = 1e-3
    vary: str = "init"
    eval_every: int | None = None
    target_accuracy: float | None = None
    train_size: int | None = None
    test_size: int | None = None
    val_size: int | None = None
    val_fraction: float | None = None
    max_models_per_chunk: int | None = None
    max_memory: int | None = None
    eval_batch_size: int = 1000
    models_per_device: int | None = None
    weight_decay: float | tuple[float, ...] | None = None
    init_scale: float | tuple[float, ...] = 1.0
    compute_dtype: str | tuple[str, ...] = "float32"
    state_dtype: str | tuple[str, ...] = "float32"

    def __post_init__(self):
        if isinstance(self.schemes, str):
            object.__setattr__(self, "schemes", parse_schemes(self.schemes))
        elif isinstance(self.schemes, Sequence):
            object.__setattr__(self, "schemes", tuple(self.schemes))
        for name in ("hidden", "channels", "learning_rate", "weight_decay", "init_scale"):
            value = getattr(self, name)
            if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
                value = tuple(value)
                # one value given as a 1-tuple is that value (the same sweep, the same config.json)
                if name in _AXES and len(value) == 1:
                    value = value[0]
                object.__setattr__(self, name, value)
        for (
            name
        ) in precision.DIMENSIONS:  # "bf16", jnp.bfloat16 -> "bfloat16"; a 1-tuple is its value
            object.__setattr__(self, name, precision.normalized(getattr(self, name)))
        if self.data_dir is not None and isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if isinstance(
            self.dataset, str
        ):  # the spellings jinit.data.load accepts: "MNIST", "fashion-mnist"
            from jinit import data as data_lib

            try:
                object.__setattr__(self, "dataset", data_lib.canonical_name(self.dataset))
            except (ValueError, TypeError):
                pass  # the loader names the valid choices
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values (a rules / custom scheme as its ``config()``)."""
        from jinit.rules import to_json

        schemes = tuple(to_json(s) for s in self.schemes)
        return files_lib.jsonable(dataclasses.asdict(dataclasses.replace(self, schemes=schemes)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise ValueError)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(
                f"unknown SweepConfig field(s) {sorted(unknown)}; valid: {sorted(fields)}"
            )
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def validate(self) -> None:
        """Checks every field; raises ValueError/TypeError naming the bad value (and the valid choices).

        Runs before any data is loaded or anything compiled. (That ``batch_size`` fits the training set is
        checked by :func:`run` right after loading the data, still before compiling.)
        """
        _check_dataset_name(self.dataset)
        custom = is_custom_model(self.model)
        if not custom and self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}.{_closest(self.model, MODEL_NAMES)}")
        if not custom:
            models_lib.activation(self.activation)
        for name in () if custom else ("hidden", "channels"):
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or not value
                or not all(is_int(v) and v >= 1 for v in value)
            ):
                raise ValueError(
                    f"{name} must be a non-empty sequence of positive ints, got {value!r}"
                )
        check_int("seeds", self.seeds, minimum=1, maximum=2**32)  # seed numbers are uint32
        check_int("seed", self.seed, minimum=0, maximum=2**63 - 1)  # what jax.random.PRNGKey takes
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        for name in (
            "eval_every",
            "train_size",
            "test_size",
            "max_models_per_chunk",
            "max_memory",
            "models_per_device",
        ):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        _check_validation_split(self.val_size, self.val_fraction)
        hyper.check(self)
        precision.check(self)
        train_lib.make_optimizer(self.optimizer, hyper.values(self, "learning_rate")[0])
        if self.vary not in VARY:
            raise ValueError(f"unknown vary {self.vary!r}.{_closest(self.vary, VARY)}")
        if self.target_accuracy is not None:
            t = self.target_accuracy
            if (
                isinstance(t, bool | np.bool_)
                or not isinstance(t, int | float | np.integer | np.floating)
                or not 0.0 <= t <= 1.0
            ):
                raise ValueError(f"target_accuracy must be a fraction in [0, 1], got {t!r}")
        # a recorded jinit.scheme function is a label (a loaded run folder); run() refuses to train it again
        specs = [s for s in self.schemes if not schemes_lib.is_recorded_function(s)]
        if specs or not self.schemes:
            schemes_lib.resolve_schemes(specs, model=self.model, quiet=True)
        schemes_lib.initializer(self.bias_init, "bias_init")


CUSTOM_MODEL_PREFIX = "custom:"


def is_custom_model(model: Any) -> bool:
    """Whether a config's ``model`` records your own model (``"custom:<class name>"``, see :func:`recorded`)."""
    return isinstance(model, str) and model.startswith(CUSTOM_MODEL_PREFIX)


def recorded(config: SweepConfig, model_info: Any) -> SweepConfig:
    """The config a sweep of your own model records (config.json, ``result.config``, plot titles): ``model`` is
    ``"custom:<class name>"`` and the fields of jinit's built-in models, which that sweep did not use (``hidden``,
    ``channels``, ``activation``), are None; the model itself is described in the run's ``meta["model"]``."""
    name = getattr(model_info, "name", None) or "model"
    return dataclasses.replace(
        config, model=CUSTOM_MODEL_PREFIX + name, hidden=None, channels=None, activation=None
    )


def _check_dataset_name(name: Any) -> None:
    """The dataset's type only: any name :func:`jinit.data.load` accepts is valid (a tensorflow-datasets one too),
    and the loader names a bad one, listing the built-in names, when :func:`run` loads it (before compiling)."""
    if not isinstance(name, str) or not name.strip():
        from jinit import data as data_lib

        raise TypeError(
            f"dataset must be a dataset name (one of {', '.join(data_lib.names())}, or one tensorflow-datasets "
            f"has prepared), got {schemes_lib.short_repr(name)}; for your own arrays pass run(..., data=jinit.data.from_arrays(...))"
        )


def _check_validation_split(val_size: Any, val_fraction: Any) -> None:
    if val_size is not None and val_fraction is not None:
        raise ValueError(
            f"give at most one of val_size ({val_size!r}) and val_fraction ({val_fraction!r})"
        )
    if val_size is not None:
        check_int("val_size", val_size, minimum=1)
    if val_fraction is not None:
        f = val_fraction
        if (
            isinstance(f, bool | np.bool_)
            or not isinstance(f, int | float | np.integer | np.floating)
            or not 0.0 < float(f) < 1.0
        ):
            raise ValueError(f"val_fraction must be a fraction in (0, 1), got {f!r}")


def is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> None:
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
