"""Reproducing Keras 3 (JAX backend) initializers from an integer seed with jinit.keras_key."""

import os

import jax
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"  # must be set before keras is imported
keras = pytest.importorskip("keras")

import jinit  # noqa: E402

if keras.backend.backend() != "jax":  # pragma: no cover - keras imported earlier elsewhere
    pytest.skip("keras was imported with another backend", allow_module_level=True)

K = keras.initializers
SHAPES = [(128, 10), (3, 3, 16, 32)]
SEEDS = [42, 2**31 + 5]

# Keras draws these with the same JAX calls on the same key: bit for bit.
BITWISE = [
    (lambda s: K.Orthogonal(seed=s), jinit.orthogonal()),
    (lambda s: K.Orthogonal(gain=2.0, seed=s), jinit.orthogonal(gain=2.0)),
    (lambda s: K.RandomNormal(seed=s), jinit.normal()),
    (lambda s: K.RandomNormal(mean=0.3, stddev=0.1, seed=s), jinit.normal(stddev=0.1, mean=0.3)),
    (lambda s: K.RandomUniform(seed=s), jinit.uniform()),
    (lambda s: K.RandomUniform(-1.0, 3.0, seed=s), jinit.uniform(-1.0, 3.0)),
    (lambda s: K.TruncatedNormal(seed=s), jinit.truncated_normal()),
    (lambda s: K.TruncatedNormal(mean=-0.2, stddev=0.3, seed=s), jinit.truncated_normal(0.3, -0.2)),
    (lambda s: K.Zeros(), jinit.zeros()),
    (lambda s: K.Ones(), jinit.ones()),
    (lambda s: K.Constant(0.7), jinit.constant(0.7)),
]

# Keras computes the stddev / limit in float64 Python arithmetic; JAX (and jinit, which keeps
# bitwise parity with JAX) in float32, so these agree to float32 rounding (measured: <= 2 ulp).
ULP = [
    (lambda s: K.GlorotUniform(seed=s), jinit.glorot_uniform()),
    (lambda s: K.GlorotNormal(seed=s), jinit.glorot_normal()),
    (lambda s: K.HeNormal(seed=s), jinit.he_normal()),
    (lambda s: K.HeUniform(seed=s), jinit.he_uniform()),
    (lambda s: K.LecunNormal(seed=s), jinit.lecun_normal()),
    (lambda s: K.LecunUniform(seed=s), jinit.lecun_uniform()),
    # Keras' distribution='normal' is a truncated normal, 'untruncated_normal' is jinit's normal.
    (
        lambda s: K.VarianceScaling(2.0, "fan_out", "normal", seed=s),
        jinit.variance_scaling(2.0, "fan_out", "truncated_normal"),
    ),
    (
        lambda s: K.VarianceScaling(0.5, "fan_avg", "untruncated_normal", seed=s),
        jinit.variance_scaling(0.5, "fan_avg", "normal"),
    ),
]


@pytest.fixture(scope="module")
def draws():
    """Every (Keras, jinit) pair for every seed and shape, in one jitted program.

    Compiling dominates the cost of these checks; one program keeps it to a few seconds. The
    Keras initializers are pure given an int seed, so they trace like any JAX function.
    """

    def program():
        out = {}
        for kind, table in (("bitwise", BITWISE), ("ulp", ULP)):
            for i, (make_keras, ours) in enumerate(table):
                for seed in SEEDS:
                    for shape in SHAPES:
                        key = f"{kind}-{i}-{seed}-{shape}"
                        out[key] = (make_keras(seed)(shape), ours(jinit.keras_key(seed), shape))
        return out

    return jax.jit(program)()


def test_keras_key_is_keras_seed():
    from keras.src.random.seed_generator import draw_seed

    for seed in [0, 42, 2**31 + 5, 2**32 - 1]:
        np.testing.assert_array_equal(jinit.keras_key(seed), draw_seed(seed))


@pytest.mark.parametrize("i", range(len(BITWISE)))
def test_bitwise_equal_to_keras(i, draws):
    for seed in SEEDS:
        for shape in SHAPES:
            theirs, mine = draws[f"bitwise-{i}-{seed}-{shape}"]
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{seed} {shape}")


def test_bitwise_equal_to_keras_eagerly():
    # Outside jit too (one shape; eager dispatch compiles op by op, which is slow).
    for make_keras, ours in (BITWISE[1], BITWISE[3], BITWISE[4]):
        theirs = np.asarray(make_keras(42)((128, 10)))
        np.testing.assert_array_equal(np.asarray(ours(jinit.keras_key(42), (128, 10))), theirs)


def test_keras_identity():
    np.testing.assert_array_equal(
        np.asarray(jinit.identity(gain=0.5)(jinit.keras_key(0), (5, 7))),
        np.asarray(K.Identity(gain=0.5)((5, 7))),
    )


@pytest.mark.parametrize("i", range(len(ULP)))
def test_equal_to_keras_up_to_float32_rounding(i, draws):
    for seed in SEEDS:
        for shape in SHAPES:
            theirs, mine = (np.asarray(a) for a in draws[f"ulp-{i}-{seed}-{shape}"])
            assert mine.dtype == theirs.dtype == np.float32
            np.testing.assert_array_max_ulp(mine, theirs, maxulp=2)
