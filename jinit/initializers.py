"""The initializer catalogue: small factories that return Initializer *values*.

Every scheme is a factory ``jinit.<name>(**hyperparameters) -> Initializer``. The returned value
is a frozen dataclass that is also a pure function ``init(key, shape, dtype=None,
out_sharding=None) -> jax.Array``: it satisfies the :class:`jax.nn.initializers.Initializer`
protocol, so it drops into ``flax.linen.Dense(128, kernel_init=jinit.he_normal())`` and
``flax.nnx.Linear(..., kernel_init=jinit.he_normal(), rngs=nnx.Rngs(0))``. Being a value,
it has a readable ``repr`` (``he_normal(scale=2.0, mode='fan_in',
distribution='truncated_normal')``), equal configurations compare and hash equal (usable as static
``jax.jit`` arguments and as dict keys), and ``init.config()`` is a JSON-able dict that
:func:`jinit.get` turns back into an equal initializer. Same key -> same array; every initializer
works under ``jax.jit`` (static shape) and ``jax.vmap`` over keys.

Example:
    >>> import jax, jinit
    >>> init = jinit.he_normal()
    >>> w = init(jax.random.PRNGKey(0), (784, 128))
    >>> w.shape, w.dtype
    ((784, 128), dtype('float32'))
    >>> jinit.get(init.config()) == init
    True

Layout conventions (Flax):
    Dense kernels are ``(in, out)``; conv kernels are ``(*spatial, in, out)`` (HWIO). With the
    default ``in_axis=-2, out_axis=-1``, ``fan_in = in * prod(spatial)`` and
    ``fan_out = out * prod(spatial)`` (:func:`compute_fans`). Shapes must be at least 2-D and have
    no zero-size axis: a bias is initialized with ``zeros``/``constant``/``normal``/... or
    :func:`torch_default_bias`, never with a fan-based scheme.

Ranges:
    Hyperparameters are finite floats: ``normal(stddev=10**400)`` is a ValueError naming the value. A scheme whose
    values could overflow float32 (jinit's, Flax's and every sweep's dtype) is refused when it is made:
    ``normal(stddev=1e308)`` is a ValueError (it used to pass, then print numpy's RuntimeWarnings about the cast and
    draw inf). Each call checks again for its dtype (``float16`` holds at most 65504) and shape (the
    variance-scaling family's ``scale / n``), and refuses a shape of 2**63 bytes or more (JAX raised
    ``NotImplementedError`` for random draws; XLA aborted the process for the others). The bound is what the draw
    computes, in float64: ``|mean| + 9 stddev`` for a normal (:data:`NORMAL_DRAW_BOUND`: JAX's sampler never draws
    beyond 5.42 standard deviations in float32, 8.29 in float64), ``|mean| + 2 stddev`` truncated,
    ``max(|minval|, |maxval|, maxval - minval)`` uniform (JAX computes the difference in the dtype), ``|value|``,
    ``gain`` for orthogonal, delta-orthogonal and identity, ``9 stddev`` sparse, and for variance scaling the
    variance ``scale / n`` (3 times it for uniform, which JAX also casts) or 9 standard deviations.

Catalogue (defaults in the factory signatures; aliases in brackets):
    ==========================  ====================================================
    zeros, ones, constant       constant arrays
    normal [random_normal]      N(mean, stddev^2); stddev=0.05, mean=0.0 (Keras defaults)
    uniform [random_uniform]    U(minval, maxval); minval=-0.05, maxval=0.05
    truncated_normal            N(mean, stddev^2) truncated to mean +- 2 stddev; stddev=0.05
    variance_scaling            Var = scale / n, n from ``mode`` (fan_in, fan_out, fan_avg,
                                fan_geo_avg), ``distribution`` truncated_normal/normal/uniform
    glorot_normal               Var = 2 / (fan_in + fan_out), truncated normal
    glorot_uniform              U(-l, l), l = sqrt(6 / (fan_in + fan_out))
    he_normal                   Var = 2 / fan_in, truncated normal
    he_uniform                  U(-l, l), l = sqrt(6 / fan_in)
    lecun_normal                Var = 1 / fan_in, truncated normal
    lecun_uniform               U(-l, l), l = sqrt(3 / fan_in)
    orthogonal                  gain * (semi-)orthogonal matrix, Haar distributed
    delta_orthogonal            conv kernel: orthogonal center tap, zeros elsewhere
    identity [eye]              gain * I (2-D, non-square allowed)
    dirac                       conv kernel that is the identity map (torch ``dirac_``)
    sparse                      N(0, stddev^2) with ceil(sparsity * rows) zeros per column
    torch_default               U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch Linear / Conv)
    keras_default               glorot_uniform (Keras Dense / Conv)
    flax_default                lecun_normal (Flax Dense / Conv)
    kaiming_normal              torch: N(0, gain^2 / fan) untruncated; a=0, fan_in, leaky_relu
    kaiming_uniform             torch: U(-l, l), l = gain * sqrt(3 / fan)
    xavier_normal               torch: N(0, gain^2 * 2 / (fan_in + fan_out)) untruncated
    xavier_uniform              torch: U(-l, l), l = gain * sqrt(6 / (fan_in + fan_out))
    ==========================  ====================================================

Parity with ``jax.nn.initializers``:
    For every scheme JAX also has (``variance_scaling`` and its named family, ``orthogonal``,
    ``delta_orthogonal``, ``normal``, ``truncated_normal``, ``constant``, ``zeros``, ``ones``)
    jinit *calls* JAX and returns bitwise-identical arrays for real dtypes. Differences:
    ``normal``/``truncated_normal`` default to stddev 0.05 (Keras) where JAX uses 0.01, and add
    an optional ``mean``; the JAX ``scale`` of ``orthogonal``/``delta_orthogonal`` is called
    ``gain`` here.

Complex dtypes:
    The variance-scaling family returns complex weights with ``E|w|^2`` equal to the documented
    variance ``scale / n``. For ``distribution='normal'`` and ``'uniform'`` (uniform on a disk)
    JAX already does this and jinit calls it. JAX's complex ``'truncated_normal'`` divides by
    0.95311164380491208, which does not match its own sampler (|z| truncated at 2, so
    ``|z|^2`` is Exp(1) truncated at 4 and ``E|z|^2 = (1 - 5 e^-4) / (1 - e^-4)``): its weights
    are about 1.9% too large in ``E|w|^2``. jinit samples the same way but divides by the correct
    constant ``sqrt((1 - 5 e^-4) / (1 - e^-4)) = 0.96196...`` (real dtypes are untouched).

Keras 3 mapping (``keras.initializers``):
    Keras names are accepted by :func:`jinit.get` (``"GlorotUniform"``, ``"RandomNormal"``, ...).
    :func:`keras_key` gives the key Keras derives from ``seed=`` (key data ``[seed, 0]``), so
    ``jinit.glorot_uniform()(jinit.keras_key(42), shape)`` reproduces
    ``keras.initializers.GlorotUniform(seed=42)(shape)`` with the JAX backend. Bit for bit:
    ``orthogonal``/``Orthogonal``, ``normal``/``RandomNormal``, ``uniform``/``RandomUniform``,
    ``truncated_normal``/``TruncatedNormal``, ``identity``/``Identity``, ``zeros``, ``ones``,
    ``constant``. Up to float32 rounding (at most 2 ulp measured): the variance-scaling family
    (``GlorotUniform``, ``HeNormal``, ``LecunNormal``, ...). Keras computes the stddev or limit
    in float64 Python arithmetic and rounds it once (and draws uniforms as ``u * 2l - l``), JAX
    computes ``sqrt(float32(scale / n))`` in float32 (and ``(2u - 1) * l``); jinit keeps bitwise
    parity with JAX, so whether a given shape matches Keras exactly depends on its fans (e.g.
    ``GlorotUniform`` matched exactly for (784, 128) but not for (128, 10)). Name and default
    differences:

    - Keras ``VarianceScaling(distribution='normal')`` means a *truncated* normal (Keras spells the
      plain normal ``'untruncated_normal'``). jinit follows JAX and torch: ``'normal'`` is the
      untruncated normal; ``'untruncated_normal'`` is accepted as a synonym of ``'normal'``, and
      the Keras default ``distribution='truncated_normal'`` is jinit's default too.
    - Keras ``RandomNormal(mean=0.0, stddev=0.05)`` takes ``mean`` first; jinit's
      ``normal(stddev=0.05, mean=0.0)`` takes ``stddev`` first (use keywords).
    - Keras clamps fans to at least 1 and accepts 1-D shapes; jinit raises ``ValueError``.
    - Keras has no ``fan_geo_avg``, ``delta_orthogonal``, ``dirac`` or ``sparse``.

PyTorch mapping (``torch.nn.init``):
    A torch name means torch's distribution and defaults. ``kaiming_normal`` / ``kaiming_normal_`` and
    ``xavier_normal`` draw *untruncated* normals with std ``gain / sqrt(fan)`` (torch's hyperparameters ``a``,
    ``mode``, ``nonlinearity`` / ``gain``); Keras/JAX ``he_normal`` / ``glorot_normal`` are truncated normals with
    the same variance. ``kaiming_uniform`` and ``xavier_uniform`` draw the same arrays as ``he_uniform`` and
    ``glorot_uniform`` with torch's defaults. torch weights are ``(out, in)``; Flax kernels are ``(in, out)``, so
    torch's fan_in is jinit's fan_in for the same layer. ``gain(nonlinearity)`` is ``calculate_gain``. The torch
    spellings ``normal_``, ``uniform_`` and ``trunc_normal_`` are refused by :func:`jinit.get`: torch's defaults
    (``N(0, 1)``, ``U(0, 1)``, a normal cut at -2 and 2 absolute) are not jinit's Keras ones (0.05).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers as jax_init

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
# Other spellings of a distribution, mapped to the canonical name (Keras spells it this way).
_DISTRIBUTION_SYNONYMS = {"untruncated_normal": "normal"}

# Standard deviation of a standard normal truncated to (-2, 2) (the constant JAX and Keras use).
TRUNCATED_NORMAL_STD = 0.87962566103423978
# sqrt(E|z|^2) of a complex normal with E|z|^2 = 1 before its modulus is truncated at 2:
# |z|^2 ~ Exp(1) truncated at 4, whose mean is (1 - 5 e^-4) / (1 - e^-4).
COMPLEX_TRUNCATED_NORMAL_STD = math.sqrt((1.0 - 5.0 * math.exp(-4.0)) / (1.0 - math.exp(-4.0)))

_DEFAULT_AXES = {"in_axis": -2, "out_axis": -1, "batch_axis": ()}


# --------------------------------------------------------------------------------------------
# Validation helpers (pure Python: they run at construction or before any JAX work).
# --------------------------------------------------------------------------------------------


def _number_text(value: Any) -> str:
    """``repr(value)``, shortened for integers too long to read (``10**400`` -> ``1000...000 (401 digits)``)."""
    text = repr(value)
    if isinstance(value, numbers.Integral) and len(text) > 24:
        sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
        return f"{sign}{digits[:4]}...{digits[-3:]} ({len(digits)} digits)"
    return text if len(text) <= 80 else text[:77] + "..."


def _real(scheme: str, param: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{scheme}: {param} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int (or Fraction) beyond every float, e.g. 10**400
        raise ValueError(
            f"{scheme}: {param}={_number_text(value)} is out of range: it must be a finite float "
            f"(at most {sys.float_info.max:.4g})"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{scheme}: {param} must be finite, got {value!r}")
    return value


def _nonnegative(scheme: str, param: str, value: Any) -> float:
    value = _real(scheme, param, value)
    if value < 0:
        raise ValueError(f"{scheme}: {param} must be >= 0, got {value!r}")
    return value


def _positive(scheme: str, param: str, value: Any) -> float:
    value = _real(scheme, param, value)
    if value <= 0:
        raise ValueError(f"{scheme}: {param} must be > 0, got {value!r}")
    return value


def _int(scheme: str, param: str, value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{scheme}: {param} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{scheme}: {param} must be an integer, got {value!r}") from None


def _axes(scheme: str, param: str, value: Any) -> int | tuple[int, ...]:
    """An axis spec: an int, or a sequence of ints (stored as a tuple so it hashes)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(_int(scheme, param, v) for v in value)
    return _int(scheme, param, value)


def _choice(scheme: str, param: str, value: Any, choices: Sequence[str], synonyms=None) -> str:
    if isinstance(value, str):
        key = value.strip().lower()
        key = (synonyms or {}).get(key, key)
        if key in choices:
            return key
    valid = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{scheme}: unknown {param} {value!r}; valid choices: {valid}")


def _shape(scheme: str, shape: Any) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise TypeError(f"{scheme}: shape must be a tuple of ints, got {shape!r}")
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"{scheme}: shape must be a tuple of static ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"{scheme}: shape has a negative dimension: {dims}")
    return dims


def _nonempty(scheme: str, shape: tuple[int, ...]) -> None:
    if any(d == 0 for d in shape):
        raise ValueError(f"{scheme}: shape {shape} has a zero-size axis")


#: The most bytes one array may take. XLA computes an array's size in bytes as a signed 64-bit integer: a larger
#: shape does not raise, it aborts the process ("overflow in static extent product"), so it is refused before.
MAX_ARRAY_BYTES = 2**63 - 1

#: No normal draw of JAX's sampler is further than this many standard deviations from the mean, in any dtype (its
#: extreme is sqrt(2) erfinv of the uniform closest to -1: 5.42 in float32, 8.29 in float64, 3.49 in float16).
NORMAL_DRAW_BOUND = 9.0


def _check_size(scheme: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES or any(d > MAX_ARRAY_BYTES for d in shape):
        size = f"about 2**{max(nbytes, *shape).bit_length() - 1} bytes"
        raise ValueError(
            f"{scheme}: shape {_number_text(shape)} of {dtype.name} would take {size}, more than an XLA "
            "array can hold (2**63 - 1 bytes) and any device's memory; check the shape (a Dense kernel is "
            "(in, out), a conv kernel (*spatial, in, out))"
        )


def _dtype(scheme: str, dtype: Any, *, real_only: bool = False) -> np.dtype:
    """Resolve ``dtype`` (None -> the default float dtype, which respects ``jax_enable_x64``)."""
    if dtype is None:
        return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{scheme}: {dtype!r} is not a dtype") from None
    if not jnp.issubdtype(dt, jnp.inexact):
        raise TypeError(
            f"{scheme}: dtype {dt.name} is not a floating or complex dtype; "
            "use e.g. float32, bfloat16, float16, float64 or complex64"
        )
    if real_only and jnp.issubdtype(dt, jnp.complexfloating):
        raise TypeError(
            f"{scheme}: complex dtype {dt.name} is not supported; use a real floating dtype"
        )
    return dt


def _no_sharding(scheme: str, out_sharding: Any) -> None:
    if out_sharding is not None:
        raise NotImplementedError(
            f"{scheme}: out_sharding is not supported (as in jax.nn.initializers); "
            "shard the result with jax.device_put or a sharding constraint instead"
        )


def _normalize_axis(scheme: str, axis: int, ndim: int, param: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{scheme}: {param}={axis} is out of range for a {ndim}-D shape")
    return axis % ndim


def compute_fans(
    shape: Sequence[int],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    *,
    scheme: str = "compute_fans",
) -> tuple[int, int]:
    """Returns ``(fan_in, fan_out)`` of a weight shape, as ``jax.nn.initializers`` computes them.

    Axes that are not in ``in_axis``, ``out_axis`` or ``batch_axis`` form the receptive field
    (conv spatial axes): ``fan_in = prod(shape[in_axis]) * receptive_field`` and
    ``fan_out = prod(shape[out_axis]) * receptive_field``. For a Flax Dense kernel ``(in, out)``
    that is ``(in, out)``; for a HWIO conv kernel ``(h, w, in, out)`` it is
    ``(h * w * in, h * w * out)``.

    Args:
      shape: the weight shape, at least 2-D, without zero-size axes.
      in_axis: axis or axes of the input dimension. Default -2.
      out_axis: axis or axes of the output dimension. Default -1.
      batch_axis: axis or axes that are ignored (independent weight matrices). Default ().
      scheme: name used in error messages.

    Returns:
      ``(fan_in, fan_out)`` as ints.

    Raises:
      ValueError: for 0-D/1-D shapes, zero-size axes, out-of-range or overlapping axes.

    Example:
      >>> compute_fans((3, 3, 16, 32))
      (144, 288)
    """
    shape = _shape(scheme, shape)
    if len(shape) < 2:
        raise ValueError(
            f"{scheme}: cannot compute fan_in/fan_out of a {len(shape)}-D shape {shape}; "
            "fan-based initializers need a kernel of at least 2 dimensions, e.g. (in, out) or "
            "(*spatial, in, out). For biases use zeros, constant, normal or torch_default_bias"
        )
    _nonempty(scheme, shape)
    ndim = len(shape)
    groups = {}
    for param, spec in (("in_axis", in_axis), ("out_axis", out_axis), ("batch_axis", batch_axis)):
        spec = _axes(scheme, param, spec)
        axes = (spec,) if isinstance(spec, int) else spec
        groups[param] = [_normalize_axis(scheme, a, ndim, param) for a in axes]
    used = groups["in_axis"] + groups["out_axis"] + groups["batch_axis"]
    if len(set(used)) != len(used):
        raise ValueError(
            f"{scheme}: in_axis={in_axis}, out_axis={out_axis}, batch_axis={batch_axis} "
            f"overlap for shape {shape}"
        )
    if not groups["in_axis"] or not groups["out_axis"]:
        raise ValueError(f"{scheme}: in_axis and out_axis must name at least one axis each")
    receptive = math.prod(d for i, d in enumerate(shape) if i not in used)
    fan_in = math.prod(shape[i] for i in groups["in_axis"]) * receptive
    fan_out = math.prod(shape[i] for i in groups["out_axis"]) * receptive
    return fan_in, fan_out


# --------------------------------------------------------------------------------------------
# The Initializer value type.
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True, repr=False)
class Initializer:
    """Base class of every jinit initializer: a hashable value that is a pure function.

    Subclasses are frozen dataclasses whose first field is the scheme ``name`` and whose other
    fields are its hyperparameters. Build them with the factories (``jinit.he_normal()``, ...),
    not directly: the factories validate the hyperparameters.

    Calling ``init(key, shape, dtype=None, out_sharding=None)`` validates ``shape`` and
    ``dtype`` (in Python, before any JAX work) and returns a ``jax.Array`` of that shape and
    dtype; ``dtype=None`` is the default float dtype (float32, or float64 with
    ``jax_enable_x64``).
    """

    name: str

    # Hyperparameters hidden from repr() while they have these (default) values.
    _repr_hidden_defaults: ClassVar[dict[str, Any]] = {}
    # Whether complex dtypes are supported.
    _complex_ok: ClassVar[bool] = True
    # The hyperparameters that set the magnitude of the values (named when they are out of range).
    _scale_params: ClassVar[str] = "scale"

    def __call__(self, key, shape, dtype=None, out_sharding=None) -> jax.Array:
        shape = _shape(self.name, shape)
        dtype = _dtype(self.name, dtype, real_only=not self._complex_ok)
        _check_size(self.name, shape, dtype)
        self._check_range(shape, dtype)
        return self._init(key, shape, dtype, out_sharding)

    def _init(self, key, shape: tuple[int, ...], dtype: np.dtype, out_sharding) -> jax.Array:
        raise NotImplementedError

    def _largest(self, shape: tuple[int, ...] | None) -> float:
        """An upper bound on the magnitude of every value the draw computes (the values and the intermediate
        scales JAX casts to the dtype), in float64; ``shape`` None for schemes whose bound has no shape."""
        return 0.0

    def _check_range(self, shape: tuple[int, ...] | None, dtype: np.dtype) -> None:
        """Refuses a draw whose values could overflow ``dtype`` (they would be inf, with numpy's RuntimeWarnings
        about the cast): one line naming the initializer, the dtype and the fix."""
        limit = float(jnp.finfo(dtype).max)
        if self._largest(shape) <= limit:
            return
        where = "" if shape is None else f" for shape {shape}"
        raise ValueError(
            f"{self!r} is out of range{where}: its values can exceed the largest finite {dtype.name} "
            f"({limit:.4g}) and would be inf; use a smaller {self._scale_params}"
        )

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters as a dict (field order), without the name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}

    def config(self) -> dict[str, Any]:
        """A JSON-able dict ``{"name": ..., **hyperparameters}``; ``jinit.get`` inverts it."""
        return {"name": self.name, **{k: _jsonable(v) for k, v in self.hyperparameters().items()}}

    def __repr__(self) -> str:
        hidden = self._repr_hidden_defaults
        args = ", ".join(
            f"{k}={v!r}"
            for k, v in self.hyperparameters().items()
            if not (k in hidden and hidden[k] == v)
        )
        return f"{self.name}({args})"


@dataclasses.dataclass(frozen=True, repr=False)
class _Zeros(Initializer):
    def _init(self, key, shape, dtype, out_sharding):
        return jax_init.zeros(key, shape, dtype, out_sharding=out_sharding)


@dataclasses.dataclass(frozen=True, repr=False)
class _Ones(Initializer):
    def _init(self, key, shape, dtype, out_sharding):
        return jax_init.ones(key, shape, dtype, out_sharding=out_sharding)

    def _largest(self, shape):
        return 1.0


@dataclasses.dataclass(frozen=True, repr=False)
class _Constant(Initializer):
    value: float
    _scale_params: ClassVar[str] = "value"

    def _init(self, key, shape, dtype, out_sharding):
        return jax_init.constant(self.value)(key, shape, dtype, out_sharding=out_sharding)

    def _largest(self, shape):
        return abs(self.value)


@dataclasses.dataclass(frozen=True, repr=False)
class _Normal(Initializer):
    stddev: float
    mean: float
    _scale_params: ClassVar[str] = "stddev or mean"

    def _init(self, key, shape, dtype, out_sharding):
        w = jax_init.normal(self.stddev)(key, shape, dtype, out_sharding=out_sharding)
        return w if self.mean == 0.0 else w + jnp.array(self.mean, dtype)

    def _largest(self, shape):
        return abs(self.mean) + NORMAL_DRAW_BOUND * self.stddev


@dataclasses.dataclass(frozen=True, repr=False)
class _TruncatedNormal(Initializer):
    stddev: float
    mean: float
    _complex_ok: ClassVar[bool] = False
    _scale_params: ClassVar[str] = "stddev or mean"

    def _init(self, key, shape, dtype, out_sharding):
        w = jax_init.truncated_normal(self.stddev)(key, shape, dtype, out_sharding=out_sharding)
        return w if self.mean == 0.0 else w + jnp.array(self.mean, dtype)

    def _largest(self, shape):
        return abs(self.mean) + 2.0 * self.stddev


@dataclasses.dataclass(frozen=True, repr=False)
class _Uniform(Initializer):
    minval: float
    maxval: float
    _complex_ok: ClassVar[bool] = False
    _scale_params: ClassVar[str] = "minval and maxval"

    def _init(self, key, shape, dtype, out_sharding):
        return jax.random.uniform(
            key, shape, dtype, self.minval, self.maxval, out_sharding=out_sharding
        )

    def _largest(self, shape):  # jax.random.uniform computes maxval - minval in the dtype
        return max(abs(self.minval), abs(self.maxval), self.maxval - self.minval)


@dataclasses.dataclass(frozen=True, repr=False)
class _TorchDefaultBias(Initializer):
    fan_in: int
    _complex_ok: ClassVar[bool] = False

    def _init(self, key, shape, dtype, out_sharding):
        bound = 1.0 / math.sqrt(self.fan_in)
        return jax.random.uniform(key, shape, dtype, -bound, bound, out_sharding=out_sharding)


def _complex_truncated_normal(key, shape, dtype) -> jax.Array:
    """Complex normal (E|z|^2 = 1 before truncation) with modulus truncated at 2 (as JAX)."""
    key_r, key_theta = jax.random.split(key)
    real = jnp.finfo(dtype).dtype
    t = (1.0 - jnp.exp(jnp.array(-4.0, real))) * jax.random.uniform(key_r, shape, real)
    r = jnp.sqrt(-jnp.log1p(-t))
    theta = (2 * np.pi) * jax.random.uniform(key_theta, shape, real)
    return jax.lax.complex(r * jnp.cos(theta), r * jnp.sin(theta)).astype(dtype)


@dataclasses.dataclass(frozen=True, repr=False)
class VarianceScaling(Initializer):
    scale: float
    mode: str
    distribution: str
    in_axis: int | tuple[int, ...]
    out_axis: int | tuple[int, ...]
    batch_axis: int | tuple[int, ...]
    _repr_hidden_defaults: ClassVar[dict[str, Any]] = _DEFAULT_AXES

    def denominator(self, shape: Sequence[int]) -> float:
        """The ``n`` of ``Var = scale / n`` for this shape (as JAX computes it)."""
        fan_in, fan_out = compute_fans(
            shape, self.in_axis, self.out_axis, self.batch_axis, scheme=self.name
        )
        return {
            "fan_in": fan_in,
            "fan_out": fan_out,
            "fan_avg": (fan_in + fan_out) / 2,
            "fan_geo_avg": (fan_in * fan_out) ** 0.5,
        }[self.mode]

    def variance(self, shape: Sequence[int]) -> float:
        """The variance ``E|w|^2`` of the weights for this shape: ``scale / n``."""
        return self.scale / self.denominator(shape)

    def _largest(self, shape):
        # JAX casts the variance (and 3 * variance for uniform) to the dtype, then draws at most 9 standard
        # deviations from 0 (2 / 0.88 truncated, sqrt(3) uniform)
        variance = self.variance(shape)
        factor = 3.0 if self.distribution == "uniform" else 1.0
        return max(factor * variance, NORMAL_DRAW_BOUND * math.sqrt(variance))

    def _init(self, key, shape, dtype, out_sharding):
        denominator = self.denominator(shape)  # validates the shape against the axes
        if self.distribution == "truncated_normal" and jnp.issubdtype(dtype, jnp.complexfloating):
            # JAX's complex branch uses a wrong constant (see the module docstring).
            _no_sharding(self.name, out_sharding)
            variance = jnp.array(self.scale / denominator, dtype)
            stddev = jnp.sqrt(variance) / jnp.array(COMPLEX_TRUNCATED_NORMAL_STD, dtype)
            return _complex_truncated_normal(key, shape, dtype) * stddev
        init = jax_init.variance_scaling(
            self.scale,
            self.mode,
            self.distribution,
            in_axis=self.in_axis,
            out_axis=self.out_axis,
            batch_axis=self.batch_axis,
        )
        return init(key, shape, dtype, out_sharding=out_sharding)


@dataclasses.dataclass(frozen=True, repr=False)
class TorchVarianceScaling(Initializer):
    """torch.nn.init's ``kaiming_*_`` / ``xavier_*_``: a variance-scaling draw with torch's hyperparameters
    (the distribution is the name's suffix: ``normal`` is untruncated, as in torch)."""

    def as_variance_scaling(self) -> VarianceScaling:
        """The same draw as a :func:`variance_scaling` value (``scale = gain^2``)."""
        raise NotImplementedError

    def variance(self, shape: Sequence[int]) -> float:
        """The variance of the weights for this shape: ``gain^2 / n``."""
        return self.as_variance_scaling().variance(shape)

    def _largest(self, shape):
        return self.as_variance_scaling()._largest(shape)

    def _init(self, key, shape, dtype, out_sharding):
        return self.as_variance_scaling()._init(key, shape, dtype, out_sharding)


@dataclasses.dataclass(frozen=True, repr=False)
class _Kaiming(TorchVarianceScaling):
    a: float
    mode: str
    nonlinearity: str

    def as_variance_scaling(self) -> VarianceScaling:
        scale = _gain_squared(self.nonlinearity, self.a)
        dist = self.name.rsplit("_", 1)[1]
        return _variance_scaling(self.name, scale, self.mode, dist, -2, -1, ())


@dataclasses.dataclass(frozen=True, repr=False)
class _Xavier(TorchVarianceScaling):
    gain: float
    _scale_params: ClassVar[str] = "gain"

    def as_variance_scaling(self) -> VarianceScaling:
        dist = self.name.rsplit("_", 1)[1]
        return _variance_scaling(self.name, self.gain**2, "fan_avg", dist, -2, -1, ())


def _qr_dtype(init, key, shape, dtype) -> jax.Array:
    """Runs a QR-based JAX initializer; 16-bit floats are drawn in float32 and rounded once.

    LAPACK (JAX's QR on CPU) has no float16/bfloat16 kernels, so JAX itself fails there.
    """
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return init(key, shape, jnp.float32).astype(dtype)
    return init(key, shape, dtype)


@dataclasses.dataclass(frozen=True, repr=False)
class _Orthogonal(Initializer):
    gain: float
    column_axis: int
    _scale_params: ClassVar[str] = "gain"

    def _largest(self, shape):  # entries of an orthogonal matrix are at most 1 in magnitude
        return self.gain

    def _init(self, key, shape, dtype, out_sharding):
        _no_sharding(self.name, out_sharding)
        if len(shape) < 2:
            raise ValueError(f"{self.name}: needs a shape of at least 2 dimensions, got {shape}")
        _nonempty(self.name, shape)
        _normalize_axis(self.name, self.column_axis, len(shape), "column_axis")
        init = jax_init.orthogonal(scale=self.gain, column_axis=self.column_axis)
        return _qr_dtype(init, key, shape, dtype)


@dataclasses.dataclass(frozen=True, repr=False)
class _DeltaOrthogonal(Initializer):
    gain: float
    _scale_params: ClassVar[str] = "gain"

    def _largest(self, shape):
        return self.gain

    def _init(self, key, shape, dtype, out_sharding):
        _no_sharding(self.name, out_sharding)
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                f"{self.name}: needs a 3-D, 4-D or 5-D conv kernel (*spatial, in, out), "
                f"got shape {shape}"
            )
        _nonempty(self.name, shape)
        if shape[-2] > shape[-1]:
            raise ValueError(
                f"{self.name}: needs in_channels <= out_channels (shape[-2] <= shape[-1]) so "
                f"the center tap can be orthogonal, got shape {shape}"
            )
        return _qr_dtype(jax_init.delta_orthogonal(scale=self.gain), key, shape, dtype)


@dataclasses.dataclass(frozen=True, repr=False)
class _Identity(Initializer):
    gain: float
    _scale_params: ClassVar[str] = "gain"

    def _largest(self, shape):
        return self.gain

    def _init(self, key, shape, dtype, out_sharding):
        _no_sharding(self.name, out_sharding)
        if len(shape) != 2:
            raise ValueError(
                f"{self.name}: needs a 2-D shape (in, out), got {len(shape)}-D shape {shape}; "
                "for conv kernels use dirac"
            )
        _nonempty(self.name, shape)
        return jnp.array(self.gain, dtype) * jnp.eye(shape[0], shape[1], dtype=dtype)


@dataclasses.dataclass(frozen=True, repr=False)
class _Dirac(Initializer):
    groups: int

    def _init(self, key, shape, dtype, out_sharding):
        _no_sharding(self.name, out_sharding)
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                f"{self.name}: needs a 3-D, 4-D or 5-D conv kernel (*spatial, in, out) in "
                f"Flax layout, got shape {shape}; for 2-D kernels use identity"
            )
        _nonempty(self.name, shape)
        in_per_group, out_channels = shape[-2], shape[-1]
        if out_channels % self.groups:
            raise ValueError(
                f"{self.name}: out channels {out_channels} (shape[-1]) are not divisible by "
                f"groups={self.groups}"
            )
        out_per_group = out_channels // self.groups
        center = tuple((k - 1) // 2 for k in shape[:-2])
        w = np.zeros(shape, dtype=np.float32)
        for g in range(self.groups):
            for d in range(min(out_per_group, in_per_group)):
                w[(*center, d, g * out_per_group + d)] = 1.0
        return jnp.asarray(w, dtype=dtype)


@dataclasses.dataclass(frozen=True, repr=False)
class _Sparse(Initializer):
    sparsity: float
    stddev: float
    _scale_params: ClassVar[str] = "stddev"

    def _largest(self, shape):
        return NORMAL_DRAW_BOUND * self.stddev

    def _init(self, key, shape, dtype, out_sharding):
        _no_sharding(self.name, out_sharding)
        if len(shape) != 2:
            raise ValueError(f"{self.name}: needs a 2-D shape (rows, columns), got {shape}")
        _nonempty(self.name, shape)
        rows = shape[0]
        num_zeros = math.ceil(self.sparsity * rows)
        key_values, key_mask = jax.random.split(key)
        values = jax.random.normal(key_values, shape, dtype) * jnp.array(self.stddev, dtype)
        if num_zeros == 0:
            return values
        # Rank of each entry within its column under a random order: a uniform random
        # permutation of the rows per column; the num_zeros lowest ranks are zeroed.
        order = jax.random.uniform(key_mask, shape)
        ranks = jnp.argsort(jnp.argsort(order, axis=0), axis=0)
        return jnp.where(ranks < num_zeros, jnp.zeros((), dtype), values)


# --------------------------------------------------------------------------------------------
# Factories.
# --------------------------------------------------------------------------------------------


def _float32_range(init: Initializer) -> Initializer:
    """``init``, refused if its values could overflow float32 (jinit's, Flax's and every sweep's dtype): for the
    schemes whose values are bounded without a shape, checked when they are made (``normal(stddev=1e308)``)."""
    init._check_range(None, np.dtype(np.float32))
    return init


def zeros() -> Initializer:
    """Returns an initializer of all-zero arrays (the key is ignored).

    Same arrays as ``jax.nn.initializers.zeros``; Keras ``Zeros``; torch ``zeros_``.

    Returns:
      An Initializer.

    Example:
      >>> jinit.zeros()(jax.random.PRNGKey(0), (2, 3)).sum()
      Array(0., dtype=float32)
    """
    return _Zeros("zeros")


def ones() -> Initializer:
    """Returns an initializer of all-one arrays (the key is ignored).

    Same arrays as ``jax.nn.initializers.ones``; Keras ``Ones``; torch ``ones_``.

    Returns:
      An Initializer.
    """
    return _Ones("ones")


def constant(value: float) -> Initializer:
    """Returns an initializer of arrays filled with ``value`` (the key is ignored).

    Same arrays as ``jax.nn.initializers.constant(value)``; Keras ``Constant``; torch
    ``constant_``.

    Args:
      value: the fill value (a real number; required).

    Returns:
      An Initializer.

    Example:
      >>> jinit.constant(0.1)(jax.random.PRNGKey(0), (2,))
      Array([0.1, 0.1], dtype=float32)
    """
    return _float32_range(_Constant("constant", _real("constant", "value", value)))


def normal(stddev: float = 0.05, mean: float = 0.0) -> Initializer:
    """Returns an initializer drawing from the normal distribution ``N(mean, stddev^2)``.

    Variance ``stddev^2``. Defaults follow Keras ``RandomNormal`` (stddev 0.05, mean 0).
    With ``mean=0`` the arrays are bitwise those of ``jax.nn.initializers.normal(stddev)``
    (whose default stddev is 0.01); a nonzero ``mean`` is added afterwards. Complex dtypes give a
    complex normal with ``E|w - mean|^2 = stddev^2``.

    Args:
      stddev: standard deviation, >= 0. Default 0.05.
      mean: mean. Default 0.0.

    Returns:
      An Initializer.

    Example:
      >>> w = jinit.normal(stddev=0.01)(jax.random.PRNGKey(0), (784, 128))
    """
    return _float32_range(
        _Normal("normal", _nonnegative("normal", "stddev", stddev), _real("normal", "mean", mean))
    )


def uniform(minval: float = -0.05, maxval: float = 0.05) -> Initializer:
    """Returns an initializer drawing from the uniform distribution ``U[minval, maxval)``.

    Variance ``(maxval - minval)^2 / 12``. Defaults follow Keras ``RandomUniform``
    (-0.05, 0.05); the draw is ``jax.random.uniform(key, shape, dtype, minval, maxval)``, as
    Keras' JAX backend does. (Note ``jax.nn.initializers.uniform(scale)`` is ``U[0, scale)``.)
    Real dtypes only.

    Args:
      minval: lower bound (inclusive). Default -0.05.
      maxval: upper bound (exclusive), > minval. Default 0.05.

    Returns:
      An Initializer.
    """
    minval = _real("uniform", "minval", minval)
    maxval = _real("uniform", "maxval", maxval)
    if not minval < maxval:
        raise ValueError(f"uniform: needs minval < maxval, got minval={minval}, maxval={maxval}")
    return _float32_range(_Uniform("uniform", minval, maxval))


def truncated_normal(stddev: float = 0.05, mean: float = 0.0) -> Initializer:
    """Returns an initializer drawing from ``N(mean, stddev^2)`` truncated to ``mean +- 2 stddev``.

    ``stddev`` is the standard deviation *before* truncation (no correction, as in Keras
    ``TruncatedNormal`` and ``jax.nn.initializers.truncated_normal``), so the variance is
    ``(0.87962566 * stddev)^2``. Defaults follow Keras (stddev 0.05). With ``mean=0`` the arrays
    are bitwise those of ``jax.nn.initializers.truncated_normal(stddev)``. Real dtypes only.

    Args:
      stddev: standard deviation of the untruncated normal, >= 0. Default 0.05.
      mean: mean (center of the truncation interval). Default 0.0.

    Returns:
      An Initializer.
    """
    return _float32_range(
        _TruncatedNormal(
            "truncated_normal",
            _nonnegative("truncated_normal", "stddev", stddev),
            _real("truncated_normal", "mean", mean),
        )
    )


def _variance_scaling(
    name, scale, mode, distribution, in_axis, out_axis, batch_axis
) -> VarianceScaling:
    return VarianceScaling(
        name,
        _positive(name, "scale", scale),
        _choice(name, "mode", mode, MODES),
        _choice(name, "distribution", distribution, DISTRIBUTIONS, _DISTRIBUTION_SYNONYMS),
        _axes(name, "in_axis", in_axis),
        _axes(name, "out_axis", out_axis),
        _axes(name, "batch_axis", batch_axis),
    )


def variance_scaling(
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """Returns an initializer whose variance adapts to the weight shape: ``Var = scale / n``.

    ``n`` is, per ``mode``: ``fan_in``; ``fan_out``; ``fan_avg = (fan_in + fan_out) / 2``;
    ``fan_geo_avg = sqrt(fan_in * fan_out)`` (fans from :func:`compute_fans`). Per
    ``distribution``:

    - ``'truncated_normal'``: normal truncated at 2 standard deviations, with stddev
      ``sqrt(scale / n) / 0.87962566`` before truncation, so the variance after truncation is
      ``scale / n``;
    - ``'normal'`` (synonym ``'untruncated_normal'``): ``N(0, scale / n)``;
    - ``'uniform'``: ``U(-limit, limit)`` with ``limit = sqrt(3 * scale / n)`` (complex dtypes:
      uniform on a disk).

    Real-dtype arrays are bitwise those of ``jax.nn.initializers.variance_scaling``. The
    defaults are Keras' ``VarianceScaling`` defaults (which equal ``lecun_normal``); note that
    Keras' ``distribution='normal'`` is truncated, jinit's (like JAX's and torch's) is not.

    Args:
      scale: scaling factor, > 0. Default 1.0.
      mode: 'fan_in', 'fan_out', 'fan_avg' or 'fan_geo_avg'. Default 'fan_in'.
      distribution: 'truncated_normal', 'normal' or 'uniform'. Default 'truncated_normal'.
      in_axis: axis or axes of the input dimension. Default -2.
      out_axis: axis or axes of the output dimension. Default -1.
      batch_axis: axis or axes ignored in the fan computation. Default ().

    Returns:
      An Initializer.

    References:
      He et al., 2015, "Delving Deep into Rectifiers", https://arxiv.org/abs/1502.01852.

    Example:
      >>> init = jinit.variance_scaling(2.0, "fan_in", "normal")
      >>> w = init(jax.random.PRNGKey(0), (3, 3, 16, 32))  # Var = 2 / (3 * 3 * 16)
    """
    return _variance_scaling(
        "variance_scaling", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


def glorot_normal(
    *,
    scale: float = 1.0,
    mode: str = "fan_avg",
    distribution: str = "truncated_normal",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """Glorot (Xavier) normal: truncated normal with ``Var = 2 / (fan_in + fan_out)``.

    ``variance_scaling(1.0, 'fan_avg', 'truncated_normal')``: stddev before truncation
    ``sqrt(2 / (fan_in + fan_out)) / 0.87962566``. Bitwise ``jax.nn.initializers.glorot_normal``;
    Keras ``GlorotNormal``. (torch ``xavier_normal_`` is untruncated: use
    ``distribution='normal'``.) The keyword arguments override the variance-scaling
    configuration (see :func:`variance_scaling`).

    Returns:
      An Initializer.

    References:
      Glorot & Bengio, 2010, "Understanding the difficulty of training deep feedforward neural
      networks", http://proceedings.mlr.press/v9/glorot10a.html.
    """
    return _variance_scaling(
        "glorot_normal", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


def glorot_uniform(
    *,
    scale: float = 1.0,
    mode: str = "fan_avg",
    distribution: str = "uniform",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """Glorot (Xavier) uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``.

    ``variance_scaling(1.0, 'fan_avg', 'uniform')``, ``Var = 2 / (fan_in + fan_out)``. Bitwise
    ``jax.nn.initializers.glorot_uniform``; Keras ``GlorotUniform`` (the Keras default kernel
    initializer); torch ``xavier_uniform_``.

    Returns:
      An Initializer.

    References:
      Glorot & Bengio, 2010, http://proceedings.mlr.press/v9/glorot10a.html.
    """
    return _variance_scaling(
        "glorot_uniform", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


def he_normal(
    *,
    scale: float = 2.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """He (Kaiming) normal: truncated normal with ``Var = 2 / fan_in``.

    ``variance_scaling(2.0, 'fan_in', 'truncated_normal')``: stddev before truncation
    ``sqrt(2 / fan_in) / 0.87962566``. Bitwise ``jax.nn.initializers.he_normal``; Keras
    ``HeNormal``. torch ``kaiming_normal_`` is untruncated ``N(0, 2 / fan_in)``: use
    ``he_normal(distribution='normal')``.

    Returns:
      An Initializer.

    References:
      He et al., 2015, "Delving Deep into Rectifiers", https://arxiv.org/abs/1502.01852.

    Example:
      >>> layer = flax.linen.Dense(128, kernel_init=jinit.he_normal())
    """
    return _variance_scaling("he_normal", scale, mode, distribution, in_axis, out_axis, batch_axis)


def he_uniform(
    *,
    scale: float = 2.0,
    mode: str = "fan_in",
    distribution: str = "uniform",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """He (Kaiming) uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / fan_in)``.

    ``variance_scaling(2.0, 'fan_in', 'uniform')``, ``Var = 2 / fan_in``. Bitwise
    ``jax.nn.initializers.he_uniform``; Keras ``HeUniform``; torch ``kaiming_uniform_``
    (with its default ``a=0``).

    Returns:
      An Initializer.

    References:
      He et al., 2015, https://arxiv.org/abs/1502.01852.
    """
    return _variance_scaling("he_uniform", scale, mode, distribution, in_axis, out_axis, batch_axis)


def lecun_normal(
    *,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """LeCun normal: truncated normal with ``Var = 1 / fan_in`` (Flax's default kernel init).

    ``variance_scaling(1.0, 'fan_in', 'truncated_normal')``: stddev before truncation
    ``sqrt(1 / fan_in) / 0.87962566``. Bitwise ``jax.nn.initializers.lecun_normal``; Keras
    ``LecunNormal``.

    Returns:
      An Initializer.

    References:
      LeCun et al., 1998, "Efficient BackProp"; Klambauer et al., 2017, "Self-Normalizing Neural
      Networks", https://arxiv.org/abs/1706.02515.
    """
    return _variance_scaling(
        "lecun_normal", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


def lecun_uniform(
    *,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "uniform",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """LeCun uniform: ``U(-limit, limit)``, ``limit = sqrt(3 / fan_in)``.

    ``variance_scaling(1.0, 'fan_in', 'uniform')``, ``Var = 1 / fan_in``. Bitwise
    ``jax.nn.initializers.lecun_uniform``; Keras ``LecunUniform``.

    Returns:
      An Initializer.

    References:
      LeCun et al., 1998, "Efficient BackProp"; Klambauer et al., 2017,
      https://arxiv.org/abs/1706.02515.
    """
    return _variance_scaling(
        "lecun_uniform", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


def orthogonal(gain: float = 1.0, column_axis: int = -1) -> Initializer:
    """Returns an initializer of ``gain`` times a Haar-random (semi-)orthogonal matrix.

    The shape is flattened to ``(prod(other axes), shape[column_axis])``; if there are at least
    as many rows as columns the columns are orthonormal (``W^T W = gain^2 I``), otherwise the rows
    are (``W W^T = gain^2 I``). Entries have variance ``gain^2 / max(rows, columns)``. Bitwise
    ``jax.nn.initializers.orthogonal(scale=gain, column_axis=column_axis)`` and Keras
    ``Orthogonal(gain)``; torch ``orthogonal_``. Complex dtypes give unitary matrices.
    float16/bfloat16 are drawn in float32 and rounded once (JAX's QR has no 16-bit kernels on
    CPU, so ``jax.nn.initializers.orthogonal`` fails there).

    Args:
      gain: multiplicative factor, > 0. Default 1.0.
      column_axis: the axis holding the columns. Default -1 (the output axis in Flax).

    Returns:
      An Initializer.

    References:
      Saxe et al., 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear
      neural networks", https://arxiv.org/abs/1312.6120.
    """
    return _float32_range(
        _Orthogonal(
            "orthogonal",
            _positive("orthogonal", "gain", gain),
            _int("orthogonal", "column_axis", column_axis),
        )
    )


def delta_orthogonal(gain: float = 1.0) -> Initializer:
    """Returns a conv-kernel initializer: an orthogonal matrix at the center tap, zeros elsewhere.

    For a ``(*spatial, in, out)`` kernel (3-D, 4-D or 5-D, ``in <= out``) the center tap
    ``W[(k-1)//2, ..., :, :]`` is ``orthogonal(gain)`` of shape ``(in, out)`` (orthonormal rows),
    so a conv with it preserves norms. Entries at the center tap have variance ``gain^2 / out``.
    Bitwise ``jax.nn.initializers.delta_orthogonal(scale=gain)`` (float16/bfloat16: drawn in
    float32 and rounded, as for :func:`orthogonal`).

    Args:
      gain: multiplicative factor, > 0. Default 1.0.

    Returns:
      An Initializer.

    References:
      Xiao et al., 2018, "Dynamical Isometry and a Mean Field Theory of CNNs",
      https://arxiv.org/abs/1806.05393.
    """
    return _float32_range(
        _DeltaOrthogonal("delta_orthogonal", _positive("delta_orthogonal", "gain", gain))
    )


def identity(gain: float = 1.0) -> Initializer:
    """Returns an initializer of ``gain`` times the identity matrix (the key is ignored).

    2-D shapes only; non-square shapes give ones on the main diagonal (like Keras ``Identity``
    and torch ``eye_``), so a Dense layer ``(in, out)`` with it copies the first ``min(in, out)``
    features. Bitwise Keras ``Identity(gain)``. For conv kernels use :func:`dirac`.

    Args:
      gain: multiplicative factor, > 0. Default 1.0.

    Returns:
      An Initializer.

    References:
      Le et al., 2015, "A Simple Way to Initialize Recurrent Networks of Rectified Linear
      Units", https://arxiv.org/abs/1504.00941.
    """
    return _float32_range(_Identity("identity", _positive("identity", "gain", gain)))


def dirac(groups: int = 1) -> Initializer:
    """Returns a conv-kernel initializer that makes the convolution the identity map.

    torch ``dirac_`` semantics in Flax layout ``(*spatial, in_per_group, out)`` (3-D, 4-D or
    5-D): with ``out_per_group = out // groups``,
    ``W[center, d, g * out_per_group + d] = 1`` for every group ``g`` and
    ``d < min(in_per_group, out_per_group)``, zeros elsewhere. A conv with
    ``feature_group_count=groups`` then copies the first ``min(in, out)`` channels of each group.
    ``center`` is ``(k - 1) // 2`` per spatial axis, the tap that 'SAME' padding aligns with the
    output in Flax (for odd ``k`` this is torch's ``k // 2``; for even ``k`` torch's choice
    would shift the output by one pixel). The key is ignored.

    Args:
      groups: number of groups (``feature_group_count`` of the conv), >= 1, must divide the
        number of output channels. Default 1.

    Returns:
      An Initializer.

    References:
      Zagoruyko & Komodakis, 2017, "DiracNets: Training Very Deep Neural Networks Without
      Skip-Connections", https://arxiv.org/abs/1706.00388.
    """
    groups = _int("dirac", "groups", groups)
    if groups < 1:
        raise ValueError(f"dirac: groups must be >= 1, got {groups}")
    return _Dirac("dirac", groups)


def sparse(sparsity: float, stddev: float = 0.01) -> Initializer:
    """Returns a sparse initializer: ``N(0, stddev^2)`` with a fraction of zeros per column.

    torch ``sparse_`` semantics on the 2-D array as given: each column gets exactly
    ``ceil(sparsity * rows)`` zeros at uniformly random rows; the rest are ``N(0, stddev^2)``.
    Variance ``(1 - ceil(sparsity * rows) / rows) * stddev^2``. In Flax's ``(in, out)`` layout a
    column is an output unit, so each unit gets ``ceil(sparsity * fan_in)`` zero incoming
    weights, which is Martens' scheme (a fixed number of nonzero incoming weights per unit);
    torch applies it to its ``(out, in)`` weight, i.e. per input. Jittable and vmappable.

    Args:
      sparsity: fraction of zeros per column, in [0, 1) (required).
      stddev: standard deviation of the nonzero entries, >= 0. Default 0.01.

    Returns:
      An Initializer.

    References:
      Martens, 2010, "Deep learning via Hessian-free optimization", ICML.
    """
    sparsity = _real("sparse", "sparsity", sparsity)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparse: sparsity must be in [0, 1), got {sparsity}")
    return _float32_range(_Sparse("sparse", sparsity, _nonnegative("sparse", "stddev", stddev)))


def torch_default(
    *,
    scale: float = 1.0 / 3.0,
    mode: str = "fan_in",
    distribution: str = "uniform",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """PyTorch's default weight init of ``nn.Linear`` / ``nn.Conv*``, in Flax layout.

    torch uses ``kaiming_uniform_(w, a=sqrt(5))``: ``gain = sqrt(2 / (1 + 5)) = sqrt(1/3)``,
    ``limit = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)``, i.e. ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` with ``Var = 1 / (3 fan_in)``; this is ``variance_scaling(1/3, 'fan_in',
    'uniform')``. ``fan_in`` is ``in`` for a Flax Dense kernel ``(in, out)`` and
    ``in * prod(spatial)`` for a HWIO conv kernel, as torch computes it from its ``(out, in, *k)``
    weight. Same distribution as torch, not the same numbers (different RNG).

    Returns:
      An Initializer.

    References:
      torch.nn.Linear.reset_parameters, https://pytorch.org/docs/stable/generated/torch.nn.Linear.html.
    """
    return _variance_scaling(
        "torch_default", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


def torch_default_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias init of ``nn.Linear`` / ``nn.Conv*``: ``U(-1/sqrt(fan_in), +)``.

    Variance ``1 / (3 fan_in)``. The bias shape does not carry the layer's fan_in, so pass it:
    ``in_features`` for a Dense layer, ``in_channels * prod(kernel_size)`` for a conv.

    Args:
      fan_in: the layer's fan_in, a positive int (required).

    Returns:
      An Initializer (any shape, including 1-D).

    Example:
      >>> layer = flax.linen.Dense(128, kernel_init=jinit.torch_default(),
      ...                          bias_init=jinit.torch_default_bias(784))
    """
    fan_in = _int("torch_default_bias", "fan_in", fan_in)
    if fan_in < 1:
        raise ValueError(f"torch_default_bias: fan_in must be >= 1, got {fan_in}")
    return _TorchDefaultBias("torch_default_bias", fan_in)


def keras_default(
    *,
    scale: float = 1.0,
    mode: str = "fan_avg",
    distribution: str = "uniform",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """Keras' default kernel init of ``Dense`` / ``Conv*``: glorot_uniform.

    ``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``; the same arrays as
    :func:`glorot_uniform`, under its own name so a sweep can label it.

    Returns:
      An Initializer.

    References:
      Glorot & Bengio, 2010, http://proceedings.mlr.press/v9/glorot10a.html.
    """
    return _variance_scaling(
        "keras_default", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


def flax_default(
    *,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> Initializer:
    """Flax's default kernel init of ``Dense`` / ``Conv``: lecun_normal.

    Truncated normal with ``Var = 1 / fan_in``; the same arrays as :func:`lecun_normal`, under its
    own name so a sweep can label it.

    Returns:
      An Initializer.

    References:
      Klambauer et al., 2017, https://arxiv.org/abs/1706.02515.
    """
    return _variance_scaling(
        "flax_default", scale, mode, distribution, in_axis, out_axis, batch_axis
    )


# torch.nn.init's names mean torch's distributions and defaults (a torch model ported with them draws what torch
# draws): kaiming_normal_ and xavier_normal_ are UNtruncated normals, unlike Keras/JAX he_normal / glorot_normal.
_TORCH_MODES = ("fan_in", "fan_out")


def _kaiming(name: str, a: Any, mode: Any, nonlinearity: Any) -> Initializer:
    a = _real(name, "a", a)
    mode = _choice(name, "mode", mode, _TORCH_MODES)
    if not isinstance(nonlinearity, str):
        raise TypeError(f"{name}: nonlinearity must be a str, got {nonlinearity!r}")
    try:
        gain(nonlinearity, a)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return _Kaiming(name, a, mode, nonlinearity.strip().lower())


def kaiming_normal(
    a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Initializer:
    """torch ``kaiming_normal_``: the untruncated normal ``N(0, gain^2 / fan)``.

    ``gain = gain(nonlinearity, a)`` (torch's ``calculate_gain``; with torch's defaults ``a=0``,
    ``'leaky_relu'``, ``gain = sqrt(2)``), ``fan`` per ``mode``. With the defaults this is
    ``he_normal(distribution='normal')``, bit for bit; Keras/JAX ``he_normal`` is a *truncated* normal of the
    same variance. Fans: torch computes them from its ``(out, in, *kernel)`` weight, jinit from the Flax
    ``(in, out)`` / ``(*kernel, in, out)`` kernel; for the same layer they are the same numbers.

    Args:
      a: negative slope of leaky_relu (only used by ``'leaky_relu'``). Default 0.
      mode: ``'fan_in'`` (preserves the forward variance) or ``'fan_out'`` (backward). Default ``'fan_in'``.
      nonlinearity: a name :func:`gain` knows. Default ``'leaky_relu'``.

    Returns:
      An Initializer.

    References:
      He et al., 2015, https://arxiv.org/abs/1502.01852; ``torch.nn.init.kaiming_normal_``,
      https://pytorch.org/docs/stable/nn.init.html.
    """
    return _kaiming("kaiming_normal", a, mode, nonlinearity)


def kaiming_uniform(
    a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Initializer:
    """torch ``kaiming_uniform_``: ``U(-bound, bound)``, ``bound = gain * sqrt(3 / fan)``.

    With torch's defaults the same arrays as :func:`he_uniform`; ``kaiming_uniform(a=math.sqrt(5))`` is torch's
    default ``nn.Linear`` / ``nn.Conv`` weight init (:func:`torch_default`). Arguments as :func:`kaiming_normal`.

    Returns:
      An Initializer.

    References:
      ``torch.nn.init.kaiming_uniform_``, https://pytorch.org/docs/stable/nn.init.html.
    """
    return _kaiming("kaiming_uniform", a, mode, nonlinearity)


def _xavier(name: str, gain: Any) -> Initializer:
    gain = _positive(name, "gain", gain)
    if not math.isfinite(gain * gain):
        raise ValueError(
            f"{name}: gain={gain!r} is out of range: gain^2 (the variance scale) must be a finite float"
        )
    return _Xavier(name, gain)


def xavier_normal(gain: float = 1.0) -> Initializer:
    """torch ``xavier_normal_``: the untruncated normal ``N(0, gain^2 * 2 / (fan_in + fan_out))``.

    ``glorot_normal(distribution='normal', scale=gain**2)``; Keras/JAX ``glorot_normal`` is a *truncated* normal
    of the same variance.

    Args:
      gain: multiplier of the standard deviation, > 0. Default 1.

    Returns:
      An Initializer.

    References:
      Glorot & Bengio, 2010, http://proceedings.mlr.press/v9/glorot10a.html; ``torch.nn.init.xavier_normal_``.
    """
    return _xavier("xavier_normal", gain)


def xavier_uniform(gain: float = 1.0) -> Initializer:
    """torch ``xavier_uniform_``: ``U(-bound, bound)``, ``bound = gain * sqrt(6 / (fan_in + fan_out))``.

    With the default gain the same arrays as :func:`glorot_uniform`.

    Args:
      gain: multiplier of the bound, > 0. Default 1.

    Returns:
      An Initializer.

    References:
      ``torch.nn.init.xavier_uniform_``, https://pytorch.org/docs/stable/nn.init.html.
    """
    return _xavier("xavier_uniform", gain)


# JAX / Keras spellings (the registry knows all of them; these are the importable ones).
random_normal = normal
random_uniform = uniform
eye = identity


# --------------------------------------------------------------------------------------------
# Helpers that are not initializers.
# --------------------------------------------------------------------------------------------

_LINEAR_GAIN = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
NONLINEARITIES = (*_LINEAR_GAIN, "tanh", "relu", "leaky_relu", "selu")


def gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    =================================  ==================================
    linear, conv1d/2d/3d,              1
    conv_transpose1d/2d/3d, sigmoid
    tanh                               5/3
    relu                               sqrt(2)
    leaky_relu                         sqrt(2 / (1 + slope^2)), slope =
                                       ``param`` (default 0.01)
    selu                               3/4
    =================================  ==================================

    Use it as ``variance_scaling(scale=gain(...) ** 2, ...)`` or ``orthogonal(gain=gain(...))``.

    Args:
      nonlinearity: name of the nonlinearity (case-insensitive).
      param: the negative slope of leaky_relu; ignored otherwise.

    Returns:
      The gain, a float.

    Raises:
      ValueError: unknown nonlinearity (the message lists the valid ones) or bad slope.

    Example:
      >>> jinit.gain("relu")
      1.4142135623730951
    """
    name = nonlinearity.strip().lower() if isinstance(nonlinearity, str) else nonlinearity
    if name in _LINEAR_GAIN:
        return 1.0
    if name == "tanh":
        return 5.0 / 3.0
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        slope = 0.01 if param is None else _real("gain", "leaky_relu slope (param)", param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if name == "selu":
        return 3.0 / 4.0
    raise ValueError(
        f"gain: unknown nonlinearity {nonlinearity!r}; valid choices: {', '.join(NONLINEARITIES)}"
    )


def _gain_squared(nonlinearity: str, param: float | None = None) -> float:
    """``gain(nonlinearity, param) ** 2`` computed exactly (``sqrt(2) ** 2`` is 2.0000000000000004, which would
    make torch's ``kaiming_uniform`` draw other arrays than ``he_uniform``)."""
    g = gain(nonlinearity, param)  # validates
    name = nonlinearity.strip().lower()
    if name == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return 2.0 / (1.0 + slope**2)
    return {"relu": 2.0, "tanh": 25.0 / 9.0, "selu": 9.0 / 16.0}.get(name, g * g)


def keras_key(seed: int) -> jax.Array:
    """The JAX PRNG key that Keras 3 (JAX backend) derives from an integer ``seed=``.

    Keras' ``draw_seed(seed)`` turns an int seed into the raw uint32 key data ``[seed, 0]``
    (``jax.random.PRNGKey(seed)`` is ``[0, seed]``), so
    ``jinit.glorot_uniform()(jinit.keras_key(42), shape)`` reproduces
    ``keras.initializers.GlorotUniform(seed=42)(shape)``. See the module docstring for which
    schemes match bit for bit and which up to float32 rounding.

    Args:
      seed: an int in [0, 2**32).

    Returns:
      A raw uint32 key of shape (2,), usable wherever ``jax.random.PRNGKey`` keys are.

    Example:
      >>> jinit.keras_key(42)
      Array([42,  0], dtype=uint32)
    """
    seed = _int("keras_key", "seed", seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"keras_key: seed must be in [0, 2**32), got {seed}")
    return jnp.asarray(np.array([seed, 0], dtype=np.uint32))
